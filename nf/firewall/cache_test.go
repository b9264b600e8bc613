package firewall

import (
	"fmt"
	"net/netip"
	"testing"
)

// The cache answers exactly what the classifier answers, across rule
// set swaps, and does answer from memory when keys repeat.
func TestCacheEqualsClassify(t *testing.T) {
	g := newGen(3, false)
	rulesA := g.rules(2000)
	rulesB := g.rules(2000)
	a, err := Compile(rulesA, Drop)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile(rulesB, Accept)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]Key, 3000)
	for i := range keys {
		keys[i] = g.trafficKey(rulesA)
		if i%3 == 0 {
			keys[i] = g.key(rulesB)
		}
	}
	c := NewCache(1024)
	for i := range 200000 {
		rs := a
		if i/5000%2 == 1 { // swap every 5000 lookups
			rs = b
		}
		k := &keys[g.intn(len(keys))]
		ga, gi := c.Classify(rs, k)
		wa, wi := rs.Classify(k)
		if ga != wa || gi != wi {
			t.Fatalf("lookup %d, key %+v: cache says (%v, %d), classifier (%v, %d)", i, *k, ga, gi, wa, wi)
		}
	}
	hits, misses := c.Stats()
	if hits+misses != 200000 || hits < 20000 || misses < 3000 {
		t.Fatalf("hits %d, misses %d: want both, adding up to 200000", hits, misses)
	}
}

// Keys that differ in any one field are different cache entries.
func TestCacheTellsEveryFieldApart(t *testing.T) {
	r := NewRule(Accept)
	r.Proto, r.DstPort, r.States = ProtoTCP, PortRange{80, 80}, StateNew
	rs, err := Compile([]Rule{r}, Drop)
	if err != nil {
		t.Fatal(err)
	}
	var base Key
	base.SetAddrs(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.1.1"))
	base.Proto, base.SrcPort, base.DstPort, base.State = ProtoTCP, 1000, 80, StateNew
	variants := []func(k *Key){
		func(k *Key) { k.Src[15]++ }, func(k *Key) { k.Dst[15]++ }, func(k *Key) { k.SrcPort++ },
		func(k *Key) { k.DstPort++ }, func(k *Key) { k.InPort++ }, func(k *Key) { k.Proto = ProtoUDP },
		func(k *Key) { k.ICMPType++ }, func(k *Key) { k.ICMPCode++ }, func(k *Key) { k.State = StateEstablished },
		func(k *Key) { k.IPv6 = true },
	}
	for i, v := range variants {
		seen := map[[6]uint64]bool{packKey(&base): true}
		k := base
		v(&k)
		if seen[packKey(&k)] {
			t.Errorf("variant %d packs like the base key", i)
		}
		c := NewCache(2) // one slot or two: collisions are the point
		for range 3 {
			for _, kk := range []Key{base, k} {
				if ga, gi := c.Classify(rs, &kk); true {
					wa, wi := rs.Classify(&kk)
					if ga != wa || gi != wi {
						t.Fatalf("variant %d: key %+v: cache (%v, %d), classifier (%v, %d)", i, kk, ga, gi, wa, wi)
					}
				}
			}
		}
	}
}

func TestCacheDoesNotAllocate(t *testing.T) {
	rules, keys := benchSet(1000)
	rs, _ := Compile(rules, Drop)
	c := NewCache(DefaultCacheSize)
	i := 0
	if n := testing.AllocsPerRun(10000, func() {
		c.Classify(rs, &keys[i%len(keys)])
		i++
	}); n != 0 {
		t.Fatalf("%v allocations per lookup", n)
	}
}

// BenchmarkCacheClassify is the firewall stage's lookup at 10k rules:
// flows=64 and flows=4096 cycle through that many keys (after the first
// round, hits but for slot collisions); new-flows changes the source
// port of every key, so every lookup misses and pays the cache on top of
// the classifier.
func BenchmarkCacheClassify(b *testing.B) {
	rules, keys := benchSet(10000)
	rs, _ := Compile(rules, Drop)
	for _, n := range []int{64, 4096} {
		b.Run(fmt.Sprintf("rules=10000/flows=%d", n), func(b *testing.B) {
			c := NewCache(DefaultCacheSize)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c.Classify(rs, &keys[i&(n-1)])
				i++
			}
			h, m := c.Stats()
			b.ReportMetric(float64(h)/float64(h+m), "hit-ratio")
		})
	}
	b.Run("rules=10000/new-flows", func(b *testing.B) {
		c := NewCache(DefaultCacheSize)
		ks := append([]Key(nil), keys...)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := &ks[i&4095]
			k.SrcPort++
			c.Classify(rs, k)
			i++
		}
		h, m := c.Stats()
		b.ReportMetric(float64(h)/float64(h+m), "hit-ratio")
	})
}
