package firewall

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/bits"
	"net/netip"
	"slices"
	"unsafe"
)

// defaultMaxSpan bounds how many elementary classes of one field a rule may be
// listed under. A rule wider than this in every one of its fields goes
// to the residual list, which every packet scans.
const defaultMaxSpan = 1024

// listWeight is the memory (in list entries) the greedy placement of
// rules trades for one rule less to check in the longest list.
const listWeight = 16

// fieldWeight scales the list cost of a field by how many packets a
// class of it tends to see: traffic concentrates on a few ports and
// protocols, and spreads over addresses.
var fieldWeight = [numFields]int{
	fieldMeta: 8, fieldSrc4: 1, fieldDst4: 1, fieldSrc6: 1, fieldDst6: 1,
	fieldSport: 8, fieldDport: 8, fieldMetaAny: 8,
}

// Fields a rule can be indexed under.
const (
	fieldMeta = iota // ingress port x protocol x state, for rules naming a protocol
	fieldSrc4
	fieldDst4
	fieldSrc6
	fieldDst6
	fieldSport
	fieldDport   // destination port, or ICMP type<<8|code
	fieldMetaAny // ingress port x state, for rules of any protocol
	numFields
)

// crule is a rule reduced to one cache line for a quick full check.
// Addresses are big-endian 128-bit words; an IPv4 address sits in the low
// 32 bits of lo.
type crule struct {
	srcHi, srcLo, dstHi, dstLo uint64
	spLo, spHi, dpLo, dpHi     uint16
	inPort                     uint16
	flags                      uint16
	srcLen, dstLen             uint8
	proto, icmpType, icmpCode  uint8
	states                     State
	_                          [12]byte
}

const (
	cfIn uint16 = 1 << iota
	cfProto
	cfSrc
	cfDst
	cfPorts
	cfType
	cfCode
	cfStates
	cfV4
	cfV6
)

// pkt is a Key with its addresses loaded as big-endian words.
type pkt struct {
	sh, sl, dh, dl uint64
	k              *Key
	l4             uint32 // destination port, or ICMP type<<8|code
}

// prefixEq reports whether the top l bits of the address (h, l) equal
// those of (ph, pl); for IPv4 only the low 32 bits of lo count.
func prefixEq(h, lo, ph, pl uint64, bitsLen uint8, v4 bool) bool {
	if v4 {
		m := uint64(0xffffffff) << (32 - uint(bitsLen)) & 0xffffffff
		return (lo^pl)&m == 0
	}
	n := uint(bitsLen)
	mh := ^uint64(0) << (64 - min(n, 64))
	ml := ^uint64(0) << (128 - max(n, 64))
	return (h^ph)&mh == 0 && (lo^pl)&ml == 0
}

func (c *crule) match(p *pkt) bool {
	k := p.k
	f := c.flags
	if f&(cfV4|cfV6) != 0 && (f&cfV6 != 0) != k.IPv6 {
		return false
	}
	if f&cfProto != 0 && c.proto != k.Proto {
		return false
	}
	if f&cfIn != 0 && c.inPort != k.InPort {
		return false
	}
	if f&cfSrc != 0 && !prefixEq(p.sh, p.sl, c.srcHi, c.srcLo, c.srcLen, f&cfV4 != 0) {
		return false
	}
	if f&cfDst != 0 && !prefixEq(p.dh, p.dl, c.dstHi, c.dstLo, c.dstLen, f&cfV4 != 0) {
		return false
	}
	if f&cfPorts != 0 && (k.SrcPort < c.spLo || k.SrcPort > c.spHi || k.DstPort < c.dpLo || k.DstPort > c.dpHi) {
		return false
	}
	if f&cfType != 0 && c.icmpType != k.ICMPType {
		return false
	}
	if f&cfCode != 0 && c.icmpCode != k.ICMPCode {
		return false
	}
	if f&cfStates != 0 && c.states&k.State == 0 {
		return false
	}
	return true
}

// A handle names the candidate list of one class of one field: 0 is the
// empty list, single|r (maybe |singleExact) the list holding rule r
// alone, any other value h the entries of entryWords words each from
// pool[h], ended by an entry whose rule is endOfList.
const single = 1 << 31

// singleExact marks a single whose rule has no condition besides the
// field it is listed under: being in the class is matching it.
const singleExact = 1 << 30

// endOfList is above every rule index, so the scan below stops at it
// without a length to load first.
const endOfList = 1<<31 - 1

// scan returns the first rule of the list h (not a single) below best
// that matches p, or best.
func (rs *Ruleset) scan(h uint32, best int32, p *pkt) int32 {
	l := rs.pool[h:]
	k := p.k
	for i := 0; i+entryWords <= len(l); i += entryWords {
		r := int32(l[i])
		if r >= best {
			break
		}
		// The entry's filters, written out here: as a function the
		// compiler would not inline them.
		fm, fr := l[i+2], l[i+3]
		if pr := fm & 0x1ff; pr != 0 && pr-1 != uint32(k.Proto) {
			continue
		}
		if st := fm >> 9 & 15; st != 0 && st&uint32(k.State) == 0 {
			continue
		}
		if fm&(1<<13) != 0 && fm>>14&0xffff != uint32(k.InPort) {
			continue
		}
		if fr != noRange && (p.l4 < fr&0xffff || p.l4 > fr>>16) {
			continue
		}
		if fa := l[i+1]; fa != 0 {
			if fa&filterV6 != 0 {
				if !k.IPv6 {
					continue
				}
			} else {
				if k.IPv6 {
					continue
				}
				a := uint32(p.dl)
				if fa&filterSrc != 0 {
					a = uint32(p.sl)
				}
				if (a>>8^fa)&(0xffffff<<(24-fa>>24&31))&0xffffff != 0 {
					continue
				}
			}
		}
		if fm&entryExact != 0 || rs.cr[r].match(p) {
			return r
		}
	}
	return best
}

