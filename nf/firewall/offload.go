package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// MaxOffloadRules is the most rules an OffloadPlan holds: the width of the
// rule bitmaps of the XDP maps the plan is meant for (4 words of 64 bits;
// see OffloadPlan). Rules beyond it stay in Go (OffloadFull).
const MaxOffloadRules = 256

// OffloadReason says why a rule is in an OffloadPlan (OffloadOK) or why it
// stays in Go. A rule gets the first reason that applies, in the order of
// the constants: "accept state established" is an accept.
type OffloadReason uint8

const (
	// OffloadOK: the rule is offloaded.
	OffloadOK OffloadReason = iota
	// OffloadAccept: an accept rule. XDP only drops; what is accepted
	// goes on to the stage, which decides it again with every rule.
	OffloadAccept
	// OffloadReject: a reject rule. Dropping its packets in XDP would
	// lose the answer (TCP RST, ICMP unreachable) the stage sends.
	OffloadReject
	// OffloadState: the rule matches conntrack state, which exists only
	// in Go, after the packet was tracked.
	OffloadState
	// OffloadICMP: the rule matches an ICMP type or code, a field the
	// planned XDP maps do not hold.
	OffloadICMP
	// OffloadShadowed: an earlier rule that stays in Go can match some of
	// the same packets (OffloadDecision.By names it). Dropping them in
	// XDP would hoist this rule above it: a different verdict when the
	// earlier rule accepts or rejects, a different rule credited with the
	// drop when it drops.
	OffloadShadowed
	// OffloadFull: the rule could be offloaded, but MaxOffloadRules
	// earlier rules already are (or only such a rule shadows it).
	OffloadFull
)

func (r OffloadReason) String() string {
	switch r {
	case OffloadOK:
		return "offloaded"
	case OffloadAccept:
		return "accept stays in Go (XDP only drops)"
	case OffloadReject:
		return "reject needs an answer"
	case OffloadState:
		return "matches conntrack state"
	case OffloadICMP:
		return "matches ICMP type or code, which the XDP maps do not hold"
	case OffloadShadowed:
		return "shadowed by an earlier rule that stays in Go"
	case OffloadFull:
		return "beyond the " + strconv.Itoa(MaxOffloadRules) + " rules the XDP maps hold"
	}
	return "offload reason(" + strconv.Itoa(int(r)) + ")"
}

// OffloadDecision is what the planner decided for one rule.
type OffloadDecision struct {
	Reason OffloadReason
	// By is the earlier rule that shadows this one when Reason is
	// OffloadShadowed (the first such rule), else -1.
	By int
}

func (d OffloadDecision) String() string {
	if d.Reason == OffloadShadowed {
		return "shadowed by rule " + strconv.Itoa(d.By)
	}
	return d.Reason.String()
}

// OffloadEntry is one offloaded rule, reduced to the fields an XDP program
// matches. Its meaning is Rule.Matches of the rule it came from: the zero
// Prefix matches every address of both families, a valid one only its own
// family; ports are read only for TCP, UDP, SCTP and UDP-Lite packets.
type OffloadEntry struct {
	// Rule is the rule's index in the rule set: the rule_N_hits counter
	// that the entry's XDP counter adds to.
	Rule             int
	InPort           int // ingress port index, or Any
	Src, Dst         netip.Prefix
	Proto            int // IP protocol, or Any
	SrcPort, DstPort PortRange
}

// Matches reports whether e matches k: the definition the XDP program
// must implement.
func (e *OffloadEntry) Matches(k *Key) bool {
	if e.InPort != Any && e.InPort != int(k.InPort) {
		return false
	}
	if e.Proto != Any && e.Proto != int(k.Proto) {
		return false
	}
	if !prefixMatches(e.Src, k.IPv6, &k.Src) || !prefixMatches(e.Dst, k.IPv6, &k.Dst) {
		return false
	}
	if hasPorts(int(k.Proto)) {
		return e.SrcPort.Lo <= k.SrcPort && k.SrcPort <= e.SrcPort.Hi && e.DstPort.Lo <= k.DstPort && k.DstPort <= e.DstPort.Hi
	}
	return true
}

