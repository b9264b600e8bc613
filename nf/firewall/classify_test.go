package firewall

import (
	"fmt"
	"net/netip"
	"testing"
)

// checkAgainstLinear classifies keys with rs and with the linear
// reference and fails on the first difference.
func checkAgainstLinear(t *testing.T, rules []Rule, def Action, rs *Ruleset, keys []Key) (matched int) {
	t.Helper()
	for i := range keys {
		k := &keys[i]
		wa, wi := Linear(rules, def, k)
		if wi >= 0 {
			matched++
		}
		ga, gi := rs.Classify(k)
		if wa != ga || wi != gi {
			msg := fmt.Sprintf("key %+v: got (%v, %d), want (%v, %d)", *k, ga, gi, wa, wi)
			if wi >= 0 {
				msg += fmt.Sprintf("\nwant rule: %v", rules[wi])
			}
			if gi >= 0 {
				msg += fmt.Sprintf("\ngot rule:  %v", rules[gi])
			}
			t.Fatal(msg)
		}
	}
	return matched
}

func TestClassifyEqualsLinearOnRandomRuleSets(t *testing.T) {
	iters, keys := 400, 3000
	if testing.Short() {
		iters = 50
	}
	matched, total := 0, 0
	for it := range iters {
		tight := it%2 == 0
		g := newGen(uint64(it), tight)
		n := g.intn(60)
		switch {
		case it%10 == 9:
			n = 500 + g.intn(1500)
		case it%5 == 4:
			n = 100 + g.intn(300)
		}
		rules := g.rules(n)
		if it%7 == 3 && n > 0 { // a catch-all somewhere in the middle
			rules[g.intn(n)] = NewRule(Drop)
		}
		def := Action(it % 3)
		rs, err := Compile(rules, def)
		if err != nil {
			t.Fatalf("iteration %d: %v", it, err)
		}
		ks := make([]Key, keys)
		for i := range ks {
			ks[i] = g.key(rules)
		}
		matched += checkAgainstLinear(t, rules, def, rs, ks)
		total += keys
	}
	// The keys must exercise both outcomes, or the comparison proves little.
	if matched < total/5 || total-matched < total/5 {
		t.Errorf("%d of %d keys matched a rule; want between 20%% and 80%%", matched, total)
	}
}

// A rule wider than the span limit in every field lands in the residual list;
// answers must not change.
func TestClassifyEqualsLinearWithWideRules(t *testing.T) {
	g := newGen(42, false)
	var rules []Rule
	for i := range 3000 {
		r := g.rule()
		if i%3 == 0 { // wide in every field it names
			r = NewRule(Action(i % 3))
			r.Proto = ProtoTCP
			r.Src = netip.MustParsePrefix("0.0.0.0/1")
			if i%2 == 0 {
				r.Src = netip.MustParsePrefix("2000::/3")
			}
			r.DstPort = PortRange{1024, 65535}
		}
		rules = append(rules, r)
	}
	rs, err := compile(rules, Drop, 8)
	if err != nil {
		t.Fatal(err)
	}
	if rs.Size().Residual == 0 {
		t.Fatalf("no rule went to the residual list: %+v", rs.Size())
	}
	ks := make([]Key, 20000)
	for i := range ks {
		ks[i] = g.key(rules)
	}
	checkAgainstLinear(t, rules, Drop, rs, ks)
}