// A list entry is four words: the rule index and three filters, which
// are necessary conditions of the rule checked without loading it.
//
// The address filter is 0 (none); filterV6 (the rule needs IPv6); or
// filterV4 | filterSrc? | len<<24 | top 24 bits of a prefix (the rule
// needs IPv4 and that prefix, cut to 24 bits).
//
// The meta filter holds protocol+1 (0 any) in bits 0-8, the state set in
// bits 9-12, ingress port in bits 14-29 when bit 13 is set, and
// entryExact when a packet that passes the filters matches the rule.
//
// The range filter is lo | hi<<16 of the rule's destination port or
// ICMP type<<8|code range (0xffff0000 when it has none).
const (
	entryWords = 4
	filterV6   = 1 << 31
	filterV4   = 1 << 30
	filterSrc  = 1 << 29
	noRange    = 0xffff0000
	entryExact = 1 << 30 // in the meta filter: the filters are the whole rule
)

// exact reports whether a packet in a class of field f where rule i is
// listed, and passing the rule's entry filters, is sure to match the
// rule: the filters then stand for the rule and it need not be loaded.
func (rs *Ruleset) exact(i, f int) bool {
	r := &rs.rules[i]
	if !r.SrcPort.all() && f != fieldSport {
		return false
	}
	srcIdx := f == fieldSrc4 || f == fieldSrc6
	dstIdx := f == fieldDst4 || f == fieldDst6
	needSrc := r.Src.IsValid() && !srcIdx
	needDst := r.Dst.IsValid() && !dstIdx
	if !needSrc && !needDst {
		return true
	}
	if r.family() == 6 || needSrc && needDst {
		return false
	}
	// One IPv4 prefix left; filterFor picks the same one.
	fa := rs.filterFor(i, f)
	return fa&filterV4 != 0 && (needSrc == (fa&filterSrc != 0)) && (needSrc && r.Src.Bits() <= 24 || needDst && r.Dst.Bits() <= 24)
}

// entryFilters returns the filters of rule i listed under field f.
func (rs *Ruleset) entryFilters(i, f int) (fa, fm, fr uint32) {
	r := &rs.rules[i]
	if r.Proto != Any {
		fm = uint32(r.Proto) + 1
	}
	fm |= uint32(r.States) << 9
	if r.InPort != Any {
		fm |= 1<<13 | uint32(r.InPort)<<14
	}
	fr = noRange
	if pr, ok := rs.portSpan(r, 1); ok {
		fr = uint32(pr.Lo) | uint32(pr.Hi)<<16
	}
	if rs.exact(i, f) {
		fm |= entryExact
	}
	return rs.filterFor(i, f), fm, fr
}

// filterFor returns the filter of rule i listed under field f.
func (rs *Ruleset) filterFor(i, f int) uint32 {
	r := &rs.rules[i]
	switch r.family() {
	case 6:
		if f == fieldSrc6 || f == fieldDst6 {
			return 0 // listed under an IPv6 field: the family is implied
		}
		return filterV6
	case 4:
		p, src := r.Dst, uint32(0)
		if f == fieldDst4 || !p.IsValid() {
			p, src = r.Src, filterSrc
		}
		if !p.IsValid() || f == fieldSrc4 && src != 0 {
			return 0 // a v4 rule with one prefix, listed under it: the family is implied
		}
		a := p.Addr().As4()
		l := uint32(min(p.Bits(), 24))
		return filterV4 | src | l<<24 | (uint32(a[0])<<16 | uint32(a[1])<<8 | uint32(a[2]))
	}
	return 0
}

type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a u128) shl(n uint) u128 { // n < 128
	if n >= 64 {
		return u128{a.lo << (n - 64), 0}
	}
	return u128{a.hi<<n | a.lo>>(64-n), a.lo << n}
}

// addrIndex maps an address (or a port, in the low 16 bits) to the
// handle of its elementary interval (class). All interval starts but the
// first share their top off bits (base); addresses outside base are in
// the first or the last class. Below off, a stride trie resolves the
// class: a top table indexed by the next nb bits, then chunks of 16
// entries (one cache line) indexed by 4 bits each, down to a block in
// which at most smallList intervals start. Every such leaf is counted
// the same way: the class of the block's first address, plus how many
// of the next smallList starts the address has reached (the starts past
// the block are above it, and the starts are padded with sentinels), so
// a lookup is a few dependent loads and smallList comparisons, with no
// search and no branch on the kind of leaf.
//
// Keys of at most 32 bits (IPv4 addresses and ports) take handle32, which
// does the same in uint32 arithmetic over a uint32 copy of the starts;
// the u128 form is for IPv6.
type addrIndex struct {
	eps   []u128   // sorted interval starts; eps[0] == 0; then smallList sentinels
	cls32 []uint64 // for keys of at most 32 bits: start<<32 | handle of each class, then sentinels; else nil
	h     []uint32
	top   []bucket // build time only: 1<<nb + 1 entries
	t0    []uint32 // build time only: 1<<nb trie entries
	// The top table as first<<32 | entry: first is the lowest rule
	// listed in any class of the block, so a lookup that needs only rules
	// below some index can stop at the top.
	t0m       []uint64
	chunks    []uint32 // 1<<chunkBits entries each
	off, nb   uint
	base      u128 // eps[1] with all but the top off bits cleared
	maskHi    uint64
	maskLo    uint64
	lastClass int

	// handle32's view: off and the shift of the top table, in 32 bits.
	base32, mask32 uint32
	off32, sh32    uint8
}

