package router

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"unsafe"
)

// reference is the naive model the FIB must agree with: a set of prefixes
// searched linearly, longest match wins.
type reference map[netip.Prefix][]NextHop

func (r reference) lookup(a netip.Addr) (netip.Prefix, bool) {
	best, found := netip.Prefix{}, false
	for p := range r {
		if p.Contains(a) && (!found || p.Bits() > best.Bits()) {
			best, found = p, true
		}
	}
	return best, found
}

// randLen draws a prefix length for an address of n bits, biased towards
// the cases that matter: /0, host routes, and either side of the table
// boundaries (/24 for IPv4's tbl24; for IPv6 the root's /16 and the ends
// of the 16-bit strides below it, /32 to /112).
func randLen(rng *rand.Rand, n int) int {
	l := randLen1(rng, n)
	if raceEnabled && n == 32 && l < 8 && rng.IntN(8) != 0 {
		// Short IPv4 prefixes cost up to 2^24 atomic stores each, slow
		// under the race detector: keep them rarer.
		l += 8
	}
	return l
}

func randLen1(rng *rand.Rand, n int) int {
	switch x := rng.IntN(100); {
	case x < 1:
		return 0
	case x < 6:
		return 1 + rng.IntN(7)
	case x < 12:
		return n
	case x < 30:
		if n == 128 {
			return min(n, 16+16*rng.IntN(7)-2+rng.IntN(5))
		}
		return min(n, max(0, n-8-3+rng.IntN(7))) // around /24
	default:
		return 8 + rng.IntN(n-7)
	}
}

// randAddr returns an address near one of a few hot spots, so that random
// prefixes overlap a lot.
func randAddr(rng *rand.Rand, hot []netip.Addr) netip.Addr {
	a := hot[rng.IntN(len(hot))].AsSlice()
	// Flip a few bits, mostly low ones.
	for range rng.IntN(4) {
		bit := len(a)*8 - 1 - int(rng.ExpFloat64()*float64(len(a)*2))
		if bit < 0 {
			bit = rng.IntN(len(a) * 8)
		}
		a[bit/8] ^= 0x80 >> (bit % 8)
	}
	r, _ := netip.AddrFromSlice(a)
	return r
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().AsSlice()
	for i := p.Bits(); i < len(a)*8; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	r, _ := netip.AddrFromSlice(a)
	return r
}

func randNextHops(rng *rand.Rand, is4 bool) []NextHop {
	n := 1
	if rng.IntN(8) == 0 {
		n = 2 + rng.IntN(3)
	}
	nh := make([]NextHop, n)
	for i := range nh {
		nh[i].Port = uint16(rng.IntN(40))
		if rng.IntN(2) == 0 {
			if is4 {
				nh[i].Gateway = netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + rng.IntN(200))})
			} else {
				nh[i].Gateway = netip.AddrFrom16([16]byte{0xfe, 0x80, 15: byte(1 + rng.IntN(200))})
			}
		}
	}
	return nh
}

func sortedHops(nh []NextHop) []NextHop {
	s := slices.Clone(nh)
	if !slices.ContainsFunc(s, func(h NextHop) bool { return h != s[0] }) {
		return s[:1] // one next hop, however often repeated, is not a group
	}
	slices.SortFunc(s, func(a, b NextHop) int {
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		return a.Gateway.Compare(b.Gateway)
	})
	return s
}

