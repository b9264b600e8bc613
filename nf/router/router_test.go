package router

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/packet"
)

var (
	macIn   = [6]byte{2, 0, 0, 0, 0, 2}
	macOut  = [6]byte{2, 0, 0, 0, 1, 1}
	macGen  = [6]byte{2, 0, 0, 0, 0, 1}
	macSink = [6]byte{2, 0, 0, 0, 1, 2}
)

func testRouter(t testing.TB, mod func(*Config)) *Router {
	t.Helper()
	cfg := Config{
		Interfaces: []Interface{
			{Port: 0, MAC: macIn, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24"), netip.MustParsePrefix("2001:db8:0::2/64")}},
			{Port: 1, MAC: macOut, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.1.1/24"), netip.MustParsePrefix("2001:db8:1::1/64")}},
		},
		Routes: []StaticRoute{{Prefix: netip.MustParsePrefix("198.19.0.0/16"), NextHops: []NextHop{{Port: 1, Gateway: netip.MustParseAddr("198.18.1.2")}}}},
		Neighbors: []Neighbor{
			{Port: 1, Addr: netip.MustParseAddr("198.18.1.2"), MAC: macSink},
			{Port: 0, Addr: netip.MustParseAddr("198.18.0.1"), MAC: macGen},
			{Port: 1, Addr: netip.MustParseAddr("2001:db8:1::2"), MAC: macSink},
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := NewRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func eth(src, dst [6]byte, typ layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: net.HardwareAddr(src[:]), DstMAC: net.HardwareAddr(dst[:]), EthernetType: typ}
}

func udp4(t testing.TB, src, dst string, ttl uint8) []byte {
	ip := &layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	u := &layers.UDP{SrcPort: 5000, DstPort: 9000}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(macGen, macIn, layers.EthernetTypeIPv4), ip, u, gopacket.Payload("hello router"))
}

func udp6(t testing.TB, src, dst string, hop uint8) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: hop, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	u := &layers.UDP{SrcPort: 5000, DstPort: 9000}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(macGen, macIn, layers.EthernetTypeIPv6), ip, u, gopacket.Payload("hello router"))
}

// run puts frames (all from port in) through the router and returns the packets.
func run(r *Router, in uint16, frames ...[]byte) []packet.Packet {
	var b packet.Batch
	for _, f := range frames {
		buf := make([]byte, len(f), 2048)
		copy(buf, f)
		p := b.Append(buf, 0, in)
		p.Parse()
	}
	r.Process(&b)
	return b.Slice()
}

// decode checks every checksum gopacket can verify and returns the packet.
func decode(t *testing.T, d []byte) gopacket.Packet {
	t.Helper()
	pk := gopacket.NewPacket(d, layers.LayerTypeEthernet, gopacket.Default)
	if el := pk.ErrorLayer(); el != nil {
		t.Fatalf("undecodable output: %v", el.Error())
	}
	if ip, ok := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		if packet.IPv4(ip.Contents).ChecksumValid() == false {
			t.Errorf("IPv4 header checksum wrong")
		}
	}
	for _, l := range pk.Layers() {
		if v, ok := l.(interface {
			VerifyChecksum() (gopacket.ChecksumVerificationResult, error)
		}); ok {
			if res, err := v.VerifyChecksum(); err != nil || !res.Valid {
				t.Errorf("%v checksum invalid: %+v %v", l.LayerType(), res, err)
			}
		}
	}
	return pk
}

func TestForwardsIPv4ToStaticNeighbor(t *testing.T) {
	r := testRouter(t, nil)
	p := run(r, 0, udp4(t, "198.18.0.1", "198.19.5.5", 64))[0]
	if p.Verdict != packet.Forward || p.OutPort != 1 {
		t.Fatalf("verdict %v port %d, want forward to 1", p.Verdict, p.OutPort)
	}
	pk := decode(t, p.Data)
	e := pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if [6]byte(e.SrcMAC) != macOut || [6]byte(e.DstMAC) != macSink || ip.TTL != 63 {
		t.Errorf("src %v dst %v ttl %d; want out0's MAC, the gateway's MAC, ttl 63", e.SrcMAC, e.DstMAC, ip.TTL)
	}
	if c := r.Counters(); c.Forwarded != 1 {
		t.Errorf("counters %+v", c)
	}
}

