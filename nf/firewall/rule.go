package firewall

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Action is what a rule (or the default policy) decides for a packet.
type Action uint8

const (
	// Accept lets the packet continue down the chain.
	Accept Action = iota
	// Drop discards the packet silently.
	Drop
	// Reject discards the packet; the stage answers with a TCP RST or an
	// ICMP unreachable. The classifier only reports the action.
	Reject
)

func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	case Reject:
		return "reject"
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// State is a connection-tracking state. The constants are single bits so
// that one type serves both a packet's state (exactly one bit, or 0 when
// the packet was not tracked) and a rule's set of states (any union).
// The conntrack package maps its own states onto these.
type State uint8

const (
	StateNew State = 1 << iota
	StateEstablished
	StateRelated
	StateInvalid

	// stateAll is every state a rule can name.
	stateAll = StateNew | StateEstablished | StateRelated | StateInvalid
)

var stateNames = [...]struct {
	s    State
	name string
}{
	{StateNew, "new"},
	{StateEstablished, "established"},
	{StateRelated, "related"},
	{StateInvalid, "invalid"},
}

// String lists the states of a set separated by commas, in the order
// new, established, related, invalid; "none" for the empty set.
func (s State) String() string {
	if s == 0 {
		return "none"
	}
	var b strings.Builder
	for _, n := range stateNames {
		if s&n.s != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n.name)
		}
	}
	if rest := s &^ stateAll; rest != 0 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "state(%#x)", uint8(rest))
	}
	return b.String()
}

// Any is the value of Rule.InPort, Rule.Proto, Rule.ICMPType and
// Rule.ICMPCode that matches every packet.
const Any = -1

// IP protocol numbers the grammar knows by name.
const (
	ProtoICMP    = 1
	ProtoTCP     = 6
	ProtoUDP     = 17
	ProtoICMPv6  = 58
	ProtoSCTP    = 132
	ProtoUDPLite = 136
)

var protoNames = map[string]int{
	"icmp": ProtoICMP, "tcp": ProtoTCP, "udp": ProtoUDP, "icmpv6": ProtoICMPv6,
	"sctp": ProtoSCTP, "udplite": ProtoUDPLite,
}

func protoName(p int) string {
	for n, v := range protoNames {
		if v == p {
			return n
		}
	}
	return strconv.Itoa(p)
}

// hasPorts reports whether packets of IP protocol p carry port numbers
// that Key.SrcPort and Key.DstPort describe.
func hasPorts(p int) bool {
	return p == ProtoTCP || p == ProtoUDP || p == ProtoSCTP || p == ProtoUDPLite
}

func isICMP(p int) bool { return p == ProtoICMP || p == ProtoICMPv6 }

// PortRange is an inclusive range of ports. AllPorts matches every port.
type PortRange struct{ Lo, Hi uint16 }

// AllPorts is the PortRange of a rule without a port condition.
var AllPorts = PortRange{0, 65535}

func (p PortRange) all() bool { return p == AllPorts }

func (p PortRange) String() string {
	if p.Lo == p.Hi {
		return strconv.Itoa(int(p.Lo))
	}
	return strconv.Itoa(int(p.Lo)) + "-" + strconv.Itoa(int(p.Hi))
}

// Rule is one line of a rule set: a set of conditions, all of which must
// hold, and the action taken when they do. Start from NewRule (every
// field a wildcard) or ParseRule; the zero Rule matches only port 0 of
// ingress port 0 and protocol 0.
type Rule struct {
	Action Action
	// InPort is the ingress port index, or Any.
	InPort int
	// Src and Dst are the source and destination prefixes; the zero
	// Prefix matches every address of both families. A valid prefix
	// matches only its own family, so 0.0.0.0/0 means "any IPv4".
	// Prefixes must be masked (Prefix.Masked) and both of one family.
	Src, Dst netip.Prefix
	// Proto is the IP protocol number (0-255), or Any.
	Proto int
	// SrcPort and DstPort restrict the ports of TCP, UDP, SCTP and
	// UDP-Lite packets; a range other than AllPorts requires Proto to be
	// one of those.
	SrcPort, DstPort PortRange
	// ICMPType and ICMPCode (0-255 or Any) require Proto to be ICMP or
	// ICMPv6; a code requires a type.
	ICMPType, ICMPCode int
	// States is the set of conntrack states matched; 0 matches every
	// packet, tracked or not.
	States State
}

