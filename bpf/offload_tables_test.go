package bpf

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// matches is the meaning of an OffloadRule (firewall.OffloadEntry.Matches).
func (r *OffloadRule) matches(inPort int, proto uint8, src, dst netip.Addr, sport, dport uint16) bool {
	if r.InPort != -1 && r.InPort != inPort || r.Proto != -1 && r.Proto != int(proto) {
		return false
	}
	in := func(p netip.Prefix, a netip.Addr) bool {
		return !p.IsValid() || p.Addr().Is4() == a.Is4() && p.Contains(a)
	}
	if !in(r.Src, src) || !in(r.Dst, dst) {
		return false
	}
	if portsOf(proto) {
		return r.SrcPort[0] <= sport && sport <= r.SrcPort[1] && r.DstPort[0] <= dport && dport <= r.DstPort[1]
	}
	return true
}

type tableGen struct{ *rand.Rand }

func (g tableGen) prefix(v6 bool) netip.Prefix {
	if v6 {
		a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(g.IntN(4))}
		for i := 6; i < 16; i++ {
			a[i] = byte(g.IntN(256))
		}
		return netip.PrefixFrom(netip.AddrFrom16(a), 32+g.IntN(97)).Masked()
	}
	a := [4]byte{198, 18 + byte(g.IntN(2)), byte(g.IntN(4)), byte(g.IntN(256))}
	return netip.PrefixFrom(netip.AddrFrom4(a), 15+g.IntN(18)).Masked()
}

func (g tableGen) ports() [2]uint16 {
	switch g.IntN(5) {
	case 0, 1:
		return [2]uint16{0, 65535}
	case 2:
		p := uint16(g.IntN(8))
		return [2]uint16{p, p}
	case 3:
		p := uint16(65528 + g.IntN(8))
		return [2]uint16{p, 65535}
	}
	lo := uint16(g.IntN(1000))
	return [2]uint16{lo, lo + uint16(g.IntN(500))}
}

var tableProtos = []int{-1, 6, 17, 1, 58, 132, 136, 47}

func (g tableGen) rule() OffloadRule {
	r := OffloadRule{InPort: g.IntN(4) - 1, Proto: tableProtos[g.IntN(len(tableProtos))], SrcPort: [2]uint16{0, 65535}, DstPort: [2]uint16{0, 65535}}
	v6 := g.IntN(2) == 0
	if g.IntN(2) == 0 {
		r.Src = g.prefix(v6)
	}
	if g.IntN(2) == 0 {
		r.Dst = g.prefix(v6)
	}
	if r.Proto != -1 && portsOf(uint8(r.Proto)) {
		r.SrcPort, r.DstPort = g.ports(), g.ports()
	}
	return r
}

// addr picks an address in, at the edges of or next to a rule's prefix.
func (g tableGen) addr(rules []OffloadRule, v6 bool) netip.Addr {
	var ps []netip.Prefix
	for _, r := range rules {
		for _, p := range []netip.Prefix{r.Src, r.Dst} {
			if p.IsValid() && p.Addr().Is6() == v6 {
				ps = append(ps, p)
			}
		}
	}
	if len(ps) == 0 || g.IntN(8) == 0 {
		return g.prefix(v6).Addr()
	}
	p := ps[g.IntN(len(ps))]
	a := p.Addr()
	switch g.IntN(4) {
	case 0:
		return a
	case 1:
		return a.Prev()
	}
	b := a.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if g.IntN(4) != 0 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	last, _ := netip.AddrFromSlice(b)
	if g.IntN(2) == 0 {
		return last.Next()
	}
	return last
}

func (g tableGen) port(rules []OffloadRule) uint16 {
	if g.IntN(4) == 0 || len(rules) == 0 {
		return uint16(g.IntN(65536))
	}
	r := rules[g.IntN(len(rules))]
	pr := r.DstPort
	if g.IntN(2) == 0 {
		pr = r.SrcPort
	}
	switch g.IntN(4) {
	case 0:
		return pr[0]
	case 1:
		return pr[1]
	case 2:
		return pr[0] - 1
	}
	return pr[1] + 1
}

// The tables give every key the first rule that matches it, or none.
func TestOffloadTablesMatchTheRules(t *testing.T) {
	g := tableGen{rand.New(rand.NewPCG(1, 2))}
	var hits, keys int
	for set := range 300 {
		n := 1 + g.IntN(20)
		if set%10 == 9 {
			n = MaxOffloadRules
		}
		rules := make([]OffloadRule, n)
		for i := range rules {
			rules[i] = g.rule()
		}
		tab, err := compileOffload(rules)
		if err != nil {
			t.Fatal(err)
		}
		for range 500 {
			v6 := g.IntN(2) == 0
			in := g.IntN(5)
			proto := uint8(tableProtos[1+g.IntN(len(tableProtos)-1)])
			src, dst := g.addr(rules, v6), g.addr(rules, v6)
			sp, dp := g.port(rules), g.port(rules)
			want := -1
			for i := range rules {
				if rules[i].matches(in, proto, src, dst, sp, dp) {
					want = i
					break
				}
			}
			if got := tab.match(in, proto, src, dst, sp, dp); got != want {
				t.Fatalf("set %d: in %d proto %d %v -> %v ports %d -> %d: tables say rule %d, the rules %d", set, in, proto, src, dst, sp, dp, got, want)
			}
			keys++
			if want >= 0 {
				hits++
			}
		}
	}
	if hits < keys/20 {
		t.Errorf("only %d of %d keys matched a rule: the test proves little", hits, keys)
	}
}

func TestOffloadTablesRefuseBadRules(t *testing.T) {
	any := OffloadRule{InPort: -1, Proto: -1, SrcPort: [2]uint16{0, 65535}, DstPort: [2]uint16{0, 65535}}
	bad := []OffloadRule{any, any, any, any}
	bad[0].Proto = 256
	bad[1].InPort = -2
	bad[2].DstPort = [2]uint16{2, 1}
	bad[3].Src = netip.MustParsePrefix("198.18.0.1/15")
	for _, r := range bad {
		if _, err := compileOffload([]OffloadRule{r}); err == nil {
			t.Errorf("%+v compiled", r)
		}
	}
	if _, err := compileOffload(make([]OffloadRule, MaxOffloadRules+1)); err == nil {
		t.Error("more rules than the tables hold compiled")
	}
}