func TestForwardsIPv6ToConnectedNeighbor(t *testing.T) {
	r := testRouter(t, nil)
	p := run(r, 0, udp6(t, "2001:db8::1", "2001:db8:1::2", 64))[0]
	if p.Verdict != packet.Forward || p.OutPort != 1 {
		t.Fatalf("verdict %v port %d", p.Verdict, p.OutPort)
	}
	pk := decode(t, p.Data)
	if ip := pk.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ip.HopLimit != 63 {
		t.Errorf("hop limit %d, want 63", ip.HopLimit)
	}
}

func TestAnswersARPForItsAddress(t *testing.T) {
	r := testRouter(t, nil)
	req := serialize(t, eth(macGen, [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: macGen[:], SourceProtAddress: []byte{198, 18, 0, 1},
		DstHwAddress: make([]byte, 6), DstProtAddress: []byte{198, 18, 0, 2}})
	p := run(r, 0, req)[0]
	if p.Verdict != packet.Bounce {
		t.Fatalf("verdict %v, want bounce", p.Verdict)
	}
	a := decode(t, p.Data).Layer(layers.LayerTypeARP).(*layers.ARP)
	if a.Operation != layers.ARPReply || [6]byte(a.SourceHwAddress) != macIn || net.IP(a.SourceProtAddress).String() != "198.18.0.2" ||
		[6]byte(a.DstHwAddress) != macGen || net.IP(a.DstProtAddress).String() != "198.18.0.1" {
		t.Errorf("bad reply %+v", a)
	}
	// A request for someone else's address is absorbed.
	req[41] = 99
	if p := run(r, 0, req)[0]; p.Verdict != packet.Drop || p.Reason != packet.DropConsumed {
		t.Errorf("request for another address: %v %v", p.Verdict, p.Reason)
	}
}

func TestAnswersPingOnBothFamilies(t *testing.T) {
	r := testRouter(t, nil)
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.IP{198, 18, 0, 1}, DstIP: net.IP{198, 18, 1, 1}}
	ping := serialize(t, eth(macGen, macIn, layers.EthernetTypeIPv4), ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1}, gopacket.Payload("abcdefgh"))
	p := run(r, 0, ping)[0]
	if p.Verdict != packet.Bounce {
		t.Fatalf("verdict %v", p.Verdict)
	}
	pk := decode(t, p.Data)
	ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	rip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ic.TypeCode.Type() != 0 || ic.Id != 7 || rip.SrcIP.String() != "198.18.1.1" || rip.DstIP.String() != "198.18.0.1" {
		t.Errorf("reply %v id %d from %v to %v", ic.TypeCode, ic.Id, rip.SrcIP, rip.DstIP)
	}

	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	ic6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
	ic6.SetNetworkLayerForChecksum(ip6)
	ping6 := serialize(t, eth(macGen, macIn, layers.EthernetTypeIPv6), ip6, ic6, &layers.ICMPv6Echo{Identifier: 9, SeqNumber: 1}, gopacket.Payload("abcdefgh"))
	p = run(r, 0, ping6)[0]
	if p.Verdict != packet.Bounce {
		t.Fatalf("v6 verdict %v", p.Verdict)
	}
	pk = decode(t, p.Data)
	if tc := pk.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6).TypeCode; tc.Type() != 129 {
		t.Errorf("v6 reply type %v", tc)
	}
}

func TestTimeExceededComesFromTheIngressAddress(t *testing.T) {
	r := testRouter(t, nil)
	orig := udp4(t, "198.18.0.1", "198.19.5.5", 1)
	p := run(r, 0, orig)[0]
	if p.Verdict != packet.Bounce {
		t.Fatalf("verdict %v %v", p.Verdict, p.Reason)
	}
	pk := decode(t, p.Data)
	ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ip.SrcIP.String() != "198.18.0.2" || ip.DstIP.String() != "198.18.0.1" || ic.TypeCode != layers.CreateICMPv4TypeCode(11, 0) {
		t.Errorf("got %v -> %v %v", ip.SrcIP, ip.DstIP, ic.TypeCode)
	}
	// The quote is the original IP header and the first 8 bytes after it.
	if q := ic.Payload; string(q) != string(orig[14:14+28]) {
		t.Errorf("quote %x, want %x", q, orig[14:42])
	}
	// v6: hop limit 1 gets an ICMPv6 time exceeded quoting the packet.
	o6 := udp6(t, "2001:db8::1", "2001:db8:1::2", 1)
	p = run(r, 0, o6)[0]
	pk = decode(t, p.Data)
	if tc := pk.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6).TypeCode; p.Verdict != packet.Bounce || tc.Type() != 3 {
		t.Errorf("v6 hop limit 1: %v %v", p.Verdict, tc)
	}
}

