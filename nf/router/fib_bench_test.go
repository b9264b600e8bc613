package router

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// Prefix-length mix of an IPv4 Internet table, per million prefixes:
// mostly /24, then /22-/23 and /16-/21, a few thousand shorter, a few
// thousand longer (as seen in full tables that keep some more-specifics).
var lenWeights4 = map[int]int{
	8: 16, 9: 13, 10: 40, 11: 100, 12: 300, 13: 600, 14: 1100, 15: 1900,
	16: 15000, 17: 10000, 18: 18000, 19: 35000, 20: 55000, 21: 67000,
	22: 90000, 23: 60000, 24: 590000,
	25: 1500, 26: 1500, 27: 1000, 28: 800, 29: 600, 30: 400, 31: 100, 32: 1000,
}

// Prefix-length mix of an IPv6 Internet table.
var lenWeights6 = map[int]int{
	19: 2, 20: 4, 22: 4, 24: 6, 28: 4, 29: 50, 30: 6, 31: 4, 32: 150,
	33: 15, 34: 15, 35: 10, 36: 40, 40: 80, 42: 10, 44: 100, 45: 15,
	46: 25, 47: 30, 48: 430,
}

func pickLen(rng *rand.Rand, w map[int]int) int {
	total := 0
	for _, v := range w {
		total += v
	}
	x := rng.IntN(total)
	for l := 0; ; l++ {
		if x < w[l] {
			return l
		}
		x -= w[l]
	}
}

func benchNextHops(rng *rand.Rand) []NextHop {
	nh := make([]NextHop, 64)
	for i := range nh {
		nh[i] = NextHop{Port: uint16(i % 8), Gateway: netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})}
	}
	return nh
}

// randomTable4 returns n distinct random IPv4 prefixes with the Internet
// length mix, under 1.0.0.0-223.255.255.255.
func randomTable4(n int, seed uint64) []netip.Prefix {
	rng := rand.New(rand.NewPCG(seed, 4))
	seen := make(map[netip.Prefix]struct{}, n)
	ps := make([]netip.Prefix, 0, n)
	for len(ps) < n {
		a := 1<<24 + rng.Uint32N(223<<24)
		p, _ := netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, a))).Prefix(pickLen(rng, lenWeights4))
		if _, dup := seen[p]; !dup {
			seen[p] = struct{}{}
			ps = append(ps, p)
		}
	}
	return ps
}

// Prefix lengths added, inside customer sites, to the Internet mix in the
// "64s" table (weights per 1000 prefixes of that table): /56 and /64
// subnets, /128 loopbacks, as an operator's own table carries them.
var siteWeights6 = map[int]int{56: 40, 64: 140, 128: 20}

// randomTable6 returns n distinct random IPv6 prefixes with the Internet
// length mix, clustered like real allocations: registries hand out /19-/32
// blocks under 2000::/3, and most longer prefixes sit inside one of them.
// With sites, a fifth of the prefixes (siteWeights6) are /56, /64 and /128
// inside n/40 random /48 sites, themselves inside the blocks.
func randomTable6(n int, seed uint64, sites bool) []netip.Prefix {
	rng := rand.New(rand.NewPCG(seed, 6))
	rand16 := func() [16]byte {
		var a [16]byte
		binary.BigEndian.PutUint64(a[:8], rng.Uint64())
		binary.BigEndian.PutUint64(a[8:], rng.Uint64())
		a[0] = 0x20 | a[0]&0x1f
		return a
	}
	blocks := make([][16]byte, n/8+1)
	for i := range blocks {
		blocks[i] = rand16()
	}
	var site48 [][16]byte
	if sites {
		site48 = make([][16]byte, n/40+1)
		for i := range site48 {
			site48[i] = rand16()
			copy(site48[i][:4], blocks[rng.IntN(len(blocks))][:4])
		}
	}
	seen := make(map[netip.Prefix]struct{}, n)
	ps := make([]netip.Prefix, 0, n)
	for len(ps) < n {
		var a [16]byte
		var l int
		if sites && rng.IntN(5) == 0 {
			l = pickLen(rng, siteWeights6)
			a = rand16()
			copy(a[:6], site48[rng.IntN(len(site48))][:6])
		} else {
			l = pickLen(rng, lenWeights6)
			a = rand16()
			if l > 32 {
				b := blocks[rng.IntN(len(blocks))]
				copy(a[:4], b[:4]) // inside an allocated /32
			}
		}
		p, _ := netip.AddrFrom16(a).Prefix(l)
		if _, dup := seen[p]; !dup {
			seen[p] = struct{}{}
			ps = append(ps, p)
		}
	}
	return ps
}

