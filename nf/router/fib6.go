package router

import (
	"encoding/binary"
	"math/bits"
	"slices"
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
// popcount. Nodes are stored by value in their parent's array of
// children, and single-child chains are path-compressed (see node6): a /48
// lookup visits the root and at most 6 nodes, typically 4 in an Internet
// table where /48s are scattered below /32s.
//
// Routes of /16 or shorter live in the root: each root slot carries def,
// the entry (with depth) of the longest such route covering the /16,
// maintained by depth like IPv4's tbl24 entries.
//
// Concurrency: nodes are immutable once published. An update copies the
// path from the root slot to the node it changes (read-copy-update) and
// stores the new slot pointer atomically; readers see the old or the new
// subtree, and the garbage collector reclaims the old path once no reader
// holds it. Slots may be shared between root entries (a /8 route's 256
// empty /16s share one) since nothing is modified in place.

// node6 is one trie node, stored by value in its parent's kids array, so
// a lookup touches one node (72 bytes; the fields a walk needs come first)
// per level, plus the vals line where a prefix matches.
//
// Chains of nodes without prefixes and with one child, common below a /32
// that holds scattered /48s, are path-compressed: the node at the end of
// the chain records the chunks it skips, and a lookup checks them all at
// once. skip holds them left-aligned (up to maxSkip6 chunks of 6 bits) with
// their count in the low 4 bits; 0 means no skip.
type node6 struct {
	skip     uint64
	internal uint64 // heap bitmap of prefixes ending in this node
	child    uint64 // bitmap of children by 6-bit chunk
	kids     []node6
	vals     []NextHopID
}

const (
	skipCount6 = 0xf
	maxSkip6   = 10
)

// slot6 is what a root slot points to: the /16's node and def, the entry
// (with depth) of the longest route of /16 or shorter covering the /16.
type slot6 struct {
	node6
	def uint32
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
	s := f.root6[hi>>48].Load()
	if s == nil {
		return 0, false
	}
	best := s.def
	n := &s.node6
	hi = hi<<16 | lo>>48
	lo <<= 16
	for {
		if sk := n.skip; sk != 0 {
			b := 6 * (sk & skipCount6)
			if (hi^sk)>>(64-b) != 0 {
				break
			}
			hi = hi<<b | lo>>(64-b)
			lo <<= b
		}
		c := hi >> 58
		if m := n.internal & anc6[c]; m != 0 {
			top := 63 - bits.LeadingZeros64(m)
			best = validBit | uint32(n.vals[bits.OnesCount64(n.internal&(1<<top-1))])
		}
		if n.child&(1<<c) == 0 {
			break
		}
		n = &n.kids[bits.OnesCount64(n.child&(1<<c-1))]
		hi = hi<<6 | lo>>58
		lo <<= 6
	}
	return NextHopID(best & valMask), best&validBit != 0
}

func (n *node6) empty() bool { return n.internal == 0 && n.child == 0 }

// expand6 undoes the first step of k's path compression: it returns a node
// without skip whose only child is k minus its first skipped chunk.
func expand6(k node6) node6 {
	if k.skip == 0 {
		return k
	}
	cnt := k.skip & skipCount6
	key := k.skip &^ skipCount6
	c := key >> 58
	k.skip = 0
	if cnt > 1 {
		k.skip = key<<6 | (cnt - 1)
	}
	return node6{child: 1 << c, kids: []node6{k}}
}

// compress6 merges n into its child when n has no prefixes and one child
// and the combined skip fits.
func compress6(n node6) node6 {
	if n.internal != 0 || n.child&(n.child-1) != 0 || n.child == 0 {
		return n
	}
	k := n.kids[0]
	sn, sk := n.skip&skipCount6, k.skip&skipCount6
	total := sn + 1 + sk
	if total > maxSkip6 {
		return n
	}
	c := uint64(bits.TrailingZeros64(n.child))
	k.skip = n.skip&^skipCount6 | c<<(58-6*sn) | (k.skip&^skipCount6)>>(6*(sn+1)) | total
	return k
}

// insert6 returns a copy of n (which has no skip) with the route (the top
// rem bits of hi:lo) set to id; the copy shares n's unchanged arrays.
func insert6(n node6, hi, lo uint64, rem int, id NextHopID) node6 {
	if rem < 6 {
		bit := uint(1)<<rem + uint(hi>>(64-rem))
		idx := bits.OnesCount64(n.internal & (1<<bit - 1))
		if n.internal&(1<<bit) != 0 {
			n.vals = slices.Clone(n.vals)
			n.vals[idx] = id
		} else {
			n.vals = insertAt(n.vals, idx, id)
			n.internal |= 1 << bit
		}
		return n
	}
	ch := hi >> 58
	idx := bits.OnesCount64(n.child & (1<<ch - 1))
	if n.child&(1<<ch) != 0 {
		k := compress6(insert6(expand6(n.kids[idx]), hi<<6|lo>>58, lo<<6, rem-6, id))
		n.kids = slices.Clone(n.kids)
		n.kids[idx] = k
	} else {
		k := compress6(insert6(node6{}, hi<<6|lo>>58, lo<<6, rem-6, id))
		n.kids = insertAt(n.kids, idx, k)
		n.child |= 1 << ch
	}
	return n
}

// remove6 returns a copy of n (which has no skip) without the route (the
// top rem bits of hi:lo), which must exist.
func remove6(n node6, hi, lo uint64, rem int) node6 {
	if rem < 6 {
		bit := uint(1)<<rem + uint(hi>>(64-rem))
		idx := bits.OnesCount64(n.internal & (1<<bit - 1))
		n.vals = removeAt(n.vals, idx)
		n.internal &^= 1 << bit
		return n
	}
	ch := hi >> 58
	idx := bits.OnesCount64(n.child & (1<<ch - 1))
	if k := remove6(expand6(n.kids[idx]), hi<<6|lo>>58, lo<<6, rem-6); !k.empty() {
		n.kids = slices.Clone(n.kids)
		n.kids[idx] = compress6(k)
	} else {
		n.kids = removeAt(n.kids, idx)
		n.child &^= 1 << ch
	}
	return n
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
		var shared *slot6 // one slot for all /16s that had nothing
		for s := first; s < end; s++ {
			old := f.root6[s].Load()
			switch {
			case old == nil:
				if shared == nil {
					shared = &slot6{def: e}
				}
				f.root6[s].Store(shared)
			case entryDepth(old.def) <= l:
				f.root6[s].Store(&slot6{node6: old.node6, def: e})
			}
		}
		return
	}
	s := hi >> 48
	old := f.root6[s].Load()
	if old == nil {
		old = &slot6{}
	}
	n := insert6(old.node6, hi<<16|lo>>48, lo<<16, l-16, id)
	f.root6[s].Store(&slot6{node6: n, def: old.def})
}