func TestUnreachableIsRateLimited(t *testing.T) {
	r := testRouter(t, func(c *Config) { c.ICMPBurst = 5; c.ICMPRate = 1 })
	var frames [][]byte
	for i := 0; i < 20; i++ {
		frames = append(frames, udp4(t, "198.18.0.1", "203.0.113.9", 64))
	}
	sent, dropped := 0, 0
	for _, p := range run(r, 0, frames...) {
		switch {
		case p.Verdict == packet.Bounce:
			sent++
			if ic := decode(t, p.Data).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ic.TypeCode != layers.CreateICMPv4TypeCode(3, 0) {
				t.Errorf("got %v, want net unreachable", ic.TypeCode)
			}
		case p.Verdict == packet.Drop && p.Reason == packet.DropNoRoute:
			dropped++
		}
	}
	c := r.Counters()
	if sent != 5 || dropped != 15 || c.NoRoute != 20 || c.Unreachable != 5 || c.ICMPRateLimited != 15 {
		t.Errorf("sent %d dropped %d counters %+v; want 5 sent, 15 dropped", sent, dropped, c)
	}
}

func TestResolvesUnknownNextHopsWithARP(t *testing.T) {
	r := testRouter(t, nil)
	// 198.18.1.7 is connected on port 1 but unknown: the packet becomes an ARP request.
	p := run(r, 0, udp4(t, "198.18.0.1", "198.18.1.7", 64))[0]
	if p.Verdict != packet.Forward || p.OutPort != 1 {
		t.Fatalf("verdict %v port %d", p.Verdict, p.OutPort)
	}
	a := decode(t, p.Data).Layer(layers.LayerTypeARP).(*layers.ARP)
	if a.Operation != layers.ARPRequest || net.IP(a.DstProtAddress).String() != "198.18.1.7" || net.IP(a.SourceProtAddress).String() != "198.18.1.1" {
		t.Fatalf("bad request %+v", a)
	}
	// A second packet within the retry interval is dropped, not re-resolved.
	if p := run(r, 0, udp4(t, "198.18.0.1", "198.18.1.7", 64))[0]; p.Verdict != packet.Drop || p.Reason != packet.DropNoNeighbor {
		t.Errorf("second packet: %v %v", p.Verdict, p.Reason)
	}
	// The reply teaches the router; forwarding follows.
	mac7 := [6]byte{2, 0, 0, 0, 1, 7}
	reply := serialize(t, eth(mac7, macOut, layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPReply, SourceHwAddress: mac7[:], SourceProtAddress: []byte{198, 18, 1, 7},
		DstHwAddress: macOut[:], DstProtAddress: []byte{198, 18, 1, 1}})
	run(r, 1, reply)
	p = run(r, 0, udp4(t, "198.18.0.1", "198.18.1.7", 64))[0]
	if e := decode(t, p.Data).Layer(layers.LayerTypeEthernet).(*layers.Ethernet); p.Verdict != packet.Forward || [6]byte(e.DstMAC) != mac7 {
		t.Errorf("after learning: %v to %v", p.Verdict, e.DstMAC)
	}
}

func TestResolvesAndAnswersNDP(t *testing.T) {
	r := testRouter(t, nil)
	p := run(r, 0, udp6(t, "2001:db8::1", "2001:db8:1::99", 64))[0]
	if p.Verdict != packet.Forward || p.OutPort != 1 {
		t.Fatalf("verdict %v", p.Verdict)
	}
	pk := decode(t, p.Data)
	if tc := pk.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6).TypeCode; tc.Type() != 135 {
		t.Fatalf("got %v, want a neighbor solicitation", tc)
	}
	ns := pk.Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation)
	if ns.TargetAddress.String() != "2001:db8:1::99" {
		t.Errorf("solicits %v", ns.TargetAddress)
	}
	// Now a host solicits the router's own address.
	ip6 := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("ff02::1:ff00:2")}
	ic6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(135, 0)}
	ic6.SetNetworkLayerForChecksum(ip6)
	sol := serialize(t, eth(macGen, [6]byte{0x33, 0x33, 0xff, 0, 0, 2}, layers.EthernetTypeIPv6), ip6, ic6,
		&layers.ICMPv6NeighborSolicitation{TargetAddress: net.ParseIP("2001:db8::2"),
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: macGen[:]}}})
	p = run(r, 0, sol)[0]
	if p.Verdict != packet.Bounce {
		t.Fatalf("NS verdict %v %v", p.Verdict, p.Reason)
	}
	na := decode(t, p.Data).Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if na.TargetAddress.String() != "2001:db8::2" || len(na.Options) != 1 || [6]byte(na.Options[0].Data) != macIn {
		t.Errorf("advert %+v", na)
	}
}