// Trie entries: a chunk (tagChunk | chunk index) or a leaf (1 + the class
// of the block's first address).
const (
	tagChunk  = 1 << 31
	smallList = 4
	chunkBits = 4 // 16 entries: one cache line a chunk
)

// bucket is a top-table entry used while building: the number of
// starts below the bucket.
type bucket struct{ acc uint32 }

// where returns -1 when a lies below every start but the first, +1 when
// above every start, else 0 and its bucket.
func (x *addrIndex) where(a u128) (int, int) {
	m := u128{a.hi & x.maskHi, a.lo & x.maskLo}
	if m != x.base {
		if m.less(x.base) {
			return -1, 0
		}
		return 1, 0
	}
	if x.nb == 0 {
		return 0, 0
	}
	return 0, int(a.shl(x.off).hi >> (64 - x.nb))
}

// class returns the index of the interval holding a (build time).
func (x *addrIndex) class(a u128) int {
	if x.nb == 0 {
		return 0
	}
	switch w, t := x.where(a); w {
	case -1:
		return 0
	case 1:
		return x.lastClass
	default:
		lo, hi := int(x.top[t].acc), int(x.top[t+1].acc)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if !a.less(x.eps[m]) {
				lo = m + 1
			} else {
				hi = m
			}
		}
		return lo - 1
	}
}

// top128 loads a's top-table entry (0 for an address outside base), as
// top32 does for IPv4; walk takes it from there.
func (x *addrIndex) top128(a u128) uint64 {
	if (u128{a.hi & x.maskHi, a.lo & x.maskLo}) != x.base {
		return 0
	}
	return x.t0m[a.shl(x.off).hi>>(64-x.nb)]
}

// walk returns the handle of a's class (IPv6) from a's top-table entry
// t, or 0 (no candidates) when no class of a's block lists a rule below
// best.
func (x *addrIndex) walk(a u128, t uint64, best int32) uint32 {
	m := u128{a.hi & x.maskHi, a.lo & x.maskLo}
	if m != x.base {
		if m.less(x.base) {
			return x.h[0]
		}
		return x.h[x.lastClass]
	}
	if int32(t>>32) >= best {
		return 0
	}
	e := uint32(t)
	v := a.shl(x.off).shl(x.nb)
	for e&tagChunk != 0 {
		e = x.chunks[(e&^tagChunk)<<chunkBits|uint32(v.hi>>(64-chunkBits))]
		v = v.shl(chunkBits)
	}
	c := int(e) - 1
	eps := x.eps[e : e+smallList : e+smallList]
	for i := range smallList {
		if !a.less(eps[i]) {
			c++
		}
	}
	// Only the largest address reaches the sentinels; it is in the last
	// class.
	return x.h[min(c, x.lastClass)]
}

// handle32 returns the handle of a's class, for an index of keys of at
// most 32 bits. (A block that lists no rule at all has only empty lists:
// handle32Below's answer of 0 for it is the handle.)
func (x *addrIndex) handle32(a uint32) uint32 { return x.handle32Below(a, endOfList) }

// handle32Below returns the handle of a's class for a caller that needs
// only rules below best, or 0 (no candidates) when no class of a's
// top-table block lists one.
func (x *addrIndex) handle32Below(a uint32, best int32) uint32 {
	return x.walk32(a, x.top32(a), best)
}

// top32 loads a's top-table entry (0 for a key outside base, which walk32
// answers without it). Classify loads the entries of both addresses
// first, so that their cache misses overlap with other work.
func (x *addrIndex) top32(a uint32) uint64 {
	if a&x.mask32 != x.base32 {
		return 0
	}
	return x.t0m[(a<<(x.off32&31))>>(x.sh32&31)]
}

// walk32 is handle32Below from a's top-table entry t.
func (x *addrIndex) walk32(a uint32, t uint64, best int32) uint32 {
	if a&x.mask32 != x.base32 {
		if a < x.base32 {
			return x.h[0]
		}
		return x.h[x.lastClass]
	}
	if int32(t>>32) >= best {
		return 0
	}
	e := uint32(t)
	v := a << (x.off32 & 31) << ((32 - x.sh32) & 31)
	for e&tagChunk != 0 {
		e = x.chunks[(e&^tagChunk)<<chunkBits|v>>(32-chunkBits)]
		v <<= chunkBits
	}
	// The block's first class and the next smallList, in one or two
	// lines read at once: the handle comes with the starts, not from a
	// load that waits for the count. A start ep is <= a exactly when
	// ep-a-1 is negative in 64 bits.
	cs := x.cls32[e-1 : e+smallList : e+smallList]
	a64 := uint64(a) + 1
	c := (cs[1]>>32-a64)>>63 + (cs[2]>>32-a64)>>63 + (cs[3]>>32-a64)>>63 + (cs[4]>>32-a64)>>63
	return uint32(cs[c])
}