// OffloadPlan says which rules of a rule set can be decided in XDP, before
// the packet reaches the stage, without changing any packet's verdict or
// the rule credited with it, and why the others cannot.
//
// The data path it is made for: the XDP program drops a packet that some
// entry matches and counts it for the first such entry; every other packet
// goes on to the stage, which classifies it against the whole rule set
// (offloaded rules included), as without offload. PlanOffload guarantees
// that for every Key, the first matching entry, when there is one, is the
// rule Linear returns, and its action is drop.
//
// The XDP side is bpf.Offload and the redirect program's pre-filter
// (bpf/xdp_offload.h), which config installs plans into through
// Firewall.SetOffload. Its layout is bit-vector classification: entry i
// (in Entries order, which is rule order) is bit i of every bitmap,
// MaxOffloadRules bits wide, and each field maps a packet's value to the
// bitmap of the entries that accept it:
//
//	in_port      ARRAY [port index]            entries with that ingress port or any
//	proto        ARRAY [256]                   entries with that protocol or any
//	src4, dst4   LPM_TRIE [len, IPv4 address]  entries whose prefix holds the address
//	src6, dst6   LPM_TRIE [len, IPv6 address]  (each stored prefix carries the entries of
//	                                           every prefix containing it; /0 those
//	                                           without a prefix in the field)
//	sport, dport ARRAY [65536] -> class,       entries whose range holds the port
//	             ARRAY [class]                 (classes cut at the ranges' edges; a
//	                                           packet without ports takes every entry)
//	hits         PERCPU_ARRAY [entry]          packets, which the stage adds to the
//	                                           rule_N_hits of Entries[entry].Rule
//
// (every table twice, one generation in force and one for the next plan,
// so a reload swaps them all at once: see bpf.Offload.)
//
// A packet is dropped when the AND of its seven bitmaps is not zero; the
// lowest set bit is the entry that counts it. The program must read the
// packet as the stage does (packet.Parse and the stage's key): up to two
// VLAN tags, IPv6 extension headers walked to the transport header, ports
// 0 in later fragments; it may drop only frames it claims for xnf and that
// Parse would accept, and only while the firewall is the chain's first
// stage (a stage before it could rewrite, answer or drop the packet
// first). Whatever it cannot read as Parse does it passes on: the stage
// decides it, which is always right. PacketKey is that reading, as the
// tests of the program hold it.
//
// What offload changes: a packet dropped in XDP is never tracked. In Go,
// conntrack sees every packet before the rules do, so a reply that a
// stateless drop rule discards still marks its flow as answered (the
// flow's later packets are established, not new) and refreshes its timer,
// and a new flow that is dropped is created and deleted again (counted in
// conntrack_new). With offload none of that happens. That can change the
// state, and so the verdict, of later packets only in flows of which the
// rules accept some packets while an offloaded rule drops others (the
// replies, say); the property test holds every packet's verdict equal
// given its conntrack state.
type OffloadPlan struct {
	// Entries are the offloaded rules, in rule order.
	Entries []OffloadEntry
	// Decisions has one decision per rule of the set.
	Decisions []OffloadDecision
	rules     []Rule
}

// PlanOffload decides which of rules can run in XDP: stateless drop rules
// on ingress port, prefixes, protocol and ports that no earlier rule
// staying in Go can shadow. A rule is offloaded only if every earlier rule
// that can match some packet it matches is offloaded too, so the first
// entry that matches a packet is the rule that decides it. Overlap is
// decided exactly, field by field: a rule shadowed only by a rule that can
// never match the same packet (another port, protocol, family, a disjoint
// prefix or port range) is offloaded. Rules are checked with
// Rule.Validate as Compile checks them.
//
// Cost: one overlap test per candidate and earlier rule kept in Go, at
// most one per pair of rules: 5 ms for a random set of 10,000 rules, under
// 1 ms for a blocklist of 10,000 prefixes (BenchmarkPlanOffload).
func PlanOffload(rules []Rule) (*OffloadPlan, error) {
	return planOffload(rules, MaxOffloadRules)
}