func TestMalformedAndUnknownAreDroppedWithReasons(t *testing.T) {
	r := testRouter(t, nil)
	bad := udp4(t, "198.18.0.1", "198.19.5.5", 64)
	bad[14] = 0x44 // IHL 4
	other := serialize(t, eth(macGen, macIn, layers.EthernetType(0x88b5)), gopacket.Payload("local experimental ethertype"))
	ps := run(r, 0, bad, other)
	if ps[0].Verdict != packet.Drop || ps[0].Reason != packet.DropMalformed {
		t.Errorf("IHL 4: %v %v", ps[0].Verdict, ps[0].Reason)
	}
	if ps[1].Verdict != packet.Drop || ps[1].Reason != packet.DropUnsupported {
		t.Errorf("unknown ethertype: %v %v", ps[1].Verdict, ps[1].Reason)
	}
}

func TestForwardingAllocatesNothing(t *testing.T) {
	r := testRouter(t, nil)
	f := udp4(t, "198.18.0.1", "198.19.5.5", 64)
	var b packet.Batch
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, len(f), 2048)
	}
	allocs := testing.AllocsPerRun(100, func() {
		b.Reset()
		for i := range bufs {
			copy(bufs[i], f)
			b.Append(bufs[i], 0, 0).Parse()
		}
		r.Process(&b)
	})
	if allocs != 0 {
		t.Errorf("router allocates %.1f times per batch", allocs)
	}
}

func BenchmarkRouterStage(b *testing.B) {
	r := testRouter(b, nil)
	f := udp4(b, "198.18.0.1", "198.19.5.5", 64)
	var batch packet.Batch
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, len(f), 2048)
		copy(bufs[i], f)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		batch.Reset()
		for j := range bufs {
			copy(bufs[j], f) // restore TTL, checksum and MACs
			batch.Append(bufs[j], 0, 0).Parse()
		}
		r.Process(&batch)
		if batch.Packets[0].Verdict != packet.Forward {
			b.Fatalf("benchmark packets are not forwarded: %v %v", batch.Packets[0].Verdict, batch.Packets[0].Reason)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/pkt")
}

func TestDropsIPv4WithABadHeaderChecksum(t *testing.T) {
	r := testRouter(t, nil)
	f := udp4(t, "198.18.0.1", "198.19.5.5", 64)
	f[24] ^= 0xff // corrupt the header checksum
	if p := run(r, 0, f)[0]; p.Verdict != packet.Drop || p.Reason != packet.DropMalformed {
		t.Errorf("%v %v, want a malformed drop", p.Verdict, p.Reason)
	}
}

// A packet an earlier stage bounced (a firewall's reject answer) is not
// the router's to route: it passes untouched, TTL and MACs included.
func TestBouncedPacketsPassTheRouterUntouched(t *testing.T) {
	r := testRouter(t, nil)
	orig := udp4(t, "198.18.0.1", "198.19.5.5", 64)
	var b packet.Batch
	buf := make([]byte, len(orig), 2048)
	copy(buf, orig)
	b.Append(buf, 0, 0).Parse()
	b.Packets[0].SetBounce()
	r.Process(&b)
	if p := b.Packets[0]; p.Verdict != packet.Bounce || string(p.Data) != string(orig) {
		t.Fatalf("verdict %v, frame changed %v", p.Verdict, string(p.Data) != string(orig))
	}
	// The same packet, not bounced, is routed (TTL 63).
	if p := run(r, 0, orig)[0]; p.Verdict != packet.Forward || p.IPv4().TTL() != 63 {
		t.Fatalf("not bounced: verdict %v TTL %d, want forwarded with TTL 63", p.Verdict, p.IPv4().TTL())
	}
}

func echo6(t testing.TB, src, dst string) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
	ic.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(macGen, macIn, layers.EthernetTypeIPv6), ip, ic, &layers.ICMPv6Echo{Identifier: 9, SeqNumber: 1}, gopacket.Payload("abcdefgh"))
}