// flatPorts is the number of port classes from which a flat table pays.
const flatPorts = 16

// flat returns the handle of every 16-bit key, or nil when the index has
// at most flatPorts classes.
func (x *addrIndex) flat() *[1 << 16]uint32 {
	if x.lastClass < flatPorts {
		return nil
	}
	t := new([1 << 16]uint32)
	for v := range t {
		t[v] = x.handle32(uint32(v))
	}
	return t
}

func newAddrIndex(eps []u128) addrIndex {
	eps = append(eps, u128{})
	slices.SortFunc(eps, func(a, b u128) int {
		switch {
		case a.less(b):
			return -1
		case b.less(a):
			return 1
		}
		return 0
	})
	eps = slices.Clip(slices.Compact(eps))
	x := addrIndex{eps: eps, lastClass: len(eps) - 1}
	if len(eps) == 1 {
		return x // one class; nb == 0
	}
	first, last := eps[1], eps[len(eps)-1]
	cpl := uint(bits.LeadingZeros64(first.hi ^ last.hi))
	if cpl == 64 {
		cpl += uint(bits.LeadingZeros64(first.lo ^ last.lo))
	}
	x.nb = uint(min(16, bits.Len(uint(len(eps)))))
	x.off = min(cpl, 128-x.nb)
	mask := u128{^uint64(0), ^uint64(0)}
	if x.off < 128 {
		mask = u128{^uint64(0) << (64 - min(x.off, 64)), ^uint64(0) << (128 - max(x.off, 64))}
	}
	x.maskHi, x.maskLo = mask.hi, mask.lo
	x.base = u128{first.hi & mask.hi, first.lo & mask.lo}
	x.top = make([]bucket, 1<<x.nb+1)
	j := 0
	for t := range x.top {
		for j < len(eps) {
			w, b := x.where(eps[j])
			if w < 0 || w == 0 && b < t {
				j++
				continue
			}
			break
		}
		x.top[t].acc = uint32(j)
	}
	return x
}

// setHandles records the handle of every class and builds the trie.
// narrow marks an index of keys of at most 32 bits (in the low 32 bits
// of lo): it gets handle32's view and drops its u128 starts.
func (x *addrIndex) setHandles(h []uint32, narrow bool, first func(uint32) int32) {
	x.h = h
	if x.nb == 0 {
		// One class: a top table of two leaves of class 0 and no base,
		// so that the lookups need no case of their own.
		x.nb, x.off, x.maskHi, x.maskLo, x.base = 1, 0, 0, 0, u128{}
		x.t0 = []uint32{1, 1}
	} else {
		x.t0 = make([]uint32, 1<<x.nb)
		x.fill(x.base, x.off, x.nb, 0, x.t0)
	}
	x.t0m = make([]uint64, len(x.t0))
	for i, e := range x.t0 {
		lo, hi := 0, x.lastClass // the one class of a single-class index
		if len(x.t0) > 2 || x.lastClass > 0 {
			size := u128{0, 1}.shl(128 - x.off - x.nb)
			bl := add128(x.base, mul128(size, uint64(i)))
			lo, hi = x.class(bl), x.class(add128(bl, sub1(size)))
		}
		m := int32(endOfList)
		for c := lo; c <= hi; c++ {
			m = min(m, first(h[c]))
		}
		x.t0m[i] = uint64(m)<<32 | uint64(e)
	}
	x.t0, x.top = nil, nil
	if narrow {
		off32 := x.off - min(x.off, 96)
		x.off32, x.sh32 = uint8(off32), uint8(32-x.nb)
		x.mask32 = uint32(x.maskLo)
		x.base32 = uint32(x.base.lo)
		// The sentinels carry the last class's handle: only the largest
		// key counts them, and it is in the last class.
		x.cls32 = make([]uint64, 0, len(x.eps)+smallList)
		for i, e := range x.eps {
			x.cls32 = append(x.cls32, e.lo<<32|uint64(h[i]))
		}
		for range smallList {
			x.cls32 = append(x.cls32, uint64(^uint32(0))<<32|uint64(h[len(h)-1]))
		}
		x.eps = nil
		return
	}
	for range smallList {
		x.eps = append(x.eps, u128{^uint64(0), ^uint64(0)})
	}
}

// fill sets the 1<<s entries out[i<<pad] of the blocks of the range
// that starts at lo and whose address bits from o on pick the entry.
// Chunks are indexed by chunkBits bits; near the end of the address
// fewer bits may remain (s < chunkBits) and pad keeps the index in the
// top bits.
func (x *addrIndex) fill(lo u128, o, s, pad uint, out []uint32) {
	size := u128{0, 1}.shl(128 - o - s)
	last := sub1(size)
	for i := range 1 << s {
		bl := add128(lo, mul128(size, uint64(i)))
		bh := add128(bl, last)
		c0, c1 := x.class(bl), x.class(bh)
		if c1-c0 <= smallList {
			out[i<<pad] = uint32(c0 + 1)
		} else {
			ci := len(x.chunks) >> chunkBits
			x.chunks = append(x.chunks, make([]uint32, 1<<chunkBits)...)
			tmp := make([]uint32, 1<<chunkBits)
			cs := min(chunkBits, 128-o-s)
			x.fill(bl, o+s, cs, chunkBits-cs, tmp)
			copy(x.chunks[ci<<chunkBits:], tmp)
			out[i<<pad] = tagChunk | uint32(ci)
		}
	}
}