func buildFIB(b testing.TB, ps []netip.Prefix) *FIB {
	rng := rand.New(rand.NewPCG(9, 9))
	nh := benchNextHops(rng)
	f := NewFIB()
	for i, p := range ps {
		if err := f.Add(p, nh[i%len(nh)]); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

// lookupAddrs returns 64Ki destinations: 95% inside a random route (so
// mostly hitting, spread like the table), 5% anywhere.
func lookupAddrs(ps []netip.Prefix, seed uint64) []netip.Addr {
	rng := rand.New(rand.NewPCG(seed, 7))
	as := make([]netip.Addr, 1<<16)
	for i := range as {
		p := ps[rng.IntN(len(ps))]
		var r [16]byte
		binary.BigEndian.PutUint64(r[:8], rng.Uint64())
		binary.BigEndian.PutUint64(r[8:], rng.Uint64())
		if rng.IntN(20) == 0 {
			p = netip.PrefixFrom(p.Addr(), 0)
		}
		a := p.Addr().AsSlice()
		for j := p.Bits(); j < len(a)*8; j++ {
			a[j/8] |= r[j/8] & (0x80 >> (j % 8))
		}
		as[i], _ = netip.AddrFromSlice(a)
	}
	return as
}

type benchTable struct {
	f     *FIB
	addrs []netip.Addr
	build time.Duration
}

var (
	benchMu     sync.Mutex
	benchTables = map[string]*benchTable{}
)

// table builds (once per process) a FIB of n random prefixes; sites adds
// /56, /64 and /128 prefixes to an IPv6 table (see randomTable6).
func table(b *testing.B, v6 bool, n int, sites bool) *benchTable {
	key := fmt.Sprint(v6, n, sites)
	benchMu.Lock()
	defer benchMu.Unlock()
	if t, ok := benchTables[key]; ok {
		return t
	}
	var ps []netip.Prefix
	if v6 {
		ps = randomTable6(n, 1, sites)
	} else {
		ps = randomTable4(n, 1)
	}
	start := time.Now()
	t := &benchTable{f: buildFIB(b, ps), addrs: lookupAddrs(ps, 2)}
	t.build = time.Since(start)
	benchTables[key] = t
	return t
}

var sinkID NextHopID

func BenchmarkLookup4(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			t := table(b, false, n, false)
			dst := make([][4]byte, len(t.addrs))
			for i, a := range t.addrs {
				dst[i] = a.As4()
			}
			hits := 0
			for _, d := range dst {
				if _, ok := t.f.Lookup4(d); ok {
					hits++
				}
			}
			b.ReportAllocs()
			var s NextHopID
			for i := 0; b.Loop(); i++ {
				id, _ := t.f.Lookup4(dst[i&(len(dst)-1)])
				s += id
			}
			sinkID = s
			b.ReportMetric(float64(t.f.MemoryBytes())/(1<<20), "fib-MiB")
			b.ReportMetric(100*float64(hits)/float64(len(dst)), "hit-%")
			b.ReportMetric(t.build.Seconds(), "build-s")
		})
	}
}

func BenchmarkLookupFlow4(b *testing.B) {
	t := table(b, false, 1_000_000, false)
	dst := make([][4]byte, len(t.addrs))
	for i, a := range t.addrs {
		dst[i] = a.As4()
	}
	b.ReportAllocs()
	var s NextHopID
	for i := 0; b.Loop(); i++ {
		id, _ := t.f.LookupFlow4(dst[i&(len(dst)-1)], uint32(i))
		s += id
	}
	sinkID = s
}

