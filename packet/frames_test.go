package packet

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Frames for tests, built with gopacket so that lengths and checksums come
// from an implementation other than ours.

var (
	macA  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a}
	macB  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x0b}
	ip4A  = net.IP{198, 18, 0, 1}
	ip4B  = net.IP{198, 19, 0, 2}
	ip6A  = net.ParseIP("2001:db8::1")
	ip6B  = net.ParseIP("2001:db8:1::2")
	data8 = gopacket.Payload("abcdefgh")
)

// serialize builds a frame from layers with lengths and checksums computed.
func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	// gopacket pads Ethernet frames to 60 bytes; tests want exact lengths
	// and add padding on purpose, so the Ethernet header is written here.
	e := ls[0].(*layers.Ethernet)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls[1:]...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	frame := make([]byte, 14, 14+len(buf.Bytes()))
	copy(frame[0:6], e.DstMAC)
	copy(frame[6:12], e.SrcMAC)
	binary.BigEndian.PutUint16(frame[12:14], uint16(e.EthernetType))
	return append(frame, buf.Bytes()...)
}

func eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: t}
}

func ipv4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0x1234, Protocol: proto, SrcIP: ip4A, DstIP: ip4B}
}

func ipv6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: ip6A, DstIP: ip6B, FlowLabel: 0x12345}
}

func udp(ip gopacket.NetworkLayer) *layers.UDP {
	u := &layers.UDP{SrcPort: 5353, DstPort: 53}
	u.SetNetworkLayerForChecksum(ip)
	return u
}

func tcp(ip gopacket.NetworkLayer, withOptions bool) *layers.TCP {
	t := &layers.TCP{SrcPort: 40000, DstPort: 443, Seq: 1, Ack: 2, SYN: true, ACK: true, Window: 65535}
	if withOptions {
		t.Options = []layers.TCPOption{
			{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
			{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindNop},
		}
	}
	t.SetNetworkLayerForChecksum(ip)
	return t
}

func frameIPv4UDP(t testing.TB) []byte {
	ip := ipv4(layers.IPProtocolUDP)
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, udp(ip), gopacket.Payload("hello, xnf"))
}

func frameIPv4TCPOptions(t testing.TB) []byte {
	ip := ipv4(layers.IPProtocolTCP)
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, tcp(ip, true), data8)
}

func frameIPv4OptionsTCP(t testing.TB) []byte {
	ip := ipv4(layers.IPProtocolTCP)
	ip.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}} // record route
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, tcp(ip, false), data8)
}

func frameIPv6TCP(t testing.TB) []byte {
	ip := ipv6(layers.IPProtocolTCP)
	return serialize(t, eth(layers.EthernetTypeIPv6), ip, tcp(ip, true), data8)
}

func frameVLANVLANIPv6TCP(t testing.TB) []byte {
	ip := ipv6(layers.IPProtocolTCP)
	return serialize(t, eth(layers.EthernetTypeQinQ),
		&layers.Dot1Q{VLANIdentifier: 100, Priority: 3, Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 200, Type: layers.EthernetTypeIPv6},
		ip, tcp(ip, true), data8)
}

func frameVLANIPv4UDP(t testing.TB) []byte {
	ip := ipv4(layers.IPProtocolUDP)
	return serialize(t, eth(layers.EthernetTypeDot1Q),
		&layers.Dot1Q{VLANIdentifier: 42, Type: layers.EthernetTypeIPv4},
		ip, udp(ip), data8)
}

// extHeader returns a raw IPv6 extension header of the given next header
// and total length (a multiple of 8), filled with PadN.
func extHeader(next uint8, length int) []byte {
	h := make([]byte, length)
	h[0] = next
	h[1] = uint8(length/8 - 1)
	h[2], h[3] = 1, uint8(length-4) // PadN option
	return h
}

// ahHeader returns a raw authentication header with a 12-byte ICV.
func ahHeader(next uint8) []byte {
	h := make([]byte, 24)
	h[0] = next
	h[1] = 24/4 - 2
	binary.BigEndian.PutUint32(h[4:8], 0x100) // SPI
	return h
}

func fragHeader(next uint8, offset int, more bool, id uint32) []byte {
	h := make([]byte, 8)
	h[0] = next
	v := uint16(offset) &^ 7
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(h[2:4], v)
	binary.BigEndian.PutUint32(h[4:8], id)
	return h
}

func concat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// frameIPv6ExtTCP has hop-by-hop, destination options, routing (no segments
// left) and AH in front of TCP.
func frameIPv6ExtTCP(t testing.TB) []byte {
	ip := ipv6(layers.IPProtocolIPv6HopByHop)
	exts := concat(extHeader(ProtoDstOpts, 8), extHeader(ProtoRouting, 16),
		extHeader(ProtoAH, 8), ahHeader(ProtoTCP))
	return serialize(t, eth(layers.EthernetTypeIPv6), ip, gopacket.Payload(exts), tcp(ip, false), data8)
}

