package firewall

import (
	"encoding/binary"
	"math/bits"
	"slices"
	"unsafe"
)

// maxSpan bounds how many elementary classes of one field a rule may be
// listed under. A rule wider than this in every one of its fields goes
// to the residual list, which every packet scans.
const maxSpan = 1024

// Fields a rule can be indexed under.
const (
	fieldMeta = iota // ingress port x protocol x state
	fieldSrc4
	fieldDst4
	fieldSrc6
	fieldDst6
	fieldSport
	fieldDport // destination port, or ICMP type<<8|code
	numFields
)

// crule is a rule reduced to masks and ranges for a quick full check.
type crule struct {
	srcHi, srcLo, srcMHi, srcMLo uint64
	dstHi, dstLo, dstMHi, dstMLo uint64
	spLo, spHi, dpLo, dpHi       uint16
	inPort                       uint16
	flags                        uint16
	proto, icmpType, icmpCode    uint8
	states                       State
	action                       Action
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
	if f&cfSrc != 0 && (p.sh&c.srcMHi != c.srcHi || p.sl&c.srcMLo != c.srcLo) {
		return false
	}
	if f&cfDst != 0 && (p.dh&c.dstMHi != c.dstHi || p.dl&c.dstMLo != c.dstLo) {
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

// lists holds one sorted list of rule indexes per class: ids[off[c]:off[c+1]].
type lists struct {
	off []uint32
	ids []int32
}

// scan returns the first rule of class c's list below best that matches
// p, or best.
func (cr rulesView) scan(l *lists, c int, best int32, p *pkt) int32 {
	for _, r := range l.ids[l.off[c]:l.off[c+1]] {
		if r >= best {
			break
		}
		if cr[r].match(p) {
			return r
		}
	}
	return best
}

type rulesView []crule

// v4Index maps an IPv4 address to its elementary interval (class).
type v4Index struct {
	eps []uint32 // sorted interval starts; eps[0] == 0
	acc []uint32 // acc[t]: number of eps whose top 16 bits are < t
}

func (x *v4Index) class(a uint32) int {
	t := a >> 16
	lo, hi := int(x.acc[t]), int(x.acc[t+1])
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if x.eps[m] <= a {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo - 1
}

// v6Index maps an IPv6 address to its elementary interval (class).
type v6Index struct {
	eps []u128 // sorted interval starts; eps[0] == 0
	acc []uint32
}

type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (x *v6Index) class(a u128) int {
	t := a.hi >> 48
	lo, hi := int(x.acc[t]), int(x.acc[t+1])
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

// Ruleset is a compiled, immutable rule set. Classify may be called from
// any number of goroutines at once.
type Ruleset struct {
	rules    []Rule
	def      Action
	cr       rulesView
	catchAll int32 // first rule that matches every packet, or len(rules)

	inMap        []uint16 // ingress port -> ingress class (0: no rule names it)
	inClasses    int
	src4, dst4   v4Index
	src6, dst6   v6Index
	sport, dport *[65536]uint16
	idx          [numFields]lists
	residual     []int32

	hits *hitCounters // nil unless made by a Firewall
	st   Stats
}

// Stats describes the size of a compiled Ruleset.
type Stats struct {
	Rules       int
	Classes     [numFields]int // elementary classes per indexed field
	ListEntries int            // rule indexes stored in all class lists
	Residual    int            // rules every packet checks
	Bytes       int            // approximate memory held by the classifier
}

// Compile builds the classifier of rules with default policy def. Rules
// are checked with Rule.Validate; the error names the failing rule by
// index. Compile keeps its own copy of rules.
func Compile(rules []Rule, def Action) (*Ruleset, error) {
	if def > Reject {
		return nil, &RuleError{Index: -1, Text: "default policy", Err: &FieldError{Field: "action", Msg: def.String() + " is not an action (expected accept, drop or reject)"}}
	}
	for i := range rules {
		if err := rules[i].Validate(); err != nil {
			return nil, &RuleError{Index: i, Text: rules[i].String(), Err: err}
		}
	}
	rs := &Ruleset{rules: slices.Clone(rules), def: def, catchAll: int32(len(rules))}
	rs.build()
	return rs, nil
}

func be128(b *[16]byte) u128 {
	return u128{binary.BigEndian.Uint64(b[0:8]), binary.BigEndian.Uint64(b[8:16])}
}

// prefixRange is the first and last address of a masked prefix of
// bitsLen bits whose address is a (As16 form).
func prefixRange(bitsLen int, a [16]byte, is4 bool) (lo, hi u128) {
	v := be128(&a)
	if is4 {
		v.hi = 0
		v.lo &= 0xffffffff
		m := uint64(0xffffffff) >> bitsLen
		if bitsLen >= 32 {
			m = 0
		}
		return v, u128{0, v.lo | m}
	}
	var mh, ml uint64 // host bits
	switch {
	case bitsLen == 0:
		mh, ml = ^uint64(0), ^uint64(0)
	case bitsLen < 64:
		mh, ml = ^uint64(0)>>bitsLen, ^uint64(0)
	case bitsLen < 128:
		ml = ^uint64(0) >> (bitsLen - 64)
	}
	return v, u128{v.hi | mh, v.lo | ml}
}

func (rs *Ruleset) build() {
	n := len(rs.rules)
	rs.cr = make(rulesView, n)
	type addr struct {
		lo, hi u128
		ok     bool
	}
	srcR := make([]addr, n)
	dstR := make([]addr, n)
	inPorts := map[int]bool{}
	maxIn := -1
	for i := range rs.rules {
		r := &rs.rules[i]
		c := &rs.cr[i]
		c.action = r.Action
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
		for j, p := range [2]*addr{&srcR[i], &dstR[i]} {
			pf := r.Src
			if j == 1 {
				pf = r.Dst
			}
			if !pf.IsValid() {
				continue
			}
			is4 := pf.Addr().Is4()
			lo, hi := prefixRange(pf.Bits(), pf.Addr().As16(), is4)
			*p = addr{lo, hi, true}
			mh, ml := ^(hi.hi ^ lo.hi), ^(hi.lo ^ lo.lo)
			if is4 {
				mh, ml = 0, ml&0xffffffff
			}
			if j == 0 {
				c.flags |= cfSrc
				c.srcHi, c.srcLo, c.srcMHi, c.srcMLo = lo.hi, lo.lo, mh, ml
			} else {
				c.flags |= cfDst
				c.dstHi, c.dstLo, c.dstMHi, c.dstMLo = lo.hi, lo.lo, mh, ml
			}
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
	// Only rules before the first catch-all can ever be the answer.
	live := int(rs.catchAll)

	// Ingress classes.
	rs.inMap = make([]uint16, maxIn+1)
	for _, p := range slices.Sorted(mapsKeys(inPorts)) {
		rs.inClasses++
		rs.inMap[p] = uint16(rs.inClasses)
	}
	rs.inClasses++ // class 0: ports no rule names

	// Elementary intervals of the address and port fields.
	var e4 [2][]uint32
	var e6 [2][]u128
	var ep [2][]uint32
	for i := range live {
		r := &rs.rules[i]
		for j, a := range [2]addr{srcR[i], dstR[i]} {
			if !a.ok {
				continue
			}
			if r.family() == 4 {
				e4[j] = append(e4[j], uint32(a.lo.lo))
				if uint32(a.hi.lo) != ^uint32(0) {
					e4[j] = append(e4[j], uint32(a.hi.lo)+1)
				}
			} else {
				e6[j] = append(e6[j], a.lo)
				if next, ok := inc128(a.hi); ok {
					e6[j] = append(e6[j], next)
				}
			}
		}
		if pr, ok := rs.portSpan(r, 0); ok {
			ep[0] = append(ep[0], uint32(pr.Lo), uint32(pr.Hi)+1)
		}
		if pr, ok := rs.portSpan(r, 1); ok {
			ep[1] = append(ep[1], uint32(pr.Lo), uint32(pr.Hi)+1)
		}
	}
	rs.src4, rs.dst4 = newV4Index(e4[0]), newV4Index(e4[1])
	rs.src6, rs.dst6 = newV6Index(e6[0]), newV6Index(e6[1])
	var np [2]int
	rs.sport, np[0] = newPortMap(ep[0])
	rs.dport, np[1] = newPortMap(ep[1])

	classes := [numFields]int{
		fieldMeta:  rs.inClasses * 256 * 16,
		fieldSrc4:  len(rs.src4.eps),
		fieldDst4:  len(rs.dst4.eps),
		fieldSrc6:  len(rs.src6.eps),
		fieldDst6:  len(rs.dst6.eps),
		fieldSport: np[0],
		fieldDport: np[1],
	}
	var ls [numFields][][]int32
	for f := range ls {
		ls[f] = make([][]int32, classes[f])
	}

	// Greedy: list each live rule under the field whose classes it spans
	// hold the fewest rules so far (counting the classes themselves), so
	// that candidate lists stay short and balanced.
	var metaSpan []int
	for i := range live {
		r := &rs.rules[i]
		bestF, bestCost := -1, int(^uint(0)>>1)
		var bestLo, bestHi int
		consider := func(f, lo, hi int) { // contiguous class range [lo, hi]
			if hi-lo+1 > maxSpan {
				return
			}
			cost := 0
			for c := lo; c <= hi; c++ {
				cost += len(ls[f][c]) + 1
			}
			if cost < bestCost {
				bestF, bestCost, bestLo, bestHi = f, cost, lo, hi
			}
		}
		fam := r.family()
		for j, a := range [2]addr{srcR[i], dstR[i]} {
			if !a.ok {
				continue
			}
			if fam == 4 {
				x := &rs.src4
				f := fieldSrc4
				if j == 1 {
					x, f = &rs.dst4, fieldDst4
				}
				consider(f, x.class(uint32(a.lo.lo)), x.class(uint32(a.hi.lo)))
			} else {
				x := &rs.src6
				f := fieldSrc6
				if j == 1 {
					x, f = &rs.dst6, fieldDst6
				}
				consider(f, x.class(a.lo), x.class(a.hi))
			}
		}
		if pr, ok := rs.portSpan(r, 0); ok {
			consider(fieldSport, int(rs.sport[pr.Lo]), int(rs.sport[pr.Hi]))
		}
		if pr, ok := rs.portSpan(r, 1); ok {
			consider(fieldDport, int(rs.dport[pr.Lo]), int(rs.dport[pr.Hi]))
		}
		metaSpan = rs.metaClasses(r, metaSpan[:0])
		if len(metaSpan) > 0 && len(metaSpan) <= maxSpan {
			cost := 0
			for _, c := range metaSpan {
				cost += len(ls[fieldMeta][c]) + 1
			}
			if cost < bestCost {
				bestF, bestCost = fieldMeta, cost
			}
		}
		switch bestF {
		case -1:
			rs.residual = append(rs.residual, int32(i))
		case fieldMeta:
			for _, c := range metaSpan {
				ls[fieldMeta][c] = append(ls[fieldMeta][c], int32(i))
			}
		default:
			for c := bestLo; c <= bestHi; c++ {
				ls[bestF][c] = append(ls[bestF][c], int32(i))
			}
		}
	}

	// Flatten the lists.
	total := 0
	for f := range ls {
		l := &rs.idx[f]
		l.off = make([]uint32, len(ls[f])+1)
		cnt := 0
		for c, ids := range ls[f] {
			cnt += len(ids)
			l.off[c+1] = uint32(cnt)
		}
		l.ids = make([]int32, 0, cnt)
		for _, ids := range ls[f] {
			l.ids = append(l.ids, ids...)
		}
		total += cnt
	}

	b := n*int(unsafe.Sizeof(crule{})) + len(rs.inMap)*2 + len(rs.residual)*4 + 2*65536*2
	b += (len(rs.src4.eps)+len(rs.dst4.eps))*4 + (len(rs.src6.eps)+len(rs.dst6.eps))*16 + 4*65537*4
	for f := range rs.idx {
		b += len(rs.idx[f].off)*4 + len(rs.idx[f].ids)*4
	}
	rs.st = Stats{Rules: n, Classes: classes, ListEntries: total, Residual: len(rs.residual), Bytes: b}
}

func mapsKeys(m map[int]bool) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
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

// metaClasses appends the meta classes (ingress class x protocol x
// state) a rule matches, or nothing if the rule has no meta condition.
func (rs *Ruleset) metaClasses(r *Rule, out []int) []int {
	if r.InPort == Any && r.Proto == Any && r.States == 0 {
		return out
	}
	ins := []int{}
	if r.InPort != Any {
		ins = append(ins, int(rs.inMap[r.InPort]))
	} else {
		for c := range rs.inClasses {
			ins = append(ins, c)
		}
	}
	plo, phi := 0, 255
	if r.Proto != Any {
		plo, phi = r.Proto, r.Proto
	}
	for _, in := range ins {
		for p := plo; p <= phi; p++ {
			for s := range 16 {
				if r.States == 0 || State(s)&r.States != 0 {
					out = append(out, (in*256+p)*16+s)
				}
			}
		}
	}
	return out
}

func newV4Index(eps []uint32) v4Index {
	eps = append(eps, 0)
	slices.Sort(eps)
	eps = slices.Compact(eps)
	acc := make([]uint32, 65537)
	j := 0
	for t := range 65537 {
		for j < len(eps) && int(eps[j]>>16) < t {
			j++
		}
		acc[t] = uint32(j)
	}
	return v4Index{eps: slices.Clip(eps), acc: acc}
}

func newV6Index(eps []u128) v6Index {
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
	eps = slices.Compact(eps)
	acc := make([]uint32, 65537)
	j := 0
	for t := range 65537 {
		for j < len(eps) && int(eps[j].hi>>48) < t {
			j++
		}
		acc[t] = uint32(j)
	}
	return v6Index{eps: slices.Clip(eps), acc: acc}
}

// newPortMap returns the class of every 16-bit value given interval
// boundaries (each a start; 65536 ends the space) and the class count.
func newPortMap(eps []uint32) (*[65536]uint16, int) {
	var starts [65537]bool
	starts[0] = true
	for _, e := range eps {
		starts[e] = true
	}
	m := new([65536]uint16)
	c := -1
	for v := range 65536 {
		if starts[v] {
			c++
		}
		m[v] = uint16(c)
	}
	return m, c + 1
}

// Classify returns the action of the first rule that matches k and its
// index, or the default policy and -1. It does not allocate and does not
// count hits (Firewall.Classify does).
func (rs *Ruleset) Classify(k *Key) (Action, int) {
	p := pkt{k: k}
	best := rs.catchAll
	cr := rs.cr

	// Address lookups first: every rule check needs p's addresses.
	var sc, dc int
	if k.IPv6 {
		s, d := be128(&k.Src), be128(&k.Dst)
		p.sh, p.sl, p.dh, p.dl = s.hi, s.lo, d.hi, d.lo
		sc, dc = rs.src6.class(s), rs.dst6.class(d)
	} else {
		s := binary.BigEndian.Uint32(k.Src[12:16])
		d := binary.BigEndian.Uint32(k.Dst[12:16])
		p.sl, p.dl = uint64(s), uint64(d)
		sc, dc = rs.src4.class(s), rs.dst4.class(d)
	}
	fs, fd := fieldSrc4, fieldDst4
	if k.IPv6 {
		fs, fd = fieldSrc6, fieldDst6
	}
	best = cr.scan(&rs.idx[fd], dc, best, &p)
	best = cr.scan(&rs.idx[fs], sc, best, &p)

	in := 0
	if int(k.InPort) < len(rs.inMap) {
		in = int(rs.inMap[k.InPort])
	}
	best = cr.scan(&rs.idx[fieldMeta], (in*256+int(k.Proto))*16+int(k.State&15), best, &p)
	switch proto := int(k.Proto); {
	case hasPorts(proto):
		best = cr.scan(&rs.idx[fieldDport], int(rs.dport[k.DstPort]), best, &p)
		best = cr.scan(&rs.idx[fieldSport], int(rs.sport[k.SrcPort]), best, &p)
	case isICMP(proto):
		best = cr.scan(&rs.idx[fieldDport], int(rs.dport[uint16(k.ICMPType)<<8|uint16(k.ICMPCode)]), best, &p)
	}
	for _, r := range rs.residual {
		if r >= best {
			break
		}
		if cr[r].match(&p) {
			best = r
			break
		}
	}
	if int(best) == len(cr) {
		return rs.def, -1
	}
	return cr[best].action, int(best)
}

// Rules returns a copy of the rules of rs, in order.
func (rs *Ruleset) Rules() []Rule { return slices.Clone(rs.rules) }

// Len is the number of rules.
func (rs *Ruleset) Len() int { return len(rs.rules) }

// Default is the default policy.
func (rs *Ruleset) Default() Action { return rs.def }

// Stats describes the compiled classifier.
func (rs *Ruleset) Stats() Stats { return rs.st }