func echo4(t testing.TB, src, dst string) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	return serialize(t, eth(macGen, macIn, layers.EthernetTypeIPv4), ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1}, gopacket.Payload("abcdefgh"))
}

// Martians (RFC 1812 5.3.7, Linux's ip_route_input) and IPv6 scopes (RFC
// 4291): never forwarded, each reason counted on its own.
func TestMartiansAndScopesAreNeverForwarded(t *testing.T) {
	cases := []struct {
		name    string
		frame   func(testing.TB) []byte
		verdict packet.Verdict
		reason  packet.DropReason
		counter string // grows by one; "" for none
	}{
		{"a source of 0.0.0.0 is a martian", func(t testing.TB) []byte { return udp4(t, "0.0.0.0", "198.19.5.5", 64) }, packet.Drop, packet.DropMartian, "martian_src_zero"},
		{"a source in 0/8 is a martian", func(t testing.TB) []byte { return udp4(t, "0.1.2.3", "198.19.5.5", 64) }, packet.Drop, packet.DropMartian, "martian_src_zero"},
		{"a source in 127/8 is a martian", func(t testing.TB) []byte { return udp4(t, "127.0.0.1", "198.19.5.5", 64) }, packet.Drop, packet.DropMartian, "martian_src_loopback"},
		{"a multicast source is a martian", func(t testing.TB) []byte { return udp4(t, "224.0.0.5", "198.19.5.5", 64) }, packet.Drop, packet.DropMartian, "martian_src_multicast"},
		{"the top of 224/4 is a martian source", func(t testing.TB) []byte { return udp4(t, "239.255.255.255", "198.19.5.5", 64) }, packet.Drop, packet.DropMartian, "martian_src_multicast"},
		{"the broadcast source is a martian", func(t testing.TB) []byte { return udp4(t, "255.255.255.255", "198.19.5.5", 64) }, packet.Drop, packet.DropMartian, "martian_src_broadcast"},
		{"a destination in 0/8 is a martian", func(t testing.TB) []byte { return udp4(t, "198.18.0.1", "0.0.0.7", 64) }, packet.Drop, packet.DropMartian, "martian_dst_zero"},
		{"a destination in 127/8 is a martian", func(t testing.TB) []byte { return udp4(t, "198.18.0.1", "127.0.0.1", 64) }, packet.Drop, packet.DropMartian, "martian_dst_loopback"},
		{"a ping to the router from loopback is not answered", func(t testing.TB) []byte { return echo4(t, "127.0.0.1", "198.18.0.2") }, packet.Drop, packet.DropMartian, "martian_src_loopback"},
		{"a class E source is not a martian (as Linux)", func(t testing.TB) []byte { return udp4(t, "240.0.0.1", "198.19.5.5", 64) }, packet.Forward, packet.DropNone, "forwarded"},
		{"a DHCP discover to broadcast is absorbed, not a martian", func(t testing.TB) []byte { return udp4(t, "0.0.0.0", "255.255.255.255", 64) }, packet.Drop, packet.DropConsumed, "local"},
		{"a multicast IPv6 source is a martian", func(t testing.TB) []byte { return udp6(t, "ff02::1", "2001:db8:1::2", 64) }, packet.Drop, packet.DropMartian, "martian_src_multicast"},
		{"the unspecified IPv6 source is a martian", func(t testing.TB) []byte { return udp6(t, "::", "2001:db8:1::2", 64) }, packet.Drop, packet.DropMartian, "martian_src_zero"},
		{"the IPv6 loopback source is a martian", func(t testing.TB) []byte { return udp6(t, "::1", "2001:db8:1::2", 64) }, packet.Drop, packet.DropMartian, "martian_src_loopback"},
		{"the IPv6 loopback destination is a martian", func(t testing.TB) []byte { return udp6(t, "2001:db8::1", "::1", 64) }, packet.Drop, packet.DropMartian, "martian_dst_loopback"},
		{"the unspecified IPv6 destination is a martian", func(t testing.TB) []byte { return udp6(t, "2001:db8::1", "::", 64) }, packet.Drop, packet.DropMartian, "martian_dst_zero"},
		{"a link-local destination not the router's stays on its link", func(t testing.TB) []byte { return udp6(t, "2001:db8::1", "fe80::99", 64) }, packet.Drop, packet.DropMartian, "scope_dst_link_local"},
		{"a link-local source is answered beyond scope", func(t testing.TB) []byte { return udp6(t, "fe80::1", "2001:db8:1::2", 64) }, packet.Bounce, packet.DropNone, "scope_src_link_local"},
		{"a link-local source may ping the router", func(t testing.TB) []byte { return echo6(t, "fe80::1", "2001:db8::2") }, packet.Bounce, packet.DropNone, "echo_replies"},
		{"link-scope multicast is absorbed", func(t testing.TB) []byte { return udp6(t, "2001:db8::1", "ff02::1", 64) }, packet.Drop, packet.DropConsumed, "scoped_multicast"},
		{"site-scope multicast is absorbed", func(t testing.TB) []byte { return udp6(t, "2001:db8::1", "ff05::1:3", 64) }, packet.Drop, packet.DropConsumed, "scoped_multicast"},
		{"global multicast is not routed either", func(t testing.TB) []byte { return udp6(t, "2001:db8::1", "ff0e::1", 64) }, packet.Drop, packet.DropConsumed, "local"},
		{"a global source to a global destination is forwarded", func(t testing.TB) []byte { return udp6(t, "2001:db8::1", "2001:db8:1::2", 64) }, packet.Forward, packet.DropNone, "forwarded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := testRouter(t, nil)
			before := r.StageMetrics()
			p := run(r, 0, tc.frame(t))[0]
			if p.Verdict != tc.verdict || p.Reason != tc.reason {
				t.Errorf("verdict %v %v, want %v %v", p.Verdict, p.Reason, tc.verdict, tc.reason)
			}
			after := r.StageMetrics()
			if d := after[tc.counter] - before[tc.counter]; d != 1 {
				t.Errorf("%s grew by %d, want 1 (counters %v)", tc.counter, d, after)
			}
			if after["forwarded"] != 0 && tc.verdict != packet.Forward {
				t.Errorf("forwarded a martian")
			}
		})
	}
}

