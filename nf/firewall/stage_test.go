package firewall

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/packet"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

var (
	clientIP = net.IP{198, 18, 0, 1}
	serverIP = net.IP{198, 18, 1, 2}
	macA, _  = net.ParseMAC("02:00:00:00:00:01")
	macB, _  = net.ParseMAC("02:00:00:00:00:02")
)

func tcpFrame(t testing.TB, src, dst net.IP, sport, dport uint16, syn, ack bool) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
	tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: syn, ACK: ack, Seq: 100, Ack: 1, Window: 1000}
	tc.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, ip, tc); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func arpFrame(t testing.TB) []byte {
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true},
		&layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: clientIP, DstHwAddress: make([]byte, 6), DstProtAddress: serverIP})
	return buf.Bytes()
}

type frame struct {
	in   uint16
	data []byte
}

func process(s *Stage, frames ...frame) []packet.Packet {
	var b packet.Batch
	for _, f := range frames {
		d := append([]byte(nil), f.data...)
		b.Append(d, 0, f.in).Parse()
	}
	s.Process(&b)
	return b.Slice()
}

func statefulStage(t testing.TB) *Stage {
	t.Helper()
	rules, err := ParseRules([]string{
		"accept state established,related",
		"accept in 0 proto tcp dport 8080 state new",
	})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := New(1, rules, Drop)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := conntrack.New(conntrack.Config{MaxFlows: 1024})
	if err != nil {
		t.Fatal(err)
	}
	return NewStage(fw, ct, 0)
}

func TestStageLetsAllowedConnectionsAndTheirRepliesThrough(t *testing.T) {
	s := statefulStage(t)
	ps := process(s,
		frame{0, tcpFrame(t, clientIP, serverIP, 40000, 8080, true, false)}, // SYN to the allowed port
		frame{1, tcpFrame(t, serverIP, clientIP, 8080, 40000, true, true)},  // SYN-ACK back
		frame{0, tcpFrame(t, clientIP, serverIP, 40001, 22, true, false)},   // SYN to a closed port
		frame{1, tcpFrame(t, serverIP, clientIP, 8081, 40002, true, false)}, // unsolicited, from the server side
		frame{1, tcpFrame(t, serverIP, clientIP, 9999, 40003, false, true)}, // a stray ACK: invalid
		frame{0, arpFrame(t)},
	)
	want := []struct {
		v packet.Verdict
		r packet.DropReason
	}{{packet.Forward, 0}, {packet.Forward, 0}, {packet.Drop, packet.DropPolicy}, {packet.Drop, packet.DropPolicy}, {packet.Drop, packet.DropPolicy}, {packet.Forward, 0}}
	for i, w := range want {
		if ps[i].Verdict != w.v || ps[i].Reason != w.r {
			t.Errorf("packet %d: %v %v, want %v %v", i, ps[i].Verdict, ps[i].Reason, w.v, w.r)
		}
	}
	if n := s.Conntrack().Len(); n != 1 {
		t.Errorf("conntrack holds %d flows, want 1 (denied new flows are forgotten)", n)
	}
	m := s.StageMetrics()
	if m["accepted"] != 2 || m["dropped"] != 3 || m["rule_0_hits"] != 1 || m["rule_1_hits"] != 1 || m["default_hits"] != 3 {
		t.Errorf("metrics %v", m)
	}
}

func TestStageDropsMalformedIPBeforeTheRules(t *testing.T) {
	rules, _ := ParseRules([]string{"accept"})
	fw, _ := New(1, rules, Accept)
	s := NewStage(fw, nil, 0)
	bad := tcpFrame(t, clientIP, serverIP, 1, 2, true, false)
	bad[14] = 0x44 // IHL 4: malformed
	ps := process(s, frame{0, bad})
	if ps[0].Verdict != packet.Drop || ps[0].Reason != packet.DropMalformed {
		t.Errorf("%v %v", ps[0].Verdict, ps[0].Reason)
	}
}