func add128(a, b u128) u128 {
	lo, c := bits.Add64(a.lo, b.lo, 0)
	hi, _ := bits.Add64(a.hi, b.hi, c)
	return u128{hi, lo}
}

func sub1(a u128) u128 {
	lo, b := bits.Sub64(a.lo, 1, 0)
	hi, _ := bits.Sub64(a.hi, 0, b)
	return u128{hi, lo}
}

func mul128(a u128, m uint64) u128 {
	hi, lo := bits.Mul64(a.lo, m)
	return u128{hi + a.hi*m, lo}
}

// Ruleset is a compiled, immutable rule set. Classify may be called from
// any number of goroutines at once.
type Ruleset struct {
	rules    []Rule
	def      Action
	cr       []crule
	actions  []Action // of each rule, without loading its crule
	catchAll int32    // first rule that matches every packet, or len(rules)

	inMap        []uint16 // ingress port -> ingress class (0: no rule names it)
	inClasses    int
	addr         [4]addrIndex // fieldSrc4 - 1, ...
	sport, dport addrIndex    // ports as the low 16 bits
	// The handles of every source and destination port (and ICMP
	// type<<8|code), when the rules cut the port space into more than
	// flatPorts classes: one load instead of a trie walk, for 256 KB.
	sportT, dportT *[1 << 16]uint32
	metaH          []uint32
	metaAnyH       []uint32
	pool           []uint32 // lists: entries of entryWords, each list ended by endOfList
	residual       []int32

	hits *hitCounters // nil unless made by a Firewall
	size RulesetSize
}

// RulesetSize describes the size of a compiled Ruleset.
type RulesetSize struct {
	Rules       int
	Classes     [numFields]int // elementary classes per indexed field: meta, src4, dst4, src6, dst6, sport, dport, meta-any
	ListEntries int            // rule indexes stored in all class lists
	Residual    int            // rules every packet checks
	Bytes       int            // approximate memory held by the classifier
}

// MaxRules is the largest rule set Compile accepts (the index packs rule
// numbers and interval counts into 24 bits).
const MaxRules = 1 << 22

// Compile builds the classifier of rules with default policy def. Rules
// are checked with Rule.Validate; the error names the failing rule by
// index. Compile keeps its own copy of rules.
func Compile(rules []Rule, def Action) (*Ruleset, error) { return compile(rules, def, defaultMaxSpan) }

// compile is Compile with the span limit given (tests force the residual
// list with a small one).
func compile(rules []Rule, def Action, maxSpan int) (*Ruleset, error) {
	if def > Reject {
		return nil, &RuleError{Index: -1, Text: "default policy", Err: &FieldError{Field: "action", Msg: def.String() + " is not an action (expected accept, drop or reject)"}}
	}
	if len(rules) > MaxRules {
		return nil, fmt.Errorf("firewall: %d rules, at most %d can be compiled", len(rules), MaxRules)
	}
	for i := range rules {
		if err := rules[i].Validate(); err != nil {
			return nil, &RuleError{Index: i, Text: rules[i].String(), Err: err}
		}
	}
	rs := &Ruleset{rules: slices.Clone(rules), def: def, catchAll: int32(len(rules))}
	if err := rs.build(maxSpan); err != nil {
		return nil, err
	}
	return rs, nil
}

func be128(b *[16]byte) u128 {
	return u128{binary.BigEndian.Uint64(b[0:8]), binary.BigEndian.Uint64(b[8:16])}
}

// prefixRange is the first and last address of a masked prefix; IPv4 in
// the low 32 bits.
func prefixRange(p netip.Prefix) (lo, hi u128) {
	a := p.Addr().As16()
	v := be128(&a)
	n := uint(p.Bits())
	if p.Addr().Is4() {
		v = u128{0, v.lo & 0xffffffff}
		return v, u128{0, v.lo | uint64(0xffffffff)>>n}
	}
	mh := ^uint64(0) >> min(n, 64)        // host bits of hi
	ml := ^uint64(0) >> (max(n, 64) - 64) // host bits of lo
	if n >= 128 {
		ml = 0
	}
	return v, u128{v.hi | mh, v.lo | ml}
}

// addrSpan is a rule's prefix as an address range, with the address field
// it belongs to (0-3: src4, dst4, src6, dst6).
type addrSpan struct {
	lo, hi u128
	f      int
	ok     bool
}

// build compiles rs.rules into the classifier. No rule is listed under
// more than maxSpan classes of one field (a wider one goes to the
// residual list, which every packet checks).
func (rs *Ruleset) build(maxSpan int) error {
	spans := rs.compileRules()
	// Only rules before the first catch-all can ever be the answer.
	live := int(rs.catchAll)
	rs.indexFields(spans, live)
	classes := rs.classCounts()
	lists := rs.placeRules(spans, live, classes, maxSpan)
	entries := rs.buildHandles(lists)
	rs.size = RulesetSize{Rules: len(rs.rules), Classes: classes, ListEntries: entries,
		Residual: len(rs.residual), Bytes: rs.bytes()}
	if len(rs.pool) >= 1<<29 {
		return fmt.Errorf("firewall: the index of these %d rules needs %d list words, more than %d; use fewer or narrower rules", len(rs.rules), len(rs.pool), 1<<29)
	}
	return nil
}

