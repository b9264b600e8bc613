package firewall

import (
	"errors"
	"net/netip"
	"testing"
)

// The property offload rests on: for every packet, "drop if an offloaded
// rule matches, else classify with the whole rule set" gives the verdict
// the whole rule set gives alone, and the drop is credited to the rule
// Linear says decided it (so rule_N_hits stay exact when the XDP counters
// are added to the stage's).
func TestOffloadNeverChangesAVerdictOrTheRuleCredited(t *testing.T) {
	iters, keysPer := 1200, 2500
	if testing.Short() {
		iters = 120
	}
	var cases, inXDP, inXDP6, edgeHits, offloaded, rulesTotal int
	reasons := map[OffloadReason]int{}
	for it := range iters {
		g := newGen(uint64(7000+it), it%2 == 0)
		n := 1 + g.intn(40)
		if it%8 == 7 {
			n = 100 + g.intn(400)
		}
		rules := g.rules(n)
		// The generator's rules are a third drops, many of them with a
		// state or an ICMP type: in every other set, turn half the rules
		// into candidates, so that offloaded rules meet the accepts,
		// rejects, state rules and other drops around them.
		if it%2 == 1 {
			for i := range rules {
				if g.pct(50) {
					rules[i].Action, rules[i].States = Drop, 0
					rules[i].ICMPType, rules[i].ICMPCode = Any, Any
				}
			}
		}
		edgePorts(g, rules)
		max := MaxOffloadRules
		if it%5 == 2 {
			max = g.intn(6) // the limit, and what it shadows
		}
		plan, err := planOffload(rules, max)
		if err != nil {
			t.Fatalf("set %d: %v", it, err)
		}
		checkPlanClaims(t, it, rules, plan)
		offloaded += len(plan.Entries)
		rulesTotal += len(rules)
		for _, d := range plan.Decisions {
			reasons[d.Reason]++
		}
		def := Action(it % 3)
		for j := range keysPer {
			var k Key
			if j%2 == 0 {
				k = g.key(rules) // on and next to the rules' edges
			} else {
				k = g.trafficKey(rules) // inside them
			}
			wantA, wantRule := Linear(rules, def, &k)
			gotA, gotRule := Drop, -1
			rule, ok := plan.Match(&k)
			if ok {
				gotRule = rule
				inXDP++
				if k.IPv6 {
					inXDP6++
				}
				if r := &rules[rule]; hasPorts(int(k.Proto)) && (k.DstPort == 0 || k.DstPort == 65535) && !r.DstPort.all() {
					edgeHits++
				}
			} else {
				gotA, gotRule = Linear(rules, def, &k)
			}
			cases++
			if gotA != wantA || gotRule != wantRule {
				msg := ""
				if ok {
					msg = "\noffloaded rule: " + rules[rule].String()
				}
				if wantRule >= 0 {
					msg += "\ndeciding rule:  " + rules[wantRule].String() + " (" + plan.Why(wantRule) + ")"
				}
				t.Fatalf("set %d, key %+v: offload first gives (%v, %d), the rule set alone (%v, %d)%s", it, k, gotA, gotRule, wantA, wantRule, msg)
			}
		}
	}
	t.Logf("%d packets against %d rule sets (%d rules, %d offloaded); %d dropped by an offloaded rule (%d IPv6, %d at port 0 or 65535); decisions %v",
		cases, iters, rulesTotal, offloaded, inXDP, inXDP6, edgeHits, reasons)
	// A planner that offloads nothing passes the property trivially: the
	// runs must offload, and the offload path must decide many packets.
	if offloaded < rulesTotal/20 || inXDP < cases/50 || inXDP6 == 0 || edgeHits == 0 {
		t.Errorf("too little offloaded to prove much: %d of %d rules, %d of %d packets (%d IPv6, %d at the port edges)", offloaded, rulesTotal, inXDP, cases, inXDP6, edgeHits)
	}
	for r := OffloadOK; r <= OffloadFull; r++ {
		if reasons[r] == 0 {
			t.Errorf("no rule got reason %q", r)
		}
	}
}