// tables6 are the IPv6 tables the benchmarks run on: the Internet mix at
// two sizes, and 100k prefixes of which a fifth are /56, /64 and /128.
var tables6 = []struct {
	name  string
	n     int
	sites bool
}{
	{"prefixes=1000", 1_000, false},
	{"prefixes=100000", 100_000, false},
	{"prefixes=100000,sites", 100_000, true},
}

func BenchmarkLookup6(b *testing.B) {
	for _, tc := range tables6 {
		b.Run(tc.name, func(b *testing.B) {
			t := table(b, true, tc.n, tc.sites)
			dst := make([][16]byte, len(t.addrs))
			for i, a := range t.addrs {
				dst[i] = a.As16()
			}
			hits := 0
			for _, d := range dst {
				if _, ok := t.f.Lookup6(d); ok {
					hits++
				}
			}
			b.ReportAllocs()
			var s NextHopID
			for i := 0; b.Loop(); i++ {
				id, _ := t.f.Lookup6(dst[i&(len(dst)-1)])
				s += id
			}
			sinkID = s
			// The IPv6 part only: the IPv4 tbl24 is reserved by NewFIB anyway.
			mem6 := t.f.MemoryBytes() - unsafeSizeTbl24
			b.ReportMetric(float64(mem6)/(1<<20), "fib6-MiB")
			b.ReportMetric(float64(mem6)/float64(tc.n), "B/prefix")
			b.ReportMetric(float64(nodes6(t.f)), "nodes")
			b.ReportMetric(100*float64(hits)/float64(len(dst)), "hit-%")
			b.ReportMetric(t.build.Seconds(), "build-s")
		})
	}
}

const unsafeSizeTbl24 = 4 << 24 // bytes of the IPv4 tbl24

// BenchmarkAdd4 measures one IPv4 update (add then delete of a /24, each
// one tbl24 store) in a 1M-prefix table.
func BenchmarkAdd4(b *testing.B) {
	t := table(b, false, 1_000_000, false)
	p := pfx("198.51.100.0/24")
	nh := port(1)
	b.ReportAllocs()
	for b.Loop() {
		t.f.Add(p, nh)
		t.f.Delete(p)
	}
}

// BenchmarkLookup6Batch measures Lookup6Batch over bursts of 64
// destinations, as a forwarding stage would call it; ns/lookup is the
// figure to compare with BenchmarkLookup6.
func BenchmarkLookup6Batch(b *testing.B) {
	for _, tc := range tables6 {
		b.Run(tc.name, func(b *testing.B) {
			t := table(b, true, tc.n, tc.sites)
			dst := make([][16]byte, len(t.addrs))
			for i, a := range t.addrs {
				dst[i] = a.As16()
			}
			out := make([]NextHopID, 64)
			b.ReportAllocs()
			lookups := 0
			for i := 0; b.Loop(); i += 64 {
				f := i & (len(dst) - 1)
				t.f.Lookup6Batch(dst[f:f+64], out)
				lookups += 64
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(lookups), "ns/lookup")
		})
	}
}

func BenchmarkLookup4Batch(b *testing.B) {
	t := table(b, false, 1_000_000, false)
	dst := make([][4]byte, len(t.addrs))
	for i, a := range t.addrs {
		dst[i] = a.As4()
	}
	out := make([]NextHopID, 64)
	b.ReportAllocs()
	lookups := 0
	for i := 0; b.Loop(); i += 64 {
		f := i & (len(dst) - 1)
		t.f.Lookup4Batch(dst[f:f+64], out)
		lookups += 64
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(lookups), "ns/lookup")
}

// nodes6 counts the IPv6 nodes.
func nodes6(f *FIB) int {
	var count func(n *node6) int
	count = func(n *node6) int {
		c := 1
		for _, k := range n.kids {
			c += count(k.n)
		}
		return c
	}
	c := 0
	for _, n := range f.nodes6 {
		c += count(n)
	}
	return c
}

// BenchmarkAdd6 measures one IPv6 update (add then delete of a /48, each
// copying its path) in a 100k-prefix table.
func BenchmarkAdd6(b *testing.B) {
	t := table(b, true, 100_000, false)
	p := pfx("2001:db8:abcd::/48")
	nh := port(1)
	b.ReportAllocs()
	for b.Loop() {
		t.f.Add(p, nh)
		t.f.Delete(p)
	}
}