// checkAgainst compares the FIB with the reference at every probe address.
func checkAgainst(t *testing.T, f *FIB, ref reference, probes []netip.Addr, step int) {
	t.Helper()
	routes := f.Routes()
	if len(routes) != len(ref) || f.Len() != len(ref) {
		t.Fatalf("step %d: FIB has %d routes (Len %d), reference %d", step, len(routes), f.Len(), len(ref))
	}
	ids := make(map[netip.Prefix]NextHopID, len(routes))
	for _, r := range routes {
		want, ok := ref[r.Prefix]
		if !ok {
			t.Fatalf("step %d: FIB lists %s, reference does not", step, r.Prefix)
		}
		if !slices.Equal(sortedHops(r.NextHops), sortedHops(want)) {
			t.Fatalf("step %d: %s has next hops %v, want %v", step, r.Prefix, r.NextHops, want)
		}
		ids[r.Prefix] = r.ID
	}
	var d4 [][4]byte
	var d6 [][16]byte
	var w4, w6 []NextHopID
	for _, a := range probes {
		var got NextHopID
		var ok bool
		if a.Is4() {
			got, ok = f.Lookup4(a.As4())
		} else {
			got, ok = f.Lookup6(a.As16())
		}
		p, want := ref.lookup(a)
		if ok != want || (ok && got != ids[p]) {
			t.Fatalf("step %d: lookup %s = %#x %v, want %#x %v (from %s)", step, a, got, ok, ids[p], want, p)
		}
		nh, ok := f.Lookup(a)
		if want && (!ok || nh != f.NextHop(ids[p])) {
			t.Fatalf("step %d: Lookup(%s) = %v %v, want %v", step, a, nh, ok, f.NextHop(ids[p]))
		}
		if !want {
			got = NoRoute
		}
		if a.Is4() {
			d4, w4 = append(d4, a.As4()), append(w4, got)
		} else {
			d6, w6 = append(d6, a.As16()), append(w6, got)
		}
	}
	checkTrie6(t, f, step)
	// The batch lookups agree with the single ones.
	out := make([]NextHopID, len(probes))
	f.Lookup4Batch(d4, out)
	for i := range d4 {
		if out[i] != w4[i] {
			t.Fatalf("step %d: Lookup4Batch gave %#x for %v, Lookup4 %#x", step, out[i], d4[i], w4[i])
		}
	}
	f.Lookup6Batch(d6, out)
	for i := range d6 {
		if out[i] != w6[i] {
			t.Fatalf("step %d: Lookup6Batch gave %#x for %v, Lookup6 %#x", step, out[i], netip.AddrFrom16(d6[i]), w6[i])
		}
	}
}

