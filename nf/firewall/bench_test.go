package firewall

import (
	"fmt"
	"syscall"
	"testing"
)

// cpuNs is the CPU time (user+system) the process has used. The machines
// we bench on are shared, so wall-clock ns/op includes time the
// benchmark was not running; cpu-ns/op does not.
func cpuNs() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// loop runs Classify over keys (a power-of-two count) and reports
// cpu-ns/op besides the usual figures.
func loop(b *testing.B, rs *Ruleset, keys []Key) {
	b.ReportAllocs()
	mask := len(keys) - 1
	i := 0
	start := cpuNs()
	for b.Loop() {
		rs.Classify(&keys[i&mask])
		i++
	}
	b.ReportMetric(float64(cpuNs()-start)/float64(b.N), "cpu-ns/op")
}

// ruleSet is a realistic random rule set of n rules (70% IPv4, 30%
// IPv6; CIDRs of /8 to /32 and /32 to /128 around 2000 sites; common
// service ports, high ports and ranges; TCP, UDP, ICMP, SCTP, GRE) and
// 4096 keys drawn by key.
func ruleSet(n int, key func(g *gen, rules []Rule) Key) ([]Rule, []Key) {
	g := newGen(uint64(n), false)
	rules := g.rules(n)
	keys := make([]Key, 4096)
	for i := range keys {
		keys[i] = key(g, rules)
	}
	return rules, keys
}

// benchSet has keys of plausible traffic (gen.trafficKey).
func benchSet(n int) ([]Rule, []Key) { return ruleSet(n, (*gen).trafficKey) }

// edgeSet has keys at or next to the rules' edges (the keys of the
// property test): many near misses, the hard case.
func edgeSet(n int) ([]Rule, []Key) { return ruleSet(n, (*gen).key) }

// lateSet has keys that no rule in the first half of the set matches
// (most fall to the default policy): the lookups cannot stop early, the
// hard case for traffic.
func lateSet(n int) ([]Rule, []Key) { return ruleSet(n, (*gen).lateKey) }

// lateKey returns a random or traffic key that no rule in the first half
// of rules matches.
func (g *gen) lateKey(rules []Rule) Key {
	for {
		k := g.key(nil)
		if g.pct(50) {
			k = g.trafficKey(rules)
		}
		if _, i := Linear(rules, Drop, &k); i < 0 || i >= len(rules)/2 {
			return k
		}
	}
}

// BenchmarkClassifyRuleSets runs 10k-rule sets of five other seeds, with
// traffic aimed at rules and with late deciders: how much the figures
// depend on one random rule set.
func BenchmarkClassifyRuleSets(b *testing.B) {
	for seed := uint64(1); seed <= 5; seed++ {
		g := newGen(seed*7919, false)
		rules := g.rules(10000)
		keys, late := make([]Key, 4096), make([]Key, 4096)
		for i := range keys {
			keys[i] = g.trafficKey(rules)
		}
		for i := range late {
			late[i] = g.lateKey(rules)
		}
		rs, _ := Compile(rules, Drop)
		b.Run(fmt.Sprintf("set=%d", seed), func(b *testing.B) { loop(b, rs, keys) })
		b.Run(fmt.Sprintf("set=%d/late", seed), func(b *testing.B) { loop(b, rs, late) })
	}
}

// BenchmarkClassifyLate classifies traffic that only late rules or the
// default policy decide.
func BenchmarkClassifyLate(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		rules, keys := lateSet(n)
		rs, _ := Compile(rules, Drop)
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) { loop(b, rs, keys) })
		b.Run(fmt.Sprintf("rules=%d/hot", n), func(b *testing.B) { loop(b, rs, keys[:64]) })
	}
}

func BenchmarkClassifyEdges(b *testing.B) {
	for _, n := range []int{100, 10000} {
		rules, keys := edgeSet(n)
		rs, _ := Compile(rules, Drop)
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) { loop(b, rs, keys) })
	}
}

func BenchmarkClassify(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		rules, keys := benchSet(n)
		rs, err := Compile(rules, Drop)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) { loop(b, rs, keys) })
	}
}

// BenchmarkClassifyFamily splits the 10k-rule figure by address family.
func BenchmarkClassifyFamily(b *testing.B) {
	rules, keys := benchSet(10000)
	rs, _ := Compile(rules, Drop)
	for _, v6 := range []bool{false, true} {
		var ks []Key
		for _, k := range keys {
			if k.IPv6 == v6 {
				ks = append(ks, k)
			}
		}
		ks = ks[:1024]
		b.Run(fmt.Sprintf("rules=10000/ipv6=%v", v6), func(b *testing.B) { loop(b, rs, ks) })
	}
}

// BenchmarkFirewallClassify includes the atomic load of the rule set and
// the hit counter of the calling worker.
func BenchmarkFirewallClassify(b *testing.B) {
	rules, keys := benchSet(10000)
	fw, err := New(1, rules, Drop)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		fw.Classify(0, &keys[i&4095])
		i++
	}
}

func BenchmarkLinear(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		rules, keys := benchSet(n)
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				Linear(rules, Drop, &keys[i&4095])
				i++
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		rules, _ := benchSet(n)
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var rs *Ruleset
			for b.Loop() {
				rs, _ = Compile(rules, Drop)
			}
			st := rs.Size()
			b.ReportMetric(float64(st.Bytes)/(1<<20), "MiB")
			b.ReportMetric(float64(st.ListEntries), "entries")
			b.ReportMetric(float64(st.Residual), "residual")
		})
	}
}

// BenchmarkClassifyHot cycles through 64 keys only: the classifier's
// working set stays in cache, as with traffic of few flows.
func BenchmarkClassifyHot(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		rules, keys := benchSet(n)
		rs, _ := Compile(rules, Drop)
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) { loop(b, rs, keys[:64]) })
	}
}

// BenchmarkClassifyCounted compares counting hits per packet (an atomic add
// on a 10k-rule counter array each time, Firewall.Classify) with counting
// once per rule per batch of 64 (what the stage does).
func BenchmarkClassifyCounted(b *testing.B) {
	rules, keys := benchSet(10000)
	fw, err := New(1, rules, Drop)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("per-packet", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			fw.Classify(0, &keys[i%len(keys)])
		}
	})
	b.Run("per-batch", func(b *testing.B) {
		var h batchHits
		rs := fw.Load()
		for i := 0; i < b.N; i++ {
			_, r := rs.Classify(&keys[i%len(keys)])
			h.add(r)
			if i%64 == 63 {
				h.flush(rs, 0)
			}
		}
		h.flush(rs, 0)
	})
}
