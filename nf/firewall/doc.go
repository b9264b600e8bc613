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
//     at the edges of the rules' prefixes and ranges. An address or port
//     maps to its class's candidate list through a stride trie: a top
//     table indexed by the bits after the prefix all edges share, then
//     chunks of 256 entries, down to a block with no edge (the list
//     itself) or with at most 4 edges (counted by comparison). No binary
//     search.
//   - Each rule goes into the lists of the classes it spans in the field
//     where that costs least: 16 x the longest list it would join (what a
//     packet may have to check) + the classes it spans (memory). A rule
//     wider than 1024 classes in all its fields goes to a residual list
//     every packet checks; a rule without conditions ends the lists (no
//     later rule can decide).
//   - Lists hold rule indexes in ascending order, so a packet looks up its
//     6 lists and checks candidates (a 64-byte compiled rule each, one
//     cache line) below the best index found so far, stopping at the
//     first that matches. Next to each index a list stores a filter (the
//     rule's family and up to 24 bits of its other IPv4 prefix) that
//     rejects most wrong candidates without loading the rule. Lists of
//     one rule are stored in the handle itself; equal lists are stored
//     once.
//
// Costs: a lookup is 6 short trie walks and a handful of candidate
// checks, with no allocation. It does not depend on the rule count
// directly, but on how many rules of the packet's classes come before
// the deciding one: rules that share a prefix or port with many others
// and are cut by a condition the index does not see (for example many
// rules on "dport 443" with different, wide source prefixes). The worst
// case is linear, as for any first-match classifier of bounded memory;
// the residual list is the visible form of it (Stats().Residual).
//
// Figures (go test -run '^$' -bench . -benchtime=1s -count=1 -cpu 1
// ./nf/firewall, AMD EPYC VM with 2 vCPUs shared with other builds; the
// rule sets and keys are described at benchSet in bench_test.go):
// see the table at the end of this comment. Compile time and memory at
// 10,000 rules: about 45 ms and 3.7 MB (Stats().Bytes; the 64-byte rules
// are 0.64 MB of it).
//
//	rules   ns/packet, 4096 flows   ns/packet, 64 flows (cache warm)
//	10            ~25                        ~25
//	100           ~35                        ~30
//	1000          ~80                        ~35
//	10000        ~150-200                    ~55-65
//
// With 4096 random flows over 10,000 rules the working set (3.7 MB of
// tables, the keys) exceeds the 1 MB L2 of these VMs, whose L3 answers
// at DRAM speed (~140 ns a random load, measured by pointer chasing): the
// figure is dominated by about one cache miss per packet. With a warm
// cache (a burst of few flows, as a worker sees them) the same lookup
// costs about 60 ns. The goal of under 50 ns per packet at 10,000 rules
// is met at 1,000 rules and not yet at 10,000 on this machine; see
// BenchmarkClassify* for the current numbers.
package firewall
