package firewall

import (
	"math/rand/v2"
	"net/netip"
)

// gen makes random rules and keys. Its addresses come from a small set of
// seeds so that prefixes of many lengths nest and overlap, and keys are
// drawn mostly from the edges of the rules' ranges.
type gen struct {
	rnd    *rand.Rand
	seeds4 [][4]byte
	seeds6 [][16]byte
	tight  bool // few distinct values: many overlaps (property tests)
}

func newGen(seed uint64, tight bool) *gen {
	g := &gen{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), tight: tight}
	n := 2000
	if tight {
		n = 4
	}
	for range n {
		var a [4]byte
		var b [16]byte
		for i := range a {
			a[i] = byte(g.rnd.Uint32())
		}
		b[0], b[1] = 0x20, 0x01
		for i := 2; i < 16; i++ {
			b[i] = byte(g.rnd.Uint32())
		}
		g.seeds4 = append(g.seeds4, a)
		g.seeds6 = append(g.seeds6, b)
	}
	return g
}

func (g *gen) intn(n int) int { return g.rnd.IntN(n) }
func (g *gen) pct(p int) bool { return g.rnd.IntN(100) < p }
func (g *gen) flipLow(b []byte) { // disturb a few low bits
	if g.pct(50) {
		b[len(b)-1] ^= byte(1 << g.intn(8))
	}
	if g.pct(30) {
		b[len(b)-2] ^= byte(1 << g.intn(8))
	}
}

func (g *gen) addr4() netip.Addr {
	a := g.seeds4[g.intn(len(g.seeds4))]
	g.flipLow(a[:])
	return netip.AddrFrom4(a)
}

func (g *gen) addr6() netip.Addr {
	a := g.seeds6[g.intn(len(g.seeds6))]
	g.flipLow(a[:])
	if g.pct(20) {
		a[7] ^= byte(1 << g.intn(8))
	}
	return netip.AddrFrom16(a)
}

func (g *gen) prefix(v6 bool) netip.Prefix {
	var a netip.Addr
	var l int
	if v6 {
		a = g.addr6()
		if g.tight {
			l = g.intn(129)
		} else {
			l = []int{32, 40, 48, 48, 56, 64, 64, 64, 96, 128}[g.intn(10)]
		}
	} else {
		a = g.addr4()
		if g.tight {
			l = g.intn(33)
		} else {
			l = []int{8, 12, 16, 16, 20, 22, 24, 24, 24, 24, 26, 28, 30, 32, 32}[g.intn(15)]
		}
	}
	return netip.PrefixFrom(a, l).Masked()
}

var commonPorts = []uint16{22, 25, 53, 80, 110, 123, 143, 161, 179, 389, 443, 445, 465, 514, 587, 636, 993, 995, 1194, 1433, 1521, 2049, 3306, 3389, 5060, 5432, 6379, 8080, 8443, 9200}

func (g *gen) ports() PortRange {
	if g.tight {
		lo := uint16(g.intn(8))
		return PortRange{lo, lo + uint16(g.intn(4))}
	}
	switch {
	case g.pct(70):
		p := commonPorts[g.intn(len(commonPorts))]
		return PortRange{p, p}
	case g.pct(50):
		p := uint16(1024 + g.intn(60000))
		return PortRange{p, p}
	default:
		lo := g.intn(65536)
		return PortRange{uint16(lo), uint16(min(65535, lo+g.intn(2000)))}
	}
}

// rule returns a random valid rule. Wildcards are frequent in tight mode.
func (g *gen) rule() Rule {
	r := NewRule(Action(g.intn(3)))
	v6 := g.pct(30)
	pSrc, pDst := 40, 85
	if g.tight {
		pSrc, pDst = 40, 40
	}
	if g.pct(pSrc) {
		r.Src = g.prefix(v6)
	}
	if g.pct(pDst) {
		r.Dst = g.prefix(v6)
	}
	if g.pct(15) {
		r.InPort = g.intn(4)
	}
	switch x := g.intn(100); {
	case x < 50:
		r.Proto = ProtoTCP
	case x < 75:
		r.Proto = ProtoUDP
	case x < 82:
		r.Proto = ProtoICMP
		if r.family() == 6 {
			r.Proto = ProtoICMPv6
		}
	case x < 85:
		r.Proto = ProtoSCTP
	case x < 88:
		r.Proto = 47 // GRE
	}
	if hasPorts(r.Proto) {
		if g.pct(75) {
			r.DstPort = g.ports()
		}
		if g.pct(10) {
			r.SrcPort = g.ports()
		}
	}
	if isICMP(r.Proto) && g.pct(60) {
		r.ICMPType = g.intn(4) * 4 // 0, 4, 8, 12
		if g.pct(50) {
			r.ICMPCode = g.intn(2)
		}
	}
	if g.pct(15) {
		r.States = State(1 + g.intn(15))
	}
	return r
}

// rules returns n random rules, none of which matches every packet (a
// catch-all would make every later rule dead).
func (g *gen) rules(n int) []Rule {
	rs := make([]Rule, n)
	for i := range rs {
		for {
			rs[i] = g.rule()
			if rs[i] != NewRule(rs[i].Action) {
				break
			}
		}
	}
	return rs
}

