package bpf

import (
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
)

// OffloadRule is one rule of the firewall pre-filter, as plain data: the
// fields of a firewall OffloadEntry (nf/firewall), which says what they
// mean. A packet matches when every field accepts it; the pre-filter
// drops it and counts it for the first rule that matches.
type OffloadRule struct {
	// InPort is the ingress port index (the xnf port the interface is),
	// or -1 for any port.
	InPort int
	// Proto is the IP protocol (after IPv6 extension headers), or -1.
	Proto int
	// Src and Dst: the zero Prefix matches every address of both
	// families; a valid one only addresses of its own family within it.
	Src, Dst netip.Prefix
	// SrcPort and DstPort are inclusive ranges, [0, 65535] for any port.
	// They are read only for TCP, UDP, SCTP and UDP-Lite packets (ports
	// 0 in later fragments); other packets match whatever they say.
	SrcPort, DstPort [2]uint16
}

const (
	// MaxOffloadRules is the most rules the pre-filter holds: the width
	// of its rule bitmaps (firewall.MaxOffloadRules).
	MaxOffloadRules = 256
	// MaxOffloadPorts is the number of ingress port indexes the
	// pre-filter's tables hold: frames of ports from it up are not
	// judged (the stage decides them).
	MaxOffloadPorts = 256

	offloadWords   = MaxOffloadRules / 64
	offloadClasses = 1024 // port classes a field holds (at most 2 * MaxOffloadRules + 1 are used)
)

// ruleBits is a set of rules, bit i for rule i: struct off_bits.
type ruleBits [offloadWords]uint64

func (b *ruleBits) set(i int) { b[i/64] |= 1 << (i % 64) }

func (b *ruleBits) and(o *ruleBits) {
	for i := range b {
		b[i] &= o[i]
	}
}

// lowest returns the lowest rule in b, or -1.
func (b *ruleBits) lowest() int {
	for i, w := range b {
		if w != 0 {
			return i*64 + bits.TrailingZeros64(w)
		}
	}
	return -1
}

// prefixBits is one stored prefix of an address trie and the rules whose
// prefix in the field holds it.
type prefixBits struct {
	prefix netip.Prefix
	rules  ruleBits
}

// portClasses cuts the port space of one field at the edges of the
// rules' ranges: every port of a class is in the same ranges.
type portClasses struct {
	class [65536]uint16 // port -> class
	rules []ruleBits    // class -> the rules whose range holds it
}

// offloadTables are the contents of one generation of the pre-filter's
// maps, as xdp_offload.h reads them.
type offloadTables struct {
	n            int
	inPort       [MaxOffloadPorts]ruleBits
	proto        [256]ruleBits
	src4, dst4   []prefixBits
	src6, dst6   []prefixBits
	sport, dport portClasses
}

// checkOffloadRule reports what is wrong with r, if anything.
func checkOffloadRule(r *OffloadRule) error {
	switch {
	case r.InPort < -1 || r.InPort > 65535:
		return fmt.Errorf("ingress port %d: expected -1 (any) or 0-65535", r.InPort)
	case r.Proto < -1 || r.Proto > 255:
		return fmt.Errorf("protocol %d: expected -1 (any) or 0-255", r.Proto)
	case r.SrcPort[0] > r.SrcPort[1] || r.DstPort[0] > r.DstPort[1]:
		return fmt.Errorf("port range %v or %v is empty", r.SrcPort, r.DstPort)
	}
	for _, p := range []netip.Prefix{r.Src, r.Dst} {
		if p.IsValid() && p != p.Masked() {
			return fmt.Errorf("prefix %v has bits set past its length", p)
		}
	}
	return nil
}

