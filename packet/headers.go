package packet

import (
	"encoding/binary"
	"net/netip"
)

// Header views. Each is a byte slice that starts at its header; getters and
// setters read and write the frame in place and never allocate. A view taken
// from a Packet is valid only after Parse and when the header's flag is set;
// a view built by hand must be at least the header's minimum length (the
// methods panic on shorter slices, like any out-of-range index).

// EtherType values.
const (
	EtherTypeIPv4  = 0x0800
	EtherTypeARP   = 0x0806
	EtherTypeVLAN  = 0x8100 // 802.1Q customer tag
	EtherTypeQinQ  = 0x88a8 // 802.1ad service tag
	EtherTypeIPv6  = 0x86dd
	EthernetLen    = 14
	VLANTagLen     = 4
	IPv4MinLen     = 20
	IPv6Len        = 40
	TCPMinLen      = 20
	UDPLen         = 8
	ICMPLen        = 8 // type, code, checksum and the 4-byte rest of header
	ARPEthIPv4Len  = 28
	MaxFrameLen    = 0xffff // offsets in Packet are 16-bit
	ipv6ExtMinLen  = 8
	ipv6FragLen    = 8
	arpFixedLen    = 8
	maxVLANTags    = 2
	ipv4FlagMF     = 0x2000
	ipv4FlagDF     = 0x4000
	ipv4OffsetMask = 0x1fff
)

// IP protocol numbers, including the IPv6 extension headers Parse walks.
const (
	ProtoHopByHop = 0
	ProtoICMP     = 1
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoESP      = 50
	ProtoAH       = 51
	ProtoICMPv6   = 58
	ProtoNoNext   = 59
	ProtoDstOpts  = 60
)

// ICMP types whose rest-of-header is an identifier and a sequence number.
const (
	ICMPEchoReply     = 0
	ICMPEchoRequest   = 8
	ICMPv6EchoRequest = 128
	ICMPv6EchoReply   = 129
)

// ICMPv6 neighbor discovery messages (RFC 4861 4.3, 4.4).
const (
	ICMPv6NeighborSolicit = 135
	ICMPv6NeighborAdvert  = 136
)

// ARP operations.
const (
	ARPRequest = 1
	ARPReply   = 2
)

// Ethernet is a view of an Ethernet II header:
//
//	0                   6                   12      14
//	+-------------------+-------------------+-------+
//	|  destination MAC  |     source MAC    | type  |
//	+-------------------+-------------------+-------+
type Ethernet []byte

func (e Ethernet) Dst() (mac [6]byte) { copy(mac[:], e[0:6]); return }
func (e Ethernet) Src() (mac [6]byte) { copy(mac[:], e[6:12]); return }
func (e Ethernet) Type() uint16       { return binary.BigEndian.Uint16(e[12:14]) }
func (e Ethernet) SetDst(mac [6]byte) { copy(e[0:6], mac[:]) }
func (e Ethernet) SetSrc(mac [6]byte) { copy(e[6:12], mac[:]) }
func (e Ethernet) SetType(t uint16)   { binary.BigEndian.PutUint16(e[12:14], t) }

// IPv4 is a view of an IPv4 packet from its header on (RFC 791):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version|  IHL  |Type of Service|          Total Length         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Identification        |Flags|      Fragment Offset    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Time to Live |    Protocol   |         Header Checksum       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       Source Address                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination Address                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Options                    |    Padding    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type IPv4 []byte

func (h IPv4) Version() uint8       { return h[0] >> 4 }
func (h IPv4) HeaderLen() int       { return int(h[0]&0x0f) * 4 }
func (h IPv4) TOS() uint8           { return h[1] }
func (h IPv4) TotalLen() uint16     { return binary.BigEndian.Uint16(h[2:4]) }
func (h IPv4) ID() uint16           { return binary.BigEndian.Uint16(h[4:6]) }
func (h IPv4) DontFragment() bool   { return binary.BigEndian.Uint16(h[6:8])&ipv4FlagDF != 0 }
func (h IPv4) MoreFragments() bool  { return binary.BigEndian.Uint16(h[6:8])&ipv4FlagMF != 0 }
func (h IPv4) TTL() uint8           { return h[8] }
func (h IPv4) Protocol() uint8      { return h[9] }
func (h IPv4) Checksum() uint16     { return binary.BigEndian.Uint16(h[10:12]) }
func (h IPv4) Src() (a [4]byte)     { copy(a[:], h[12:16]); return }
func (h IPv4) Dst() (a [4]byte)     { copy(a[:], h[16:20]); return }
func (h IPv4) SrcAddr() netip.Addr  { return netip.AddrFrom4(h.Src()) }
func (h IPv4) DstAddr() netip.Addr  { return netip.AddrFrom4(h.Dst()) }
func (h IPv4) SetTTL(ttl uint8)     { h[8] = ttl }
func (h IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(h[10:12], c) }

