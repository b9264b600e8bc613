package firewall

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// FieldError is a mistake in one field of a rule.
type FieldError struct {
	Field string // keyword of the rule grammar: "action", "dport", ...
	Msg   string // what is wrong and what was expected
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// RuleError names the rule a FieldError belongs to.
type RuleError struct {
	Index int    // position in the list given to ParseRules or Compile; -1 from ParseRule
	Text  string // the rule as written (ParseRule, ParseRules) or as Rule.String renders it
	Err   error  // a *FieldError
}

func (e *RuleError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("rule %q: %v", e.Text, e.Err)
	}
	return fmt.Sprintf("rule %d %q: %v", e.Index, e.Text, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

// ParseRule parses one rule written in the grammar of the package
// documentation. Errors are *RuleError wrapping a *FieldError.
func ParseRule(s string) (Rule, error) {
	r, err := parseRule(s)
	if err != nil {
		return Rule{}, &RuleError{Index: -1, Text: s, Err: err}
	}
	return r, nil
}

// ParseRules parses rules[i] for every i. The error names the first rule
// that fails by its index and text.
func ParseRules(rules []string) ([]Rule, error) {
	out := make([]Rule, len(rules))
	for i, s := range rules {
		r, err := parseRule(s)
		if err != nil {
			return nil, &RuleError{Index: i, Text: s, Err: err}
		}
		out[i] = r
	}
	return out, nil
}

const (
	expectPort  = "expected 0-65535 or a range lo-hi"
	expectProto = "expected tcp, udp, icmp, icmpv6, sctp, udplite, any or 0-255"
	expectState = "expected new, established, related or invalid, separated by commas"
	keywords    = "in, proto, src, dst, sport, dport, type, code or state"
)

func parseRule(s string) (Rule, error) {
	fe := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	words := strings.Fields(s)
	if len(words) == 0 {
		return Rule{}, fe("action", "missing (expected accept, drop or reject)")
	}
	r := NewRule(Accept)
	switch words[0] {
	case "accept":
		r.Action = Accept
	case "drop":
		r.Action = Drop
	case "reject":
		r.Action = Reject
	default:
		return Rule{}, fe("action", "%q is not an action (expected accept, drop or reject)", words[0])
	}
	seen := map[string]bool{}
	for i := 1; i < len(words); i += 2 {
		kw := words[i]
		switch kw {
		case "in", "proto", "src", "dst", "sport", "dport", "type", "code", "state":
		default:
			return Rule{}, fe(kw, "unknown keyword (expected %s)", keywords)
		}
		if seen[kw] {
			return Rule{}, fe(kw, "given twice (expected each keyword at most once)")
		}
		seen[kw] = true
		if i+1 >= len(words) {
			return Rule{}, fe(kw, "missing value")
		}
		v := words[i+1]
		switch kw {
		case "in":
			if v == "any" {
				break
			}
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return Rule{}, fe(kw, "%s is not a port index (expected 0-65535 or any)", v)
			}
			r.InPort = int(n)
		case "proto":
			if v == "any" {
				break
			}
			if p, ok := protoNames[v]; ok {
				r.Proto = p
				break
			}
			n, err := strconv.ParseUint(v, 10, 8)
			if err != nil {
				return Rule{}, fe(kw, "%s is not a protocol (%s)", v, expectProto)
			}
			r.Proto = int(n)
		case "src", "dst":
			if v == "any" {
				break
			}
			p, err := parsePrefix(v)
			if err != nil {
				return Rule{}, fe(kw, "%s", err)
			}
			if kw == "src" {
				r.Src = p
			} else {
				r.Dst = p
			}
		case "sport", "dport":
			if v == "any" {
				break
			}
			pr, err := parsePorts(v)
			if err != nil {
				return Rule{}, fe(kw, "%s", err)
			}
			if kw == "sport" {
				r.SrcPort = pr
			} else {
				r.DstPort = pr
			}
		case "type", "code":
			if v == "any" {
				break
			}
			n, err := strconv.ParseUint(v, 10, 8)
			if err != nil {
				return Rule{}, fe(kw, "%s is not an ICMP %s (expected 0-255)", v, kw)
			}
			if kw == "type" {
				r.ICMPType = int(n)
			} else {
				r.ICMPCode = int(n)
			}
		case "state":
			if v == "any" {
				break
			}
			for name := range strings.SplitSeq(v, ",") {
				st := State(0)
				for _, n := range stateNames {
					if n.name == name {
						st = n.s
					}
				}
				if st == 0 {
					return Rule{}, fe(kw, "%q is not a state (%s)", name, expectState)
				}
				r.States |= st
			}
		}
	}
	if err := r.Validate(); err != nil {
		return Rule{}, err
	}
	return r, nil
}

func parsePrefix(v string) (netip.Prefix, error) {
	expect := "expected an IPv4 or IPv6 address or prefix, such as 198.18.0.0/15 or 2001:db8::/32"
	var p netip.Prefix
	if strings.Contains(v, "/") {
		var err error
		p, err = netip.ParsePrefix(v)
		if err != nil {
			return p, fmt.Errorf("%s is not a prefix (%s)", v, expect)
		}
	} else {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return p, fmt.Errorf("%s is not an address (%s)", v, expect)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%s has a zone (%s)", v, expect)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%s is an IPv4-mapped IPv6 address (expected a plain IPv4 or IPv6 prefix)", v)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%s has bits set past the prefix length (expected %s)", v, p.Masked())
	}
	return p, nil
}

func parsePorts(v string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(v, "-")
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.ParseUint(hi, 10, 16)
	}
	if err1 != nil || err2 != nil {
		return PortRange{}, fmt.Errorf("%s is not a port (%s)", v, expectPort)
	}
	if a > b {
		return PortRange{}, fmt.Errorf("%s is an empty range (expected lo <= hi)", v)
	}
	return PortRange{uint16(a), uint16(b)}, nil
}