// compileRules fills the compiled rules, their actions, the first
// catch-all and the ingress classes, and returns each rule's source and
// destination address spans.
func (rs *Ruleset) compileRules() (spans [2][]addrSpan) {
	n := len(rs.rules)
	rs.cr = make([]crule, n)
	rs.actions = make([]Action, n)
	spans[0], spans[1] = make([]addrSpan, n), make([]addrSpan, n)
	inPorts := map[int]bool{}
	maxIn := -1
	for i := range rs.rules {
		r := &rs.rules[i]
		c := &rs.cr[i]
		rs.actions[i] = r.Action
		if r.InPort != Any {
			c.flags |= cfIn
			c.inPort = uint16(r.InPort)
			inPorts[r.InPort] = true
			maxIn = max(maxIn, r.InPort)
		}
		if r.Proto != Any {
			c.flags |= cfProto
			c.proto = uint8(r.Proto)
		}
		switch r.family() {
		case 4:
			c.flags |= cfV4
		case 6:
			c.flags |= cfV6
		}
		v6 := 0
		if r.family() == 6 {
			v6 = 2
		}
		if r.Src.IsValid() {
			lo, hi := prefixRange(r.Src)
			spans[0][i] = addrSpan{lo, hi, v6, true}
			c.flags |= cfSrc
			c.srcHi, c.srcLo, c.srcLen = lo.hi, lo.lo, uint8(r.Src.Bits())
		}
		if r.Dst.IsValid() {
			lo, hi := prefixRange(r.Dst)
			spans[1][i] = addrSpan{lo, hi, 1 + v6, true}
			c.flags |= cfDst
			c.dstHi, c.dstLo, c.dstLen = lo.hi, lo.lo, uint8(r.Dst.Bits())
		}
		if !r.SrcPort.all() || !r.DstPort.all() {
			c.flags |= cfPorts
			c.spLo, c.spHi, c.dpLo, c.dpHi = r.SrcPort.Lo, r.SrcPort.Hi, r.DstPort.Lo, r.DstPort.Hi
		}
		if r.ICMPType != Any {
			c.flags |= cfType
			c.icmpType = uint8(r.ICMPType)
		}
		if r.ICMPCode != Any {
			c.flags |= cfCode
			c.icmpCode = uint8(r.ICMPCode)
		}
		if r.States != 0 {
			c.flags |= cfStates
			c.states = r.States
		}
		if c.flags == 0 && rs.catchAll == int32(n) {
			rs.catchAll = int32(i)
		}
	}
	rs.inMap = make([]uint16, maxIn+1)
	for _, p := range slices.Sorted(maps.Keys(inPorts)) {
		rs.inClasses++
		rs.inMap[p] = uint16(rs.inClasses)
	}
	rs.inClasses++ // class 0: ports no rule names
	return spans
}

// indexFields cuts the address and port fields into the elementary
// intervals the first live rules' bounds make, and indexes them.
func (rs *Ruleset) indexFields(spans [2][]addrSpan, live int) {
	var addrBounds [4][]u128 // src4, dst4, src6, dst6
	var portBounds [2][]u128 // sport, dport: each range's first port and the one after its last
	for i := range live {
		r := &rs.rules[i]
		for j := range 2 {
			a := spans[j][i]
			if !a.ok {
				continue
			}
			f := a.f
			addrBounds[f] = append(addrBounds[f], a.lo)
			if next, ok := inc128(a.hi); ok && (f >= 2 || next.lo <= 0xffffffff) {
				addrBounds[f] = append(addrBounds[f], next)
			}
		}
		for j := range 2 {
			if pr, ok := rs.portSpan(r, j); ok {
				portBounds[j] = append(portBounds[j], u128{0, uint64(pr.Lo)})
				if pr.Hi < 0xffff {
					portBounds[j] = append(portBounds[j], u128{0, uint64(pr.Hi) + 1})
				}
			}
		}
	}
	for f := range rs.addr {
		rs.addr[f] = newAddrIndex(addrBounds[f])
	}
	rs.sport, rs.dport = newAddrIndex(portBounds[0]), newAddrIndex(portBounds[1])
}

// classCounts returns the number of classes of each field.
func (rs *Ruleset) classCounts() [numFields]int {
	return [numFields]int{
		fieldMeta:    rs.inClasses * 256 * 16,
		fieldMetaAny: rs.inClasses * 16,
		fieldSrc4:    len(rs.addr[0].eps),
		fieldDst4:    len(rs.addr[1].eps),
		fieldSrc6:    len(rs.addr[2].eps),
		fieldDst6:    len(rs.addr[3].eps),
		fieldSport:   len(rs.sport.eps),
		fieldDport:   len(rs.dport.eps),
	}
}