// SetSrc and SetDst write an address without touching any checksum; use
// Packet.SetIPv4Src to keep checksums right.
func (h IPv4) SetSrc(a [4]byte) { copy(h[12:16], a[:]) }
func (h IPv4) SetDst(a [4]byte) { copy(h[16:20], a[:]) }

// FragmentOffset returns the offset of this fragment in bytes.
func (h IPv4) FragmentOffset() int {
	return int(binary.BigEndian.Uint16(h[6:8])&ipv4OffsetMask) * 8
}

// Header returns the header with its options.
func (h IPv4) Header() []byte { return h[:h.HeaderLen()] }

// ComputeChecksum returns the header checksum the header should carry
// (computed as if the checksum field were zero).
func (h IPv4) ComputeChecksum() uint16 {
	hdr := h[:h.HeaderLen()]
	// Sum everything, then take the current checksum field back out.
	return ^Combine(Sum(hdr[:10], 0), Sum(hdr[12:], 0))
}

// ChecksumValid reports whether the header checksum is right.
func (h IPv4) ChecksumValid() bool { return Sum(h[:h.HeaderLen()], 0) == 0xffff }

// IPv6 is a view of an IPv6 packet from its fixed header on (RFC 8200):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Traffic Class |           Flow Label                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Payload Length        |  Next Header  |   Hop Limit   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 Source Address (16 bytes)                     |
//	|               Destination Address (16 bytes)                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type IPv6 []byte

func (h IPv6) Version() uint8       { return h[0] >> 4 }
func (h IPv6) TrafficClass() uint8  { return h[0]<<4 | h[1]>>4 }
func (h IPv6) FlowLabel() uint32    { return binary.BigEndian.Uint32(h[0:4]) & 0xfffff }
func (h IPv6) PayloadLen() uint16   { return binary.BigEndian.Uint16(h[4:6]) }
func (h IPv6) NextHeader() uint8    { return h[6] }
func (h IPv6) HopLimit() uint8      { return h[7] }
func (h IPv6) Src() (a [16]byte)    { copy(a[:], h[8:24]); return }
func (h IPv6) Dst() (a [16]byte)    { copy(a[:], h[24:40]); return }
func (h IPv6) SrcAddr() netip.Addr  { return netip.AddrFrom16(h.Src()) }
func (h IPv6) DstAddr() netip.Addr  { return netip.AddrFrom16(h.Dst()) }
func (h IPv6) SetHopLimit(hl uint8) { h[7] = hl }
func (h IPv6) SetSrc(a [16]byte)    { copy(h[8:24], a[:]) }
func (h IPv6) SetDst(a [16]byte)    { copy(h[24:40], a[:]) }

// TCP is a view of a TCP segment from its header on (RFC 9293).
type TCP []byte

// TCP header flag bits, as returned by TCP.Flags.
const (
	TCPFin = 1 << iota
	TCPSyn
	TCPRst
	TCPPsh
	TCPAck
	TCPUrg
	TCPEce
	TCPCwr
)

func (h TCP) SrcPort() uint16        { return binary.BigEndian.Uint16(h[0:2]) }
func (h TCP) DstPort() uint16        { return binary.BigEndian.Uint16(h[2:4]) }
func (h TCP) Seq() uint32            { return binary.BigEndian.Uint32(h[4:8]) }
func (h TCP) Ack() uint32            { return binary.BigEndian.Uint32(h[8:12]) }
func (h TCP) HeaderLen() int         { return int(h[12]>>4) * 4 }
func (h TCP) Flags() uint8           { return h[13] }
func (h TCP) Window() uint16         { return binary.BigEndian.Uint16(h[14:16]) }
func (h TCP) Checksum() uint16       { return binary.BigEndian.Uint16(h[16:18]) }
func (h TCP) Urgent() uint16         { return binary.BigEndian.Uint16(h[18:20]) }
func (h TCP) Options() []byte        { return h[TCPMinLen:h.HeaderLen()] }
func (h TCP) SetChecksum(c uint16)   { binary.BigEndian.PutUint16(h[16:18], c) }
func (h TCP) SetSrcPort(port uint16) { binary.BigEndian.PutUint16(h[0:2], port) }
func (h TCP) SetDstPort(port uint16) { binary.BigEndian.PutUint16(h[2:4], port) }