func TestClassifyDoesNotAllocate(t *testing.T) {
	g := newGen(1, false)
	rules := g.rules(2000)
	rs, err := Compile(rules, Drop)
	if err != nil {
		t.Fatal(err)
	}
	fw, err := New(2, rules, Drop)
	if err != nil {
		t.Fatal(err)
	}
	ks := make([]Key, 256)
	for i := range ks {
		ks[i] = g.key(rules)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() { rs.Classify(&ks[i%len(ks)]); i++ }); n != 0 {
		t.Errorf("Ruleset.Classify: %v allocs per run, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { fw.Classify(1, &ks[i%len(ks)]); i++ }); n != 0 {
		t.Errorf("Firewall.Classify: %v allocs per run, want 0", n)
	}
	// A key on the caller's stack must stay there.
	if n := testing.AllocsPerRun(1000, func() { k := ks[i%len(ks)]; fw.Classify(0, &k); i++ }); n != 0 {
		t.Errorf("Firewall.Classify of a local key: %v allocs per run, want 0", n)
	}
}

func key4(src, dst string, proto uint8, sport, dport uint16) Key {
	var k Key
	k.SetAddrs(netip.MustParseAddr(src), netip.MustParseAddr(dst))
	k.Proto, k.SrcPort, k.DstPort = proto, sport, dport
	return k
}

// Each row is one rule, one packet and whether the rule must match it.
// Every row runs through the reference (Rule.Matches) and the compiled
// classifier, alone and behind 200 unrelated rules.
func TestMatchFields(t *testing.T) {
	tcp := key4("198.18.0.1", "203.0.113.5", ProtoTCP, 40000, 8080)
	v6 := tcp
	v6.SetAddrs(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:1::5"))
	with := func(k Key, f func(*Key)) Key { f(&k); return k }
	icmp := with(tcp, func(k *Key) { k.Proto, k.ICMPType, k.ICMPCode, k.SrcPort, k.DstPort = ProtoICMP, 8, 0, 0, 0 })
	icmp6 := with(v6, func(k *Key) { k.Proto, k.ICMPType, k.ICMPCode = ProtoICMPv6, 128, 0 })

	tests := []struct {
		name  string
		rule  string
		key   Key
		match bool
	}{
		{"a rule without conditions matches everything", "accept", tcp, true},
		{"a rule without conditions matches IPv6", "accept", v6, true},
		{"ingress port matches its own port", "accept in 3", with(tcp, func(k *Key) { k.InPort = 3 }), true},
		{"ingress port rejects another port", "accept in 3", with(tcp, func(k *Key) { k.InPort = 2 }), false},
		{"ingress port rejects a port beyond any named", "accept in 3", with(tcp, func(k *Key) { k.InPort = 60000 }), false},
		{"in any matches every port", "accept in any", with(tcp, func(k *Key) { k.InPort = 9 }), true},
		{"source prefix matches its first address", "accept src 198.18.0.0/15", with(tcp, func(k *Key) { k.SetAddrs(netip.MustParseAddr("198.18.0.0"), netip.MustParseAddr("1.1.1.1")) }), true},
		{"source prefix matches its last address", "accept src 198.18.0.0/15", with(tcp, func(k *Key) { k.SetAddrs(netip.MustParseAddr("198.19.255.255"), netip.MustParseAddr("1.1.1.1")) }), true},
		{"source prefix rejects the address after it", "accept src 198.18.0.0/15", with(tcp, func(k *Key) { k.SetAddrs(netip.MustParseAddr("198.20.0.0"), netip.MustParseAddr("1.1.1.1")) }), false},
		{"source prefix rejects the address before it", "accept src 198.18.0.0/15", with(tcp, func(k *Key) { k.SetAddrs(netip.MustParseAddr("198.17.255.255"), netip.MustParseAddr("1.1.1.1")) }), false},
		{"source prefix does not look at the destination", "accept src 203.0.113.0/24", tcp, false},
		{"destination prefix matches", "accept dst 203.0.113.0/24", tcp, true},
		{"destination host address matches only itself", "accept dst 203.0.113.6", tcp, false},
		{"an IPv4 prefix never matches IPv6", "accept dst 0.0.0.0/0", v6, false},
		{"an IPv4 /0 matches any IPv4", "accept dst 0.0.0.0/0", tcp, true},
		{"an IPv6 prefix never matches IPv4", "accept src ::/0", tcp, false},
		{"an IPv6 prefix matches inside", "accept src 2001:db8::/32", v6, true},
		{"an IPv6 prefix rejects outside", "accept src 2001:db9::/32", v6, false},
		{"an IPv6 /128 matches its address", "accept dst 2001:db8:1::5/128", v6, true},
		{"an IPv6 /127 rejects the address after it", "accept dst 2001:db8:1::2/127", v6, false},
		{"an IPv4 prefix ignores the bytes before the address", "accept src 198.18.0.1/32", with(tcp, func(k *Key) { k.Src[0] = 0xff }), true},
		{"protocol matches its own number", "accept proto tcp", tcp, true},
		{"protocol rejects another", "accept proto udp", tcp, false},
		{"protocol by number", "accept proto 6", tcp, true},
		{"proto any matches every protocol", "accept proto any", icmp, true},
		{"destination port matches inside its range", "accept proto tcp dport 8000-8080", tcp, true},
		{"destination port rejects just after its range", "accept proto tcp dport 8000-8079", tcp, false},
		{"destination port single value", "accept proto tcp dport 8080", tcp, true},
		{"source port range", "accept proto tcp sport 32768-60999", tcp, true},
		{"source port rejects outside", "accept proto tcp sport 1-1023", tcp, false},
		{"port 0 only matches port 0", "accept proto tcp sport 0", with(tcp, func(k *Key) { k.SrcPort = 0 }), true},
		{"ports of another protocol do not match", "accept proto udp dport 8080", tcp, false},
		{"ICMP type matches", "accept proto icmp type 8", icmp, true},
		{"ICMP type rejects another type", "accept proto icmp type 0", icmp, false},
		{"ICMP type and code match", "accept proto icmp type 8 code 0", icmp, true},
		{"ICMP code rejects another code", "accept proto icmp type 8 code 1", icmp, false},
		{"ICMP type is not looked at for TCP", "accept proto icmp type 8", with(tcp, func(k *Key) { k.ICMPType = 8 }), false},
		{"ICMPv6 type matches", "accept proto icmpv6 type 128", icmp6, true},
		{"icmp does not match ICMPv6", "accept proto icmp", icmp6, false},
		{"state new matches a new packet", "accept state new", with(tcp, func(k *Key) { k.State = StateNew }), true},
		{"state established matches", "accept state established", with(tcp, func(k *Key) { k.State = StateEstablished }), true},
		{"state related matches", "accept state established,related", with(tcp, func(k *Key) { k.State = StateRelated }), true},
		{"state invalid matches", "accept state invalid", with(tcp, func(k *Key) { k.State = StateInvalid }), true},
		{"a state set rejects a state outside it", "accept state established,related", with(tcp, func(k *Key) { k.State = StateNew }), false},
		{"a state condition rejects an untracked packet", "accept state new,established,related,invalid", tcp, false},
		{"no state condition matches an untracked packet", "accept proto tcp", tcp, true},
		{"every condition must hold", "accept in 0 proto tcp src 198.18.0.0/15 dport 8080 state new", with(tcp, func(k *Key) { k.State = StateNew }), true},
		{"one failing condition is enough to miss", "accept in 0 proto tcp src 198.18.0.0/15 dport 8080 state new", with(tcp, func(k *Key) { k.State = StateEstablished }), false},
	}
	noise := newGen(7, false).rules(200)
	for i := range noise { // noise that cannot match the test packets
		noise[i].InPort = 100 + i%50
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRule(tt.rule)
			if err != nil {
				t.Fatal(err)
			}
			r.Action = Reject
			if got := r.Matches(&tt.key); got != tt.match {
				t.Errorf("Rule.Matches = %v, want %v", got, tt.match)
			}
			want := -1
			if tt.match {
				want = 0
			}
			rs, _ := Compile([]Rule{r}, Accept)
			if _, got := rs.Classify(&tt.key); got != want {
				t.Errorf("compiled alone: rule %d, want %d", got, want)
			}
			rules := append(append([]Rule{}, noise...), r)
			if tt.match {
				want = len(noise)
			}
			rs, _ = Compile(rules, Accept)
			if a, got := rs.Classify(&tt.key); got != want || (tt.match && a != Reject) {
				t.Errorf("compiled behind noise: (%v, %d), want rule %d", a, got, want)
			}
		})
	}
}