// placeRules lists each live rule, greedily, under the field where it
// costs least: the longest list it would join (what a packet may have to
// check), weighted by listWeight, plus the number of classes it spans
// (the memory it takes). A rule that spans more than maxSpan classes in
// every field it names goes to the residual list. It returns the rules
// listed under each class of each field.
func (rs *Ruleset) placeRules(spans [2][]addrSpan, live int, classes [numFields]int, maxSpan int) (lists [numFields][][]int32) {
	for f := range lists {
		lists[f] = make([][]int32, classes[f])
	}
	ports := [2]*addrIndex{&rs.sport, &rs.dport}
	var metaSpan []int
	for i := range live {
		r := &rs.rules[i]
		bestF, bestCost := -1, int(^uint(0)>>1)
		var bestLo, bestHi int
		consider := func(f, lo, hi int) { // contiguous class range [lo, hi]
			if hi-lo+1 > maxSpan {
				return
			}
			longest := 0
			for c := lo; c <= hi; c++ {
				longest = max(longest, len(lists[f][c]))
			}
			cost := longest*listWeight*fieldWeight[f] + hi - lo + 1
			if cost < bestCost {
				bestF, bestCost, bestLo, bestHi = f, cost, lo, hi
			}
		}
		for j := range 2 {
			if a := spans[j][i]; a.ok {
				x := &rs.addr[a.f]
				consider(fieldSrc4+a.f, x.class(a.lo), x.class(a.hi))
			}
		}
		for j, f := range [2]int{fieldSport, fieldDport} {
			if pr, ok := rs.portSpan(r, j); ok {
				consider(f, ports[j].class(u128{0, uint64(pr.Lo)}), ports[j].class(u128{0, uint64(pr.Hi)}))
			}
		}
		metaF := fieldMeta
		if r.Proto == Any {
			metaF = fieldMetaAny
		}
		metaSpan = rs.metaClasses(r, metaSpan[:0])
		if len(metaSpan) > 0 && len(metaSpan) <= maxSpan {
			longest := 0
			for _, c := range metaSpan {
				longest = max(longest, len(lists[metaF][c]))
			}
			cost := longest*listWeight*fieldWeight[metaF] + len(metaSpan)
			if cost < bestCost {
				bestF, bestCost = metaF, cost
			}
		}
		switch bestF {
		case -1:
			rs.residual = append(rs.residual, int32(i))
		case fieldMeta, fieldMetaAny:
			for _, c := range metaSpan {
				lists[bestF][c] = append(lists[bestF][c], int32(i))
			}
		default:
			for c := bestLo; c <= bestHi; c++ {
				lists[bestF][c] = append(lists[bestF][c], int32(i))
			}
		}
	}
	return lists
}

// buildHandles turns the class lists into handles (equal lists share
// their pool entries) and gives them to the field indexes. It returns
// the number of rule indexes in all lists.
func (rs *Ruleset) buildHandles(lists [numFields][][]int32) (entries int) {
	rs.pool = []uint32{0}
	seen := map[string]uint32{}
	var handles [numFields][]uint32
	var buf []uint32
	for f := range lists {
		handles[f] = make([]uint32, len(lists[f]))
		for c, ids := range lists[f] {
			entries += len(ids)
			switch len(ids) {
			case 0:
			case 1:
				handles[f][c] = single | uint32(ids[0])
				if fa, fm, fr := rs.entryFilters(int(ids[0]), f); fa == 0 && fm == entryExact && fr == noRange {
					handles[f][c] |= singleExact
				}
			default:
				buf = buf[:0]
				for _, r := range ids {
					fa, fm, fr := rs.entryFilters(int(r), f)
					buf = append(buf, uint32(r), fa, fm, fr)
				}
				buf = append(buf, endOfList, 0, 0, 0)
				k := string(unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), 4*len(buf)))
				h, ok := seen[k]
				if !ok {
					h = uint32(len(rs.pool))
					seen[k] = h
					rs.pool = append(rs.pool, buf...)
				}
				handles[f][c] = h
			}
		}
	}
	rs.metaH, rs.metaAnyH = handles[fieldMeta], handles[fieldMetaAny]
	for f := range rs.addr {
		rs.addr[f].setHandles(handles[fieldSrc4+f], f < 2, rs.firstRule)
	}
	rs.sport.setHandles(handles[fieldSport], true, rs.firstRule)
	rs.dport.setHandles(handles[fieldDport], true, rs.firstRule)
	rs.sportT, rs.dportT = rs.sport.flat(), rs.dport.flat()
	return entries
}

// bytes approximates the memory the classifier holds.
func (rs *Ruleset) bytes() int {
	b := len(rs.rules) * int(unsafe.Sizeof(crule{}))
	for _, t := range []*[1 << 16]uint32{rs.sportT, rs.dportT} {
		if t != nil {
			b += 4 * len(t)
		}
	}
	b += len(rs.inMap)*2 + len(rs.residual)*4 + (len(rs.metaH)+len(rs.metaAnyH))*4 + len(rs.pool)*4
	for _, x := range []*addrIndex{&rs.addr[0], &rs.addr[1], &rs.addr[2], &rs.addr[3], &rs.sport, &rs.dport} {
		b += len(x.eps)*16 + len(x.cls32)*8 + len(x.h)*4 + len(x.top)*8 + len(x.t0m)*8 + len(x.chunks)*4
	}
	return b
}

// firstRule is the lowest rule of the list h, or endOfList.
func (rs *Ruleset) firstRule(h uint32) int32 {
	switch {
	case h == 0:
		return endOfList
	case h&single != 0:
		return int32(h &^ (single | singleExact))
	}
	return int32(rs.pool[h])
}

// check returns the first rule of the list h below best that matches p,
// or best.
func (rs *Ruleset) check(h uint32, best int32, p *pkt) int32 {
	switch {
	case h == 0:
		return best
	case h&single == 0:
		return rs.scan(h, best, p)
	}
	r := int32(h &^ (single | singleExact))
	if r < best && (h&singleExact != 0 || rs.cr[r].match(p)) {
		return r
	}
	return best
}