func TestStageAllocatesNothingPerBatch(t *testing.T) {
	s := statefulStage(t)
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = tcpFrame(t, clientIP, serverIP, uint16(40000+i), 8080, true, false)
	}
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, len(frames[i]))
	}
	var b packet.Batch
	run := func() {
		b.Reset()
		for i := range bufs {
			copy(bufs[i], frames[i])
			b.Append(bufs[i], 0, 0).Parse()
		}
		s.Process(&b)
	}
	run()
	if a := testing.AllocsPerRun(100, run); a != 0 {
		t.Errorf("firewall stage allocates %.1f times per batch", a)
	}
}

func BenchmarkStage(b *testing.B) {
	s := statefulStage(b)
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = tcpFrame(b, clientIP, serverIP, uint16(40000+i), 8080, true, false)
	}
	var batch packet.Batch
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		batch.Reset()
		for j := range frames {
			batch.Append(frames[j], 0, 0).Parse()
		}
		s.Process(&batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/pkt")
}

// A batch whose packets hit more distinct rules than half the batch
// counts every hit once.
func TestStageCountsManyDistinctRulesInOneBatch(t *testing.T) {
	var texts []string
	for p := 1; p <= packet.MaxBurst; p++ {
		texts = append(texts, fmt.Sprintf("accept proto tcp dport %d", p))
	}
	rules, err := ParseRules(texts)
	if err != nil {
		t.Fatal(err)
	}
	fw, _ := New(1, rules, Drop)
	s := NewStage(fw, nil, 0)
	var frames []frame
	for p := 1; p <= packet.MaxBurst; p++ {
		frames = append(frames, frame{0, tcpFrame(t, clientIP, serverIP, 1000, uint16(p), true, false)})
	}
	process(s, frames...)
	for i, h := range fw.Hits() {
		if h != 1 {
			t.Fatalf("rule %d counted %d hits, want 1", i, h)
		}
	}
}

// BenchmarkStage10kRules is the stage as a user runs it, through the
// test kit's worker: parse, conntrack, classification against the 10k
// random rules of benchSet, verdicts, over 64 UDP/TCP flows of its
// traffic (IPv4; the kit builds the frames).
func BenchmarkStage10kRules(b *testing.B) {
	rules, keys := benchSet(10000)
	fw, err := New(1, rules, Drop)
	if err != nil {
		b.Fatal(err)
	}
	ct, err := conntrack.New(conntrack.Config{MaxFlows: 4096})
	if err != nil {
		b.Fatal(err)
	}
	var frames [][]byte
	for i := 0; len(frames) < 64 && i < len(keys); i++ {
		k := &keys[i]
		if k.IPv6 || k.Proto != ProtoTCP && k.Proto != ProtoUDP {
			continue
		}
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(k.Src[12:])), k.SrcPort).String()
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(k.Dst[12:])), k.DstPort).String()
		if k.Proto == ProtoTCP {
			frames = append(frames, pt.TCP4(src, dst, "", pt.TCPFlags(packet.TCPSyn)))
		} else {
			frames = append(frames, pt.UDP4(src, dst, "payload"))
		}
	}
	pt.Benchmark(b, NewStage(fw, ct, 0), frames...)
}

