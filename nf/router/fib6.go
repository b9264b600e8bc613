package router

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"sync/atomic"
	"unsafe"
)

// IPv6: a 65536-entry root indexed by the first 16 bits, then a trie of
// 16-bit strides whose nodes are sorted range tables in a flat arena.
//
// A node covers 16 bits of the address (bits 16-31 below the root, then
// 32-47, 48-63, ...) and splits its 65536 values into runs of equal
// answer: the node stores the last value of each run but the final one
// (the ends, 16 bits each, in one 64-byte key line) and one 32-bit word
// per run in the lines after it: a route's entry, or a reference to the
// child node of that one value. Runs that no route ending in the node
// covers hold the node's default, the longest route of /depth or shorter
// covering the node (leaf pushing, within the node only). A lookup per
// node is one branch-free binary search over the key line (five steps)
// and one load of the run's word; the first line of words is loaded with
// the key line, so the answer of a node of up to 16 runs arrives with it.
// A node holds up to 32 runs in 2 or 3 cache lines; a wider node is split
// into sub-nodes of the same stride under an index node whose runs point
// to them (sub6).
//
// Why this shape. The trie it replaced (tree bitmap, 6-bit strides, path
// compression; 72-byte nodes stored by value, 10.3 MiB at 100k prefixes)
// took 206-260 ns a lookup at 100k prefixes on this project's 2-core EPYC
// VM (119-184 ns in batches), against the 40 ns goal: a /48 walked the
// root and up to six nodes, each a cache miss and a mispredicted branch.
// Measured alternatives, on prototypes with the benchmark's table (100k
// prefixes, Internet mix, see fib_bench_test.go), minimum of 21 runs on
// the same busy machine, where the old trie took 299 ns:
//   - 16-bit strides, 31-run key lines (this design): 41-51 ns; 2.8 MiB;
//   - the same with a first level of 20 bits (4 MiB) and a 12-bit stride:
//     2-3 times slower, the second level has 30k tiny nodes instead of
//     8k, and misses more;
//   - 32-bit strides (32-bit keys: a /48 in one node below the root): no
//     faster, a third of the /16 nodes need an index node;
//   - nodes of up to 15 (start, end, value) islands in two lines (one miss
//     per node instead of two): 51-66 ns, the end test costs what the line
//     saves;
//   - fixed-depth walks (every lookup visits two nodes, a shared pass-
//     through node when the route ended higher, so no branch depends on
//     the table): no faster than the loop, which predicts well;
//   - a hash of the /32s with nodes, probed beside the root to skip the
//     first node: slower (the probe and its branch cost more than the
//     node);
//   - 4- or 8-way searches (3 or 2 dependent steps instead of 5), and
//     SWAR comparison of four keys per 64-bit word: no faster, more
//     instructions; huge pages for the arena: no difference measured;
//   - a binary search with branches: 57-80 ns; the compiler turns each
//     step into a branch, mispredicted half the time.
//
// Result (docs/benchmarks.md, two binaries interleaved): at 100k
// prefixes 42-59 ns a lookup against 254-583 ns for the old trie in the
// same busy rounds; in a quieter run (IPv4 at 1M prefixes 8-13 ns) 40, 44
// and 44 ns in three rounds of five. Batched 30-47 ns against 167-280
// (23-42 in the quieter run). The 40 ns goal is met in batches and
// reached, not beaten, one at a time.
// What a lookup still costs is mostly the two searches of five dependent
// steps (a node cached: about 15 ns) and the second node's cache miss.
//
// DPDK's rte_lpm6 (a 2^24-entry first level and 256-entry tbl8 groups)
// would take 64 MiB for the first level alone and about 1 KiB per /48;
// Waldvogel's binary search on prefix lengths needs several dependent hash
// probes a lookup. Both are further from the goal than two range nodes.
//
// Memory: the root is 256 KiB; live nodes take about 29 bytes per prefix
// of an Internet-like table (2.8 MiB for 100k prefixes). MemoryBytes
// counts the whole arena, up to twice that (it grows by doubling and is
// compacted when half garbage); BenchmarkLookup6 reports it as B/prefix.
//
// Updates. The writer keeps a shadow of every node (node6: the routes
// ending in its stride, its children, its default, where its runs and
// child references sit in the arena) and re-encodes a node from it when
// its runs change: a route ending in the node, or a child appearing or
// going away. A re-encoded node goes to fresh arena lines and is
// published by one atomic store of its reference, into its parent's run
// word or the root entry. A route covering whole nodes changes their
// default in place: one atomic store per run holding it, from the old
// answer to the new; no node is copied for it. A /48 update rewrites one
// node of 32 or 48 words; a /16 rewrites root entries and defaults.
//
// Concurrency: readers see each address's answer change once per update,
// from old to new. Key lines never change once published; run words
// change only by single atomic stores, each of which moves every address
// of its run from its old answer to its new one; a new node is complete
// before the store that publishes it; the nodes it replaces stay valid
// (lines are never reused in place). The arena and the root form one
// table6, loaded once per lookup: when the arena is full the writer copies
// it into a larger one, or, when more than half of it is garbage, moves
// every node into a new one, and publishes the new table with one atomic
// pointer store. A reader still on the old table sees a state the FIB had
// during its lookup; the garbage collector frees the old table when the
// last such reader is done.

