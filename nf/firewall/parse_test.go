package firewall

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseRuleAcceptsValidRules(t *testing.T) {
	with := func(a Action, f func(*Rule)) Rule { r := NewRule(a); f(&r); return r }
	tests := []struct {
		name string
		text string
		want Rule
	}{
		{"a bare action matches everything", "accept", NewRule(Accept)},
		{"drop is an action", "drop", NewRule(Drop)},
		{"reject is an action", "reject", NewRule(Reject)},
		{"all conditions together", "accept in 0 proto tcp src 198.18.0.0/15 dport 8080 state new", with(Accept, func(r *Rule) {
			r.InPort, r.Proto, r.Src, r.DstPort, r.States = 0, ProtoTCP, netip.MustParsePrefix("198.18.0.0/15"), PortRange{8080, 8080}, StateNew
		})},
		{"a state set", "accept state established,related", with(Accept, func(r *Rule) { r.States = StateEstablished | StateRelated })},
		{"a port range", "drop proto udp dport 1000-2000", with(Drop, func(r *Rule) { r.Proto, r.DstPort = ProtoUDP, PortRange{1000, 2000} })},
		{"an IPv6 destination", "reject proto tcp dst 2001:db8::/32", with(Reject, func(r *Rule) { r.Proto, r.Dst = ProtoTCP, netip.MustParsePrefix("2001:db8::/32") })},
		{"ICMP type and code", "accept proto icmp type 8 code 0", with(Accept, func(r *Rule) { r.Proto, r.ICMPType, r.ICMPCode = ProtoICMP, 8, 0 })},
		{"ICMPv6 type", "accept proto icmpv6 type 135", with(Accept, func(r *Rule) { r.Proto, r.ICMPType = ProtoICMPv6, 135 })},
		{"a protocol by number", "drop proto 47", with(Drop, func(r *Rule) { r.Proto = 47 })},
		{"an address without length is a host prefix", "drop src 10.1.2.3", with(Drop, func(r *Rule) { r.Src = netip.MustParsePrefix("10.1.2.3/32") })},
		{"an IPv6 host", "drop dst 2001:db8::1", with(Drop, func(r *Rule) { r.Dst = netip.MustParsePrefix("2001:db8::1/128") })},
		{"any is a wildcard everywhere", "accept in any proto any src any dst any state any", NewRule(Accept)},
		{"keywords in any order", "accept dport 22 proto tcp in 2", with(Accept, func(r *Rule) { r.InPort, r.Proto, r.DstPort = 2, ProtoTCP, PortRange{22, 22} })},
		{"extra spaces are ignored", "  drop   proto  sctp   sport 9 ", with(Drop, func(r *Rule) { r.Proto, r.SrcPort = ProtoSCTP, PortRange{9, 9} })},
		{"the full port range", "accept proto tcp dport 0-65535", with(Accept, func(r *Rule) { r.Proto = ProtoTCP })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRule(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
			again, err := ParseRule(got.String())
			if err != nil || again != got {
				t.Errorf("String %q does not round-trip: %v, %#v", got.String(), err, again)
			}
		})
	}
}