// The beyond-scope answer is ICMPv6 destination unreachable code 2 to the
// link-local source, from the router's link-local address on that link,
// quoting the packet, and rate limited like every other error.
func TestLinkLocalSourceGetsBeyondScopeWithinTheRateLimit(t *testing.T) {
	r := testRouter(t, func(c *Config) {
		c.Interfaces[0].Addrs = append(c.Interfaces[0].Addrs, netip.MustParsePrefix("fe80::2/64"))
		c.ICMPBurst, c.ICMPRate = 1, 1
	})
	orig := udp6(t, "fe80::1", "2001:db8:1::2", 64)
	ps := run(r, 0, orig, orig)
	if ps[0].Verdict != packet.Bounce {
		t.Fatalf("first: %v %v, want an answer", ps[0].Verdict, ps[0].Reason)
	}
	pk := decode(t, ps[0].Data)
	ip := pk.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	ic := pk.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if ic.TypeCode != layers.CreateICMPv6TypeCode(1, 2) || ip.SrcIP.String() != "fe80::2" || ip.DstIP.String() != "fe80::1" {
		t.Errorf("answer %v from %v to %v, want 1/2 from fe80::2 to fe80::1", ic.TypeCode, ip.SrcIP, ip.DstIP)
	}
	if q := ic.Payload[4:]; string(q) != string(orig[14:]) {
		t.Errorf("quote %x, want the packet", q)
	}
	if ps[1].Verdict != packet.Drop || ps[1].Reason != packet.DropMartian {
		t.Errorf("second: %v %v, want a martian drop (rate limited)", ps[1].Verdict, ps[1].Reason)
	}
	if c := r.Counters(); c.ScopeSrcLinkLocal != 2 || c.Unreachable != 1 || c.ICMPRateLimited != 1 || c.Forwarded != 0 {
		t.Errorf("counters %+v", c)
	}
}

func TestMartianDropsAllocateNothing(t *testing.T) {
	r := testRouter(t, nil)
	frames := [][]byte{udp4(t, "127.0.0.1", "198.19.5.5", 64), udp6(t, "fe80::1", "2001:db8:1::2", 64), udp6(t, "::1", "2001:db8:1::2", 64)}
	var b packet.Batch
	bufs := make([][]byte, 63)
	for i := range bufs {
		bufs[i] = make([]byte, 0, 2048)
	}
	allocs := testing.AllocsPerRun(100, func() {
		b.Reset()
		for i := range bufs {
			f := frames[i%len(frames)]
			bufs[i] = append(bufs[i][:0], f...)
			b.Append(bufs[i], 0, 0).Parse()
		}
		r.Process(&b)
	})
	if allocs != 0 {
		t.Errorf("martian drops allocate %.1f times per batch", allocs)
	}
}

