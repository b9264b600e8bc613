package nftest

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/internal/dut"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/nf/nat"
	"github.com/xnfdev/xnf/nf/router"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/port/xdp"
)

func mac(s string) [6]byte { m, _ := net.ParseMAC(s); return [6]byte(m) }

// liveChain runs firewall -> NAT -> router between gen and sink over AF_XDP.
func liveChain(t *testing.T) (*lab.Topology, *pipeline.Worker, *afxdp.UMEM, []*afxdp.Device, []*xdp.Port) {
	return liveChainWith(t, conntrack.Config{MaxFlows: 4096}, nil, nil)
}

// liveChainWith is liveChain with a conntrack configuration; stage and
// rt, when set, receive the firewall stage and the router.
func liveChainWith(t *testing.T, cc conntrack.Config, stage **firewall.Stage, rt **router.Router) (*lab.Topology, *pipeline.Worker, *afxdp.UMEM, []*afxdp.Device, []*xdp.Port) {
	topo := lab.TopologyForTest(t, "hostile", lab.TopologyOptions{})
	rules, _ := firewall.ParseRules([]string{"accept state established,related", "accept in 0 state new"})
	fw, _ := firewall.New(1, rules, firewall.Drop)
	ct, err := conntrack.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.NewRouter(router.Config{
		Interfaces: []router.Interface{
			{Port: 0, MAC: mac(lab.DUTInMAC), Addrs: []netip.Prefix{netip.MustParsePrefix(lab.DUTInAddr + "/24"), netip.MustParsePrefix("2001:db8::2/64")}},
			{Port: 1, MAC: mac(lab.DUTOutMAC), Addrs: []netip.Prefix{netip.MustParsePrefix(lab.DUTOutAddr + "/24"), netip.MustParsePrefix("2001:db8:1::1/64")}},
		},
		Neighbors: []router.Neighbor{
			{Port: 0, Addr: netip.MustParseAddr(lab.GenAddr), MAC: mac(lab.GenMAC)},
			{Port: 1, Addr: netip.MustParseAddr(lab.SinkAddr), MAC: mac(lab.SinkMAC)},
			{Port: 1, Addr: netip.MustParseAddr("2001:db8:1::2"), MAC: mac(lab.SinkMAC)},
		},
		ICMPBurst: 1000, ICMPRate: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	fs := firewall.NewStage(fw, ct, 0)
	if stage != nil {
		*stage = fs
	}
	if rt != nil {
		*rt = r
	}
	// The NAT shares the firewall's table, as the YAML chain does.
	ns, err := nat.NewStageShared(nat.Config{Inside: []uint16{0}, Outside: []uint16{1}, Pool: []netip.Addr{netip.MustParseAddr(lab.DUTOutAddr)},
		Except: []netip.Prefix{netip.MustParsePrefix(lab.DUTInAddr + "/32")}}, ct)
	if err != nil {
		t.Fatal(err)
	}
	d := dut.Start(t, topo, []pipeline.Stage{fs, ns, r}, dut.Options{Frames: 4096, Fill: 1024})
	return topo, d.Worker, d.UMEM, d.Devices, d.Ports
}

// rawSender writes whole frames out of g0 with an AF_PACKET socket.
func rawSender(t *testing.T, ns *lab.NS) func([]byte) {
	var fd, ifindex int
	if err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		ifi, err := net.InterfaceByName("g0")
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return func(f []byte) {
		if err := unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6}); err != nil {
			t.Fatalf("raw send of %d bytes: %v", len(f), err)
		}
	}
}

func ser(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ethTo(typ layers.EthernetType) *layers.Ethernet {
	g, d := mac(lab.GenMAC), mac(lab.DUTInMAC)
	return &layers.Ethernet{SrcMAC: g[:], DstMAC: d[:], EthernetType: typ}
}

func ip4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Id: 7, Protocol: proto, SrcIP: net.ParseIP(lab.GenAddr).To4(), DstIP: net.ParseIP(lab.SinkAddr).To4()}
}

func udpFrame(t *testing.T, payload string) []byte {
	ip := ip4(layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: 1234, DstPort: 9}
	u.SetNetworkLayerForChecksum(ip)
	return ser(t, ethTo(layers.EthernetTypeIPv4), ip, u, gopacket.Payload(payload))
}

