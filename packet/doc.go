// Package packet gives the data path a zero-allocation view of a frame.
//
// A [Packet] points at one frame (a view into UMEM in production, any byte
// slice in tests) and carries what the pipeline decided about it: the egress
// port, a [Verdict] and, for drops, a [DropReason]. [Packet.Parse] walks the
// headers once per packet and records offsets and a [Flags] bitset, so stages
// that run later never parse again; they read and rewrite fields through
// header views such as [IPv4] and [TCP], which are byte slices over the frame
// in the spirit of gVisor's pkg/tcpip/header.
//
// A [Batch] is a fixed array of [MaxBurst] packets that a worker reuses for
// ever: ports fill it with [Batch.Append] (which resets the slot), stages walk
// [Batch.Slice], nothing is allocated per packet.
//
// # Parsing
//
// Parse understands Ethernet with up to two 802.1Q/802.1ad tags, ARP, IPv4
// (options, fragments), IPv6 (hop-by-hop, routing, destination options,
// fragment and AH extension headers, up to MaxIPv6ExtHeaders of them within
// MaxIPv6ExtBytes, recording the first routing header in RoutingOff; it
// stops at ESP and no-next-header), TCP,
// UDP, ICMP and ICMPv6. It never panics and never reads past len(Data). A
// header's flag (FlagIPv4, FlagTCP, ...) means its bytes are inside Data and
// its length fields are consistent, so its view is safe to use. The packet as
// a whole is sound only when [Packet.Err] is [ErrNone]: the first problem
// found is recorded there and summarised by FlagTruncated (the frame ends
// before a header or before the length an IP header announces),
// FlagMalformed (fields contradict each other) or FlagUnsupported.
// Bytes after the end announced by the IP header are Ethernet padding
// (FlagPadding); L3End marks where the IP packet really ends.
//
// Parse does not verify checksums (AF_XDP hands frames over without the
// NIC's checksum verdict): stages that must, call IPv4.ChecksumValid and
// Packet.L4ChecksumValid.
//
// Non-first fragments carry no L4 header, so none is parsed for them; the
// first fragment's L4 header is parsed, but its UDP length and the L4
// checksum describe the whole datagram and cannot be checked here.
//
// # Checksums
//
// checksum.go has the RFC 1071 sum, RFC 1624 incremental updates and the
// pseudo-header helpers. The rewrite helpers on Packet (SetIPv4Src,
// SetSrcPort, DecTTL, ...) keep the IP and L4 checksums right incrementally,
// leave a zero UDP checksum ("none") at zero, and send a computed zero as
// 0xffff.
//
// # Building answers
//
// IPv4.Encode and IPv6.Encode write fresh headers; Packet.ToICMPv4Error and
// ToICMPv6Error turn a packet, in its own frame, into the ICMP error that
// answers it (icmp.go); IsICMPError says which messages are errors, which
// no error may answer.
//
// # Cost
//
// Parsing, checksums and the rewrite helpers run in nanoseconds at 0
// allocs/op; docs/benchmarks.md (Package benchmarks) has the figures and
// the command that measures them.
//
// # Lifetime and concurrency
//
// Data, and every view taken from it, is dead once the frame goes back to the
// UMEM (after transmit completion or a drop): keep copies of addresses and
// ports, never the slices. A Packet is not safe for concurrent use; a batch
// belongs to the one worker goroutine that received it.
package packet
