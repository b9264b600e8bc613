package pipelinetest

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/packet"
)

// Default addresses of the frames the builders make: the lab's generator
// and the device under test's first port (internal/lab), so frames built
// here look like what a lab test sends.
const (
	DefaultSrcMAC = "02:00:00:00:00:01"
	DefaultDstMAC = "02:00:00:00:00:02"
	DefaultTTL    = 64
)

// Payload is what the builders accept as a payload: a string or bytes
// ("" for none).
type Payload interface{ ~string | ~[]byte }

// Option changes a frame the builders make.
type Option func(*spec)

type spec struct {
	src, dst   net.HardwareAddr
	tags       []uint16 // outer first
	qinq       bool
	ttl        uint8
	tos        uint8
	id         uint16
	df         bool
	tcpFlags   uint8
	flagsSet   bool
	seq, ack   uint32
	window     uint16
	pad        bool
	noUDPCheck bool
}

func newSpec(opts []Option) *spec {
	s := &spec{src: mustMAC(DefaultSrcMAC), dst: mustMAC(DefaultDstMAC), ttl: DefaultTTL, window: 65535}
	for _, o := range opts {
		o(s)
	}
	return s
}

func mustMAC(m string) net.HardwareAddr {
	hw, err := net.ParseMAC(m)
	if err != nil || len(hw) != 6 {
		panic(fmt.Sprintf("pipelinetest: %q is not a MAC address (expected six hex bytes such as 02:00:00:00:00:01)", m))
	}
	return hw
}

// SrcMAC sets the Ethernet source (default DefaultSrcMAC); for ARP it is
// also the sender's hardware address.
func SrcMAC(m string) Option { return func(s *spec) { s.src = mustMAC(m) } }

// DstMAC sets the Ethernet destination (default DefaultDstMAC); for an ARP
// reply it is also the target's hardware address.
func DstMAC(m string) Option { return func(s *spec) { s.dst = mustMAC(m) } }

// VLAN adds an 802.1Q tag with this VLAN ID; call it twice for two tags
// (outer first).
func VLAN(id uint16) Option { return func(s *spec) { s.tags = append(s.tags, id) } }

// QinQ adds an 802.1ad service tag (outer, ethertype 0x88a8) and an 802.1Q
// customer tag (inner).
func QinQ(outer, inner uint16) Option {
	return func(s *spec) { s.tags, s.qinq = []uint16{outer, inner}, true }
}

// TTL sets the IPv4 TTL or IPv6 hop limit (default 64).
func TTL(ttl uint8) Option { return func(s *spec) { s.ttl = ttl } }

// TOS sets the IPv4 TOS or IPv6 traffic class.
func TOS(tos uint8) Option { return func(s *spec) { s.tos = tos } }

// IPID sets the IPv4 identification field.
func IPID(id uint16) Option { return func(s *spec) { s.id = id } }

// DontFragment sets the IPv4 DF bit.
func DontFragment() Option { return func(s *spec) { s.df = true } }

// TCPFlags sets the TCP flags (packet.TCPSyn|packet.TCPAck...). The default
// is ACK, with PSH when there is a payload.
func TCPFlags(f uint8) Option { return func(s *spec) { s.tcpFlags, s.flagsSet = f, true } }

// Seq and Ack set the TCP sequence and acknowledgement numbers.
func Seq(n uint32) Option { return func(s *spec) { s.seq = n } }
func Ack(n uint32) Option { return func(s *spec) { s.ack = n } }

// Pad pads the frame to Ethernet's 60-byte minimum, as a NIC delivers short
// frames (a veth does not pad; the default is no padding).
func Pad() Option { return func(s *spec) { s.pad = true } }

// NoUDPChecksum leaves the UDP checksum at zero ("none", IPv4 only).
func NoUDPChecksum() Option { return func(s *spec) { s.noUDPCheck = true } }

func mustAddrPort(what, s string) netip.AddrPort {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		panic(fmt.Sprintf("pipelinetest: %s %q: expected address:port such as 198.18.0.1:1000 or [2001:db8::1]:1000", what, s))
	}
	return ap
}

func mustAddr(what, s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		panic(fmt.Sprintf("pipelinetest: %s %q is not an IP address", what, s))
	}
	return a
}