// Arena words. A run word is a reference (extBit set; sub6 marks a
// sub-node of the same stride; the low bits are the node's line index) or
// an answer (validBit|id, or 0 for no route). Root entries are references
// or entries with their depth (mkEntry), like IPv4's tbl24.
const (
	sub6      = 1 << 30
	lineMask6 = 1<<30 - 1
	inherit6  = 1 << 29 // writer only: a run that takes the node's default

	maxRuns6  = 32 // runs of one node: 31 ends in a key line
	nodeVals6 = 16 // word of a node's first run, after the key line

	minArena6 = 1 << 12 // words
	// maxArena6 caps the arena at 4 GiB, some 150 million prefixes.
	maxArena6 = 1 << 30
)

// table6 is what IPv6 lookups read: the root and the arena of nodes it
// refers to. Readers load it once per lookup. The root is inside it, not
// behind a pointer: one dependent load less per lookup.
type table6 struct {
	arena []uint32 // 64-byte aligned; len == cap, so references never outrun it
	root  [1 << 16]uint32
}

// node6 is the writer's view of one node. Readers never see it.
type node6 struct {
	parent *node6 // nil below the root
	chunk  uint16 // index in the parent (or in the root)
	depth  int    // address bits above this node's stride: 16, 32, ... 112
	local  []local6
	kids   []kid6
	def    uint32   // entry (validBit|id, or 0) of the longest route of depth bits or fewer covering the node
	defLen int      // that route's length (0 when there is none)
	ref    uint32   // reference to the node's encoding
	lines  []uint32 // first line of each encoded part (sub-nodes, then the index)
	inh    []uint32 // arena words of the runs that hold the default
	words  int      // arena words of the encoding
}

// local6 is a route ending inside a node's stride.
type local6 struct {
	start uint16 // first value of the stride it covers
	bits  uint8  // prefix length within the stride, 1-16
	id    NextHopID
}

func (p local6) end() uint32 { return uint32(p.start) + 1<<(16-p.bits) - 1 }

// kid6 is a child node, at one value of its parent's stride.
type kid6 struct {
	chunk uint16
	n     *node6
	slot  uint32 // arena word holding the reference to n; noSlot6 until encoded
}

const noSlot6 = ^uint32(0)

func (n *node6) empty() bool { return len(n.local) == 0 && len(n.kids) == 0 }

func (n *node6) kid(c uint16) int {
	i, ok := slices.BinarySearchFunc(n.kids, c, func(k kid6, c uint16) int { return int(k.chunk) - int(c) })
	if !ok {
		return -1
	}
	return i
}

// cover returns the entry and length of the longest route ending in n's
// stride that covers value c, or n's default.
func (n *node6) cover(c uint16) (uint32, int) {
	e, l := n.def, n.defLen
	best := -1
	for _, p := range n.local {
		if p.start > c {
			break
		}
		if uint32(c) <= p.end() && int(p.bits) > best {
			best = int(p.bits)
			e, l = validBit|uint32(p.id), n.depth+int(p.bits)
		}
	}
	return e, l
}

