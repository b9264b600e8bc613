package conntrack

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/packet"
)

// Frames for tests, built with gopacket so that lengths and checksums come
// from an implementation other than ours.

var (
	a4 = netip.MustParseAddr("198.18.0.1")
	b4 = netip.MustParseAddr("198.19.0.2")
	r4 = netip.MustParseAddr("198.18.255.254") // a router between them
	x4 = netip.MustParseAddr("203.0.113.7")    // a NAT's public address
	a6 = netip.MustParseAddr("2001:db8::1")
	b6 = netip.MustParseAddr("2001:db8:1::2")
	r6 = netip.MustParseAddr("2001:db8:ffff::1")
	x6 = netip.MustParseAddr("2001:db8:beef::7")
)

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// frame serializes Ethernet, an IP header from src to dst carrying proto,
// and the layers after it.
func frame(t testing.TB, src, dst netip.Addr, proto layers.IPProtocol, l4 ...gopacket.SerializableLayer) []byte {
	t.Helper()
	var ip gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	et := layers.EthernetTypeIPv4
	if src.Is4() {
		v4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
		ip, nl = v4, v4
	} else {
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
		ip, nl = v6, v6
		et = layers.EthernetTypeIPv6
	}
	for _, l := range l4 {
		if c, ok := l.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok {
			if err := c.SetNetworkLayerForChecksum(nl); err != nil {
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
	binary.BigEndian.PutUint16(f[12:14], uint16(et))
	return append(f, buf.Bytes()...)
}

// tcpFrame is a TCP segment with flags fl (packet.TCPSyn|...).
func tcpFrame(t testing.TB, src, dst netip.AddrPort, fl uint8) []byte {
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: 100, Ack: 200, Window: 65535,
		FIN: fl&packet.TCPFin != 0, SYN: fl&packet.TCPSyn != 0, RST: fl&packet.TCPRst != 0, PSH: fl&packet.TCPPsh != 0,
		ACK: fl&packet.TCPAck != 0, URG: fl&packet.TCPUrg != 0, ECE: fl&packet.TCPEce != 0, CWR: fl&packet.TCPCwr != 0,
	}
	return frame(t, src.Addr(), dst.Addr(), layers.IPProtocolTCP, tcp)
}

func udpFrame(t testing.TB, src, dst netip.AddrPort) []byte {
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	return frame(t, src.Addr(), dst.Addr(), layers.IPProtocolUDP, udp, gopacket.Payload("query"))
}

// echoFrame is an ICMP or ICMPv6 (by address family) echo request or reply.
func echoFrame(t testing.TB, src, dst netip.Addr, id uint16, reply bool) []byte {
	if src.Is4() {
		typ := uint8(layers.ICMPv4TypeEchoRequest)
		if reply {
			typ = layers.ICMPv4TypeEchoReply
		}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: 1}
		return frame(t, src, dst, layers.IPProtocolICMPv4, icmp, gopacket.Payload("ping"))
	}
	typ := uint8(layers.ICMPv6TypeEchoRequest)
	if reply {
		typ = layers.ICMPv6TypeEchoReply
	}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	return frame(t, src, dst, layers.IPProtocolICMPv6, icmp, &layers.ICMPv6Echo{Identifier: id, SeqNumber: 1}, gopacket.Payload("ping"))
}

// icmpErrorFrame is an ICMP (or ICMPv6, by family) error of type typ and
// code from src to dst quoting the IP packet of frame quoted, cut to
// quoteLen bytes when quoteLen > 0.
func icmpErrorFrame(t testing.TB, src, dst netip.Addr, typ, code uint8, quoted []byte, quoteLen int) []byte {
	q := quoted[14:]
	if quoteLen > 0 {
		q = q[:quoteLen]
	}
	if src.Is4() {
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
		return frame(t, src, dst, layers.IPProtocolICMPv4, icmp, gopacket.Payload(q))
	}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	return frame(t, src, dst, layers.IPProtocolICMPv6, icmp, gopacket.Payload(append(make([]byte, 4), q...)))
}

// parsed returns a parsed packet of f, failing unless it is sound.
func parsed(t testing.TB, f []byte) *packet.Packet {
	t.Helper()
	p := &packet.Packet{}
	p.Reset(f, 0, 0)
	if err := p.Parse(); err != packet.ErrNone {
		t.Fatalf("parse: %v", err)
	}
	return p
}

func newTable(t testing.TB, cfg Config) *Table {
	t.Helper()
	tb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func key(src, dst netip.AddrPort, proto uint8) packet.FlowKey {
	return packet.FlowKey{Src: src.Addr().As16(), Dst: dst.Addr().As16(), SrcPort: src.Port(), DstPort: dst.Port(), Proto: proto}
}

// check verifies the table's internal invariants: every live entry is
// found by both its tuples, the chains hold exactly the live entries'
// tuples, and live + free + never used entries make the capacity.
func (t *Table) check(tb testing.TB) {
	tb.Helper()
	live := 0
	for i := range t.slab[:t.used] {
		e := &t.slab[i]
		if e.status&stLive == 0 {
			continue
		}
		live++
		for d := Original; d <= Reply; d++ {
			tu := e.tuple(d)
			if tu.hash != t.h.sum(&tu.key) {
				tb.Fatalf("entry %d dir %v: stale hash", i, d)
			}
			j, dd, ok := t.lookup(&tu.key, tu.hash)
			if !ok || j != uint32(i) || dd != d {
				tb.Fatalf("entry %d dir %v (%v): lookup gives %d %v %v", i, d, e, j, dd, ok)
			}
		}
	}
	if live != t.live {
		tb.Fatalf("live entries %d, counted %d", live, t.live)
	}
	links := 0
	for _, r := range t.buckets {
		for ; r != 0; r = t.slab[(r-1)>>1].tuple(Dir((r - 1) & 1)).next {
			if links++; links > 2*len(t.slab) {
				tb.Fatal("index chains loop")
			}
			if t.slab[(r-1)>>1].status&stLive == 0 {
				tb.Fatalf("chain holds free entry %d", (r-1)>>1)
			}
		}
	}
	if links != 2*live {
		tb.Fatalf("index holds %d tuples, want %d", links, 2*live)
	}
	free := 0
	for f := t.free; f != 0; f = t.slab[f-1].orig.next {
		if free++; free > len(t.slab) {
			tb.Fatal("free list loops")
		}
	}
	if live+free != int(t.used) {
		tb.Fatalf("live %d + free %d != used %d", live, free, t.used)
	}
}