// With no VLAN configured, tagged frames are not the router's: routed out
// with their tags on, they would leak into another port's VLAN.
func TestTaggedFramesAreDroppedOnAnUntaggedPort(t *testing.T) {
	tagged := func(t testing.TB, outer layers.EthernetType, tags ...uint16) []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{198, 18, 0, 1}, DstIP: net.IP{198, 19, 5, 5}}
		u := &layers.UDP{SrcPort: 5000, DstPort: 9000}
		u.SetNetworkLayerForChecksum(ip)
		ls := []gopacket.SerializableLayer{eth(macGen, macIn, outer)}
		for i, id := range tags {
			next := layers.EthernetTypeIPv4
			if i+1 < len(tags) {
				next = layers.EthernetTypeDot1Q
			}
			ls = append(ls, &layers.Dot1Q{VLANIdentifier: id, Type: next})
		}
		return serialize(t, append(ls, ip, u, gopacket.Payload("tagged"))...)
	}
	arp := func(t testing.TB) []byte {
		return serialize(t, eth(macGen, [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, layers.EthernetTypeDot1Q),
			&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeARP}, &layers.ARP{
				AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
				Operation: layers.ARPRequest, SourceHwAddress: macGen[:], SourceProtAddress: []byte{198, 18, 0, 1},
				DstHwAddress: make([]byte, 6), DstProtAddress: []byte{198, 18, 0, 2}})
	}
	cases := []struct {
		name  string
		frame func(testing.TB) []byte
	}{
		{"an 802.1Q frame is dropped", func(t testing.TB) []byte { return tagged(t, layers.EthernetTypeDot1Q, 100) }},
		{"VLAN 0 (priority tagged) is dropped too", func(t testing.TB) []byte { return tagged(t, layers.EthernetTypeDot1Q, 0) }},
		{"a QinQ frame (0x88a8) is dropped", func(t testing.TB) []byte { return tagged(t, layers.EthernetTypeQinQ, 100, 200) }},
		{"two 802.1Q tags are dropped", func(t testing.TB) []byte { return tagged(t, layers.EthernetTypeDot1Q, 100, 200) }},
		{"a tagged ARP request for the router is not answered", arp},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := testRouter(t, nil)
			p := run(r, 0, tc.frame(t))[0]
			if p.Verdict != packet.Drop || p.Reason != packet.DropUnsupported {
				t.Errorf("verdict %v %v, want an unsupported drop", p.Verdict, p.Reason)
			}
			if c := r.Counters(); c.VLANTagged != 1 || c.Forwarded != 0 || c.ARPReplies != 0 {
				t.Errorf("counters %+v, want vlan_tagged 1 and nothing else", c)
			}
		})
	}
}

// BenchmarkRouterStageManyNeighbors forwards a burst to 64 directly
// connected hosts, each learned from its ARP reply: every packet misses
// the one-entry neighbor cache and looks its neighbor up in the table.
func BenchmarkRouterStageManyNeighbors(b *testing.B) {
	r := testRouter(b, nil)
	bufs := make([][]byte, 64)
	frames := make([][]byte, 64)
	for i := range frames {
		host := []byte{198, 18, 1, byte(10 + i)}
		mac := [6]byte{2, 0, 0, 0, 2, byte(i)}
		reply := serialize(b, eth(mac, macOut, layers.EthernetTypeARP), &layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPReply, SourceHwAddress: mac[:], SourceProtAddress: host,
			DstHwAddress: macOut[:], DstProtAddress: []byte{198, 18, 1, 1}})
		if p := run(r, 1, reply)[0]; p.Verdict != packet.Drop || p.Reason != packet.DropConsumed {
			b.Fatalf("ARP reply from %v: %v %v", host, p.Verdict, p.Reason)
		}
		frames[i] = udp4(b, "198.18.0.1", net.IP(host).String(), 64)
		bufs[i] = make([]byte, len(frames[i]), 2048)
	}
	var batch packet.Batch
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		batch.Reset()
		for j := range bufs {
			copy(bufs[j], frames[j])
			batch.Append(bufs[j], 0, 0).Parse()
		}
		r.Process(&batch)
		if p := &batch.Packets[63]; p.Verdict != packet.Forward {
			b.Fatalf("benchmark packets are not forwarded: %v %v", p.Verdict, p.Reason)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/pkt")
}

