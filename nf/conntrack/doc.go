// Package conntrack tracks connections: it remembers every flow that
// crosses a worker, in both directions, so that a firewall can let through
// the replies to what it allowed out (state established, related) and NAT
// can translate every packet of a flow the way it translated the first.
//
// # Model
//
// A Table holds flows. A flow has two tuples (packet.FlowKey, the
// 5-tuple): the original tuple, of the packet that created it, and the
// reply tuple, of the packets that answer it, as they reach the table. The
// reply tuple is the original reversed unless NAT changed it (Create,
// SetReply): a flow from A:a to B:b that SNAT maps to X:x has the reply
// tuple B:b > X:x. The two tuples are all NAT needs: it rewrites an
// original packet's source to the reply tuple's destination and a reply
// packet's destination to the original tuple's source, and it finds a free
// port by asking Lookup whether a candidate reply tuple is taken (Linux's
// nf_nat_used_tuple), so it keeps no port map of its own. Flow.User is a
// spare 8 bytes for its bookkeeping, and OnRelease tells the stage when a
// flow it marked there is freed.
//
// Both tuples are in the index, so a packet of either direction finds the
// flow and learns its direction (Original or Reply). Track does it for one
// packet, TrackBatch for a batch (one call per batch for a stage, with the
// cache misses of the batch's lookups overlapped).
//
// # In a chain
//
// Packets carry no conntrack state from stage to stage (the worker compacts
// batches between stages), so the stage that needs the state calls
// TrackBatch at the start of its Process, on its worker's table, and uses
// the results right away (see the package example). Track each packet
// once: a second Track would count and move the flow twice. Stages after
// it that need the flow (NAT after the firewall) use LookupPacket, which
// finds it the same way without side effects.
//
// # States
//
// Track gives each packet one State, as Linux's ctinfo does:
//
//	StateNew          original direction, no reply seen yet (the first packet included)
//	StateEstablished  reply direction, or original after a reply was seen
//	StateRelated      an ICMP/ICMPv6 error quoting a tracked flow's packet
//	StateInvalid      unsound, impossible, or refused (see State)
//	StateUntracked    not looked at: no entry (0, so it matches no state rule)
//
// The values are single bits, the same as nf/firewall's State constants.
//
// Protocols. TCP runs a compact state machine over flags and directions
// (syn_sent, syn_recv, established, fin_wait, close_wait, last_ack,
// time_wait, close; see TCPState): only a SYN starts a flow (Config.TCPPickup
// lets an ACK pick up an existing connection, as nf_conntrack_tcp_loose
// does), flag combinations no stack sends are invalid, a SYN after
// time_wait or close starts the connection over. Unlike Linux it keeps no
// sequence-number windows, so it cannot tell an in-window segment from a
// forged one with the right flags; any RST closes. UDP flows are unreplied
// until the first reply, then "stream". TCP and UDP to or from port 0
// (reserved, RFC 6335 6) and IPv6 UDP with checksum 0 (forbidden, RFC 8200
// 8.1) are invalid, so "drop state invalid" drops them. ICMP and ICMPv6 echo requests start
// flows keyed by their identifier, which packet.FlowKey puts in the source
// port of a request and the destination port of a reply, so a reply's key
// is its request's reversed while a request from the far side with the same
// identifier is a flow of its own, not a reply; an echo reply that matches
// nothing is invalid. ICMP errors (packet.IsICMPError: IPv4 types 3, 4, 5, 11, 12; ICMPv6 types below 128)
// are parsed down to the quoted IP header and the first 8 bytes of its L4
// header without allocating (QuotedKey); the quoted tuple, reversed, is
// looked up, which finds the flow even when the quoted packet was
// translated by NAT on its way out. The error is related if that flow
// exists, else invalid; it never creates or refreshes a flow. A stage that
// translates (NAT, a load balancer) rewrites a related error, outer and
// quoted headers, with TranslateError. Every other
// IP protocol (GRE, ESP, SCTP, ...) is tracked by addresses and protocol
// alone with the Generic timeout. IP fragments other than the first carry
// no ports: the fragment tracker gives them their first fragment's (see
// Fragments). Not tracked: non-IP frames, and ICMP messages that are
// neither echo nor error (neighbour discovery, router advertisements,
// timestamps): a firewall names those by type.
//
// # Fragments
//
// A Table follows fragmented datagrams with a fragment tracker
// (Fragments, sized by Config.Fragments), VPP's virtual reassembly rather
// than Linux's real one: no bytes are gathered, no frame is copied or
// kept, and each fragment goes on as soon as it is judged. The tracker is
// a fixed table (1024 datagrams by default, 100 bytes each, in buckets of
// 8) keyed by source, destination, identification (IPv4's 16 bits,
// IPv6's 32), the protocol of the fragmentable part and the ingress port.
// A first fragment (offset 0, more to come) is tracked as any packet and
// leaves its protocol, ports and first 4 bytes of upper-layer header in
// the tracker (FragmentInfo); a later fragment of a datagram whose first
// fragment was seen inherits them, so it finds its flow by the first
// fragment's key and has its state: a firewall gives it the first
// fragment's verdict and a NAT translates it as the first. Later
// fragments are looked up, never create or move a flow, and are counted
// by the tracker, not as Found. What the tracker decided is in
// Result.Fragment; Drop() says which packets a stage must drop
// (packet.DropFragment):
//
//   - Out of order (FragmentOutOfOrder): a later fragment whose first
//     fragment the tracker does not know. Within one TrackBatch order does
//     not matter (later fragments meet the tracker after the batch's first
//     fragments, and their flow after it exists); across batches the
//     fragment is dropped, since a stage cannot keep a frame past its
//     batch. Linux, which reassembles, takes fragments in any order; this
//     is the difference, counted (FragmentCounters.OutOfOrder).
//   - Overlaps (FragmentOverlap): each datagram keeps the byte ranges its
//     fragments covered (up to MaxFragmentHoles disjoint ones:
//     FragmentHoles past that). A fragment that covers a byte again,
//     reaches past the last fragment's end or is a second last or first
//     fragment is dropped, and so is every later fragment of that
//     datagram, as RFC 5722 says for IPv6 and Linux does for IPv4 too; an
//     IPv4 TCP fragment at offset 8, which can only rewrite the flags, is
//     dropped outright (RFC 1858). Exact duplicates count as overlaps. A
//     first fragment too short for its TCP or UDP header is malformed
//     (packet.Parse), RFC 1858's tiny fragment.
//   - RFC 7112 (FragmentIncomplete): the first fragment of an IPv6
//     datagram must hold the whole header chain, the upper-layer header
//     included; one that does not is dropped and counted.
//
// Bounds: a datagram leaves the tracker once every byte was seen; an
// unfinished one is forgotten (FragmentCounters.Expired)
// FragmentConfig.Timeout after its first fragment (2 s; see there why
// not Linux's 30 s), or earlier when a new first fragment needs its
// entry and none is free (the unfinished datagram seen first among its 8
// candidates goes: Overflow). A reused identification after the datagram
// finished starts a new datagram; one reused while it is unfinished
// overlaps and is dropped, as in Linux. Stages after the tracking one
// (LookupPacket) find a later fragment's flow through the tracker
// without changing it (Fragments.Lookup). IPv6 atomic fragments (RFC
// 6946) are packets of their own. The tracker costs 0 allocations; its
// cost per fragment is in docs/benchmarks.md (BenchmarkTrackBatchFragments).
//
// # Time and timeouts
//
// The caller passes now, nanoseconds on any monotonic clock, to every call
// that can expire something: tests choose the time, and the data path reads
// the clock once per batch. A flow expires when its state's timeout has
// passed since the last packet that moved it (Flow.Expires). The defaults
// (DefaultTimeouts) are Linux's except TCP established:
//
//	tcp syn_sent 120s  syn_recv 60s  established 2h15m  fin_wait 120s
//	    close_wait 60s  last_ack 30s  time_wait 120s  close 10s
//	udp 30s unreplied, 120s replied    icmp 30s    other protocols 600s
//
// Linux keeps established TCP flows 5 days; 2h15m outlives the default TCP
// keepalive cycle (2h idle, then 9 probes 75s apart) so kept-alive
// connections survive, and drops flows whose end we missed the same day.
//
// Expiry costs no goroutine and no timer: a clock hand walks the slab,
// Config.ExpireScan entries (default 2) per tracked packet, freeing the
// entries it finds expired; Expire lets an idle worker catch up. Between
// two passes of the hand an expired entry is invisible: a lookup that
// meets it treats it as absent and frees it on the spot. Len counts
// entries not yet freed, expired or not.
//
// # A full table
//
// Config.MaxFlows bounds the table. A new flow that finds it full first
// examines Config.EvictScan entries (default 8) from the clock hand on and
// frees those that have expired. If none had, Config.Full decides: Refuse
// (the default, as Linux) makes the packet invalid and counts
// Counters.Full; EvictOldest frees the examined entry whose timeout falls
// first (the one the timeouts would have removed first, which favours
// unreplied and closing flows, the way Linux's early drop prefers
// unassured ones), counting Counters.Evicted. "Oldest" is therefore
// approximate: the best of EvictScan entries, not of the whole table. An
// entry already in a result of the same TrackBatch is never evicted, so all
// results of a batch stay valid until it returns; when every candidate is
// such an entry the flow is refused.
//
// # Lifetime of a *Flow
//
// Entries live in a slab allocated once by New; a *Flow (in a Result, from
// Lookup or Create) is a pointer into it and stays valid memory, but the
// entry may be freed and reused for another flow by the next call on the
// table that frees entries: Track, TrackBatch, Expire, Create, SetReply or
// Delete. Use a *Flow right away; keep a copy of its tuples, not the
// pointer.
//
// # Concurrency and steering
//
// A Table belongs to one worker and takes no locks: every method, Counters
// included, must run on the worker's goroutine (publish counters from
// there). Per-worker tables are only right if both directions of a flow
// reach the same worker. Within one worker that holds: a worker reads the
// queue of every port of its chain (one UMEM shared by its sockets on each
// port), so A->B arriving on port 0 and B->A arriving on port 1 both meet
// that worker's table. Across workers nothing in front makes it hold: a
// NIC's RSS hash is symmetric only if someone configures it so, veth picks
// the queue from the sending CPU, a NAT's reply tuple hashes differently
// from its request whatever the hash, and an ICMP error is hashed on its
// own addresses, not on the flow it quotes. A reply that lands on a worker
// that never saw its flow looks new (UDP) or invalid (a TCP SYN-ACK).
//
// So the workers move packets, not state: Steering names, for each packet,
// the worker that owns its flow (a hash of a key that both directions of
// the flow share, before and after NAT, and that ICMP errors share through
// their quote), and the pipeline hands every packet to its owner before
// the chain runs (pipeline.Handoff, VPP's worker hand-off). The tables
// stay single-writer; the cost is a copy of each packet that arrives on a
// worker other than its owner. The config package builds the Steering of
// a chain file (config.File.Steering) and the service wires it; a program
// that builds its own workers over tables of this package must give them
// a Steering and a Handoff the same way, or keep to one worker. Steering's
// doc lists the keys and the known limits (later fragments stay where they
// arrive; with NAT, all flows to one outside endpoint share an owner).
//
// # Memory
//
// An entry is EntrySize = 128 bytes, one cache line per direction: the
// first holds the original tuple with its hash, chain link and packet
// count, plus the state and the timer, so a packet in the original
// direction touches one line of the slab; the second holds the reply tuple
// (and User). The index is one array of 4-byte chain heads, a power of two
// at least 2*MaxFlows long: 8 to 16 bytes per flow. MaxFlows = 1<<20 costs
// 136 MiB (Table.MemoryBytes), reserved at New and touched as flows
// arrive; on Linux the slab and the index are advised to transparent huge
// pages, which halves the cost of a lookup in a table of a million flows
// (TLB misses). Nothing is allocated per packet or per flow.
//
// # Cost
//
// Past the caches a hit costs two
// dependent memory accesses (chain head, entry) and a third for a chain
// of two or more; TrackBatch issues each step for the whole batch before
// the next, so the misses of a batch overlap. docs/benchmarks.md (Package
// benchmarks) has the figures and the command that measures them.
package conntrack