// chunk6 returns the 16 bits of hi:lo starting at bit d (a multiple of 16).
func chunk6(hi, lo uint64, d int) uint16 {
	if d < 64 {
		return uint16((hi<<d | lo>>(64-d)) >> 48)
	}
	return uint16(lo << (d - 64) >> 48)
}

func split6(a [16]byte) (hi, lo uint64) {
	return binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
}

// Lookup6 returns the route's next-hop ID for dst (an ECMP group's ID for
// an ECMP route: see Pick and LookupFlow6) and whether a route matched.
// It never blocks and never allocates.
func (f *FIB) Lookup6(dst [16]byte) (NextHopID, bool) {
	return f.v6.Load().lookup(&dst)
}

// lookup is Lookup6 in table t. (Lookup6 stays small enough to inline.)
func (t *table6) lookup(dst *[16]byte) (NextHopID, bool) {
	hi := binary.BigEndian.Uint64(dst[:8])
	lo := binary.BigEndian.Uint64(dst[8:])
	e := atomic.LoadUint32(&t.root[hi>>48])
	hi, lo = hi<<16|lo>>48, lo<<16
	ar := t.arena
	for e&extBit != 0 {
		// The stride of e's node is the top 16 bits of hi. The run holding
		// it: search6, written out (it is too big to inline).
		o := (e & lineMask6) << 4
		// Load the first run now: its cache line, which holds up to 16 runs,
		// then arrives with the key line instead of after the search. (Its
		// bounds check covers the key line before it too.)
		vp := &ar[o+nodeVals6]
		v0 := atomic.LoadUint32(vp)
		k := unsafe.Add(unsafe.Pointer(vp), -4*nodeVals6)
		x := hi >> 48
		r := (uint64(*(*uint16)(unsafe.Add(k, 30))) - x) >> 63 << 4
		r += (uint64(*(*uint16)(unsafe.Add(k, 2*r+14))) - x) >> 63 << 3
		r += (uint64(*(*uint16)(unsafe.Add(k, 2*r+6))) - x) >> 63 << 2
		r += (uint64(*(*uint16)(unsafe.Add(k, 2*r+2))) - x) >> 63 << 1
		r += (uint64(*(*uint16)(unsafe.Add(k, 2*r))) - x) >> 63
		// r>>5 is 0, but the compiler cannot drop the load of v0 for it.
		v := atomic.LoadUint32(&ar[uint64(o)+nodeVals6+r]) | v0&uint32(r>>5)
		if v&(extBit|sub6) != extBit|sub6 {
			hi, lo = hi<<16|lo>>48, lo<<16
		}
		e = v
	}
	return NextHopID(e & valMask), e&validBit != 0
}

// search6 returns the number of a node's ends below x, the index of the
// run holding x, given its key line k. Each of the five steps is
// arithmetic (the sign of end-x), not a branch, and the keys it reads are
// always within the first 31 (the steps add up to at most 30 before the
// last), so the reads need no bounds checks.
func search6(k unsafe.Pointer, x uint64) uint64 {
	r := (uint64(*(*uint16)(unsafe.Add(k, 30))) - x) >> 63 << 4
	r += (uint64(*(*uint16)(unsafe.Add(k, 2*r+14))) - x) >> 63 << 3
	r += (uint64(*(*uint16)(unsafe.Add(k, 2*r+6))) - x) >> 63 << 2
	r += (uint64(*(*uint16)(unsafe.Add(k, 2*r+2))) - x) >> 63 << 1
	return r + (uint64(*(*uint16)(unsafe.Add(k, 2*r)))-x)>>63
}

// batch6 is how many IPv6 lookups Lookup6Batch interleaves.
const batch6 = 32