func planOffload(rules []Rule, max int) (*OffloadPlan, error) {
	for i := range rules {
		if err := rules[i].Validate(); err != nil {
			return nil, &RuleError{Index: i, Text: rules[i].String(), Err: err}
		}
	}
	p := &OffloadPlan{Decisions: make([]OffloadDecision, len(rules)), rules: slices.Clone(rules)}
	var inGo []int // rules not offloaded, in order: the ones that can shadow
	for i := range rules {
		r := &rules[i]
		d := OffloadDecision{Reason: offloadKind(r), By: -1}
		if d.Reason == OffloadOK {
			for _, j := range inGo {
				if overlaps(&rules[j], r) {
					d = OffloadDecision{Reason: OffloadShadowed, By: j}
					break
				}
			}
		}
		if d.Reason == OffloadOK && len(p.Entries) >= max {
			d.Reason = OffloadFull
		}
		p.Decisions[i] = d
		switch d.Reason {
		case OffloadOK:
			p.Entries = append(p.Entries, OffloadEntry{Rule: i, InPort: r.InPort, Src: r.Src, Dst: r.Dst,
				Proto: r.Proto, SrcPort: r.SrcPort, DstPort: r.DstPort})
		case OffloadFull:
			// No later rule can be offloaded, so this one need not shadow
			// any: a later drop it overlaps is reported full, not shadowed
			// (with wider maps both would go), and a 10k-rule blocklist
			// plans in milliseconds, not a second.
		default:
			inGo = append(inGo, i)
		}
	}
	return p, nil
}

// offloadKind says whether r is of a kind XDP can decide alone, whatever
// the rules before it.
func offloadKind(r *Rule) OffloadReason {
	switch {
	case r.Action == Accept:
		return OffloadAccept
	case r.Action == Reject:
		return OffloadReject
	case r.States != 0:
		return OffloadState
	case r.ICMPType != Any || r.ICMPCode != Any:
		return OffloadICMP
	}
	return OffloadOK
}

// overlaps reports whether some Key matches both a and b (valid rules).
// The fields are independent but for the family, which a prefix fixes and
// the rest leaves open (a rule without prefixes matches both), and ports,
// which only count for protocols with ports: a rule with a port range has
// such a protocol (Validate), so the other rule's protocol must be that one
// or any, and then the ranges must meet.
func overlaps(a, b *Rule) bool {
	meet := func(x, y int) bool { return x == Any || y == Any || x == y }
	if !meet(a.InPort, b.InPort) || !meet(a.Proto, b.Proto) ||
		!meet(a.ICMPType, b.ICMPType) || !meet(a.ICMPCode, b.ICMPCode) {
		return false
	}
	if fa, fb := a.family(), b.family(); fa != 0 && fb != 0 && fa != fb {
		return false
	}
	prefixes := func(x, y netip.Prefix) bool { return !x.IsValid() || !y.IsValid() || x.Overlaps(y) }
	if !prefixes(a.Src, b.Src) || !prefixes(a.Dst, b.Dst) {
		return false
	}
	ports := func(x, y PortRange) bool { return x.Lo <= y.Hi && y.Lo <= x.Hi }
	if !ports(a.SrcPort, b.SrcPort) || !ports(a.DstPort, b.DstPort) {
		return false
	}
	return a.States == 0 || b.States == 0 || a.States&b.States != 0
}

// Match returns the rule of the first entry that matches k: what the XDP
// program would drop k for. ok is false when no entry matches and the
// stage decides.
func (p *OffloadPlan) Match(k *Key) (rule int, ok bool) {
	for i := range p.Entries {
		if p.Entries[i].Matches(k) {
			return p.Entries[i].Rule, true
		}
	}
	return -1, false
}

// Why explains the decision for rule i, naming the shadowing rule in the
// rule grammar: "shadowed by rule 0 (accept state established,related)".
func (p *OffloadPlan) Why(i int) string {
	d := p.Decisions[i]
	if d.Reason == OffloadShadowed {
		return fmt.Sprintf("%v (%v)", d, p.rules[d.By])
	}
	return d.String()
}