func TestFirstMatchWinsAndDefaultPolicyApplies(t *testing.T) {
	rules, err := ParseRules([]string{
		"accept state established,related",
		"reject proto tcp dport 23",
		"drop src 198.18.0.0/15",
		"accept proto tcp dport 22",
	})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Compile(rules, Drop)
	if err != nil {
		t.Fatal(err)
	}
	k := key4("198.18.0.1", "10.0.0.1", ProtoTCP, 5555, 22)
	tests := []struct {
		name   string
		key    Key
		action Action
		index  int
	}{
		{"an earlier matching rule wins over a later one", k, Drop, 2},
		{"an established packet takes the first rule", func() Key { k := k; k.State = StateEstablished; return k }(), Accept, 0},
		{"a packet no rule matches gets the default policy", key4("10.1.1.1", "10.0.0.1", ProtoUDP, 1, 2), Drop, -1},
		{"reject is returned as is", key4("10.1.1.1", "10.0.0.1", ProtoTCP, 1, 23), Reject, 1},
		{"a later rule matches when earlier ones do not", key4("10.1.1.1", "10.0.0.1", ProtoTCP, 1, 22), Accept, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, i := rs.Classify(&tt.key)
			if a != tt.action || i != tt.index {
				t.Errorf("got (%v, %d), want (%v, %d)", a, i, tt.action, tt.index)
			}
		})
	}
}