func TestParseRulesNamesTheRuleAndTheField(t *testing.T) {
	tests := []struct {
		name string
		rule string
		want string
	}{
		{"an empty rule", "", `rule 3 "": action: missing (expected accept, drop or reject)`},
		{"an unknown action", "allow proto tcp", `rule 3 "allow proto tcp": action: "allow" is not an action (expected accept, drop or reject)`},
		{"an unknown keyword", "drop port 80", `rule 3 "drop port 80": port: unknown keyword (expected in, proto, src, dst, sport, dport, type, code or state)`},
		{"a keyword without value", "drop proto", `rule 3 "drop proto": proto: missing value`},
		{"a keyword twice", "drop proto tcp proto udp", `rule 3 "drop proto tcp proto udp": proto: given twice (expected each keyword at most once)`},
		{"a port out of range", "drop proto udp dport 70000", `rule 3 "drop proto udp dport 70000": dport: 70000 is not a port (expected 0-65535 or a range lo-hi)`},
		{"a port that is not a number", "drop proto udp sport http", `rule 3 "drop proto udp sport http": sport: http is not a port (expected 0-65535 or a range lo-hi)`},
		{"a reversed range", "drop proto udp dport 2000-1000", `rule 3 "drop proto udp dport 2000-1000": dport: 2000-1000 is an empty range (expected lo <= hi)`},
		{"a port without a port protocol", "drop dport 80", `rule 3 "drop dport 80": dport: needs proto tcp, udp, sctp or udplite (got proto any)`},
		{"a port with ICMP", "drop proto icmp sport 80", `rule 3 "drop proto icmp sport 80": sport: needs proto tcp, udp, sctp or udplite (got proto icmp)`},
		{"an unknown protocol name", "drop proto tcpp", `rule 3 "drop proto tcpp": proto: tcpp is not a protocol (expected tcp, udp, icmp, icmpv6, sctp, udplite, any or 0-255)`},
		{"a protocol number out of range", "drop proto 256", `rule 3 "drop proto 256": proto: 256 is not a protocol (expected tcp, udp, icmp, icmpv6, sctp, udplite, any or 0-255)`},
		{"a bad address", "drop src 10.0.0.256", `rule 3 "drop src 10.0.0.256": src: 10.0.0.256 is not an address (expected an IPv4 or IPv6 address or prefix, such as 198.18.0.0/15 or 2001:db8::/32)`},
		{"a bad prefix length", "drop dst 10.0.0.0/33", `rule 3 "drop dst 10.0.0.0/33": dst: 10.0.0.0/33 is not a prefix (expected an IPv4 or IPv6 address or prefix, such as 198.18.0.0/15 or 2001:db8::/32)`},
		{"host bits set", "drop dst 10.1.0.0/8", `rule 3 "drop dst 10.1.0.0/8": dst: 10.1.0.0/8 has bits set past the prefix length (expected 10.0.0.0/8)`},
		{"an IPv4-mapped address", "drop dst ::ffff:10.0.0.1", `rule 3 "drop dst ::ffff:10.0.0.1": dst: ::ffff:10.0.0.1 is an IPv4-mapped IPv6 address (expected a plain IPv4 or IPv6 prefix)`},
		{"mixed families", "drop src 10.0.0.0/8 dst 2001:db8::/32", `rule 3 "drop src 10.0.0.0/8 dst 2001:db8::/32": dst: 2001:db8::/32 is not of the family of src 10.0.0.0/8 (a rule matches one family)`},
		{"icmp with IPv6", "drop proto icmp dst 2001:db8::/32", `rule 3 "drop proto icmp dst 2001:db8::/32": proto: icmp never matches IPv6 addresses (expected icmpv6)`},
		{"icmpv6 with IPv4", "drop proto icmpv6 src 10.0.0.0/8", `rule 3 "drop proto icmpv6 src 10.0.0.0/8": proto: icmpv6 never matches IPv4 addresses (expected icmp)`},
		{"an ICMP type without ICMP", "drop proto tcp type 8", `rule 3 "drop proto tcp type 8": type: needs proto icmp or icmpv6 (got proto tcp)`},
		{"an ICMP type out of range", "drop proto icmp type 300", `rule 3 "drop proto icmp type 300": type: 300 is not an ICMP type (expected 0-255)`},
		{"an ICMP code without type", "drop proto icmp code 1", `rule 3 "drop proto icmp code 1": code: needs a type (expected type N before code)`},
		{"an unknown state", "accept state established,open", `rule 3 "accept state established,open": state: "open" is not a state (expected new, established, related or invalid, separated by commas)`},
		{"an ingress port out of range", "accept in 65536", `rule 3 "accept in 65536": in: 65536 is not a port index (expected 0-65535 or any)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := []string{"accept", "drop proto tcp", "accept state established", tt.rule, "drop"}
			_, err := ParseRules(rules)
			if err == nil {
				t.Fatalf("no error, want %s", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %s\nwant %s", err, tt.want)
			}
			var re *RuleError
			var fe *FieldError
			if !errors.As(err, &re) || re.Index != 3 || re.Text != tt.rule || !errors.As(err, &fe) {
				t.Errorf("error %#v is not a *RuleError for rule 3 wrapping a *FieldError", err)
			}
			if _, err := ParseRule(tt.rule); err == nil || err.Error() != `rule `+tt.want[len(`rule 3 `):] {
				t.Errorf("ParseRule: got %v", err)
			}
		})
	}
}

func TestRuleStringRoundTripsRandomRules(t *testing.T) {
	for _, tight := range []bool{false, true} {
		g := newGen(99, tight)
		for range 5000 {
			r := g.rule()
			got, err := ParseRule(r.String())
			if err != nil {
				t.Fatalf("%q: %v", r.String(), err)
			}
			if got != r {
				t.Fatalf("%q parsed to %#v, want %#v", r.String(), got, r)
			}
		}
	}
}

func TestParseRulesReturnsRulesInOrder(t *testing.T) {
	rules, err := ParseRules([]string{"accept state established,related", "drop"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 || rules[0].States != StateEstablished|StateRelated || rules[1] != NewRule(Drop) {
		t.Errorf("got %v", rules)
	}
}
