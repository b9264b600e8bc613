// Package firewall is the rule model, rule syntax and compiled packet
// classifier of the firewall stage.
//
// A rule set is an ordered list of rules and a default policy. Each rule
// is a set of conditions that must all hold and an action: accept, drop
// or reject (drop, and the stage answers with a TCP RST or an ICMP
// unreachable; the classifier only reports the action). The first rule
// that matches a packet decides; when none matches, the default policy
// does.
//
// The classifier does not see packets. A stage fills a Key from the
// parsed headers (ingress port, addresses, protocol, ports or ICMP type
// and code, conntrack State) and calls Classify, which returns the
// action and the index of the deciding rule (-1 for the default policy).
//
// # Lifecycle
//
// Compile turns rules into an immutable *Ruleset that any number of
// goroutines may classify against. A Firewall holds the Ruleset in force
// in an atomic.Pointer:
//
//	fw, err := firewall.New(workers, rules, firewall.Drop)
//	...
//	action, rule := fw.Classify(worker, &key) // data path, one call per packet
//	...
//	old, err := fw.Replace(newRules, firewall.Drop) // control plane, any time
//
// Reload contract: Replace compiles first and swaps the pointer only on
// success, so a bad rule set leaves the one in force untouched. Classify
// loads the pointer once per packet, so each packet is classified
// entirely against the old set or entirely against the new one, and no
// packet waits or is dropped because of a reload. Hit counters belong to
// a Ruleset: the new set counts from zero (its rule indexes mean other
// rules), and the old set, returned by Replace, keeps its final counts
// for whoever wants to read them. The old set is freed by the garbage
// collector once no worker still uses it.
//
// Hit counters: every rule has one atomic uint64 per worker shard
// (workers rounded up to a power of two, each shard a separate padded
// allocation), so workers never write the same cache line; Hits sums the
// shards on read. A worker number beyond the shards shares a shard,
// which stays correct (the adds are atomic), only slower. Ruleset.Classify
// itself does not count, for callers that count their own way.
//
// # Rule grammar
//
// One rule per string; words are separated by spaces:
//
//	rule     = action { condition }
//	action   = "accept" | "drop" | "reject"
//	condition= "in" ( index | "any" )            ingress port index 0-65535
//	         | "proto" ( protocol | "any" )
//	         | "src" ( prefix | "any" )           source address
//	         | "dst" ( prefix | "any" )           destination address
//	         | "sport" ( ports | "any" )          TCP/UDP/SCTP/UDP-Lite only
//	         | "dport" ( ports | "any" )          TCP/UDP/SCTP/UDP-Lite only
//	         | "type" ( 0-255 | "any" )           ICMP/ICMPv6 only
//	         | "code" ( 0-255 | "any" )           ICMP/ICMPv6 only, needs type
//	         | "state" ( states | "any" )
//	protocol = "tcp" | "udp" | "icmp" | "icmpv6" | "sctp" | "udplite" | 0-255
//	prefix   = IPv4 or IPv6 address, optionally "/" length (198.18.0.0/15,
//	           2001:db8::/32, 10.0.0.1); host bits must be zero
//	ports    = port | port "-" port                 inclusive, 0-65535
//	states   = state { "," state }
//	state    = "new" | "established" | "related" | "invalid"
//
// Conditions may come in any order, each at most once. Examples:
//
//	accept in 0 proto tcp src 198.18.0.0/15 dport 8080 state new
//	accept state established,related
//	drop proto udp dport 1000-2000
//	reject proto tcp dst 2001:db8::/32
//	accept proto icmp type 8 code 0
//
// Meaning: a prefix matches only its own family (0.0.0.0/0 is "any
// IPv4"; a rule without src and dst matches both families), so src and
// dst of one rule must be of one family, icmp goes with IPv4 and icmpv6
// with IPv6. A state set matches a packet whose State is in it; a packet
// with State 0 (not tracked) matches only rules without a state
// condition. Rule.String prints the canonical form (keywords in the
// order above, wildcards left out), which ParseRule reads back to an
// equal Rule. ParseRules reports the first bad rule as
//
//	rule 3 "drop proto udp dport 70000": dport: 70000 is not a port (expected 0-65535 or a range lo-hi)
//
// (index into the list given, 0-based; the text; the keyword; what is
// wrong and what was expected), as a *RuleError wrapping a *FieldError.
//
// # Classifier
//
// Linear (one rule after another, Rule.Matches) is the reference
// definition, used by the tests; the data path uses the compiled form,
// which indexes each rule once, under one of its fields:
//
//   - Fields: source and destination address (one index per family),
//     source port, destination port (which also carries ICMP
//     type<<8|code), ingress port x protocol x state, and ingress port x
//     state for rules of any protocol.
//   - Each field's value space is cut into elementary intervals (classes)
//     at the edges of the rules' prefixes and ranges. A port maps to its
//     class's candidate list through a flat 64k-entry table (one load)
//     when the rules cut ports into more than 16 classes. An address maps
//     through a stride trie: a top table indexed by the bits after the
//     prefix all edges share, then chunks of 16 entries (one cache line
//     each, 4 bits a level), down to a block in which at most 4 classes
//     start; every leaf is resolved the same way, by counting which of
//     those starts the address reached, with the handles stored beside
//     the starts. No binary search, and no branch on the kind of leaf.
//   - Each rule goes into the lists of the classes it spans in the field
//     where that costs least: the longest list it would join (what a
//     packet may have to check) x 16 x the field's weight (8 for ports and
//     protocol, where traffic concentrates; 1 for addresses) + the number
//     of classes it spans (memory). A rule wider than 1024 classes in all
//     its fields goes to a residual list that every packet checks; the
//     first rule without conditions ends the lists (no later rule can
//     decide).
//   - Lists hold rule indexes in ascending order, so a packet checks
//     candidates below the best index found so far, stopping at the first
//     that matches. Each list entry (16 bytes) carries filters: protocol,
//     state set, ingress port, destination port or ICMP range, family,
//     and up to 24 bits of the rule's other IPv4 prefix. They reject most
//     wrong candidates without loading the rule (64 bytes, one cache
//     line), and when they are the whole rule they decide without loading
//     it at all. A list of one rule is stored in its handle; equal lists
//     are stored once.
//   - The cheap lists come first (protocol x state, destination port),
//     then the address tries, which are bounded by the best rule found so
//     far: every top-table entry carries the lowest rule listed anywhere
//     in its block, and a block with nothing lower ends the walk there,
//     before its chunks, its leaf and its list are read. Traffic that an
//     early rule decides (established flows, broad service rules) skips
//     most address lookups.
//
// Costs: at most 6 lookups and a few candidate checks, without
// allocation. It depends on the rule count only through how many rules
// of the packet's classes come before the deciding one: rules that share
// a prefix or a port with many others and are cut by a condition the
// filters do not see (for example many rules on "dport 443" with
// different long source prefixes). The worst case is linear, as for any
// first-match classifier of bounded memory; the residual list is the
// visible form of it (Ruleset.Size().Residual). Traffic that only late
// rules or the default policy decide cannot skip lookups and costs about
// twice as much (BenchmarkClassifyLate).
//
// Build: O(rules x spans) plus the tries. docs/benchmarks.md (Package
// benchmarks) has the build and classification figures at 10 to 10,000
// rules and the commands that measure them.
//
// # Offload
//
// PlanOffload decides which rules an XDP pre-filter can decide before
// packets reach the stage: stateless drops on ingress port, prefixes,
// protocol and ports that no earlier rule kept in Go can match first. Its
// OffloadPlan lists them as entries (the fields an XDP program matches,
// and the rule whose hit counter each feeds) and gives every other rule
// its OffloadReason: an accept, a reject (it needs an answer), a state or
// ICMP condition, shadowed by an earlier rule (named), or beyond
// MaxOffloadRules. For every packet, dropping it when an entry matches and
// classifying the rest against the whole rule set gives the verdict, and
// credits the rule, that the whole rule set gives alone. OffloadPlan's
// documentation has the XDP map layout and what offload changes for
// conntrack.
//
// Firewall.SetOffload hands the plan's entries to an Offloader (for xnf,
// the XDP pre-filter of the AF_XDP ports, which config sets up for a
// firewall at chain[0] with offload: auto) and keeps it in step: Replace
// installs the new set's entries there before it swaps the set here, and
// credits the old entries' final drops to the old set. Hits, and the
// stage's rule_N_hits and dropped, add the Offloader's counters (read once
// per call, never per packet), and xdp_dropped says how many of the drops
// never reached the stage. The classifier still holds every rule, so a
// packet from a port without the pre-filter (a capture file) gets the
// same verdict in Go. docs/ddos.md has the whole model.
package firewall
