package router

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// IPv6: a 65536-entry root indexed by the first 16 bits, then a multibit
// trie of 6-bit strides whose nodes are tree bitmaps compressed with
// popcount.
//
// A node covers 6 bits. Prefixes ending inside the node (0 to 5 more bits)
// are its internal prefixes, kept in a 63-bit heap bitmap: the prefix of k
// bits with value b sits at bit 1<<k + b, so a longer prefix always has a
// higher bit. For a 6-bit chunk c, anc[c] has the bits of the 6 internal
// prefixes that match c, so the longest match in the node is the highest
// bit of internal&anc[c] and its value is found by counting the bits below
// it. Children (the next 6 bits) sit in a 64-bit bitmap, also indexed by
// popcount. A /48 lookup visits the root and 6 nodes; /128 visits 19.
//
// Routes of /16 or shorter live in the root: each root slot's node carries
// def, the entry (with depth) of the longest such route covering the /16,
// rewritten in place like IPv4's tbl24 entries.
//
// Concurrency: nodes are immutable once published. An update copies the
// path from the root slot to the node it changes (read-copy-update) and
// stores the new slot pointer atomically; readers see the old or the new
// subtree, and the garbage collector reclaims the old path once no reader
// holds it. Nodes may be shared between root slots (a /8 route's 256 slots
// share one node) since nothing is modified in place.

type node6 struct {
	def      uint32 // root slots only: entry of the longest route <= /16
	internal uint64 // heap bitmap of prefixes ending in this node
	child    uint64 // bitmap of children by 6-bit chunk
	vals     []NextHopID
	kids     []*node6
}

// anc6[c] is the set of internal-prefix bits matching chunk c.
var anc6 = func() (a [64]uint64) {
	for c := range 64 {
		for k := range 6 {
			a[c] |= 1 << (1<<k + c>>(6-k))
		}
	}
	return a
}()

// Lookup6 returns the route's next-hop ID for dst (an ECMP group's ID for
// an ECMP route: see Pick and LookupFlow6) and whether a route matched.
// It never blocks and never allocates.
func (f *FIB) Lookup6(dst [16]byte) (NextHopID, bool) {
	hi := binary.BigEndian.Uint64(dst[:8])
	lo := binary.BigEndian.Uint64(dst[8:])
	n := f.root6[hi>>48].Load()
	if n == nil {
		return 0, false
	}
	best := n.def
	hi = hi<<16 | lo>>48
	lo <<= 16
	for {
		c := hi >> 58
		if m := n.internal & anc6[c]; m != 0 {
			top := 63 - bits.LeadingZeros64(m)
			best = validBit | uint32(n.vals[bits.OnesCount64(n.internal&(1<<top-1))])
		}
		if n.child&(1<<c) == 0 {
			break
		}
		n = n.kids[bits.OnesCount64(n.child&(1<<c-1))]
		hi = hi<<6 | lo>>58
		lo <<= 6
	}
	return NextHopID(best & valMask), best&validBit != 0
}

func (n *node6) clone() *node6 {
	if n == nil {
		return &node6{}
	}
	c := *n
	return &c
}

func (n *node6) empty() bool {
	return n.internal == 0 && n.child == 0 && n.def&validBit == 0
}

// insert6 returns a copy of n with the route (the top rem bits of hi:lo)
// set to id. n may be nil.
func insert6(n *node6, hi, lo uint64, rem int, id NextHopID) *node6 {
	c := n.clone()
	if rem < 6 {
		bit := uint(1)<<rem + uint(hi>>(64-rem))
		idx := bits.OnesCount64(c.internal & (1<<bit - 1))
		if c.internal&(1<<bit) != 0 {
			c.vals = append([]NextHopID(nil), c.vals...)
			c.vals[idx] = id
		} else {
			c.vals = insertAt(c.vals, idx, id)
			c.internal |= 1 << bit
		}
		return c
	}
	ch := hi >> 58
	idx := bits.OnesCount64(c.child & (1<<ch - 1))
	if c.child&(1<<ch) != 0 {
		c.kids = append([]*node6(nil), c.kids...)
		c.kids[idx] = insert6(c.kids[idx], hi<<6|lo>>58, lo<<6, rem-6, id)
	} else {
		c.kids = insertAt(c.kids, idx, insert6(nil, hi<<6|lo>>58, lo<<6, rem-6, id))
		c.child |= 1 << ch
	}
	return c
}