func ipLayer(s *spec, src, dst netip.Addr, v6 bool, proto layers.IPProtocol) gopacket.NetworkLayer {
	if v6 {
		if !src.Is6() || src.Is4In6() || !dst.Is6() || dst.Is4In6() {
			panic(fmt.Sprintf("pipelinetest: %v > %v: expected IPv6 addresses", src, dst))
		}
		return &layers.IPv6{Version: 6, TrafficClass: s.tos, HopLimit: s.ttl, NextHeader: proto,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	}
	if !src.Is4() || !dst.Is4() {
		panic(fmt.Sprintf("pipelinetest: %v > %v: expected IPv4 addresses", src, dst))
	}
	ip := &layers.IPv4{Version: 4, IHL: 5, TOS: s.tos, Id: s.id, TTL: s.ttl, Protocol: proto,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	if s.df {
		ip.Flags = layers.IPv4DontFragment
	}
	return ip
}

// frame serializes L3 and up, then puts Ethernet and tags in front.
func (s *spec) frame(etherType layers.EthernetType, l3 ...gopacket.SerializableLayer) []byte {
	inner := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(inner, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, l3...); err != nil {
		panic("pipelinetest: " + err.Error())
	}
	body := inner.Bytes()
	if s.noUDPCheck {
		for _, l := range l3 {
			if ip, ok := l.(*layers.IPv4); ok && ip.Protocol == layers.IPProtocolUDP {
				h := int(ip.IHL) * 4
				body[h+6], body[h+7] = 0, 0
			}
		}
	}
	all := []gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: s.src, DstMAC: s.dst, EthernetType: etherType}}
	if len(s.tags) > 0 {
		all[0].(*layers.Ethernet).EthernetType = layers.EthernetTypeDot1Q
		if s.qinq {
			all[0].(*layers.Ethernet).EthernetType = layers.EthernetTypeQinQ
		}
		for i, id := range s.tags {
			next := layers.EthernetTypeDot1Q
			if i == len(s.tags)-1 {
				next = etherType
			}
			all = append(all, &layers.Dot1Q{VLANIdentifier: id, Type: next})
		}
	}
	all = append(all, gopacket.Payload(body))
	out := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(out, gopacket.SerializeOptions{}, all...); err != nil {
		panic("pipelinetest: " + err.Error())
	}
	f := out.Bytes()
	if n := packet.EthernetLen + packet.VLANTagLen*len(s.tags) + len(body); !s.pad && n < len(f) {
		f = f[:n] // gopacket pads every frame to 60 bytes
	}
	return append([]byte(nil), f...)
}

func udp(v6 bool, src, dst string, payload []byte, opts []Option) []byte {
	s := newSpec(opts)
	sa, da := mustAddrPort("source", src), mustAddrPort("destination", dst)
	ip := ipLayer(s, sa.Addr(), da.Addr(), v6, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(sa.Port()), DstPort: layers.UDPPort(da.Port())}
	u.SetNetworkLayerForChecksum(ip)
	return s.frame(etherType(v6), ip.(gopacket.SerializableLayer), u, gopacket.Payload(payload))
}

func tcp(v6 bool, src, dst string, payload []byte, opts []Option) []byte {
	s := newSpec(opts)
	sa, da := mustAddrPort("source", src), mustAddrPort("destination", dst)
	ip := ipLayer(s, sa.Addr(), da.Addr(), v6, layers.IPProtocolTCP)
	f := s.tcpFlags
	if !s.flagsSet {
		f = packet.TCPAck
		if len(payload) > 0 {
			f |= packet.TCPPsh
		}
	}
	t := &layers.TCP{SrcPort: layers.TCPPort(sa.Port()), DstPort: layers.TCPPort(da.Port()), Seq: s.seq, Ack: s.ack, Window: s.window,
		FIN: f&packet.TCPFin != 0, SYN: f&packet.TCPSyn != 0, RST: f&packet.TCPRst != 0, PSH: f&packet.TCPPsh != 0,
		ACK: f&packet.TCPAck != 0, URG: f&packet.TCPUrg != 0, ECE: f&packet.TCPEce != 0, CWR: f&packet.TCPCwr != 0}
	t.SetNetworkLayerForChecksum(ip)
	return s.frame(etherType(v6), ip.(gopacket.SerializableLayer), t, gopacket.Payload(payload))
}

func etherType(v6 bool) layers.EthernetType {
	if v6 {
		return layers.EthernetTypeIPv6
	}
	return layers.EthernetTypeIPv4
}

// UDP4 builds an Ethernet/IPv4/UDP frame from "address:port" strings:
//
//	pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:53", "payload")
//
// Lengths and checksums are right; options change the rest. It panics on
// an address it cannot parse (the builders are for tests).
func UDP4[P Payload](src, dst string, payload P, opts ...Option) []byte {
	return udp(false, src, dst, []byte(payload), opts)
}

// UDP6 builds an Ethernet/IPv6/UDP frame: UDP6("[2001:db8::1]:1000", "[2001:db8:1::2]:53", "").
func UDP6[P Payload](src, dst string, payload P, opts ...Option) []byte {
	return udp(true, src, dst, []byte(payload), opts)
}