func testAgainstReference(t *testing.T, bits int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	is4 := bits == 32
	hot := make([]netip.Addr, 6)
	for i := range hot {
		if is4 {
			hot[i] = netip.AddrFrom4([4]byte{byte(rng.IntN(224)), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		} else {
			var a [16]byte
			for j := range a {
				a[j] = byte(rng.Uint32())
			}
			a[0] = 0x20
			hot[i] = netip.AddrFrom16(a)
		}
	}
	f := NewFIB()
	ref := reference{}
	var probes []netip.Addr
	addProbes := func(p netip.Prefix) {
		first, last := p.Addr(), lastAddr(p)
		probes = append(probes, first, last, randAddr(rng, hot))
		if b := first.Prev(); b.IsValid() {
			probes = append(probes, b)
		}
		if b := last.Next(); b.IsValid() {
			probes = append(probes, b)
		}
	}
	ops := 1500
	if testing.Short() {
		ops = 300
	}
	for step := range ops {
		if len(ref) > 0 && rng.IntN(100) < 40 {
			// Delete a random route.
			var p netip.Prefix
			n := rng.IntN(len(ref))
			for q := range ref {
				if n == 0 {
					p = q
					break
				}
				n--
			}
			if err := f.Delete(p); err != nil {
				t.Fatalf("step %d: delete %s: %v", step, p, err)
			}
			delete(ref, p)
			if err := f.Delete(p); !errors.Is(err, ErrRouteNotFound) {
				t.Fatalf("step %d: deleting %s twice: %v", step, p, err)
			}
			addProbes(p)
		} else {
			p, _ := randAddr(rng, hot).Prefix(randLen(rng, bits))
			nh := randNextHops(rng, is4)
			err := f.Add(p, nh...)
			if _, exists := ref[p]; exists {
				if !errors.Is(err, ErrRouteExists) {
					t.Fatalf("step %d: add of existing %s: %v", step, p, err)
				}
				err = f.Replace(p, nh...)
			}
			if err != nil {
				t.Fatalf("step %d: add %s: %v", step, p, err)
			}
			ref[p] = nh
			addProbes(p)
		}
		if len(probes) > 600 {
			probes = probes[len(probes)-600:]
		}
		if step%25 == 0 || step == ops-1 {
			checkAgainst(t, f, ref, probes, step)
		}
	}
	// Delete everything: every lookup misses and every tbl8 group is free.
	for p := range ref {
		if err := f.Delete(p); err != nil {
			t.Fatalf("final delete %s: %v", p, err)
		}
		delete(ref, p)
		addProbes(p)
	}
	checkAgainst(t, f, ref, probes, ops)
	if t8 := f.tbl8.Load(); len(f.free8) != len(t8.owner) {
		t.Errorf("empty FIB still uses %d of %d tbl8 groups", len(t8.owner)-len(f.free8), len(t8.owner))
	}
	for i, e := range f.tbl24 {
		if e != 0 {
			t.Fatalf("empty FIB has tbl24[%#x] = %#x", i, e)
		}
	}
	for s, e := range f.v6.Load().root {
		if e != 0 {
			t.Fatalf("empty FIB has IPv6 root entry %#x = %#x", s, e)
		}
	}
	if len(f.nodes6) != 0 || f.used6 != f.garbage6 {
		t.Errorf("empty FIB has %d IPv6 root nodes, %d live arena words", len(f.nodes6), f.used6-f.garbage6)
	}
}

func seeds() uint64 {
	if raceEnabled {
		return 1
	}
	return 3
}

func TestIPv4MatchesReference(t *testing.T) {
	for seed := range seeds() {
		testAgainstReference(t, 32, seed)
	}
}

func TestIPv6MatchesReference(t *testing.T) {
	for seed := range seeds() {
		testAgainstReference(t, 128, seed)
	}
}

// checkTrie6 checks the IPv6 nodes against the writer's view and the
// routes: every root entry refers to the node the writer has for it (and
// only those), every node is non-empty and linked both ways, its encoding
// decodes to the runs its routes and children make, its default words
// hold its default, which is the longest route covering it from above,
// and the arena's live words are exactly what the nodes use.
func checkTrie6(t *testing.T, f *FIB, step int) {
	t.Helper()
	tb := f.v6.Load()
	if tb != f.w6 {
		t.Fatalf("step %d: the writer's IPv6 table is not the published one", step)
	}
	live := 0
	var walk func(n *node6, prefix [16]byte)
	walk = func(n *node6, prefix [16]byte) {
		live += n.words
		if n.empty() {
			t.Fatalf("step %d: empty node at depth %d under %x", step, n.depth, prefix)
		}
		wantDef, wantLen := f.parent6(prefix, n.depth+1)
		if n.def != wantDef || n.defLen != wantLen {
			t.Fatalf("step %d: node %x/%d has default %#x (/%d), want %#x (/%d)", step, prefix, n.depth, n.def, n.defLen, wantDef, wantLen)
		}
		for _, w := range n.inh {
			if d := tb.arena[w]; d != n.def {
				t.Fatalf("step %d: node %x/%d word %d holds default %#x, want %#x", step, prefix, n.depth, w, d, n.def)
			}
		}
		rs, _ := n.runs6(nil, nil)
		inherited := 0
		for i, r := range rs {
			if r.val == inherit6 {
				rs[i].val = n.def
				inherited++
			}
		}
		if inherited != len(n.inh) {
			t.Fatalf("step %d: node %x/%d has %d runs taking the default, the writer lists %d", step, prefix, n.depth, inherited, len(n.inh))
		}
		if got, want := decode6(tb, n.ref), runVals6(rs, nil); !slices.Equal(got, want) {
			t.Fatalf("step %d: node %x/%d encodes runs %v, want %v", step, prefix, n.depth, got, want)
		}
		for i, k := range n.kids {
			if i > 0 && n.kids[i-1].chunk >= k.chunk {
				t.Fatalf("step %d: children of %x/%d out of order", step, prefix, n.depth)
			}
			if k.n.parent != n || k.n.chunk != k.chunk || k.n.depth != n.depth+16 {
				t.Fatalf("step %d: child %#x of %x/%d is linked to %p/%#x at depth %d", step, k.chunk, prefix, n.depth, k.n.parent, k.n.chunk, k.n.depth)
			}
			if k.slot == noSlot6 || tb.arena[k.slot] != k.n.ref {
				t.Fatalf("step %d: child %#x of %x/%d: slot %d does not hold its reference %#x", step, k.chunk, prefix, n.depth, k.slot, k.n.ref)
			}
			p := prefix
			p[n.depth/8], p[n.depth/8+1] = byte(k.chunk>>8), byte(k.chunk)
			walk(k.n, p)
		}
	}
	for s, e := range tb.root {
		n := f.nodes6[uint16(s)]
		if (e&extBit != 0) != (n != nil) || n != nil && e != n.ref {
			t.Fatalf("step %d: root entry %#x = %#x, writer's node %+v", step, s, e, n)
		}
		if n != nil {
			if n.parent != nil || n.chunk != uint16(s) || n.depth != 16 {
				t.Fatalf("step %d: root node %#x is linked to %p/%#x at depth %d", step, s, n.parent, n.chunk, n.depth)
			}
			walk(n, [16]byte{byte(s >> 8), byte(s)})
		}
	}
	if live != f.used6-f.garbage6 {
		t.Fatalf("step %d: nodes use %d arena words, the accounts say %d", step, live, f.used6-f.garbage6)
	}
}

// decode6 reads the node at ref back into its runs' (end, word) pairs,
// sub-nodes of a wide node flattened.
func decode6(tb *table6, ref uint32) [][2]uint32 {
	o := (ref & lineMask6) << 4
	k := (*[32]uint16)(unsafe.Pointer(&tb.arena[o]))
	var ends []uint32
	for _, e := range k {
		if e != 0xffff {
			ends = append(ends, uint32(e))
		}
	}
	ends = append(ends, 0xffff)
	var rs [][2]uint32
	for i, end := range ends {
		v := tb.arena[o+nodeVals6+uint32(i)]
		if v&(extBit|sub6) == extBit|sub6 {
			sub := decode6(tb, v)
			sub[len(sub)-1][0] = end
			rs = append(rs, sub...)
			continue
		}
		rs = append(rs, [2]uint32{end, v})
	}
	return rs
}

func runVals6(rs []run6, _ []local6) [][2]uint32 {
	out := make([][2]uint32, len(rs))
	for i, r := range rs {
		out[i] = [2]uint32{uint32(r.end), r.val}
	}
	return out
}

// TestIPv6StrideBoundaries nests routes of every interesting length over
// one address (each stride's edges and the lengths DPDK-like strides
// would cut at), then deletes them in several orders: each delete must
// expose the next shorter covering route, at the address and at the edges
// of every prefix.
func TestIPv6StrideBoundaries(t *testing.T) {
	lens := []int{0, 1, 15, 16, 17, 24, 31, 32, 33, 47, 48, 49, 56, 63, 64, 65, 79, 80, 96, 111, 112, 113, 127, 128}
	a := addr("2001:db8:89ab:cdef:1234:5678:9abc:def1")
	var ps []netip.Prefix
	for _, l := range lens {
		p, _ := a.Prefix(l)
		ps = append(ps, p)
	}
	var probes []netip.Addr
	for _, p := range ps {
		probes = append(probes, p.Addr(), lastAddr(p))
		if b := p.Addr().Prev(); b.IsValid() {
			probes = append(probes, b)
		}
		if b := lastAddr(p).Next(); b.IsValid() {
			probes = append(probes, b)
		}
	}
	rng := rand.New(rand.NewPCG(5, 5))
	orders := map[string]func([]netip.Prefix){
		"longest first":  func(s []netip.Prefix) { slices.Reverse(s) },
		"shortest first": func([]netip.Prefix) {},
		"random":         func(s []netip.Prefix) { rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] }) },
	}
	for name, order := range orders {
		t.Run(name, func(t *testing.T) {
			f := NewFIB()
			ref := reference{}
			add := slices.Clone(ps)
			rng.Shuffle(len(add), func(i, j int) { add[i], add[j] = add[j], add[i] })
			for i, p := range add {
				nh := []NextHop{port(uint16(p.Bits()))}
				if err := f.Add(p, nh...); err != nil {
					t.Fatal(err)
				}
				ref[p] = nh
				checkAgainst(t, f, ref, probes, i)
			}
			del := slices.Clone(ps)
			order(del)
			for i, p := range del {
				if err := f.Delete(p); err != nil {
					t.Fatal(err)
				}
				delete(ref, p)
				checkAgainst(t, f, ref, probes, len(add)+i)
			}
		})
	}
}

