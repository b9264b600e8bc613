package nat

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/packet"
)

// Frames for tests, built with gopacket so that lengths and checksums come
// from an implementation other than ours.

var (
	inA  = netip.MustParseAddr("198.18.0.1") // inside hosts
	inA2 = netip.MustParseAddr("198.18.0.3")
	inA3 = netip.MustParseAddr("198.18.0.4")
	srvB = netip.MustParseAddr("198.18.1.2")   // an outside server
	rtrR = netip.MustParseAddr("198.18.1.254") // a router on the outside path
	natX = netip.MustParseAddr("198.18.1.1")   // the pool address
	natY = netip.MustParseAddr("198.18.1.9")   // a second pool address
)

const (
	portIn  = 0
	portOut = 1
)

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// ipOpts tweak the IPv4 header of frame.
type ipOpts struct {
	id       uint16
	mf       bool
	fragOff  uint16 // in 8-byte units
	ttl      uint8
	noChksum bool // leave the L4 checksum zero (UDP "none")
	options  bool // add a 4-byte IPv4 option (router alert): IHL 6
}

// frame serializes Ethernet, an IPv4 header from src to dst carrying
// proto, and the layers after it.
func frame(t testing.TB, src, dst netip.Addr, proto layers.IPProtocol, o ipOpts, l4 ...gopacket.SerializableLayer) []byte {
	t.Helper()
	ttl := o.ttl
	if ttl == 0 {
		ttl = 64
	}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Id: o.id, Protocol: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice()),
		FragOffset: o.fragOff}
	if o.mf {
		ip.Flags = layers.IPv4MoreFragments
	}
	if o.options {
		ip.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
	}
	for _, l := range l4 {
		if c, ok := l.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok {
			if err := c.SetNetworkLayerForChecksum(ip); err != nil {
				t.Fatal(err)
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, append([]gopacket.SerializableLayer{ip}, l4...)...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	f := make([]byte, 14, 14+len(buf.Bytes()))
	copy(f[0:6], []byte{2, 0, 0, 0, 0, 0xb})
	copy(f[6:12], []byte{2, 0, 0, 0, 0, 0xa})
	binary.BigEndian.PutUint16(f[12:14], uint16(layers.EthernetTypeIPv4))
	f = append(f, buf.Bytes()...)
	if o.noChksum && proto == layers.IPProtocolUDP {
		binary.BigEndian.PutUint16(f[14+int(f[14]&15)*4+6:], 0)
	}
	return f
}

func tcpFrame(t testing.TB, src, dst netip.AddrPort, fl uint8, payload ...byte) []byte {
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: 100, Ack: 200, Window: 65535,
		FIN: fl&packet.TCPFin != 0, SYN: fl&packet.TCPSyn != 0, RST: fl&packet.TCPRst != 0, PSH: fl&packet.TCPPsh != 0,
		ACK: fl&packet.TCPAck != 0,
	}
	return frame(t, src.Addr(), dst.Addr(), layers.IPProtocolTCP, ipOpts{}, tcp, gopacket.Payload(payload))
}

func udpFrame(t testing.TB, src, dst netip.AddrPort, payload string) []byte {
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	return frame(t, src.Addr(), dst.Addr(), layers.IPProtocolUDP, ipOpts{}, udp, gopacket.Payload(payload))
}

func echoFrame(t testing.TB, src, dst netip.Addr, id uint16, reply bool) []byte {
	typ := uint8(layers.ICMPv4TypeEchoRequest)
	if reply {
		typ = layers.ICMPv4TypeEchoReply
	}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: 7}
	return frame(t, src, dst, layers.IPProtocolICMPv4, ipOpts{}, icmp, gopacket.Payload("ping"))
}

// icmpErrorFrame is an ICMP error from src to dst quoting the IP packet of
// frame quoted, cut to quoteLen bytes when quoteLen > 0.
func icmpErrorFrame(t testing.TB, src, dst netip.Addr, typ, code uint8, quoted []byte, quoteLen int) []byte {
	q := quoted[14:]
	if quoteLen > 0 {
		q = q[:quoteLen]
	}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
	return frame(t, src, dst, layers.IPProtocolICMPv4, ipOpts{}, icmp, gopacket.Payload(q))
}

// masq is a stage masquerading port 0 (inside) behind natX on port 1.
func masq(t testing.TB, mod func(*Config)) *Stage {
	t.Helper()
	cfg := Config{Inside: []uint16{portIn}, Outside: []uint16{portOut}, Pool: []netip.Addr{natX}}
	if mod != nil {
		mod(&cfg)
	}
	ct, err := conntrack.New(conntrack.Config{MaxFlows: 8192})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStage(cfg, ct)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run passes one frame (a copy) through s at time now and returns the packet.
func run(t testing.TB, s *Stage, in uint16, f []byte, now int64) *packet.Packet {
	t.Helper()
	var b packet.Batch
	b.Append(append([]byte(nil), f...), 0, in).Parse()
	s.ProcessAt(&b, now)
	p := b.Packets[0]
	return &p
}

// checksumsRight fails unless p's IPv4 header and L4 checksums equal a
// full recompute (a zero UDP checksum counts as right).
func checksumsRight(t testing.TB, p *packet.Packet) {
	t.Helper()
	q := &packet.Packet{}
	q.Reset(p.Data, 0, 0)
	q.Parse()
	if !q.IPv4().ChecksumValid() {
		t.Errorf("IPv4 checksum %#04x, want %#04x", q.IPv4().Checksum(), q.IPv4().ComputeChecksum())
	}
	if q.Flags&packet.FlagLaterFragment == 0 && q.Flags&packet.FlagFragment == 0 && !q.L4ChecksumValid() {
		c, _ := q.ComputeL4Checksum()
		t.Errorf("L4 checksum wrong, want %#04x", c)
	}
}

type tuple struct {
	src, dst netip.AddrPort
}

// tupleOf returns the addresses and ports (echo id as both) of a frame.
func tupleOf(p *packet.Packet) tuple {
	ip := p.IPv4()
	var sp, dp uint16
	switch {
	case p.Flags&(packet.FlagTCP|packet.FlagUDP) != 0:
		sp, dp = p.SrcPort(), p.DstPort()
	case p.Flags&packet.FlagICMP != 0:
		sp, dp = p.ICMP().ID(), p.ICMP().ID()
	}
	return tuple{netip.AddrPortFrom(ip.SrcAddr(), sp), netip.AddrPortFrom(ip.DstAddr(), dp)}
}

func udpL(sport, dport uint16) *layers.UDP {
	return &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
}

func payload(s string) gopacket.Payload { return gopacket.Payload(s) }