// compileOffload builds the tables of rules (bit i is rules[i]).
func compileOffload(rules []OffloadRule) (*offloadTables, error) {
	if len(rules) > MaxOffloadRules {
		return nil, fmt.Errorf("bpf: %d offload rules, the XDP tables hold %d", len(rules), MaxOffloadRules)
	}
	for i := range rules {
		if err := checkOffloadRule(&rules[i]); err != nil {
			return nil, fmt.Errorf("bpf: offload rule %d: %w", i, err)
		}
	}
	t := &offloadTables{n: len(rules)}
	for i, r := range rules {
		for p := range t.inPort {
			if r.InPort == -1 || r.InPort == p {
				t.inPort[p].set(i)
			}
		}
		for p := range t.proto {
			if r.Proto == -1 || r.Proto == p {
				t.proto[p].set(i)
			}
		}
	}
	src := func(r *OffloadRule) netip.Prefix { return r.Src }
	dst := func(r *OffloadRule) netip.Prefix { return r.Dst }
	t.src4 = prefixTable(rules, src, false)
	t.dst4 = prefixTable(rules, dst, false)
	t.src6 = prefixTable(rules, src, true)
	t.dst6 = prefixTable(rules, dst, true)
	t.sport = classTable(rules, func(r *OffloadRule) [2]uint16 { return r.SrcPort })
	t.dport = classTable(rules, func(r *OffloadRule) [2]uint16 { return r.DstPort })
	return t, nil
}

func is6(p netip.Prefix) bool { return p.Addr().Is6() }

// prefixTable is one address trie: the family's /0 and every prefix of
// that family the rules give in the field, each with the rules whose
// prefix holds it (rules without a prefix in the field hold all). The
// longest stored prefix holding an address then carries exactly the rules
// whose prefix holds the address: any such prefix is stored, holds the
// address, and so holds the longest one too.
func prefixTable(rules []OffloadRule, field func(*OffloadRule) netip.Prefix, v6 bool) []prefixBits {
	zero := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	if v6 {
		zero = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	stored := []netip.Prefix{zero}
	for i := range rules {
		if p := field(&rules[i]); p.IsValid() && is6(p) == v6 && !slices.Contains(stored, p) {
			stored = append(stored, p)
		}
	}
	out := make([]prefixBits, len(stored))
	for k, s := range stored {
		out[k].prefix = s
		for i := range rules {
			p := field(&rules[i])
			if !p.IsValid() || is6(p) == v6 && p.Bits() <= s.Bits() && p.Contains(s.Addr()) {
				out[k].rules.set(i)
			}
		}
	}
	return out
}

// classTable cuts the ports at every range's edges (its low end and one
// past its high end), so each class lies inside or outside every range.
func classTable(rules []OffloadRule, field func(*OffloadRule) [2]uint16) portClasses {
	var c portClasses
	starts := []int{0}
	for i := range rules {
		r := field(&rules[i])
		starts = append(starts, int(r[0]))
		if r[1] < 65535 {
			starts = append(starts, int(r[1])+1)
		}
	}
	slices.Sort(starts)
	starts = slices.Compact(starts)
	c.rules = make([]ruleBits, len(starts))
	for k, s := range starts {
		end := 65536
		if k+1 < len(starts) {
			end = starts[k+1]
		}
		for p := s; p < end; p++ {
			c.class[p] = uint16(k)
		}
		for i := range rules {
			if r := field(&rules[i]); int(r[0]) <= s && s <= int(r[1]) {
				c.rules[k].set(i)
			}
		}
	}
	return c
}

func portsOf(proto uint8) bool { return proto == 6 || proto == 17 || proto == 132 || proto == 136 }

// match is what the program does with the tables for one packet's key:
// the first matching rule, or -1. The tests hold it against the rules.
func (t *offloadTables) match(inPort int, proto uint8, src, dst netip.Addr, sport, dport uint16) int {
	if inPort >= MaxOffloadPorts {
		return -1
	}
	acc := t.inPort[inPort]
	acc.and(&t.proto[proto])
	s4, d4, s6, d6 := t.src4, t.dst4, t.src6, t.dst6
	s, d := s4, d4
	if src.Is6() {
		s, d = s6, d6
	}
	acc.and(longest(s, src))
	acc.and(longest(d, dst))
	if portsOf(proto) {
		acc.and(&t.sport.rules[t.sport.class[sport]])
		acc.and(&t.dport.rules[t.dport.class[dport]])
	}
	return acc.lowest()
}

// longest is the LPM trie's lookup: the rules of the longest stored
// prefix that holds a.
func longest(table []prefixBits, a netip.Addr) *ruleBits {
	best := -1
	for k := range table {
		if table[k].prefix.Contains(a) && (best < 0 || table[k].prefix.Bits() > table[best].prefix.Bits()) {
			best = k
		}
	}
	return &table[best].rules
}