// Lookup6Batch looks up every dst, writing the route's next-hop ID (as
// Lookup6 would) to out[i], or NoRoute. It walks several lookups node by
// node in lockstep so their cache misses overlap, which is faster than
// calling Lookup6 in a loop on tables larger than the CPU caches. out must
// be at least as long as dst. It never blocks and never allocates.
func (f *FIB) Lookup6Batch(dst [][16]byte, out []NextHopID) {
	out = out[:len(dst)]
	t := f.v6.Load()
	ar := t.arena
	for len(dst) > 0 {
		n := min(len(dst), batch6)
		var (
			hi, lo [batch6]uint64
			e      [batch6]uint32
			active uint32
		)
		for i := range n {
			h := binary.BigEndian.Uint64(dst[i][:8])
			l := binary.BigEndian.Uint64(dst[i][8:])
			e[i] = atomic.LoadUint32(&t.root[h>>48])
			hi[i], lo[i] = h<<16|l>>48, l<<16
			active |= e[i] >> 31 << i
		}
		for active != 0 {
			for a := active; a != 0; a &= a - 1 {
				i := bits.TrailingZeros32(a)
				o := (e[i] & lineMask6) << 4
				r := search6(unsafe.Add(unsafe.Pointer(&ar[o+nodeVals6]), -4*nodeVals6), hi[i]>>48)
				v := atomic.LoadUint32(&ar[uint64(o)+nodeVals6+r])
				if v&(extBit|sub6) != extBit|sub6 {
					hi[i], lo[i] = hi[i]<<16|lo[i]>>48, lo[i]<<16
				}
				e[i] = v
				if v&extBit == 0 {
					active &^= 1 << i
				}
			}
		}
		for i := range n {
			out[i] = NoRoute
			if e[i]&validBit != 0 {
				out[i] = NextHopID(e[i] & valMask)
			}
		}
		dst, out = dst[n:], out[n:]
	}
}

// add6 writes the route a/l -> id (new or replacing one of the same
// prefix). Called with mu held.
func (f *FIB) add6(a [16]byte, l int, id NextHopID) error {
	f.maybeCompact6()
	hi, lo := split6(a)
	e := validBit | uint32(id)
	grows := func(defLen int, _ uint32) bool { return defLen <= l }
	if l <= 16 {
		f.setRoot6(hi, l, e, l, grows)
		return nil
	}
	// Reserve the arena space of every node this update may re-encode (each
	// gains at most two runs, which may cost a sub-node per level), so that
	// it cannot fail halfway.
	need := 0
	n := f.nodes6[uint16(hi>>48)]
	for d := 16; l > d; d += 16 {
		need += 3 * 48
		if n != nil {
			need += n.words
			if i := n.kid(chunk6(hi, lo, d)); i >= 0 && l > d+16 {
				n = n.kids[i].n
				continue
			}
			n = nil
		}
	}
	if err := f.reserve6(need, true); err != nil {
		return err
	}
	// Find the node whose stride holds the prefix's end, creating the path.
	s := uint16(hi >> 48)
	n = f.nodes6[s]
	if n == nil {
		re := f.w6.root[s]
		n = &node6{chunk: s, depth: 16, def: re & (validBit | valMask), defLen: entryDepth(re)}
	}
	for l > n.depth+16 {
		c := chunk6(hi, lo, n.depth)
		i := n.kid(c)
		if i < 0 {
			k := &node6{parent: n, chunk: c, depth: n.depth + 16}
			k.def, k.defLen = n.cover(c)
			i, _ = slices.BinarySearchFunc(n.kids, c, func(k kid6, c uint16) int { return int(k.chunk) - int(c) })
			n.kids = slices.Insert(n.kids, i, kid6{chunk: c, n: k, slot: noSlot6})
		}
		n = n.kids[i].n
	}
	p := local6{start: chunk6(hi, lo, n.depth), bits: uint8(l - n.depth), id: id}
	i, found := slices.BinarySearchFunc(n.local, p, func(x, y local6) int {
		if x.start != y.start {
			return int(x.start) - int(y.start)
		}
		return int(x.bits) - int(y.bits)
	})
	if found {
		n.local[i].id = id
	} else {
		n.local = slices.Insert(n.local, i, p)
	}
	// Children inside the prefix inherit it, unless a longer route covers them.
	for _, k := range n.kidsIn(p) {
		f.pushDef6(k.n, e, l, grows)
	}
	f.commit6(n)
	return nil
}

// kidsIn returns the children of n inside the stride range of p.
func (n *node6) kidsIn(p local6) []kid6 {
	from, _ := slices.BinarySearchFunc(n.kids, p.start, func(k kid6, c uint16) int { return int(k.chunk) - int(c) })
	to := from
	for to < len(n.kids) && uint32(n.kids[to].chunk) <= p.end() {
		to++
	}
	return n.kids[from:to]
}