// delete6 removes the route a/l; the control-plane map no longer holds it.
// Called with mu held.
func (f *FIB) delete6(a [16]byte, l int) {
	hi, lo := split6(a)
	store := func(s uint64, n node6, def uint32) {
		if n.empty() && def&validBit == 0 {
			f.root6[s].Store(nil)
			return
		}
		f.root6[s].Store(&slot6{node6: n, def: def})
	}
	if l <= 16 {
		parent := f.parent6(a, l)
		first := hi >> 48
		end := first + 1<<(16-l)
		for s := first; s < end; s++ {
			old := f.root6[s].Load()
			if old == nil || old.def&validBit == 0 || entryDepth(old.def) != l {
				continue
			}
			store(s, old.node6, parent)
		}
		return
	}
	s := hi >> 48
	old := f.root6[s].Load()
	store(s, remove6(old.node6, hi<<16|lo>>48, lo<<16, l-16), old.def)
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

// memory6 returns the bytes held by IPv6 root slots and trie nodes,
// counting shared slots once. Called with mu held.
func (f *FIB) memory6() int {
	var walk func(n *node6) int
	walk = func(n *node6) int {
		b := int(unsafe.Sizeof(*n))*cap(n.kids) + 4*cap(n.vals)
		for i := range n.kids {
			b += walk(&n.kids[i])
		}
		return b
	}
	seen := make(map[*slot6]struct{})
	total := 0
	for i := range f.root6 {
		s := f.root6[i].Load()
		if s == nil {
			continue
		}
		if _, ok := seen[s]; ok {
			continue
		}
		seen[s] = struct{}{}
		total += int(unsafe.Sizeof(*s)) + walk(&s.node6)
	}
	return total
}

// batch6 is how many IPv6 lookups Lookup6Batch interleaves: enough
// independent trie walks to keep the CPU's miss buffers busy (8 gave about
// 200 ns/lookup on a 100k-prefix table, 16 about 120, 32 about 85).
const batch6 = 32

// Lookup6Batch looks up every dst, writing the route's next-hop ID (as
// Lookup6 would) to out[i], or NoRoute. It walks several tries level by
// level in lockstep so their cache misses overlap, which is faster than
// calling Lookup6 in a loop on tables larger than the CPU caches. out must
// be at least as long as dst. It never blocks and never allocates.
func (f *FIB) Lookup6Batch(dst [][16]byte, out []NextHopID) {
	out = out[:len(dst)]
	for len(dst) > 0 {
		k := min(len(dst), batch6)
		var (
			hi, lo [batch6]uint64
			node   [batch6]*node6
			best   [batch6]uint32
			active uint64
		)
		for i := range k {
			h := binary.BigEndian.Uint64(dst[i][:8])
			l := binary.BigEndian.Uint64(dst[i][8:])
			if s := f.root6[h>>48].Load(); s != nil {
				best[i] = s.def
				node[i] = &s.node6
				hi[i], lo[i] = h<<16|l>>48, l<<16
				active |= 1 << i
			}
		}
		for active != 0 {
			for a := active; a != 0; a &= a - 1 {
				i := bits.TrailingZeros64(a)
				n := node[i]
				if sk := n.skip; sk != 0 {
					b := 6 * (sk & skipCount6)
					if (hi[i]^sk)>>(64-b) != 0 {
						active &^= 1 << i
						continue
					}
					hi[i] = hi[i]<<b | lo[i]>>(64-b)
					lo[i] <<= b
				}
				c := hi[i] >> 58
				if m := n.internal & anc6[c]; m != 0 {
					top := 63 - bits.LeadingZeros64(m)
					best[i] = validBit | uint32(n.vals[bits.OnesCount64(n.internal&(1<<top-1))])
				}
				if n.child&(1<<c) == 0 {
					active &^= 1 << i
					continue
				}
				node[i] = &n.kids[bits.OnesCount64(n.child&(1<<c-1))]
				hi[i] = hi[i]<<6 | lo[i]>>58
				lo[i] <<= 6
			}
		}
		for i := range k {
			out[i] = NoRoute
			if best[i]&validBit != 0 {
				out[i] = NextHopID(best[i] & valMask)
			}
		}
		dst, out = dst[k:], out[k:]
	}
}