// NewRule returns a rule with action a whose every condition is a
// wildcard: it matches every packet.
func NewRule(a Action) Rule {
	return Rule{Action: a, InPort: Any, Proto: Any, SrcPort: AllPorts, DstPort: AllPorts, ICMPType: Any, ICMPCode: Any}
}

// family is 4 or 6 when the rule names addresses of that family, else 0.
func (r *Rule) family() int {
	for _, p := range [2]netip.Prefix{r.Src, r.Dst} {
		if p.IsValid() {
			if p.Addr().Is4() {
				return 4
			}
			return 6
		}
	}
	return 0
}

// Validate reports the first inconsistency of r, naming the field as the
// rule grammar does.
func (r *Rule) Validate() error {
	fe := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if r.Action > Reject {
		return fe("action", "%d is not an action (expected accept, drop or reject)", r.Action)
	}
	if r.InPort != Any && (r.InPort < 0 || r.InPort > 65535) {
		return fe("in", "%d is not a port index (expected 0-65535 or any)", r.InPort)
	}
	if r.Proto != Any && (r.Proto < 0 || r.Proto > 255) {
		return fe("proto", "%d is not a protocol (expected tcp, udp, icmp, icmpv6, any or 0-255)", r.Proto)
	}
	for _, f := range [2]struct {
		name string
		p    netip.Prefix
	}{{"src", r.Src}, {"dst", r.Dst}} {
		if f.p.IsValid() && f.p != f.p.Masked() {
			return fe(f.name, "%s has bits set past the prefix length (expected %s)", f.p, f.p.Masked())
		}
		if f.p.IsValid() && f.p.Addr().Is4In6() {
			return fe(f.name, "%s is an IPv4-mapped IPv6 prefix (expected a plain IPv4 or IPv6 prefix)", f.p)
		}
	}
	if r.Src.IsValid() && r.Dst.IsValid() && r.Src.Addr().Is4() != r.Dst.Addr().Is4() {
		return fe("dst", "%s is not of the family of src %s (a rule matches one family)", r.Dst, r.Src)
	}
	if r.Proto == ProtoICMP && r.family() == 6 {
		return fe("proto", "icmp never matches IPv6 addresses (expected icmpv6)")
	}
	if r.Proto == ProtoICMPv6 && r.family() == 4 {
		return fe("proto", "icmpv6 never matches IPv4 addresses (expected icmp)")
	}
	for _, f := range [2]struct {
		name string
		p    PortRange
	}{{"sport", r.SrcPort}, {"dport", r.DstPort}} {
		if f.p.Lo > f.p.Hi {
			return fe(f.name, "%d-%d is an empty range (expected lo <= hi)", f.p.Lo, f.p.Hi)
		}
		if !f.p.all() && !hasPorts(r.Proto) {
			return fe(f.name, "needs proto tcp, udp, sctp or udplite (got proto %s)", protoString(r.Proto))
		}
	}
	for _, f := range [2]struct {
		name string
		v    int
	}{{"type", r.ICMPType}, {"code", r.ICMPCode}} {
		if f.v != Any && (f.v < 0 || f.v > 255) {
			return fe(f.name, "%d is not an ICMP %s (expected 0-255)", f.v, f.name)
		}
		if f.v != Any && !isICMP(r.Proto) {
			return fe(f.name, "needs proto icmp or icmpv6 (got proto %s)", protoString(r.Proto))
		}
	}
	if r.ICMPCode != Any && r.ICMPType == Any {
		return fe("code", "needs a type (expected type N before code)")
	}
	if r.States&^stateAll != 0 {
		return fe("state", "%#x holds unknown states (expected new, established, related, invalid)", uint8(r.States))
	}
	return nil
}