func inc128(a u128) (u128, bool) {
	lo, c := bits.Add64(a.lo, 1, 0)
	hi, c2 := bits.Add64(a.hi, 0, c)
	return u128{hi, lo}, c2 == 0
}

// portSpan is the range a rule occupies in the sport (which 0) or dport
// (which 1) field; the dport field also carries ICMP type<<8|code.
func (rs *Ruleset) portSpan(r *Rule, which int) (PortRange, bool) {
	if which == 0 {
		return r.SrcPort, !r.SrcPort.all()
	}
	if !r.DstPort.all() {
		return r.DstPort, true
	}
	if r.ICMPType != Any {
		t := uint16(r.ICMPType) << 8
		if r.ICMPCode != Any {
			return PortRange{t | uint16(r.ICMPCode), t | uint16(r.ICMPCode)}, true
		}
		return PortRange{t, t | 0xff}, true
	}
	return PortRange{}, false
}

// metaClasses appends the classes a rule spans in its meta field
// (fieldMeta when it names a protocol: ingress class x protocol x state;
// else fieldMetaAny: ingress class x state), or nothing if the rule has
// no meta condition.
func (rs *Ruleset) metaClasses(r *Rule, out []int) []int {
	if r.InPort == Any && r.Proto == Any && r.States == 0 {
		return out
	}
	inLo, inHi := 0, rs.inClasses-1
	if r.InPort != Any {
		inLo = int(rs.inMap[r.InPort])
		inHi = inLo
	}
	for in := inLo; in <= inHi; in++ {
		for s := range 16 {
			if r.States != 0 && State(s)&r.States == 0 {
				continue
			}
			if r.Proto == Any {
				out = append(out, in*16+s)
			} else {
				out = append(out, (in*256+r.Proto)*16+s)
			}
		}
	}
	return out
}

// Classify returns the action of the first rule that matches k and its
// index, or the default policy and -1. It does not allocate and does not
// count hits (Firewall.Classify does).
func (rs *Ruleset) Classify(k *Key) (Action, int) {
	p := pkt{k: k}
	best := rs.catchAll

	// The cheap lookups first: protocol and state, and the ports (a flat
	// table when there are many port classes).
	in := 0
	if int(k.InPort) < len(rs.inMap) {
		in = int(rs.inMap[k.InPort])
	}
	st := int(k.State & 15)
	hm := rs.metaH[(in*256+int(k.Proto))*16+st]
	hma := rs.metaAnyH[in*16+st]
	var hdp, hsp uint32
	switch proto := k.Proto; {
	case proto == ProtoTCP || proto == ProtoUDP || proto == ProtoSCTP || proto == ProtoUDPLite:
		p.l4 = uint32(k.DstPort)
		if rs.dportT != nil {
			hdp = rs.dportT[k.DstPort]
		} else {
			hdp = rs.dport.handle32(uint32(k.DstPort))
		}
		if rs.sportT != nil {
			hsp = rs.sportT[k.SrcPort]
		} else {
			hsp = rs.sport.handle32(uint32(k.SrcPort))
		}
	case proto == ProtoICMP || proto == ProtoICMPv6:
		p.l4 = uint32(k.ICMPType)<<8 | uint32(k.ICMPCode)
		if rs.dportT != nil {
			hdp = rs.dportT[uint16(p.l4)]
		} else {
			hdp = rs.dport.handle32(p.l4)
		}
	}
	// The rules found so far bound the address lookups: a top-table
	// block without a lower rule ends the walk there.
	if k.IPv6 {
		s, d := be128(&k.Src), be128(&k.Dst)
		p.sh, p.sl, p.dh, p.dl = s.hi, s.lo, d.hi, d.lo
		td, ts := rs.addr[3].top128(d), rs.addr[2].top128(s)
		best = rs.check(hm, best, &p)
		best = rs.check(hdp, best, &p)
		best = rs.check(rs.addr[3].walk(d, td, best), best, &p)
		best = rs.check(rs.addr[2].walk(s, ts, best), best, &p)
	} else {
		sa := binary.BigEndian.Uint32(k.Src[12:16])
		da := binary.BigEndian.Uint32(k.Dst[12:16])
		p.sl, p.dl = uint64(sa), uint64(da)
		td, ts := rs.addr[1].top32(da), rs.addr[0].top32(sa)
		best = rs.check(hm, best, &p)
		best = rs.check(hdp, best, &p)
		best = rs.check(rs.addr[1].walk32(da, td, best), best, &p)
		best = rs.check(rs.addr[0].walk32(sa, ts, best), best, &p)
	}
	best = rs.check(hsp, best, &p)
	best = rs.check(hma, best, &p)
	for _, r := range rs.residual {
		if r >= best {
			break
		}
		if rs.cr[r].match(&p) {
			best = r
			break
		}
	}
	if int(best) == len(rs.cr) {
		return rs.def, -1
	}
	return rs.actions[best], int(best)
}

// Rules returns a copy of the rules of rs, in order.
func (rs *Ruleset) Rules() []Rule { return slices.Clone(rs.rules) }

// Len is the number of rules.
func (rs *Ruleset) Len() int { return len(rs.rules) }

// Default is the default policy.
func (rs *Ruleset) Default() Action { return rs.def }

// Size describes the compiled classifier.
func (rs *Ruleset) Size() RulesetSize { return rs.size }