// sized builds a UDP packet of ipLen bytes on the wire's IP layer, DF as
// asked (IPv4) or IPv6.
func sized(t *testing.T, v6, df bool, ipLen int) []byte {
	payload := make([]byte, ipLen-8-20)
	if v6 {
		payload = payload[:ipLen-8-40]
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8:1::2")}
		u := &layers.UDP{SrcPort: 5000, DstPort: 9000}
		u.SetNetworkLayerForChecksum(ip)
		return serialize(t, eth(macGen, macIn, layers.EthernetTypeIPv6), ip, u, gopacket.Payload(payload))
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{198, 18, 0, 1}, DstIP: net.IP{198, 19, 5, 5}}
	if df {
		ip.Flags = layers.IPv4DontFragment
	}
	u := &layers.UDP{SrcPort: 5000, DstPort: 9000}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(macGen, macIn, layers.EthernetTypeIPv4), ip, u, gopacket.Payload(payload))
}

// A packet larger than the egress MTU is not forwarded: IPv4 with DF and
// IPv6 are answered with the MTU (RFC 1191, RFC 8201) from the ingress
// address, IPv4 without DF is dropped and counted; a packet of exactly the
// MTU passes.
func TestPacketsOverTheEgressMTU(t *testing.T) {
	r := testRouter(t, func(c *Config) { c.Interfaces[1].MTU = 1280 })
	if p := run(r, 0, sized(t, false, true, 1280))[0]; p.Verdict != packet.Forward {
		t.Errorf("IPv4 of exactly the MTU: %v %v", p.Verdict, p.Reason)
	}
	if p := run(r, 0, sized(t, true, false, 1280))[0]; p.Verdict != packet.Forward {
		t.Errorf("IPv6 of exactly the MTU: %v %v", p.Verdict, p.Reason)
	}

	orig := sized(t, false, true, 1281)
	p := run(r, 0, orig)[0]
	if p.Verdict != packet.Bounce {
		t.Fatalf("IPv4 DF over the MTU: %v %v", p.Verdict, p.Reason)
	}
	pk := decode(t, p.Data)
	ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ip.SrcIP.String() != "198.18.0.2" || ip.DstIP.String() != "198.18.0.1" || ic.TypeCode != layers.CreateICMPv4TypeCode(3, 4) ||
		ic.Seq != 1280 || ic.Id != 0 {
		t.Errorf("got %v -> %v %v, unused %d, next-hop MTU %d", ip.SrcIP, ip.DstIP, ic.TypeCode, ic.Id, ic.Seq)
	}
	if q := ic.Payload; string(q) != string(orig[14:14+28]) {
		t.Errorf("quote %x, want %x", q, orig[14:42])
	}

	if p := run(r, 0, sized(t, false, false, 1281))[0]; p.Verdict != packet.Drop || p.Reason != packet.DropTooBig {
		t.Errorf("IPv4 without DF over the MTU: %v %v", p.Verdict, p.Reason)
	}

	o6 := sized(t, true, false, 1300)
	p = run(r, 0, o6)[0]
	if p.Verdict != packet.Bounce {
		t.Fatalf("IPv6 over the MTU: %v %v", p.Verdict, p.Reason)
	}
	pk = decode(t, p.Data)
	ic6 := pk.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	ip6 := pk.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if ic6.TypeCode != layers.CreateICMPv6TypeCode(2, 0) || binary.BigEndian.Uint32(ic6.Payload[:4]) != 1280 ||
		ip6.SrcIP.String() != "2001:db8::2" || ip6.DstIP.String() != "2001:db8::1" || ip6.Length > 1280-40 {
		t.Errorf("got %v -> %v %v, MTU %d, length %d", ip6.SrcIP, ip6.DstIP, ic6.TypeCode, binary.BigEndian.Uint32(ic6.Payload[:4]), ip6.Length)
	}
	if q := ic6.Payload[4:]; string(q) != string(o6[14:14+len(q)]) || len(q) != 1280-40-8 {
		t.Errorf("IPv6 quote of %d bytes, want the first %d of the packet", len(q), 1280-40-8)
	}
	if c := r.Counters(); c.TooBig != 3 || c.FragNeeded != 2 || c.Forwarded != 2 {
		t.Errorf("counters too big %d, sent %d, forwarded %d: want 3, 2, 2", c.TooBig, c.FragNeeded, c.Forwarded)
	}
}