// remove6 returns a copy of n without the route (the top rem bits of
// hi:lo), or nil when nothing is left. The route must exist.
func remove6(n *node6, hi, lo uint64, rem int) *node6 {
	c := n.clone()
	if rem < 6 {
		bit := uint(1)<<rem + uint(hi>>(64-rem))
		idx := bits.OnesCount64(c.internal & (1<<bit - 1))
		c.vals = removeAt(c.vals, idx)
		c.internal &^= 1 << bit
	} else {
		ch := hi >> 58
		idx := bits.OnesCount64(c.child & (1<<ch - 1))
		if k := remove6(c.kids[idx], hi<<6|lo>>58, lo<<6, rem-6); k != nil {
			c.kids = append([]*node6(nil), c.kids...)
			c.kids[idx] = k
		} else {
			c.kids = removeAt(c.kids, idx)
			c.child &^= 1 << ch
		}
	}
	if c.empty() {
		return nil
	}
	return c
}

func insertAt[T any](s []T, i int, v T) []T {
	r := make([]T, len(s)+1)
	copy(r, s[:i])
	r[i] = v
	copy(r[i+1:], s[i:])
	return r
}

func removeAt[T any](s []T, i int) []T {
	if len(s) == 1 {
		return nil
	}
	r := make([]T, len(s)-1)
	copy(r, s[:i])
	copy(r[i:], s[i+1:])
	return r
}

func split6(a [16]byte) (hi, lo uint64) {
	return binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
}

// add6 writes the route a/l -> id. Called with mu held.
func (f *FIB) add6(a [16]byte, l int, id NextHopID) {
	hi, lo := split6(a)
	if l <= 16 {
		e := mkEntry(id, l)
		first := hi >> 48
		end := first + 1<<(16-l)
		var shared *node6 // one node for all slots that had nothing
		for s := first; s < end; s++ {
			n := f.root6[s].Load()
			switch {
			case n == nil:
				if shared == nil {
					shared = &node6{def: e}
				}
				f.root6[s].Store(shared)
			case entryDepth(n.def) <= l:
				c := n.clone()
				c.def = e
				f.root6[s].Store(c)
			}
		}
		return
	}
	s := hi >> 48
	f.root6[s].Store(insert6(f.root6[s].Load(), hi<<16|lo>>48, lo<<16, l-16, id))
}

// delete6 removes the route a/l; the control-plane map no longer holds it.
// Called with mu held.
func (f *FIB) delete6(a [16]byte, l int) {
	hi, lo := split6(a)
	if l <= 16 {
		parent := f.parent6(a, l)
		first := hi >> 48
		end := first + 1<<(16-l)
		for s := first; s < end; s++ {
			n := f.root6[s].Load()
			if n == nil || n.def&validBit == 0 || entryDepth(n.def) != l {
				continue
			}
			c := n.clone()
			c.def = parent
			if c.empty() {
				c = nil
			}
			f.root6[s].Store(c)
		}
		return
	}
	s := hi >> 48
	n := remove6(f.root6[s].Load(), hi<<16|lo>>48, lo<<16, l-16)
	f.root6[s].Store(n)
}

// parent6 returns the entry of the longest route strictly shorter than l
// covering a, or 0 (no route).
func (f *FIB) parent6(a [16]byte, l int) uint32 {
	for l--; l >= 0; l-- {
		if id, ok := f.pfx6[l][mask6(a, l)]; ok {
			return mkEntry(id, l)
		}
	}
	return 0
}

func mask6(a [16]byte, l int) [16]byte {
	for i := range a {
		switch {
		case l >= 8:
			l -= 8
		case l > 0:
			a[i] &= ^byte(0xff >> l)
			l = 0
		default:
			a[i] = 0
		}
	}
	return a
}

// memory6 returns the bytes held by IPv6 trie nodes, counting shared nodes
// once. Called with mu held.
func (f *FIB) memory6() int {
	seen := make(map[*node6]struct{})
	var walk func(n *node6) int
	walk = func(n *node6) int {
		if n == nil {
			return 0
		}
		if _, ok := seen[n]; ok {
			return 0
		}
		seen[n] = struct{}{}
		b := int(unsafe.Sizeof(*n)) + 4*cap(n.vals) + 8*cap(n.kids)
		for _, k := range n.kids {
			b += walk(k)
		}
		return b
	}
	total := 0
	for s := range f.root6 {
		total += walk(f.root6[s].Load())
	}
	return total
}