func TestCompileRejectsInvalidRules(t *testing.T) {
	r := NewRule(Accept)
	r.DstPort = PortRange{80, 80} // without a protocol
	_, err := Compile([]Rule{NewRule(Drop), r}, Drop)
	want := `rule 1 "accept dport 80": dport: needs proto tcp, udp, sctp or udplite (got proto any)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	r = NewRule(Accept)
	r.Src = netip.MustParsePrefix("10.1.2.3/8")
	_, err = Compile([]Rule{r}, Drop)
	want = `rule 0 "accept src 10.1.2.3/8": src: 10.1.2.3/8 has bits set past the prefix length (expected 10.0.0.0/8)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestClassifyEqualsLinearOnTrafficKeys(t *testing.T) {
	rules, keys := benchSet(3000)
	rs, err := Compile(rules, Drop)
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstLinear(t, rules, Drop, rs, keys)
}

// IPv6 prefixes inside one /64 exercise the trie paths that work on the
// low 64 bits only: with both values of bit 63 (offset 64) and with bit
// 63 set everywhere (offset past 64, low words of 1<<63 and more).
func TestClassifyEqualsLinearWithinOneIPv6Slash64(t *testing.T) {
	for _, mixed := range []bool{true, false} {
		g := newGen(11, true)
		base := netip.MustParseAddr("2001:db8:1:2:8000::").As16()
		var rules []Rule
		for i := range 400 {
			a := base
			for j := 9; j < 16; j++ {
				a[j] = byte(g.intn(4))
			}
			if mixed && i%2 == 0 {
				a[8] = 0
			}
			r := NewRule(Action(i % 3))
			r.Dst = netip.PrefixFrom(netip.AddrFrom16(a), 72+g.intn(57)).Masked()
			rules = append(rules, r)
		}
		rs, err := Compile(rules, Drop)
		if err != nil {
			t.Fatal(err)
		}
		if x := &rs.addr[3]; x.off < 64 || !mixed && x.off == 64 {
			t.Fatalf("mixed %v: index offset %d: the test no longer covers the 64-bit paths", mixed, x.off)
		}
		ks := make([]Key, 20000)
		for i := range ks {
			ks[i] = g.key(rules)
		}
		checkAgainstLinear(t, rules, Drop, rs, ks)
	}
}

// Rules clustered in one IPv4 /8 give the 32-bit index a shared prefix
// (keys outside it take the first or last class), and rules at the very
// ends of the address and port spaces reach the sentinels after the last
// interval start. Keys sit on and next to every edge, including
// 0.0.0.0, 255.255.255.255 and ports 0 and 65535.
func TestClassifyEqualsLinearAtTheEndsOfTheSpace(t *testing.T) {
	for _, ends := range []bool{false, true} {
		g := newGen(5, true)
		var rules []Rule
		for i := range 300 {
			r := NewRule(Action(i % 3))
			a := [4]byte{10, byte(g.intn(3)), byte(g.intn(4)), byte(g.intn(256))}
			r.Dst = netip.PrefixFrom(netip.AddrFrom4(a), 16+g.intn(17)).Masked()
			if g.pct(30) {
				r.Src = netip.PrefixFrom(netip.AddrFrom4(a), 20+g.intn(13)).Masked()
			}
			if g.pct(50) {
				r.Proto = ProtoUDP
				lo := uint16(1000 + g.intn(50))
				r.DstPort = PortRange{lo, lo + uint16(g.intn(30))}
				if g.pct(30) {
					r.SrcPort = PortRange{lo, lo + uint16(g.intn(30))}
				}
			}
			rules = append(rules, r)
		}
		if ends {
			for _, s := range []string{"255.255.255.255/32", "255.255.255.254/31", "0.0.0.0/32", "0.0.0.0/31", "128.0.0.0/1"} {
				r := NewRule(Accept)
				r.Dst = netip.MustParsePrefix(s)
				r.Proto = ProtoUDP
				r.DstPort = PortRange{65535, 65535}
				rules = append(rules, r)
				r.Src, r.Dst = r.Dst, netip.Prefix{}
				r.DstPort, r.SrcPort = PortRange{0, 1}, PortRange{65534, 65535}
				rules = append(rules, r)
			}
		}
		rs, err := Compile(rules, Drop)
		if err != nil {
			t.Fatal(err)
		}
		if x := &rs.addr[1]; !ends && x.off32 < 8 {
			t.Fatalf("index offset %d: the rules no longer share their first 8 bits", x.off32)
		}
		addrs := []netip.Addr{netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("0.0.0.1"), netip.MustParseAddr("9.255.255.255"),
			netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("10.255.255.255"), netip.MustParseAddr("11.0.0.0"),
			netip.MustParseAddr("127.255.255.255"), netip.MustParseAddr("128.0.0.0"),
			netip.MustParseAddr("255.255.255.254"), netip.MustParseAddr("255.255.255.255")}
		ports := []uint16{0, 1, 999, 1000, 65534, 65535}
		ks := make([]Key, 0, 30000)
		for i := range 20000 {
			k := g.key(rules)
			if i%2 == 0 {
				k.SetAddrs(addrs[g.intn(len(addrs))], addrs[g.intn(len(addrs))])
				k.SrcPort, k.DstPort = ports[g.intn(len(ports))], ports[g.intn(len(ports))]
				k.Proto = ProtoUDP
			}
			ks = append(ks, k)
		}
		checkAgainstLinear(t, rules, Drop, rs, ks)
	}
}