// SCTP and UDP-Lite carry their ports where UDP does: sport and dport
// rules with those protocols match them.
func TestStageMatchesSCTPAndUDPLitePorts(t *testing.T) {
	rules, err := ParseRules([]string{"accept proto sctp dport 5000", "accept proto udplite sport 7000"})
	if err != nil {
		t.Fatal(err)
	}
	fw, _ := New(1, rules, Drop)
	s := NewStage(fw, nil, 0)
	ser := func(proto layers.IPProtocol, l4 ...gopacket.SerializableLayer) []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: clientIP, DstIP: serverIP}
		buf := gopacket.NewSerializeBuffer()
		ls := append([]gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, ip}, l4...)
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	sctp := func(sport, dport uint16) []byte {
		return ser(layers.IPProtocolSCTP, &layers.SCTP{SrcPort: layers.SCTPPort(sport), DstPort: layers.SCTPPort(dport), VerificationTag: 1})
	}
	// gopacket decodes UDP-Lite but cannot write it: its 8-byte header
	// (ports, checksum coverage, checksum) goes in as the IP payload.
	udplite := func(sport, dport uint16) []byte {
		return ser(layers.IPProtocolUDPLite, gopacket.Payload{byte(sport >> 8), byte(sport), byte(dport >> 8), byte(dport), 0, 8, 0, 0, 'x'})
	}
	cases := []struct {
		name string
		f    []byte
		want packet.Verdict
	}{
		{"SCTP to the allowed port is accepted", sctp(40000, 5000), packet.Forward},
		{"SCTP to another port falls to the default", sctp(40000, 5001), packet.Drop},
		{"SCTP cut short of its 12-byte header has no ports", sctp(40000, 5000)[:14+20+8], packet.Drop},
		{"UDP-Lite from the allowed port is accepted", udplite(7000, 9), packet.Forward},
		{"UDP-Lite from another port falls to the default", udplite(7001, 9), packet.Drop},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.f
			if len(f) == 14+20+8 { // keep the IP length true to the cut
				f = append([]byte(nil), f...)
				f[16], f[17] = 0, 28
				h := packet.IPv4(f[14:])
				h.SetChecksum(0)
				h.SetChecksum(h.ComputeChecksum())
			}
			if p := process(s, frame{0, f})[0]; p.Verdict != tc.want {
				t.Errorf("verdict %v %v, want %v", p.Verdict, p.Reason, tc.want)
			}
		})
	}
}

// icmp6Frame is an ICMPv6 message of typ and code with hop limit hop and
// body after the first 4 bytes (for NDP: reserved/flags, target, options).
func icmp6Frame(t testing.TB, src, dst string, hop, typ, code uint8, body []byte) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, HopLimit: hop, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	ic.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv6}, ip, ic, gopacket.Payload(body)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Neighbor solicitations and advertisements sent on the link pass the
// firewall as ARP does, from either side and whatever the rules: with the
// usual state-only rules they would all hit the default policy (conntrack
// does not track them), and the router behind could not do IPv6 at all.
// Other ICMPv6 messages, and NDP that a hop limit below 255 shows came from
// off the link, meet the rules.
func TestStagePassesNeighborDiscoveryLikeARP(t *testing.T) {
	rules, err := ParseRules([]string{"accept state established,related", "accept in 0 state new"})
	if err != nil {
		t.Fatal(err)
	}
	fw, _ := New(1, rules, Drop)
	ct, _ := conntrack.New(conntrack.Config{MaxFlows: 64})
	s := NewStage(fw, ct, 0)
	target := net.ParseIP("2001:db8::2")
	nsBody := append(append(make([]byte, 4), target...), 1, 1, 2, 0, 0, 0, 0, 1)       // reserved, target, source link-layer address
	naBody := append(append([]byte{0x60, 0, 0, 0}, target...), 2, 1, 2, 0, 0, 0, 0, 2) // solicited, override; target link-layer address
	cases := []struct {
		name string
		in   uint16
		f    []byte
		pass bool
	}{
		{"a solicitation from inside passes", 0, icmp6Frame(t, "2001:db8::1", "ff02::1:ff00:2", 255, 135, 0, nsBody), true},
		{"a solicitation from outside, where no rule accepts new, passes", 1, icmp6Frame(t, "2001:db8:1::2", "ff02::1:ff00:1", 255, 135, 0, nsBody), true},
		{"duplicate address detection (unspecified source) passes", 1, icmp6Frame(t, "::", "ff02::1:ff00:2", 255, 135, 0, nsBody[:20]), true},
		{"an advertisement from outside passes", 1, icmp6Frame(t, "2001:db8:1::2", "2001:db8:1::1", 255, 136, 0, naBody), true},
		{"a solicitation with hop limit 64 came from off the link: policy", 1, icmp6Frame(t, "2001:db8:1::2", "2001:db8::2", 64, 135, 0, nsBody), false},
		{"an advertisement with hop limit 254: policy", 1, icmp6Frame(t, "2001:db8:1::2", "2001:db8::2", 254, 136, 0, naBody), false},
		{"a solicitation with code 1 is not NDP: policy", 1, icmp6Frame(t, "2001:db8:1::2", "ff02::1:ff00:1", 255, 135, 1, nsBody), false},
		{"a router solicitation meets the rules: policy", 1, icmp6Frame(t, "fe80::1", "ff02::2", 255, 133, 0, make([]byte, 4)), false},
		{"a redirect meets the rules: policy", 1, icmp6Frame(t, "fe80::1", "2001:db8:1::1", 255, 137, 0, make([]byte, 36)), false},
	}
	for _, tc := range cases {
		p := process(s, frame{tc.in, tc.f})[0]
		switch {
		case tc.pass && (p.Verdict != packet.Forward || string(p.Data) != string(tc.f)):
			t.Errorf("%s: %v %v, want it forwarded untouched", tc.name, p.Verdict, p.Reason)
		case !tc.pass && (p.Verdict != packet.Drop || p.Reason != packet.DropPolicy):
			t.Errorf("%s: %v %v, want the default policy to drop it", tc.name, p.Verdict, p.Reason)
		}
	}
	m := s.StageMetrics()
	if m["neighbor_discovery"] != 4 || m["default_hits"] != 5 || m["accepted"] != 0 || m["rule_1_hits"] != 0 {
		t.Errorf("metrics %v: want 4 neighbor_discovery, 5 default_hits, nothing accepted by a rule", m)
	}
	if n := s.Conntrack().Len(); n != 0 {
		t.Errorf("conntrack holds %d flows, want none", n)
	}
}