// edgePorts moves some port ranges to the edges of the port space.
func edgePorts(g *gen, rules []Rule) {
	for i := range rules {
		r := &rules[i]
		if !hasPorts(r.Proto) || !g.pct(25) {
			continue
		}
		p := uint16(g.intn(3))
		switch g.intn(4) {
		case 0:
			r.DstPort = PortRange{0, p}
		case 1:
			r.DstPort = PortRange{65535 - p, 65535}
		case 2:
			r.SrcPort = PortRange{0, 1023}
		default:
			r.DstPort = PortRange{65535, 65535}
		}
	}
}

// checkPlanClaims checks every decision against the rules: the reason
// fits the rule, each entry is its rule, and the overlaps the planner
// claims and denies are real. witness builds a packet two rules both
// match when there is one: an offloaded rule must have no witness with
// any earlier rule kept in Go, and a shadowed rule must have one with the
// rule named as shadowing it (no false "shadowed by" in xnf run --check).
func checkPlanClaims(t *testing.T, set int, rules []Rule, p *OffloadPlan) {
	t.Helper()
	if len(p.Decisions) != len(rules) {
		t.Fatalf("set %d: %d decisions for %d rules", set, len(p.Decisions), len(rules))
	}
	next := 0
	for i, d := range p.Decisions {
		r := &rules[i]
		if k := offloadKind(r); k != OffloadOK && d.Reason != k || k == OffloadOK && (d.Reason != OffloadOK && d.Reason != OffloadShadowed && d.Reason != OffloadFull) {
			t.Fatalf("set %d: rule %d %q: %v", set, i, r, d)
		}
		switch d.Reason {
		case OffloadOK:
			e := p.Entries[next]
			next++
			if e != (OffloadEntry{Rule: i, InPort: r.InPort, Src: r.Src, Dst: r.Dst, Proto: r.Proto, SrcPort: r.SrcPort, DstPort: r.DstPort}) {
				t.Fatalf("set %d: rule %d %q has entry %+v", set, i, r, e)
			}
			for j := range i {
				if p.Decisions[j].Reason == OffloadOK {
					continue
				}
				if k, ok := witness(&rules[j], r); ok && rules[j].Matches(&k) && r.Matches(&k) {
					t.Fatalf("set %d: rule %d %q is offloaded, but rule %d %q, kept in Go (%s), matches %+v first",
						set, i, r, j, &rules[j], p.Why(j), k)
				}
			}
		case OffloadShadowed:
			if d.By < 0 || d.By >= i || p.Decisions[d.By].Reason == OffloadOK {
				t.Fatalf("set %d: rule %d shadowed by rule %d (%v)", set, i, d.By, p.Decisions[max(d.By, 0)])
			}
			k, ok := witness(&rules[d.By], r)
			if !ok || !rules[d.By].Matches(&k) || !r.Matches(&k) {
				t.Fatalf("set %d: rule %d %q %s, but no packet matches both (tried %+v)", set, i, r, p.Why(i), k)
			}
		default:
			if d.By != -1 {
				t.Fatalf("set %d: rule %d: %v names rule %d", set, i, d.Reason, d.By)
			}
		}
	}
	if next != len(p.Entries) {
		t.Fatalf("set %d: %d entries for %d offloaded rules", set, len(p.Entries), next)
	}
}

