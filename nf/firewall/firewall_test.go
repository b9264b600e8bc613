package firewall

import (
	"sync"
	"sync/atomic"
	"testing"
)

// Two rule sets give different answers for most keys; a goroutine swaps
// between them while others classify. Every answer must be the reference
// answer of one set or the other, never a mix.
func TestReplaceWhileClassifyingGivesOldOrNewAnswers(t *testing.T) {
	g := newGen(5, false)
	setA, setB := g.rules(300), g.rules(300)
	keys := make([]Key, 2000)
	for i := range keys {
		if i%2 == 0 {
			keys[i] = g.trafficKey(setA)
		} else {
			keys[i] = g.trafficKey(setB)
		}
	}
	type answer struct {
		a Action
		i int
	}
	wantA := make([]answer, len(keys))
	wantB := make([]answer, len(keys))
	differ := 0
	for i := range keys {
		a, j := Linear(setA, Accept, &keys[i])
		wantA[i] = answer{a, j}
		a, j = Linear(setB, Drop, &keys[i])
		wantB[i] = answer{a, j}
		if wantA[i] != wantB[i] {
			differ++
		}
	}
	if differ < len(keys)/2 {
		t.Fatalf("only %d of %d keys tell the sets apart", differ, len(keys))
	}

	const workers = 2
	fw, err := New(workers, setA, Accept)
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var swaps atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; !stop.Load(); n++ {
			var err error
			if n%2 == 0 {
				_, err = fw.Replace(setB, Drop)
			} else {
				_, err = fw.Replace(setA, Accept)
			}
			if err != nil {
				t.Error(err)
				return
			}
			swaps.Add(1)
		}
	}()
	var seenA, seenB atomic.Int64
	var ww sync.WaitGroup
	for w := range workers {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for round := 0; round < 20 || swaps.Load() < 10 && !t.Failed(); round++ {
				for i := range keys {
					a, j := fw.Classify(w, &keys[i])
					got := answer{a, j}
					switch {
					case got == wantA[i] && got == wantB[i]:
					case got == wantA[i]:
						seenA.Add(1)
					case got == wantB[i]:
						seenB.Add(1)
					default:
						t.Errorf("key %d: got %v, want %v (old) or %v (new)", i, got, wantA[i], wantB[i])
						return
					}
				}
			}
		}()
	}
	ww.Wait() // the workers run until the swapper has swapped 10 times
	stop.Store(true)
	wg.Wait()
	if seenA.Load() == 0 || seenB.Load() == 0 {
		t.Errorf("answers from set A: %d, from set B: %d; want both (swaps: %d)", seenA.Load(), seenB.Load(), swaps.Load())
	}
}

func TestHitsCountEveryRuleAndTheDefault(t *testing.T) {
	rules, err := ParseRules([]string{"accept proto tcp dport 22", "drop proto udp"})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := New(3, rules, Reject)
	if err != nil {
		t.Fatal(err)
	}
	ssh := key4("10.0.0.1", "10.0.0.2", ProtoTCP, 999, 22)
	dns := key4("10.0.0.1", "10.0.0.2", ProtoUDP, 999, 53)
	web := key4("10.0.0.1", "10.0.0.2", ProtoTCP, 999, 80)
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				fw.Classify(w, &ssh)
				fw.Classify(w, &dns)
				fw.Classify(w, &dns)
				fw.Classify(w, &web)
			}
		}()
	}
	wg.Wait()
	if got := fw.Hits(); len(got) != 2 || got[0] != 3000 || got[1] != 6000 {
		t.Errorf("Hits() = %v, want [3000 6000]", got)
	}
	if got := fw.DefaultHits(); got != 3000 {
		t.Errorf("DefaultHits() = %d, want 3000", got)
	}
	old, err := fw.Replace(rules, Reject)
	if err != nil {
		t.Fatal(err)
	}
	if got := old.Hits(); got[1] != 6000 {
		t.Errorf("the replaced set lost its counts: %v", got)
	}
	if got := fw.Hits(); got[0] != 0 || got[1] != 0 || fw.DefaultHits() != 0 {
		t.Errorf("the new set starts with counts %v, %d", got, fw.DefaultHits())
	}
}

func TestReplaceWithABadRuleKeepsTheRulesInForce(t *testing.T) {
	rules, _ := ParseRules([]string{"drop proto udp"})
	fw, err := New(1, rules, Accept)
	if err != nil {
		t.Fatal(err)
	}
	before := fw.Load()
	bad := NewRule(Drop)
	bad.DstPort = PortRange{53, 53}
	if _, err := fw.Replace([]Rule{NewRule(Accept), bad}, Drop); err == nil {
		t.Fatal("Replace accepted a rule with a port but no protocol")
	}
	if fw.Load() != before {
		t.Error("a failed Replace changed the rule set in force")
	}
}

func TestCompiledRulesetKeepsItsOwnCopy(t *testing.T) {
	rules, _ := ParseRules([]string{"drop proto udp"})
	rs, err := Compile(rules, Accept)
	if err != nil {
		t.Fatal(err)
	}
	rules[0].Proto = ProtoTCP
	k := key4("10.0.0.1", "10.0.0.2", ProtoUDP, 1, 2)
	if a, i := rs.Classify(&k); a != Drop || i != 0 {
		t.Errorf("got (%v, %d) after the caller changed its slice, want (drop, 0)", a, i)
	}
	if rs.Rules()[0].Proto != ProtoUDP || rs.Len() != 1 || rs.Default() != Accept {
		t.Error("Rules, Len or Default do not describe the compiled set")
	}
}