// PacketKey says what the stage classifies, and by which key: the model
// the XDP pre-filter is tested against.
func TestPacketKeyIsWhatTheStageClassifies(t *testing.T) {
	syn := tcpFrame(t, clientIP, serverIP, 1234, 80, true, false)
	later := append([]byte(nil), syn...)
	later[14+6], later[14+7] = 0, 1 // fragment offset 8 bytes
	ip := packet.IPv4(later[14:])
	ip.SetChecksum(0)
	ip.SetChecksum(ip.ComputeChecksum())
	cases := []struct {
		name  string
		frame []byte
		ok    bool
	}{
		{"a TCP packet is classified", syn, true},
		{"ARP passes unclassified", arpFrame(t), false},
		{"a truncated IP packet is dropped as malformed, unclassified", syn[:30], false},
		{"a neighbor solicitation passes unclassified", icmp6Frame(t, "2001:db8::1", "ff02::1:ff00:2", 255, 135, 0, make([]byte, 20)), false},
		{"an echo request is classified", icmp6Frame(t, "2001:db8::1", "2001:db8::2", 64, 128, 0, make([]byte, 4)), true},
		{"a later fragment is left to the stage (its first fragment's key)", later, false},
	}
	for _, tc := range cases {
		p := packet.Packet{Data: tc.frame, InPort: 3}
		p.Parse()
		var k Key
		if ok := PacketKey(&p, &k); ok != tc.ok {
			t.Errorf("%s: PacketKey says %v", tc.name, ok)
		}
	}
	p := packet.Packet{Data: syn, InPort: 3}
	p.Parse()
	var k Key
	PacketKey(&p, &k)
	want := Key{InPort: 3, Proto: ProtoTCP, SrcPort: 1234, DstPort: 80}
	want.SetAddrs(netip.AddrFrom4([4]byte(clientIP)), netip.AddrFrom4([4]byte(serverIP)))
	want.IPv6 = false
	if k.InPort != want.InPort || k.Proto != want.Proto || k.SrcPort != want.SrcPort || k.DstPort != want.DstPort ||
		[4]byte(k.Src[12:]) != [4]byte(want.Src[12:]) || [4]byte(k.Dst[12:]) != [4]byte(want.Dst[12:]) || k.IPv6 {
		t.Errorf("key %+v, want %+v", k, want)
	}
}