// delete6 removes the route a/l; the control-plane map no longer holds it.
// Called with mu held.
func (f *FIB) delete6(a [16]byte, l int) {
	f.maybeCompact6()
	hi, lo := split6(a)
	owned := func(defLen int, def uint32) bool { return def&validBit != 0 && defLen == l }
	if l <= 16 {
		pe, pl := f.parent6(a, l)
		f.setRoot6(hi, l, pe, pl, owned)
		return
	}
	n := f.nodes6[uint16(hi>>48)]
	for l > n.depth+16 {
		n = n.kids[n.kid(chunk6(hi, lo, n.depth))].n
	}
	p := local6{start: chunk6(hi, lo, n.depth), bits: uint8(l - n.depth)}
	i := slices.IndexFunc(n.local, func(x local6) bool { return x.start == p.start && x.bits == p.bits })
	n.local = slices.Delete(n.local, i, i+1)
	if ks := n.kidsIn(p); len(ks) > 0 {
		pe, pl := f.parent6(a, l)
		for _, k := range ks {
			f.pushDef6(k.n, pe, pl, owned)
		}
	}
	if n.empty() {
		f.remove6(n)
		return
	}
	f.commit6(n)
}

// setRoot6 applies a route of l <= 16 bits (entry e of a route of length
// el, or the next covering route when deleting) to the root entries it
// covers: each entry or node default for which apply holds takes it.
func (f *FIB) setRoot6(hi uint64, l int, e uint32, el int, apply func(int, uint32) bool) {
	first := hi >> 48
	end := first + 1<<(16-l)
	re := e
	if e&validBit != 0 {
		re = mkEntry(NextHopID(e&valMask), el)
	}
	for s := first; s < end; s++ {
		if n := f.nodes6[uint16(s)]; n != nil {
			f.pushDef6(n, e, el, apply)
			continue
		}
		if old := f.w6.root[s]; apply(entryDepth(old), old) {
			atomic.StoreUint32(&f.w6.root[s], re)
		}
	}
}

// pushDef6 gives n, and the nodes below it that inherit n's default, the
// default e of a route of length el, where apply holds for their current
// default: one atomic store per run that holds the default.
func (f *FIB) pushDef6(n *node6, e uint32, el int, apply func(int, uint32) bool) {
	if !apply(n.defLen, n.def) {
		return
	}
	n.def, n.defLen = e, el
	ar := f.w6.arena
	for _, w := range n.inh {
		atomic.StoreUint32(&ar[w], e)
	}
	for _, k := range n.kids {
		f.pushDef6(k.n, e, el, apply)
	}
}

// remove6 unlinks the empty node n (its runs all inherited its default, so
// no answer changes) and re-encodes or removes its parent.
func (f *FIB) remove6(n *node6) {
	f.garbage6 += n.words
	if n.parent == nil {
		re := uint32(0)
		if n.def&validBit != 0 {
			re = mkEntry(NextHopID(n.def&valMask), n.defLen)
		}
		atomic.StoreUint32(&f.w6.root[n.chunk], re)
		delete(f.nodes6, n.chunk)
		return
	}
	p := n.parent
	i := p.kid(n.chunk)
	p.kids = slices.Delete(p.kids, i, i+1)
	if p.empty() {
		f.remove6(p)
		return
	}
	f.commit6(p)
}

// commit6 encodes n afresh and publishes it: into its parent's run word,
// or, for a node its parent has not encoded yet (a new child), by
// re-encoding the parent too.
func (f *FIB) commit6(n *node6) {
	f.garbage6 += n.words
	f.encode6(n)
	if n.parent == nil {
		atomic.StoreUint32(&f.w6.root[n.chunk], n.ref)
		f.nodes6[n.chunk] = n
		return
	}
	k := &n.parent.kids[n.parent.kid(n.chunk)]
	if k.slot == noSlot6 {
		f.commit6(n.parent)
		return
	}
	atomic.StoreUint32(&f.w6.arena[k.slot], n.ref)
}

// run6 is one run of a node being encoded: its last value, its word, and
// the child it refers to (index in kids) or -1.
type run6 struct {
	end uint16
	val uint32
	kid int
}