// TestIPv6WideNodes fills one stride with more runs than a node holds
// (sub-nodes under an index node), and empties it again.
func TestIPv6WideNodes(t *testing.T) {
	f := NewFIB()
	ref := reference{}
	var probes []netip.Addr
	f.Add(pfx("2001:db8::/32"), port(1))
	ref[pfx("2001:db8::/32")] = []NextHop{port(1)}
	var added []netip.Prefix
	for i := range 1200 {
		// /48s, every third one a /47 or a /64 below it.
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 5), byte(i << 3)})
		l := []int{48, 47, 64}[i%3]
		p, _ := a.Prefix(l)
		if _, ok := ref[p]; ok {
			continue
		}
		nh := []NextHop{port(uint16(2 + i%30))}
		if err := f.Add(p, nh...); err != nil {
			t.Fatal(err)
		}
		ref[p] = nh
		added = append(added, p)
		probes = append(probes, p.Addr(), lastAddr(p), lastAddr(p).Next())
	}
	checkAgainst(t, f, ref, probes, 0)
	n := f.nodes6[0x2001].kids[0].n
	if len(n.lines) < 3 {
		t.Fatalf("a node of %d routes was encoded in %d parts, want an index node over sub-nodes", len(n.local), len(n.lines))
	}
	rng := rand.New(rand.NewPCG(6, 6))
	rng.Shuffle(len(added), func(i, j int) { added[i], added[j] = added[j], added[i] })
	for i, p := range added {
		f.Delete(p)
		delete(ref, p)
		if i%100 == 0 {
			checkAgainst(t, f, ref, probes, i+1)
		}
	}
	checkAgainst(t, f, ref, probes, len(added)+1)
	if f.compactions6 == 0 {
		t.Error("the churn of wide nodes never compacted the arena")
	}
}