func fixIPChecksum(f []byte) []byte {
	h := packet.IPv4(f[14:])
	h.SetChecksum(0)
	h.SetChecksum(h.ComputeChecksum())
	return f
}

// TestHostileFramesGetDefinedVerdicts sends each kind of bad frame from
// the generator namespace through a running firewall -> router and checks
// that every one is counted where the design says: dropped with its reason,
// or forwarded when it is legal; and that no frame leaks (UMEM accounting
// at cleanup).
func TestHostileFramesGetDefinedVerdicts(t *testing.T) {
	var rt *router.Router
	topo, w, _, _, _ := liveChainWith(t, conntrack.Config{MaxFlows: 4096}, nil, &rt)
	// No ARP and no ICMP from the sink's kernel: only our frames move.
	if err := topo.Sink.AddNeigh("s0", lab.DUTOutAddr, lab.DUTOutMAC); err != nil {
		t.Fatal(err)
	}
	var sink *net.UDPConn
	topo.Sink.Do(func() (err error) {
		sink, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(lab.SinkAddr), Port: 9})
		return err
	})
	defer sink.Close()
	send := rawSender(t, topo.Gen)
	good := udpFrame(t, "a payload of some length")
	frag := func(offset uint16, more bool, payload string) []byte {
		ip := ip4(layers.IPProtocolUDP)
		ip.FragOffset = offset
		if more {
			ip.Flags = layers.IPv4MoreFragments
		}
		if offset == 0 {
			u := &layers.UDP{SrcPort: 1234, DstPort: 9}
			u.SetNetworkLayerForChecksum(ip)
			return ser(t, ethTo(layers.EthernetTypeIPv4), ip, u, gopacket.Payload(payload))
		}
		return ser(t, ethTo(layers.EthernetTypeIPv4), ip, gopacket.Payload(payload))
	}
	mod := func(f []byte, fn func([]byte)) []byte { c := append([]byte(nil), f...); fn(c); return c }
	ihl4 := mod(good, func(f []byte) { f[14] = 0x44; fixIPChecksum(f) })
	tooLong := mod(good, func(f []byte) { binary.BigEndian.PutUint16(f[16:], 1400); fixIPChecksum(f) })
	shorter := append(append([]byte(nil), good...), make([]byte, 30)...) // trailing padding is legal
	badSum := mod(good, func(f []byte) { f[24] ^= 0x5a })
	withOpts := func() []byte {
		ip := ip4(layers.IPProtocolUDP)
		ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		u := &layers.UDP{SrcPort: 1234, DstPort: 9}
		u.SetNetworkLayerForChecksum(ip)
		return ser(t, ethTo(layers.EthernetTypeIPv4), ip, u, gopacket.Payload("options"))
	}()
	tcpOff := func() []byte {
		ip := ip4(layers.IPProtocolTCP)
		c := &layers.TCP{SrcPort: 1, DstPort: 2, SYN: true, Window: 1}
		c.SetNetworkLayerForChecksum(ip)
		f := ser(t, ethTo(layers.EthernetTypeIPv4), ip, c)
		f[14+20+12] = 0xf0 // data offset 60 bytes, past the end
		return f
	}()
	udpLen0 := mod(good, func(f []byte) { binary.BigEndian.PutUint16(f[14+20+4:], 0) })
	udpLenLong := mod(good, func(f []byte) { binary.BigEndian.PutUint16(f[14+20+4:], 900) })
	icmpErr := func() []byte {
		qip := &layers.IPv4{Version: 4, TTL: 3, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(lab.SinkAddr).To4(), DstIP: net.IP{203, 0, 113, 1}}
		qu := &layers.UDP{SrcPort: 5, DstPort: 6}
		qu.SetNetworkLayerForChecksum(qip)
		quoted := ser(t, qip, qu)
		return ser(t, ethTo(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(quoted))
	}()
	unknown := ser(t, ethTo(0x88b5), gopacket.Payload("local experimental ethertype payload"))
	icmpTrunc := func() []byte {
		// The quoted header is cut after 10 bytes: no addresses to match.
		return ser(t, ethTo(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload([]byte{0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17}))
	}()
	qinq := func() []byte {
		g, d := mac(lab.GenMAC), mac(lab.DUTInMAC)
		ip := ip4(layers.IPProtocolUDP)
		u := &layers.UDP{SrcPort: 1234, DstPort: 9}
		u.SetNetworkLayerForChecksum(ip)
		return ser(t, &layers.Ethernet{SrcMAC: g[:], DstMAC: d[:], EthernetType: layers.EthernetTypeQinQ},
			&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 200, Type: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload("double tagged"))
	}()
	dot1q := func() []byte {
		g, d := mac(lab.GenMAC), mac(lab.DUTInMAC)
		ip := ip4(layers.IPProtocolUDP)
		u := &layers.UDP{SrcPort: 1234, DstPort: 9}
		u.SetNetworkLayerForChecksum(ip)
		return ser(t, &layers.Ethernet{SrcMAC: g[:], DstMAC: d[:], EthernetType: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload("single tagged"))
	}()
	v6ext := func() []byte {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6HopByHop,
			SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8:1::2")}
		hbh := &layers.IPv6HopByHop{}
		hbh.NextHeader = layers.IPProtocolIPv6Destination
		hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
		dst := &layers.IPv6Destination{}
		dst.NextHeader = layers.IPProtocolUDP
		dst.Options = []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
		u := &layers.UDP{SrcPort: 1234, DstPort: 9}
		u.SetNetworkLayerForChecksum(ip)
		return ser(t, ethTo(layers.EthernetTypeIPv6), ip, hbh, dst, u, gopacket.Payload("extension headers"))
	}()
	runt := mod(good[:14], func([]byte) {})
	from4 := func(src, dst string) []byte {
		ip := ip4(layers.IPProtocolUDP)
		ip.SrcIP, ip.DstIP = net.ParseIP(src).To4(), net.ParseIP(dst).To4()
		u := &layers.UDP{SrcPort: 1234, DstPort: 9}
		u.SetNetworkLayerForChecksum(ip)
		return ser(t, ethTo(layers.EthernetTypeIPv4), ip, u, gopacket.Payload("martian"))
	}
	from6 := func(src, dst string) []byte {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
		u := &layers.UDP{SrcPort: 1234, DstPort: 9}
		u.SetNetworkLayerForChecksum(ip)
		return ser(t, ethTo(layers.EthernetTypeIPv6), ip, u, gopacket.Payload("scoped"))
	}
	// A type 0 routing header (RFC 5095) with a segment left, for the
	// router's own address: UDP from the client, new from in 0, which
	// the firewall accepts.
	rh0 := func() []byte {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Routing,
			SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
		final := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolUDP, SrcIP: ip.SrcIP, DstIP: net.ParseIP("2001:db8:1::2")}
		u := &layers.UDP{SrcPort: 1234, DstPort: 9}
		u.SetNetworkLayerForChecksum(final)
		rh := append([]byte{byte(layers.IPProtocolUDP), 2, 0, 1, 0, 0, 0, 0}, final.DstIP...)
		return ser(t, ethTo(layers.EthernetTypeIPv6), ip, gopacket.Payload(append(rh, ser(t, u, gopacket.Payload("source routed"))...)))
	}()
	nd := func(hop uint8, src, dst string, body gopacket.SerializableLayer, corrupt bool) []byte {
		ip := &layers.IPv6{Version: 6, HopLimit: hop, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
		typ := uint8(layers.ICMPv6TypeNeighborSolicitation)
		if _, ok := body.(*layers.ICMPv6NeighborAdvertisement); ok {
			typ = layers.ICMPv6TypeNeighborAdvertisement
		}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
		ic.SetNetworkLayerForChecksum(ip)
		f := ser(t, ethTo(layers.EthernetTypeIPv6), ip, ic, body)
		if corrupt {
			f[14+40+2] ^= 0x55
		}
		return f
	}
	evil := []byte{0x02, 0xee, 0xee, 0xee, 0xee, 0xee}
	offLinkNA := nd(64, "2001:db8::1", "2001:db8::2", &layers.ICMPv6NeighborAdvertisement{Flags: 0x20, TargetAddress: net.ParseIP("2001:db8:1::2"),
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: evil}}}, false)
	badSumNS := nd(255, "2001:db8::1", "ff02::1:ff00:2", &layers.ICMPv6NeighborSolicitation{TargetAddress: net.ParseIP("2001:db8::2"),
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: evil}}}, true)
	claimNA := nd(255, "2001:db8::1", "ff02::1", &layers.ICMPv6NeighborAdvertisement{Flags: 0x20, TargetAddress: net.ParseIP("2001:db8::2"),
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: evil}}}, false)

	cases := []struct {
		name    string
		frame   []byte
		reason  packet.DropReason // DropNone: forwarded (or bounced)
		bounce  bool              // answered back out of in0
		counter string            // a router counter that counts each
	}{
		{"an IPv4 ethertype with no IPv4 header is malformed", runt, packet.DropMalformed, false, ""},
		{"IPv4 with IHL < 5 is malformed", ihl4, packet.DropMalformed, false, ""},
		{"total length past the frame is malformed", tooLong, packet.DropMalformed, false, ""},
		{"total length short of the frame is padding: forwarded", shorter, packet.DropNone, false, ""},
		{"a bad header checksum is dropped by the router", badSum, packet.DropMalformed, false, ""},
		{"IPv4 options are legal: forwarded", withOpts, packet.DropNone, false, ""},
		// Later fragments carry no ports: they follow their datagram's
		// first fragment (TestFragmentSequencesGetDefinedVerdicts), and
		// one whose first fragment was never seen is dropped. (A first
		// fragment sent again and again would be an overlap after the
		// first time: it is not a frame of this catalogue.)
		{"a middle fragment whose first was never seen is dropped", frag(4, true, "middle fragment!"), packet.DropFragment, false, ""},
		{"a last fragment whose first was never seen is dropped", frag(6, false, "last"), packet.DropFragment, false, ""},
		{"a fragment at offset 16 whose first was never seen is dropped", frag(2, true, "overlapping frag"), packet.DropFragment, false, ""},
		{"a fragment whose length is not a multiple of 8 is malformed", frag(2, true, "odd"), packet.DropMalformed, false, ""},
		{"TCP data offset past the end is malformed", tcpOff, packet.DropMalformed, false, ""},
		{"UDP length 0 is malformed", udpLen0, packet.DropMalformed, false, ""},
		{"UDP length past the end is malformed", udpLenLong, packet.DropMalformed, false, ""},
		{"an ICMP error about an unknown flow is invalid: policy", icmpErr, packet.DropPolicy, false, ""},
		{"an unknown ethertype is unsupported", unknown, packet.DropUnsupported, false, ""},
		{"an ICMP error with a truncated quoted header is invalid: policy", icmpTrunc, packet.DropPolicy, false, ""},
		{"QinQ double tags on an untagged port are dropped by the router", qinq, packet.DropUnsupported, false, ""},
		{"an 802.1Q tag on an untagged port is dropped by the router", dot1q, packet.DropUnsupported, false, ""},
		{"IPv6 with hop-by-hop and destination options before UDP is forwarded", v6ext, packet.DropNone, false, ""},
		{"a loopback source is a martian, NAT or not", from4("127.0.0.1", lab.SinkAddr), packet.DropMartian, false, ""},
		{"a 0.0.0.0 source is a martian", from4("0.0.0.0", lab.SinkAddr), packet.DropMartian, false, ""},
		{"the broadcast source is a martian", from4("255.255.255.255", lab.SinkAddr), packet.DropMartian, false, ""},
		{"a multicast source is a martian", from4("224.0.0.9", lab.SinkAddr), packet.DropMartian, false, ""},
		{"a loopback destination is a martian", from4(lab.GenAddr, "127.0.0.1"), packet.DropMartian, false, ""},
		{"a 0/8 destination is a martian", from4(lab.GenAddr, "0.1.2.3"), packet.DropMartian, false, ""},
		{"a link-local source is answered beyond scope, not forwarded", from6("fe80::1", "2001:db8:1::2"), packet.DropNone, true, ""},
		{"a link-local destination that is not the router's is a martian", from6("2001:db8::1", "fe80::99"), packet.DropMartian, false, ""},
		{"site-scoped multicast is not forwarded", from6("2001:db8::1", "ff05::1:3"), packet.DropConsumed, false, ""},
		{"a type 0 routing header with segments left, to the router, gets parameter problem", rh0, packet.DropNone, true, "param_problem_sent"},
		{"a neighbor advertisement from off the link (hop limit 64) meets the firewall's rules", offLinkNA, packet.DropPolicy, false, ""},
		{"a neighbor solicitation with a bad checksum is malformed", badSumNS, packet.DropMalformed, false, ""},
		{"a neighbor advertisement claiming the router's address is a conflict, never learned", claimNA, packet.DropConsumed, false, "ndp_conflicts"},
	}
	const k = 5
	for _, tc := range cases {
		before := w.PortCounters()
		beforeRouter := rt.StageMetrics()
		for i := 0; i < k; i++ {
			send(tc.frame)
		}
		var after []pipeline.PortCounters
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			after = w.PortCounters()
			if after[0].RX-before[0].RX >= k {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
		after = w.PortCounters()
		if got := after[0].RX - before[0].RX; got != k {
			t.Errorf("%s: xnf received %d of %d", tc.name, got, k)
			continue
		}
		fwd := after[1].TX - before[1].TX
		dropped := after[0].Dropped[tc.reason] - before[0].Dropped[tc.reason]
		switch {
		case tc.bounce:
			if back := after[0].TX - before[0].TX; back != k || fwd != 0 {
				t.Errorf("%s: %d answered and %d forwarded, want %d answered", tc.name, back, fwd, k)
			}
		case tc.reason == packet.DropNone && fwd != k:
			t.Errorf("%s: forwarded %d of %d (drops %v)", tc.name, fwd, k, after[0].Dropped)
		case tc.reason != packet.DropNone && (dropped != k || fwd != 0):
			t.Errorf("%s: %d dropped as %v and %d forwarded, want %d dropped (drops now %v)", tc.name, dropped, tc.reason, fwd, k, after[0].Dropped)
		}
		if n := rt.StageMetrics()[tc.counter] - beforeRouter[tc.counter]; tc.counter != "" && n != k {
			t.Errorf("%s: router %s grew by %d, want %d", tc.name, tc.counter, n, k)
		}
	}

	for _, nb := range rt.Neighbors().List() {
		if nb.MAC == [6]byte(evil) {
			t.Errorf("the router learned %v from a frame it must not believe", nb)
		}
	}

	// Again, all kinds interleaved, while a kernel UDP stream crosses the
	// chain: every valid datagram arrives and the drops are exactly the
	// bad frames'.
	if err := topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC); err != nil {
		t.Fatal(err)
	}
	const rounds, valid = 20, 2000
	before := w.PortCounters()[0].Dropped
	got := make(chan int, 1)
	go func() {
		seen := map[string]bool{}
		buf := make([]byte, 2048)
		for len(seen) < valid {
			sink.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, _, err := sink.ReadFromUDP(buf)
			if err != nil {
				break
			}
			if strings.HasPrefix(string(buf[:n]), "valid-") {
				seen[string(buf[:n])] = true
			}
		}
		got <- len(seen)
	}()
	streamDone := make(chan error, 1)
	go func() {
		streamDone <- topo.Gen.SendUDP(lab.SinkAddr+":9", valid, "valid-%d", 20, time.Millisecond)
	}()
	for r := 0; r < rounds; r++ {
		for _, tc := range cases {
			send(tc.frame)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := <-streamDone; err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != valid {
		t.Errorf("valid stream beside the bad frames: %d of %d datagrams arrived", n, valid)
	}
	want := map[packet.DropReason]uint64{}
	for _, tc := range cases {
		if tc.reason != packet.DropNone {
			want[tc.reason] += rounds
		}
	}
	time.Sleep(50 * time.Millisecond)
	after := w.PortCounters()[0].Dropped
	for r, n := range want {
		if d := after[r] - before[r]; d != n {
			t.Errorf("%v drops: %d during the mixed run, want %d (the bad frames' only)", r, d, n)
		}
	}
}