// runs6 sweeps n's routes and children into runs, merging neighbours with
// the same answer, appended to rs; stack is scratch space.
func (n *node6) runs6(rs []run6, stack []local6) ([]run6, []local6) {
	put := func(end uint32, val uint32, kid int) {
		if m := len(rs); m > 0 && kid < 0 && rs[m-1].kid < 0 && rs[m-1].val == val {
			rs[m-1].end = uint16(end)
			return
		}
		rs = append(rs, run6{uint16(end), val, kid})
	}
	stack = stack[:0] // routes covering pos, innermost last
	li, ki := 0, 0
	for pos := uint32(0); pos < 1<<16; {
		for len(stack) > 0 && stack[len(stack)-1].end() < pos {
			stack = stack[:len(stack)-1]
		}
		for li < len(n.local) && uint32(n.local[li].start) == pos {
			stack = append(stack, n.local[li])
			li++
		}
		if ki < len(n.kids) && uint32(n.kids[ki].chunk) == pos {
			put(pos, n.kids[ki].n.ref, ki)
			ki++
			pos++
			continue
		}
		val := uint32(inherit6)
		next := uint32(1 << 16)
		if len(stack) > 0 {
			val = validBit | uint32(stack[len(stack)-1].id)
			next = stack[len(stack)-1].end() + 1
		}
		if li < len(n.local) {
			next = min(next, uint32(n.local[li].start))
		}
		if ki < len(n.kids) {
			next = min(next, uint32(n.kids[ki].chunk))
		}
		put(next-1, val, -1)
		pos = next
	}
	return rs, stack
}

// encode6 writes n's runs to fresh arena lines and sets n.ref, n.lines,
// n.words and the slots of n's children. Children must be encoded.
func (f *FIB) encode6(n *node6) {
	f.runs6, f.stack6 = n.runs6(f.runs6[:0], f.stack6)
	rs := f.runs6
	need := 0
	for m := len(rs); ; m = (m + maxRuns6 - 1) / maxRuns6 {
		need += (m + maxRuns6 - 1) / maxRuns6 * 48
		if m <= maxRuns6 {
			break
		}
	}
	// Adds reserved their space beforehand; deletes and compactions never
	// need more than the nodes already use, and may pass the cap.
	_ = f.reserve6(need, false)
	n.lines, n.inh, n.words = n.lines[:0], n.inh[:0], 0
	n.ref = f.emit6(n, rs)
}

// emit6 writes the runs rs (a node, or a sub-node of one) and returns the
// reference to them. Space must have been reserved.
func (f *FIB) emit6(n *node6, rs []run6) uint32 {
	if len(rs) > maxRuns6 {
		// An index node over sub-nodes of up to maxRuns6 runs each.
		var top []run6
		for len(rs) > 0 {
			g := rs[:min(len(rs), maxRuns6)]
			rs = rs[len(g):]
			top = append(top, run6{end: g[len(g)-1].end, val: f.emit6(n, g) | sub6, kid: -1})
		}
		return f.emit6(n, top)
	}
	words := (nodeVals6 + len(rs) + 15) &^ 15
	o := uint32(f.used6)
	f.used6 += words
	n.words += words
	n.lines = append(n.lines, o>>4)
	ar := f.w6.arena[o : o+uint32(words)]
	k := (*[32]uint16)(unsafe.Pointer((*[16]uint32)(ar[:16])))
	for i := range k {
		k[i] = 0xffff
		if i < len(rs)-1 {
			k[i] = rs[i].end
		}
	}
	for i, r := range rs {
		w := o + uint32(nodeVals6+i)
		switch {
		case r.val == inherit6:
			ar[nodeVals6+i] = n.def
			n.inh = append(n.inh, w)
		case r.kid >= 0:
			ar[nodeVals6+i] = r.val
			n.kids[r.kid].slot = w
		default:
			ar[nodeVals6+i] = r.val
		}
	}
	return extBit | o>>4
}

