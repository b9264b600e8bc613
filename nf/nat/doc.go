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
// (B:b > A:a). Nothing else is stored: the first packet of a new flow
// decides, writes the reply tuple with Table.SetReply, and marks
// Flow.User (decided; translated or not; refused); every later packet
// finds the flow by either tuple and is rewritten from the tuples.
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
// without --to-ports does. With a range set, translated ports always
// fall inside it.
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
// packet.DropFull and counted (Stats.Exhausted); so is every other packet
// of it in the same batch, and its conntrack entry is deleted after the
// batch, so the next packet tries again from scratch. A DNAT flow whose
// inside tuple is taken (the inside server holds the same tuple in a flow
// of its own) is dropped the same way (Stats.Conflicts). A packet that
// would start a flow while the conntrack table refuses new ones is
// dropped with DropFull (Stats.TableFull). No packet ever leaves with a
// translation that is not its flow's.
//
// A packet from an inside port that has no flow (conntrack found it
// invalid: a TCP segment of a connection it never saw, an echo reply to
// nothing; or an ICMP type it does not track) cannot be translated and
// is dropped with DropPolicy (Stats.Untranslatable) rather than leak an
// inside address. From other ports such packets pass untouched, and the
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
// arrived with a wrong checksum leaves with a wrong checksum.
//
// # Fragments
//
// The rule: the first fragment of an IPv4 datagram (offset 0, more
// fragments) carries the ports; conntrack tracks it and it is translated
// with its flow; its L4 checksum covers the whole datagram and an
// incremental update stays right for it. The stage remembers, in a
// fixed-size cache (Config.FragmentCache slots, 1024 by default, keyed by
// source, destination, IP identification, protocol and ingress port;
// Config.FragmentTimeout, 30s, as Linux's ipfrag_time), the addresses
// the first fragment left with. Later fragments carry no ports and need
// only the same address rewrite: a later fragment that finds its first
// fragment's slot is translated (Stats.FragmentsKept); one that does not
// (it overtook its first fragment, or a newer datagram took the slot, or
// it timed out) is dropped with packet.DropFragment and counted
// (Stats.FragmentsDropped). Fragments are never reassembled.
//
// # Steering
//
// With NAT the two directions of a flow have different tuples and no RSS
// hash is symmetric across them: run a NAT chain with one queue per port
// (or steer by the inside address with ntuple rules), so that both
// directions reach the worker holding the flow (see conntrack's doc).
//
// # A firewall in the same chain
//
// A stateful firewall with a table of its own cannot follow flows across
// the NAT: before the NAT it sees requests untranslated and answers
// translated, after it the other way round, so the tuples never pair up.
// Linux solves this with one conntrack for both; here too the firewall
// and the NAT must share one table (see New).
package nat
