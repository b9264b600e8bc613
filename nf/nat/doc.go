// Package nat translates IPv4 addresses and ports as a pipeline stage:
// SNAT (masquerade) of flows leaving through inside ports to an address
// pool, DNAT (port forwarding) of flows arriving on outside ports, ICMP
// echo identifiers, and ICMP errors about translated flows together with
// the packet they quote.
//
// # Model
//
// A Stage belongs to one worker and owns that worker's conntrack table: at
// the start of every batch it calls TrackBatch, so each IPv4 packet comes
// with its flow and direction. A flow's translation is the difference
// between its two conntrack tuples, as in Linux: the original tuple is
// the first packet's 5-tuple as it arrived, the reply tuple is what the
// answers look like when they arrive. For a flow from A:a to B:b that SNAT
// maps to X:x the reply tuple is B:b > X:x; for a DNAT flow from C:c to
// X:p forwarded to I:q it is I:q > C:c. A packet travelling in direction d
// is rewritten into the other direction's tuple reversed: original packets
// leave as reply-reversed (X:x > B:b), reply packets as original-reversed
// (B:b > A:a). The first packet of a new flow decides: it writes the
// reply tuple with Table.SetReply and records the decision in Flow.User
// (flags in the low bits: decided, translated, SNAT or DNAT, refused; in
// the upper 48 bits the translated endpoint, X:x for SNAT, I:q for DNAT,
// so that a packet is rewritten from User and the original tuple without
// building the reversed tuples). Every later packet finds the flow by
// either tuple and is rewritten from it; nothing else is stored, and no
// state outlives the conntrack entry.
//
// Who is translated. A new flow that enters on an inside port is
// source-translated when the stage has a pool and its destination is not a
// pool address or in Config.Except. A new TCP or UDP flow that enters on
// an outside port is destination-translated by the first matching
// Forward. Every other new flow is tracked untranslated ("identity"), so
// its answers, whichever side they come from, stay untranslated too.
// Only IPv4 is translated; IPv6 and non-IP frames pass untouched.
//
// # Port allocation
//
// A translated source is chosen in this order: the pool address that the
// inside address hashes to (so one host keeps one public address), then
// the others; on that address, the original port (or echo identifier) if
// it is free, then ports from a per-protocol cursor that moves on after
// each allocation, at most Config.MaxProbes (128) of them. "Free" means
// that no live conntrack entry holds the would-be reply tuple B:b > X:x
// (Linux's nf_nat_used_tuple): SetReply checks and installs it in one
// step. So a port is released exactly when the flow that held it expires
// or is deleted, with no release hook and no port map, and a port is
// busy only towards the destinations it is in use for (B:b > X:x and
// C:c > X:x are different tuples): a pool address serves up to 64512
// flows per protocol per destination, not 64512 in all. The cursor makes
// allocation O(1) while the range is sparsely used; probing is bounded,
// so a nearly full range can refuse a flow while a port is still free
// (a range no larger than MaxProbes is always searched completely).
// Nothing is allocated in memory per flow or per packet.
//
// With Config.PortMin and PortMax unset, the range is 1024-65535 and any
// free original port is kept, below 1024 included, as Linux's masquerade
// without --to-ports does (when such a port is taken, Linux looks for a
// replacement below 1024, this stage in the range). With a range set,
// translated ports always fall inside it.
//
// ICMP echo: packet.FlowKey keys a request (id, 0) and a reply (0, id),
// so the identifier is translated like a source port: the reply tuple of
// a request from A with id i translated to X with id j is (B, X, 0, j).
// Other protocols (GRE, ESP, ...) are translated by address only, which
// allows one inside host per (remote address, protocol, pool address).
//
// # Exhaustion and a full table
//
// A new flow that finds no free translation is dropped with
// packet.DropFull and counted (Counters.Exhausted); so is every other packet
// of it in the same batch, and its conntrack entry is deleted after the
// batch, so the next packet tries again from scratch. A DNAT flow whose
// inside tuple is taken (the inside server holds the same tuple in a flow
// of its own) is dropped the same way (Counters.Conflicts). A packet that
// would start a flow while the conntrack table refuses new ones is
// dropped with DropFull (Counters.TableFull). No packet ever leaves with a
// translation that is not its flow's.
//
// A packet from an inside port that has no flow (conntrack found it
// invalid: a TCP segment of a connection it never saw, an echo reply to
// nothing; or an ICMP type it does not track) cannot be translated and
// is dropped with DropPolicy (DropMalformed if it did not parse;
// Counters.Untranslatable) rather than leak an inside address. From other ports such packets pass untouched, and the
// stages behind decide. A packet the table finds invalid within a known
// flow is still translated by that flow.
//
// # Checksums
//
// Every rewrite is incremental (RFC 1624) through packet's Set* helpers:
// the IPv4 header checksum, the TCP and UDP checksums (pseudo-header
// included), the ICMP checksum for an echo identifier; a zero UDP
// checksum ("none") stays zero and a computed zero is sent as 0xffff.
// Tests compare every field with a full recompute on randomised packets.
//
// # ICMP errors
//
// Destination unreachable, source quench, redirect, time exceeded and
// parameter problem quote the packet that caused them. conntrack finds
// the flow from the quoted tuple (StateRelated, with the error's own
// direction). The stage then rewrites the outer header's addresses as a
// packet of that direction would be rewritten (only those the flow
// changes: an error from a router on the path keeps the router's
// address, as in Linux), and the quoted packet back to what its sender
// sent (or forward to what its receiver got): addresses, ports or echo
// identifier, the quoted IPv4 header checksum, the quoted L4 checksum if
// the quote contains it (UDP unless zero, TCP when at least 18 bytes of
// its header are quoted, ICMP echo always; as Linux does), and the outer
// ICMP checksum, which covers the quote, all incrementally. An error that
// arrived with a wrong checksum leaves with a wrong checksum. The
// translation is conntrack.TranslateError, which nf/lb uses too.
//
// # Fragments
//
// The rule: the first fragment of an IPv4 datagram (offset 0, more
// fragments) carries the ports; conntrack tracks it and it is translated
// with its flow; its L4 checksum covers the whole datagram and an
// incremental update stays right for it. Later fragments carry no ports
// and need only the same address rewrite: the conntrack table's fragment
// tracker, the one the firewall uses too (conntrack's doc, "Fragments",
// keyed by source, destination, IP identification, protocol and ingress
// port, 1024 datagrams and 2 s by default: conntrack.Config.Fragments),
// gives each later fragment its first fragment's flow, and the stage
// rewrites its addresses as that flow's (Counters.FragmentsKept), in
// either direction. Within a batch the later fragments are handled after
// the first ones, so their order there does not matter. A later fragment
// that the tracker condemns (its first fragment came in a later batch or
// not at all, was forgotten, or it overlaps) or whose datagram has no
// flow this stage decided is dropped with packet.DropFragment and counted
// (Counters.FragmentsDropped). Fragments are never reassembled. The stage
// that tracks the table (the NAT alone, or the firewall before it)
// publishes the tracker's counters (fragment_*). IPv6 fragments pass, as
// all IPv6 does.
//
// # Packets left alone
//
// Packets an earlier stage dropped or bounced (sent back out of their
// ingress port: they do not cross the NAT) are skipped. A packet of a
// translated flow whose IPv4 TTL is 0 or 1 is left untranslated and
// counted (Counters.TTLExpiring): no router may forward it, so the router
// behind the NAT drops it and answers with a time exceeded, which must
// reach the sender's own address and quote what the sender sent (Linux
// routes before it source-translates, with the same effect). The flow is
// decided all the same, so a traceroute's next probe is translated.
//
// # In a chain
//
// Put the NAT before the router: DNAT must happen before the routing
// decision (the router would otherwise take a packet for the pool address
// as its own), and the router's own answers (ARP, ping to its addresses,
// ICMP errors) leave by bouncing, past the NAT. Mark as inside the ports
// whose new flows are source-translated; give the router's inside
// addresses (or whole inside networks, for routing between them) as
// Config.Except so that traffic to them keeps its source. Hairpinning (an
// inside host reaching a forwarded port through the public address) is
// not done: such a flow is addressed to a pool address, which is excepted.
//
// A stateful firewall with a table of its own cannot follow flows across
// the NAT: before the NAT it sees requests untranslated and answers
// translated, after it the other way round, so the tuples never pair up
// and answers look like new flows from outside. As in Linux, where filter
// and NAT share one conntrack, the firewall and the NAT must share one
// table: NewStageShared makes a NAT stage that looks flows up in the table an
// earlier stage (firewall.Stage) tracks instead of tracking them itself.
//
// # Steering
//
// With NAT the two directions of a flow have different tuples and no RSS
// hash is symmetric across them. On more than one worker the pipeline
// hands each packet to the worker that owns its flow, keyed by the flow's
// outside endpoint, which the NAT never rewrites (conntrack.Steering with
// NAT set, built from the stage's outside ports, exceptions and forwards
// by config.File.Steering). The NAT's table and its fragment tracker stay
// per worker: the worker that receives a datagram's fragments sends the
// later ones where it sent the first, so they meet its tracker entry.
//
// # Cost
//
// Nothing is allocated per packet. A translated packet costs its
// conntrack lookup plus the rewrite, mostly the second cache line of the
// entry (User and the reply tuple); a new flow pays the search for a free
// port. docs/benchmarks.md (Package benchmarks) has the figures and the
// command that measures them.
package nat