// reserve6 makes room for words more arena words, moving to a larger
// arena (a verbatim copy, so references stay valid) when needed. With
// capped, it fails rather than grow the arena past maxArena6.
func (f *FIB) reserve6(words int, capped bool) error {
	if f.used6+words <= len(f.w6.arena) {
		return nil
	}
	size := max(2*len(f.w6.arena), f.used6+words, minArena6)
	if capped && f.used6+words > maxArena6 {
		return fmt.Errorf("%w: IPv6 nodes need more than %d GiB", ErrTableFull, maxArena6*4>>30)
	}
	if capped {
		size = min(size, maxArena6)
	}
	t := &table6{arena: newArena6(size), root: f.w6.root}
	copy(t.arena, f.w6.arena[:f.used6])
	if f.w6 == f.v6.Load() {
		f.v6.Store(t)
	}
	f.w6 = t
	return nil
}

// newArena6 returns n zero words whose first one starts a cache line.
func newArena6(n int) []uint32 {
	a := make([]uint32, n+15)
	skip := (-uintptr(unsafe.Pointer(&a[0])) & 63) / 4
	return a[skip : skip+uintptr(n) : skip+uintptr(n)]
}

// maybeCompact6 copies every node into a new arena when more than half
// of the current one is garbage. Called with mu held, before an update.
func (f *FIB) maybeCompact6() {
	if f.garbage6 < minArena6 || 2*f.garbage6 < f.used6 {
		return
	}
	f.compact6()
}

// compact6 copies every node, children first, into a new arena twice the
// size of the live nodes, and publishes it with a new root.
func (f *FIB) compact6() {
	old := f.w6.arena
	live := f.used6 - f.garbage6
	t := &table6{arena: newArena6(max(2*live, minArena6)), root: f.w6.root}
	f.w6, f.used6, f.garbage6 = t, 0, 0
	var move func(n *node6)
	move = func(n *node6) {
		for _, k := range n.kids {
			move(k.n)
		}
		f.move6(n, old)
	}
	for s, n := range f.nodes6 {
		move(n)
		t.root[s] = n.ref
	}
	f.compactions6++
	f.v6.Store(t)
}

// move6 copies n's encoded parts from the arena old to fresh lines of the
// current one, pointing its sub-nodes and its (already moved) children at
// their new places.
func (f *FIB) move6(n *node6, old []uint32) {
	ar := f.w6.arena
	from := n.lines
	n.lines = make([]uint32, len(from))
	words := make([]uint32, len(from))
	for i, line := range from {
		o := line << 4
		k := (*[32]uint16)(unsafe.Pointer(&old[o]))
		runs := 1
		for _, e := range k {
			if e != 0xffff {
				runs++
			}
		}
		words[i] = uint32(nodeVals6+runs+15) &^ 15
		no := uint32(f.used6)
		f.used6 += int(words[i])
		copy(ar[no:no+words[i]], old[o:o+words[i]])
		n.lines[i] = no >> 4
		for j := no + nodeVals6; j < no+uint32(nodeVals6+runs); j++ {
			if v := ar[j]; v&(extBit|sub6) == extBit|sub6 {
				// Sub-nodes come before the index nodes that refer to them.
				ar[j] = extBit | sub6 | n.lines[slices.Index(from[:i], v&lineMask6)]
			}
		}
	}
	// Words of the old parts move with their part.
	moved := func(w uint32) uint32 {
		for q, line := range from {
			if o := line << 4; w >= o && w < o+words[q] {
				return w + (n.lines[q]-line)<<4
			}
		}
		panic("router: IPv6 node word outside its parts")
	}
	for i := range n.kids {
		k := &n.kids[i]
		k.slot = moved(k.slot)
		ar[k.slot] = k.n.ref
	}
	for i, w := range n.inh {
		n.inh[i] = moved(w)
	}
	n.ref = extBit | n.lines[len(n.lines)-1]
}

// parent6 returns the entry (validBit|id, or 0) and length of the longest
// route strictly shorter than l covering a.
func (f *FIB) parent6(a [16]byte, l int) (uint32, int) {
	for l--; l >= 0; l-- {
		if id, ok := f.pfx6[l][mask6(a, l)]; ok {
			return validBit | uint32(id), l
		}
	}
	return 0, 0
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

// memory6 returns the bytes held by the IPv6 root and arena. Called with
// mu held.
func (f *FIB) memory6() int {
	return int(unsafe.Sizeof(f.w6.root)) + 4*len(f.w6.arena)
}