func protoString(p int) string {
	if p == Any {
		return "any"
	}
	return protoName(p)
}

// String renders r in the rule grammar; ParseRule(r.String()) returns r.
// Wildcards are left out, so NewRule(Accept).String() is "accept".
func (r Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Action.String())
	if r.InPort != Any {
		b.WriteString(" in " + strconv.Itoa(r.InPort))
	}
	if r.Proto != Any {
		b.WriteString(" proto " + protoName(r.Proto))
	}
	if r.Src.IsValid() {
		b.WriteString(" src " + r.Src.String())
	}
	if r.Dst.IsValid() {
		b.WriteString(" dst " + r.Dst.String())
	}
	if !r.SrcPort.all() {
		b.WriteString(" sport " + r.SrcPort.String())
	}
	if !r.DstPort.all() {
		b.WriteString(" dport " + r.DstPort.String())
	}
	if r.ICMPType != Any {
		b.WriteString(" type " + strconv.Itoa(r.ICMPType))
	}
	if r.ICMPCode != Any {
		b.WriteString(" code " + strconv.Itoa(r.ICMPCode))
	}
	if r.States != 0 {
		b.WriteString(" state " + r.States.String())
	}
	return b.String()
}

// Key is what the classifier knows of a packet. A pipeline stage fills
// it from the parsed headers.
//
// Addresses are 16 bytes for both families. For IPv4 (IPv6 false) the
// address is in bytes 12-15 (netip.Addr.As16 of an IPv4 address, the
// IPv4-mapped form, fits); bytes 0-11 are ignored. SrcPort and DstPort
// are read only for TCP, UDP, SCTP and UDP-Lite, ICMPType and ICMPCode
// only for ICMP and ICMPv6; the stage may leave them at any value for
// other protocols. State is a single State bit, or 0 for an untracked
// packet (it then matches only rules without a state condition).
type Key struct {
	Src, Dst           [16]byte
	SrcPort, DstPort   uint16
	InPort             uint16
	Proto              uint8
	ICMPType, ICMPCode uint8
	State              State
	IPv6               bool
}

// SetAddrs stores src and dst (both of one family) and sets IPv6.
func (k *Key) SetAddrs(src, dst netip.Addr) {
	k.IPv6 = src.Is6() && !src.Is4In6()
	k.Src = src.As16()
	k.Dst = dst.As16()
}

// Matches reports whether r matches k. It is the reference definition of
// a match, one rule at a time; Ruleset.Classify gives the same answers
// faster.
func (r *Rule) Matches(k *Key) bool {
	if r.InPort != Any && r.InPort != int(k.InPort) {
		return false
	}
	if r.Proto != Any && r.Proto != int(k.Proto) {
		return false
	}
	if !prefixMatches(r.Src, k.IPv6, &k.Src) || !prefixMatches(r.Dst, k.IPv6, &k.Dst) {
		return false
	}
	if hasPorts(int(k.Proto)) {
		if k.SrcPort < r.SrcPort.Lo || k.SrcPort > r.SrcPort.Hi || k.DstPort < r.DstPort.Lo || k.DstPort > r.DstPort.Hi {
			return false
		}
	}
	if r.ICMPType != Any && r.ICMPType != int(k.ICMPType) {
		return false
	}
	if r.ICMPCode != Any && r.ICMPCode != int(k.ICMPCode) {
		return false
	}
	if r.States != 0 && r.States&k.State == 0 {
		return false
	}
	return true
}

func prefixMatches(p netip.Prefix, v6 bool, a *[16]byte) bool {
	if !p.IsValid() {
		return true
	}
	if p.Addr().Is4() {
		return !v6 && p.Contains(netip.AddrFrom4([4]byte(a[12:16])))
	}
	return v6 && p.Contains(netip.AddrFrom16(*a))
}

// Linear classifies k against rules one by one, first match wins. It is
// the reference the compiled classifier is tested against; it is too
// slow for the data path.
func Linear(rules []Rule, def Action, k *Key) (Action, int) {
	for i := range rules {
		if rules[i].Matches(k) {
			return rules[i].Action, i
		}
	}
	return def, -1
}