// TCP4 builds an Ethernet/IPv4/TCP segment (flags ACK, PSH with a payload;
// see TCPFlags, Seq, Ack).
func TCP4[P Payload](src, dst string, payload P, opts ...Option) []byte {
	return tcp(false, src, dst, []byte(payload), opts)
}

// TCP6 builds an Ethernet/IPv6/TCP segment.
func TCP6[P Payload](src, dst string, payload P, opts ...Option) []byte {
	return tcp(true, src, dst, []byte(payload), opts)
}

func echo4(typ uint8, src, dst string, id, seq uint16, payload []byte, opts []Option) []byte {
	s := newSpec(opts)
	ip := ipLayer(s, mustAddr("source", src), mustAddr("destination", dst), false, layers.IPProtocolICMPv4)
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}
	return s.frame(layers.EthernetTypeIPv4, ip.(gopacket.SerializableLayer), ic, gopacket.Payload(payload))
}

func echo6(typ uint8, src, dst string, id, seq uint16, payload []byte, opts []Option) []byte {
	s := newSpec(opts)
	ip := ipLayer(s, mustAddr("source", src), mustAddr("destination", dst), true, layers.IPProtocolICMPv6)
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	ic.SetNetworkLayerForChecksum(ip)
	return s.frame(layers.EthernetTypeIPv6, ip.(gopacket.SerializableLayer), ic,
		&layers.ICMPv6Echo{Identifier: id, SeqNumber: seq}, gopacket.Payload(payload))
}

// EchoRequest4 builds an ICMP echo request (ping) from src to dst.
func EchoRequest4[P Payload](src, dst string, id, seq uint16, payload P, opts ...Option) []byte {
	return echo4(packet.ICMPEchoRequest, src, dst, id, seq, []byte(payload), opts)
}

// EchoReply4 builds an ICMP echo reply.
func EchoReply4[P Payload](src, dst string, id, seq uint16, payload P, opts ...Option) []byte {
	return echo4(packet.ICMPEchoReply, src, dst, id, seq, []byte(payload), opts)
}

// EchoRequest6 builds an ICMPv6 echo request.
func EchoRequest6[P Payload](src, dst string, id, seq uint16, payload P, opts ...Option) []byte {
	return echo6(packet.ICMPv6EchoRequest, src, dst, id, seq, []byte(payload), opts)
}

// EchoReply6 builds an ICMPv6 echo reply.
func EchoReply6[P Payload](src, dst string, id, seq uint16, payload P, opts ...Option) []byte {
	return echo6(packet.ICMPv6EchoReply, src, dst, id, seq, []byte(payload), opts)
}

func arp(op uint16, sender, target string, opts []Option) []byte {
	s := newSpec(opts)
	sa, ta := mustAddr("sender", sender), mustAddr("target", target)
	if !sa.Is4() || !ta.Is4() {
		panic(fmt.Sprintf("pipelinetest: ARP %v > %v: expected IPv4 addresses", sa, ta))
	}
	tha := net.HardwareAddr(make([]byte, 6))
	if op == packet.ARPReply {
		tha = s.dst
	}
	a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: op, SourceHwAddress: s.src, SourceProtAddress: sa.AsSlice(), DstHwAddress: tha, DstProtAddress: ta.AsSlice()}
	return s.frame(layers.EthernetTypeARP, a)
}

// ARPRequest builds "who has target? tell sender", broadcast unless DstMAC
// says otherwise; the sender's MAC is SrcMAC.
func ARPRequest(sender, target string, opts ...Option) []byte {
	return arp(packet.ARPRequest, sender, target, append([]Option{DstMAC("ff:ff:ff:ff:ff:ff")}, opts...))
}

// ARPReply builds "sender is at SrcMAC", sent to the target at DstMAC.
func ARPReply(sender, target string, opts ...Option) []byte {
	return arp(packet.ARPReply, sender, target, opts)
}

// DNSQuery builds a DNS query message (a UDP payload) asking for one name
// and type (layers.DNSTypeA if none is given), recursion desired.
func DNSQuery(name string, qtype ...layers.DNSType) []byte {
	t := layers.DNSTypeA
	if len(qtype) > 0 {
		t = qtype[0]
	}
	d := &layers.DNS{ID: 0x1234, RD: true, QDCount: 1,
		Questions: []layers.DNSQuestion{{Name: []byte(name), Type: t, Class: layers.DNSClassIN}}}
	buf := gopacket.NewSerializeBuffer()
	if err := d.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		panic("pipelinetest: DNS query " + name + ": " + err.Error())
	}
	return append([]byte(nil), buf.Bytes()...)
}

// Frame serializes any gopacket layers, fixing lengths and checksums, for
// frames the builders do not cover.
func Frame(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic("pipelinetest: " + err.Error())
	}
	return append([]byte(nil), buf.Bytes()...)
}