// UDP is a view of a UDP datagram from its header on (RFC 768).
type UDP []byte

func (h UDP) SrcPort() uint16        { return binary.BigEndian.Uint16(h[0:2]) }
func (h UDP) DstPort() uint16        { return binary.BigEndian.Uint16(h[2:4]) }
func (h UDP) Length() uint16         { return binary.BigEndian.Uint16(h[4:6]) }
func (h UDP) Checksum() uint16       { return binary.BigEndian.Uint16(h[6:8]) }
func (h UDP) SetChecksum(c uint16)   { binary.BigEndian.PutUint16(h[6:8], c) }
func (h UDP) SetSrcPort(port uint16) { binary.BigEndian.PutUint16(h[0:2], port) }
func (h UDP) SetDstPort(port uint16) { binary.BigEndian.PutUint16(h[2:4], port) }

// ICMP is a view of an ICMP or ICMPv6 message. Both share the first 8 bytes'
// layout; ID and Seq mean something only for echo requests and replies.
type ICMP []byte

func (h ICMP) Type() uint8          { return h[0] }
func (h ICMP) Code() uint8          { return h[1] }
func (h ICMP) Checksum() uint16     { return binary.BigEndian.Uint16(h[2:4]) }
func (h ICMP) ID() uint16           { return binary.BigEndian.Uint16(h[4:6]) }
func (h ICMP) Seq() uint16          { return binary.BigEndian.Uint16(h[6:8]) }
func (h ICMP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(h[2:4], c) }
func (h ICMP) SetID(id uint16)      { binary.BigEndian.PutUint16(h[4:6], id) }

// IsEcho reports whether the message is an echo request or reply; v6 says
// whether it is ICMPv6.
func (h ICMP) IsEcho(v6 bool) bool {
	if v6 {
		return h[0] == ICMPv6EchoRequest || h[0] == ICMPv6EchoReply
	}
	return h[0] == ICMPEchoRequest || h[0] == ICMPEchoReply
}

// ARP is a view of an ARP packet (RFC 826). The address accessors assume
// Ethernet and IPv4 (hardware length 6, protocol length 4): check
// IsEthernetIPv4 first.
type ARP []byte

func (h ARP) HWType() uint16          { return binary.BigEndian.Uint16(h[0:2]) }
func (h ARP) ProtoType() uint16       { return binary.BigEndian.Uint16(h[2:4]) }
func (h ARP) HWLen() uint8            { return h[4] }
func (h ARP) ProtoLen() uint8         { return h[5] }
func (h ARP) Op() uint16              { return binary.BigEndian.Uint16(h[6:8]) }
func (h ARP) SenderHW() (mac [6]byte) { copy(mac[:], h[8:14]); return }
func (h ARP) SenderIP() (a [4]byte)   { copy(a[:], h[14:18]); return }
func (h ARP) TargetHW() (mac [6]byte) { copy(mac[:], h[18:24]); return }
func (h ARP) TargetIP() (a [4]byte)   { copy(a[:], h[24:28]); return }
func (h ARP) SetOp(op uint16)         { binary.BigEndian.PutUint16(h[6:8], op) }
func (h ARP) SetSenderHW(mac [6]byte) { copy(h[8:14], mac[:]) }
func (h ARP) SetSenderIP(a [4]byte)   { copy(h[14:18], a[:]) }
func (h ARP) SetTargetHW(mac [6]byte) { copy(h[18:24], mac[:]) }
func (h ARP) SetTargetIP(a [4]byte)   { copy(h[24:28], a[:]) }

// IsEthernetIPv4 reports whether the packet maps IPv4 addresses to Ethernet
// addresses, the only kind the address accessors understand.
func (h ARP) IsEthernetIPv4() bool {
	return len(h) >= ARPEthIPv4Len && h.HWType() == 1 && h.ProtoType() == EtherTypeIPv4 &&
		h.HWLen() == 6 && h.ProtoLen() == 4
}