// edge returns an address at or next to an edge of p.
func (g *gen) edge(p netip.Prefix) netip.Addr {
	a := p.Addr()
	if g.pct(50) { // last address
		b := a.AsSlice()
		for i := p.Bits(); i < len(b)*8; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		a, _ = netip.AddrFromSlice(b)
	}
	switch g.intn(4) {
	case 0:
		a = a.Next()
	case 1:
		a = a.Prev()
	}
	if !a.IsValid() {
		a = p.Addr()
	}
	return a
}

func (g *gen) portNear(p PortRange) uint16 {
	v := p.Lo
	if g.pct(50) {
		v = p.Hi
	}
	switch g.intn(4) {
	case 0:
		v++
	case 1:
		v--
	}
	return v
}

// key returns a random key, usually derived from one of rules so that it
// lands on or next to the rule's edges.
func (g *gen) key(rules []Rule) Key {
	var k Key
	v6 := g.pct(30)
	var r *Rule
	if len(rules) > 0 && g.pct(85) {
		r = &rules[g.intn(len(rules))]
		if f := r.family(); f != 0 {
			v6 = f == 6
		}
	}
	src, dst := g.addr4(), g.addr4()
	if v6 {
		src, dst = g.addr6(), g.addr6()
	}
	if r != nil && r.Src.IsValid() && g.pct(90) {
		src = g.edge(r.Src)
	}
	if r != nil && r.Dst.IsValid() && g.pct(90) {
		dst = g.edge(r.Dst)
	}
	k.SetAddrs(src, dst)
	if g.pct(3) { // garbage in the unused bytes of an IPv4 key
		k.Src[0], k.Dst[3] = 0xde, 0xad
	}
	k.InPort = uint16(g.intn(6))
	if r != nil && r.InPort != Any && g.pct(80) {
		k.InPort = uint16(r.InPort)
	}
	k.Proto = []uint8{ProtoTCP, ProtoUDP, ProtoICMP, ProtoICMPv6, ProtoSCTP, 47, 0}[g.intn(7)]
	if r != nil && r.Proto != Any && g.pct(85) {
		k.Proto = uint8(r.Proto)
	}
	k.SrcPort, k.DstPort = uint16(g.intn(10)), commonPorts[g.intn(len(commonPorts))]
	if g.pct(20) {
		k.SrcPort, k.DstPort = uint16(g.rnd.Uint32()), uint16(g.rnd.Uint32())
	}
	if r != nil && g.pct(85) {
		k.SrcPort = g.portNear(r.SrcPort)
		k.DstPort = g.portNear(r.DstPort)
	}
	k.ICMPType, k.ICMPCode = uint8(g.intn(13)), uint8(g.intn(3))
	if r != nil && r.ICMPType != Any && g.pct(80) {
		k.ICMPType = uint8(r.ICMPType)
		if r.ICMPCode != Any && g.pct(80) {
			k.ICMPCode = uint8(r.ICMPCode)
		}
	}
	k.State = []State{0, StateNew, StateEstablished, StateRelated, StateInvalid}[g.intn(5)]
	return k
}

// inside returns a random address of p.
func (g *gen) inside(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if g.rnd.IntN(2) == 1 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// trafficKey returns a key of plausible traffic: 80% of keys match a
// random rule somewhere inside its ranges (not at the edges; an earlier
// rule may still catch it), the rest are random packets.
func (g *gen) trafficKey(rules []Rule) Key {
	if len(rules) == 0 || g.pct(20) {
		return g.key(nil)
	}
	r := &rules[g.intn(len(rules))]
	v6 := g.pct(30)
	if f := r.family(); f != 0 {
		v6 = f == 6
	}
	src, dst := g.addr4(), g.addr4()
	if v6 {
		src, dst = g.addr6(), g.addr6()
	}
	if r.Src.IsValid() {
		src = g.inside(r.Src)
	}
	if r.Dst.IsValid() {
		dst = g.inside(r.Dst)
	}
	var k Key
	k.SetAddrs(src, dst)
	k.InPort = uint16(g.intn(4))
	if r.InPort != Any {
		k.InPort = uint16(r.InPort)
	}
	k.Proto = []uint8{ProtoTCP, ProtoTCP, ProtoUDP, ProtoICMP}[g.intn(4)]
	if r.Proto != Any {
		k.Proto = uint8(r.Proto)
	}
	in := func(p PortRange) uint16 { return p.Lo + uint16(g.intn(int(p.Hi-p.Lo)+1)) }
	k.SrcPort, k.DstPort = uint16(1024+g.intn(64000)), commonPorts[g.intn(len(commonPorts))]
	if !r.SrcPort.all() {
		k.SrcPort = in(r.SrcPort)
	}
	if !r.DstPort.all() {
		k.DstPort = in(r.DstPort)
	}
	k.ICMPType = uint8(g.intn(13))
	if r.ICMPType != Any {
		k.ICMPType = uint8(r.ICMPType)
	}
	if r.ICMPCode != Any {
		k.ICMPCode = uint8(r.ICMPCode)
	}
	k.State = []State{StateNew, StateNew, StateEstablished, StateRelated, StateInvalid}[g.intn(5)]
	for r.States != 0 && r.States&k.State == 0 {
		k.State = State(1) << g.intn(4)
	}
	return k
}