// witness returns a key that both a and b match, built field by field
// from the narrower of their two conditions; ok is false when some field
// has no value both accept.
func witness(a, b *Rule) (k Key, ok bool) {
	pick := func(x, y, def int) (int, bool) {
		switch {
		case x == Any && y == Any:
			return def, true
		case x == Any:
			return y, true
		case y == Any || x == y:
			return x, true
		}
		return 0, false
	}
	in, ok1 := pick(a.InPort, b.InPort, 3)
	proto, ok2 := pick(a.Proto, b.Proto, ProtoTCP)
	typ, ok3 := pick(a.ICMPType, b.ICMPType, 0)
	code, ok4 := pick(a.ICMPCode, b.ICMPCode, 0)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return k, false
	}
	narrower := func(x, y netip.Prefix) (netip.Prefix, bool) {
		switch {
		case !x.IsValid():
			return y, true
		case !y.IsValid():
			return x, true
		case x.Bits() >= y.Bits():
			return x, y.Contains(x.Addr())
		}
		return y, x.Contains(y.Addr())
	}
	src, ok1 := narrower(a.Src, b.Src)
	dst, ok2 := narrower(a.Dst, b.Dst)
	if !ok1 || !ok2 {
		return k, false
	}
	v6 := src.IsValid() && src.Addr().Is6() || dst.IsValid() && dst.Addr().Is6()
	if src.IsValid() && dst.IsValid() && src.Addr().Is4() != dst.Addr().Is4() {
		return k, false
	}
	addr := func(p netip.Prefix) netip.Addr {
		switch {
		case p.IsValid():
			return p.Addr()
		case v6:
			return netip.IPv6Unspecified()
		}
		return netip.IPv4Unspecified()
	}
	k.SetAddrs(addr(src), addr(dst))
	k.InPort, k.Proto, k.ICMPType, k.ICMPCode = uint16(in), uint8(proto), uint8(typ), uint8(code)
	lo := func(x, y PortRange) (uint16, bool) { l := max(x.Lo, y.Lo); return l, l <= min(x.Hi, y.Hi) }
	sp, ok1 := lo(a.SrcPort, b.SrcPort)
	dp, ok2 := lo(a.DstPort, b.DstPort)
	if !ok1 || !ok2 {
		return k, false
	}
	k.SrcPort, k.DstPort = sp, dp
	s := a.States & b.States
	switch {
	case a.States == 0:
		s = b.States
	case b.States == 0:
		s = a.States
	case s == 0:
		return k, false
	}
	k.State = s & -s
	return k, true
}