// frameIPv6FirstFragmentUDP is the first fragment of a UDP datagram longer
// than what it carries: the UDP length covers the whole datagram.
func frameIPv6FirstFragmentUDP(t testing.TB) []byte {
	ip := ipv6(layers.IPProtocolIPv6HopByHop)
	udpHeader := []byte{0x14, 0xe9, 0x00, 0x35, 0x00, 0x40, 0x00, 0x00} // 5353 -> 53, length 64
	exts := concat(extHeader(ProtoFragment, 8), fragHeader(ProtoUDP, 0, true, 7))
	return serialize(t, eth(layers.EthernetTypeIPv6), ip, gopacket.Payload(concat(exts, udpHeader, []byte("01234567abcdefgh"))))
}

func frameIPv6LaterFragment(t testing.TB) []byte {
	ip := ipv6(layers.IPProtocolIPv6Fragment)
	return serialize(t, eth(layers.EthernetTypeIPv6), ip, gopacket.Payload(concat(fragHeader(ProtoUDP, 24, false, 7), []byte("tail-of-datagram"))))
}

func frameIPv4Fragment(t testing.TB, offset uint16, more bool, payload []byte) []byte {
	ip := ipv4(layers.IPProtocolUDP)
	ip.FragOffset = offset / 8
	if more {
		ip.Flags = layers.IPv4MoreFragments
	}
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload(payload))
}

func frameICMPEcho(t testing.TB) []byte {
	return serialize(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0xbeef, Seq: 1},
		gopacket.Payload("ping payload"))
}

func frameICMPv6Echo(t testing.TB) []byte {
	ip := ipv6(layers.IPProtocolICMPv6)
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	icmp.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv6), ip, icmp,
		&layers.ICMPv6Echo{Identifier: 0xcafe, SeqNumber: 9}, gopacket.Payload("ping6"))
}

func frameARP(t testing.TB) []byte {
	return serialize(t, eth(layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: macA, SourceProtAddress: ip4A,
		DstHwAddress: make([]byte, 6), DstProtAddress: ip4B,
	})
}

func frameUnknownEtherType(t testing.TB) []byte {
	return serialize(t, eth(layers.EthernetType(0x88cc)), gopacket.Payload("lldp-ish payload"))
}

// padTo appends zeros up to n bytes, as a NIC pads short frames.
func padTo(b []byte, n int) []byte {
	for len(b) < n {
		b = append(b, 0)
	}
	return b
}

// validFrames are sound frames of every kind Parse knows.
var validFrames = []struct {
	name  string
	build func(testing.TB) []byte
}{
	{"eth-ipv4-udp", frameIPv4UDP},
	{"eth-ipv4-tcp-options", frameIPv4TCPOptions},
	{"eth-ipv4options-tcp", frameIPv4OptionsTCP},
	{"eth-ipv6-tcp", frameIPv6TCP},
	{"eth-vlan-vlan-ipv6-tcp", frameVLANVLANIPv6TCP},
	{"eth-vlan-ipv4-udp", frameVLANIPv4UDP},
	{"eth-ipv6-ext-tcp", frameIPv6ExtTCP},
	{"eth-ipv6-firstfrag-udp", frameIPv6FirstFragmentUDP},
	{"eth-ipv6-laterfrag", frameIPv6LaterFragment},
	{"eth-ipv4-firstfrag-udp", func(t testing.TB) []byte {
		return frameIPv4Fragment(t, 0, true, []byte{0x14, 0xe9, 0x00, 0x35, 0x01, 0x00, 0x00, 0x00, 1, 2, 3, 4, 5, 6, 7, 8})
	}},
	{"eth-ipv4-laterfrag", func(t testing.TB) []byte { return frameIPv4Fragment(t, 16, false, []byte("last bytes")) }},
	{"eth-ipv4-icmp-echo", frameICMPEcho},
	{"eth-ipv6-icmpv6-echo", frameICMPv6Echo},
	{"eth-arp", frameARP},
	{"eth-unknown", frameUnknownEtherType},
	{"eth-ipv4-udp-padded", func(t testing.TB) []byte {
		ip := ipv4(layers.IPProtocolUDP)
		return padTo(serialize(t, eth(layers.EthernetTypeIPv4), ip, udp(ip), gopacket.Payload("x")), 60)
	}},
}

// frameIPv6Chain is n extension headers of size bytes each (hop-by-hop,
// destination options, a routing header of type 253 with no segments
// left, then destination options) before UDP.
func frameIPv6Chain(t testing.TB, n, size int) []byte {
	ip := ipv6(layers.IPProtocolIPv6HopByHop)
	var exts []byte
	for i := 0; i < n; i++ {
		next := uint8(ProtoDstOpts)
		switch {
		case i == 1:
			next = ProtoRouting
		case i == n-1:
			next = ProtoUDP
		}
		h := extHeader(next, size)
		if i == 2 { // the routing header: type 253, segments left 0
			h = make([]byte, size)
			h[0], h[1], h[2], h[3] = next, uint8(size/8-1), 253, 0
		}
		exts = append(exts, h...)
	}
	udpHeader := []byte{0x13, 0x88, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00}
	return serialize(t, eth(layers.EthernetTypeIPv6), ip, gopacket.Payload(concat(exts, udpHeader, []byte("data"))))
}