func TestPlanOffloadExplainsEveryRule(t *testing.T) {
	tests := []struct {
		name  string
		rules []string
		want  string // the decision for the last rule
	}{
		{"a stateless drop on every field XDP matches is offloaded",
			[]string{"drop in 1 proto tcp src 198.18.0.0/15 dst 10.0.0.0/8 sport 1024-65535 dport 0-1023"}, "offloaded"},
		{"IPv6 prefixes are offloaded", []string{"drop proto udp src 2001:db8::/32 dst 2001:db8:1::/48"}, "offloaded"},
		{"a drop of everything is offloaded", []string{"drop"}, "offloaded"},
		{"an accept stays in Go", []string{"accept proto tcp dport 80"}, "accept stays in Go (XDP only drops)"},
		{"a reject needs an answer", []string{"reject proto tcp dport 113"}, "reject needs an answer"},
		{"a drop on conntrack state stays in Go", []string{"drop state invalid"}, "matches conntrack state"},
		{"a drop on an ICMP type stays in Go", []string{"drop proto icmp type 8"}, "matches ICMP type or code, which the XDP maps do not hold"},
		{"a drop on an ICMP code stays in Go", []string{"drop proto icmpv6 type 1 code 4"}, "matches ICMP type or code, which the XDP maps do not hold"},

		{"an earlier accept shadows", []string{"accept proto tcp dport 80", "drop src 10.0.0.0/8"},
			"shadowed by rule 0 (accept proto tcp dport 80)"},
		{"an earlier reject shadows", []string{"reject proto tcp dport 113", "drop src 10.0.0.0/8"},
			"shadowed by rule 0 (reject proto tcp dport 113)"},
		{"an earlier state rule shadows every rule of its packets", []string{"accept state established,related", "drop proto udp dport 1900"},
			"shadowed by rule 0 (accept state established,related)"},
		{"an earlier drop kept in Go shadows: it is credited with the packets", []string{"drop state invalid", "drop proto udp"},
			"shadowed by rule 0 (drop state invalid)"},
		{"an earlier ICMP drop shadows a drop of its packets", []string{"drop proto icmp type 8", "drop src 10.0.0.0/8"},
			"shadowed by rule 0 (drop proto icmp type 8)"},
		{"a drop that is itself shadowed shadows", []string{"accept in 0 proto udp", "drop proto udp", "drop in 1 proto udp dport 53"},
			"shadowed by rule 1 (drop proto udp)"},
		{"the first shadowing rule is named", []string{"accept src 10.0.0.0/8", "accept dst 10.0.0.0/8", "drop proto tcp"},
			"shadowed by rule 0 (accept src 10.0.0.0/8)"},
		{"a nested prefix overlaps", []string{"accept src 10.1.0.0/16", "drop src 10.0.0.0/8"}, "shadowed by rule 0 (accept src 10.1.0.0/16)"},
		{"ranges that share one port overlap", []string{"accept proto tcp dport 0-1023", "drop proto tcp dport 1023-65535"},
			"shadowed by rule 0 (accept proto tcp dport 0-1023)"},
		{"ranges that share port 65535 overlap", []string{"accept proto udp sport 65535", "drop proto udp dport 53"},
			"shadowed by rule 0 (accept proto udp sport 65535)"},
		{"a rule without prefixes matches both families", []string{"accept proto tcp", "drop proto tcp src 2001:db8::/32"},
			"shadowed by rule 0 (accept proto tcp)"},
		{"an ICMP accept shadows a drop without a protocol", []string{"accept proto icmp type 8", "drop src 10.0.0.0/8"},
			"shadowed by rule 0 (accept proto icmp type 8)"},

		{"another ingress port does not shadow", []string{"accept in 0", "drop in 1"}, "offloaded"},
		{"another protocol does not shadow", []string{"accept proto tcp", "drop proto udp"}, "offloaded"},
		{"another family does not shadow", []string{"accept src 10.0.0.0/8", "drop src 2001:db8::/32"}, "offloaded"},
		{"another family in the other field does not shadow", []string{"accept dst 2001:db8::/32", "drop src 10.0.0.0/8"}, "offloaded"},
		{"a disjoint prefix does not shadow", []string{"accept src 10.0.0.0/9", "drop src 10.128.0.0/9"}, "offloaded"},
		{"a range ending below does not shadow", []string{"accept proto tcp dport 0-1023", "drop proto tcp dport 1024-65535"}, "offloaded"},
		{"an ICMP accept does not shadow a port rule", []string{"accept proto icmp type 8", "drop proto tcp dport 22"}, "offloaded"},
		{"a drop after an offloaded drop is offloaded", []string{"drop src 10.0.0.0/8", "drop proto tcp src 10.1.0.0/16"}, "offloaded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, err := ParseRules(tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			p, err := PlanOffload(rules)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Why(len(rules) - 1); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestPlanOffloadStopsAtTheMapsWidth(t *testing.T) {
	// Rule 2 overlaps rule 1, which is full: it is full as well (with wider
	// maps both would go), not shadowed. Rule 4 is shadowed by an accept,
	// whatever the width.
	rules, _ := ParseRules([]string{"drop proto udp", "drop proto tcp", "drop proto tcp dport 22", "accept proto sctp", "drop proto sctp dport 9"})
	p, err := planOffload(rules, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"offloaded", "beyond the 256 rules the XDP maps hold", "beyond the 256 rules the XDP maps hold",
		"accept stays in Go (XDP only drops)", "shadowed by rule 3 (accept proto sctp)"}
	for i, w := range want {
		if got := p.Why(i); got != w {
			t.Errorf("rule %d: got %q, want %q", i, got, w)
		}
	}
	many := make([]Rule, MaxOffloadRules+1)
	for i := range many {
		many[i] = NewRule(Drop)
		many[i].Proto, many[i].DstPort = ProtoUDP, PortRange{uint16(i), uint16(i)}
	}
	if p, _ := PlanOffload(many); len(p.Entries) != MaxOffloadRules || p.Decisions[MaxOffloadRules].Reason != OffloadFull {
		t.Errorf("%d rules: %d entries, last %v", len(many), len(p.Entries), p.Decisions[MaxOffloadRules])
	}
}

func TestOffloadEntriesCarryWhatXDPNeeds(t *testing.T) {
	rules, _ := ParseRules([]string{
		"accept proto tcp src 10.0.0.0/8 dport 22",
		"drop in 2 proto udp src 192.0.2.0/24 dst 198.51.100.7 sport 0-1023 dport 65535",
		"drop proto tcp dst 2001:db8::/32",
	})
	p, err := PlanOffload(rules)
	if err != nil {
		t.Fatal(err)
	}
	want := []OffloadEntry{
		{Rule: 1, InPort: 2, Src: netip.MustParsePrefix("192.0.2.0/24"), Dst: netip.MustParsePrefix("198.51.100.7/32"),
			Proto: ProtoUDP, SrcPort: PortRange{0, 1023}, DstPort: PortRange{65535, 65535}},
		{Rule: 2, InPort: Any, Dst: netip.MustParsePrefix("2001:db8::/32"), Proto: ProtoTCP, SrcPort: AllPorts, DstPort: AllPorts},
	}
	if len(p.Entries) != len(want) || p.Entries[0] != want[0] || p.Entries[1] != want[1] {
		t.Fatalf("entries %+v\nwant    %+v", p.Entries, want)
	}
	for _, tc := range []struct {
		key  Key
		rule int
		ok   bool
	}{
		{withIn(key4("192.0.2.9", "198.51.100.7", ProtoUDP, 53, 65535), 2), 1, true},
		{withIn(key4("192.0.2.9", "198.51.100.7", ProtoUDP, 1024, 65535), 2), -1, false}, // sport past the range
		{withIn(key4("192.0.2.9", "198.51.100.7", ProtoUDP, 53, 65535), 1), -1, false},   // another ingress port
		{key4("2001:db8::1", "2001:db8:ffff::1", ProtoTCP, 40000, 22), 2, true},
		{key4("10.0.0.1", "10.0.0.2", ProtoTCP, 40000, 22), -1, false},
	} {
		if rule, ok := p.Match(&tc.key); rule != tc.rule || ok != tc.ok {
			t.Errorf("key %+v: Match = (%d, %v), want (%d, %v)", tc.key, rule, ok, tc.rule, tc.ok)
		}
	}
}

func withIn(k Key, in uint16) Key { k.InPort = in; return k }

func TestPlanOffloadRefusesAnInvalidRule(t *testing.T) {
	bad := NewRule(Drop)
	bad.DstPort = PortRange{53, 53} // no protocol
	_, err := PlanOffload([]Rule{NewRule(Accept), bad})
	var re *RuleError
	if !errors.As(err, &re) || re.Index != 1 {
		t.Errorf("got %v, want a *RuleError for rule 1", err)
	}
}

// Planning runs at start and on every reload; its cost grows with the
// rules times the rules kept in Go.
func BenchmarkPlanOffload(b *testing.B) {
	g := newGen(3, false)
	random := g.rules(10000)
	blocklist := make([]Rule, 0, 10000)
	for _, s := range []string{"accept state established,related", "accept in 0 proto tcp dport 443 state new"} {
		r, _ := ParseRule(s)
		blocklist = append(blocklist, r)
	}
	for len(blocklist) < cap(blocklist) {
		r := NewRule(Drop)
		r.Src = g.prefix(g.pct(30))
		blocklist = append(blocklist, r)
	}
	// Stateless drops first, as a DDoS blocklist is written.
	blocklist = append(blocklist[2:], blocklist[:2]...)
	for _, bc := range []struct {
		name  string
		rules []Rule
	}{{"random=10000", random}, {"blocklist=10000", blocklist}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := PlanOffload(bc.rules); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
