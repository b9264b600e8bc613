package firewall

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/packet"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// rejectStage is a stateless firewall that rejects everything.
func rejectStage(t *testing.T) *Stage {
	t.Helper()
	rules, err := ParseRules([]string{"reject"})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := New(1, rules, Accept)
	if err != nil {
		t.Fatal(err)
	}
	return NewStage(fw, nil, 0)
}

// processRoomy runs frames through s in buffers of a UMEM frame's room
// (2048 bytes), as frames from an XDP port have.
func processRoomy(s *Stage, frames ...[]byte) []packet.Packet {
	var b packet.Batch
	for _, f := range frames {
		d := make([]byte, len(f), 2048)
		copy(d, f)
		b.Append(d, 0, 0).Parse()
	}
	s.Process(&b)
	return b.Slice()
}

// checkAnswer checks what every answer shares: bounced, sound headers
// with good checksums, swapped MACs, TTL 64, and addresses swapped.
func checkAnswer(t *testing.T, p *packet.Packet, in []byte) {
	t.Helper()
	if p.Verdict != packet.Bounce {
		t.Fatalf("verdict %v (%v), want bounce", p.Verdict, p.Reason)
	}
	if p.Flags&packet.FlagBad != 0 {
		t.Fatalf("answer does not parse: %v", p.Flags)
	}
	e, o := p.Ethernet(), packet.Ethernet(in)
	if e.Src() != o.Dst() || e.Dst() != o.Src() {
		t.Errorf("MACs %x > %x, want them swapped", e.Src(), e.Dst())
	}
	var q packet.Packet
	q.Reset(in, 0, 0)
	q.Parse()
	if p.Flags&packet.FlagIPv4 != 0 {
		h, oh := p.IPv4(), q.IPv4()
		if !h.ChecksumValid() || h.TTL() != 64 || h.Src() != oh.Dst() || h.Dst() != oh.Src() {
			t.Errorf("IPv4 header %x: want a valid checksum, TTL 64, addresses swapped", []byte(h[:20]))
		}
	} else {
		h, oh := p.IPv6(), q.IPv6()
		if h.HopLimit() != 64 || h.Src() != oh.Dst() || h.Dst() != oh.Src() {
			t.Errorf("IPv6 header %x: want hop limit 64, addresses swapped", []byte(h[:40]))
		}
	}
	if !p.L4ChecksumValid() {
		t.Errorf("answer's L4 checksum is wrong")
	}
}

func TestRejectAnswersTCPWithARST(t *testing.T) {
	s := rejectStage(t)
	syn := pt.TCP4("198.18.0.1:40000", "198.18.1.2:8080", "", pt.TCPFlags(packet.TCPSyn), pt.Seq(1000))
	ack := pt.TCP4("198.18.0.1:40001", "198.18.1.2:8080", "hello", pt.TCPFlags(packet.TCPAck|packet.TCPPsh), pt.Seq(5), pt.Ack(777))
	syn6 := pt.TCP6("[2001:db8::1]:40002", "[2001:db8:1::2]:443", "", pt.TCPFlags(packet.TCPSyn), pt.Seq(9))
	ps := processRoomy(s, syn, ack, syn6)
	for i, in := range [][]byte{syn, ack, syn6} {
		checkAnswer(t, &ps[i], in)
	}
	for i, w := range []struct {
		sport, dport uint16
		flags        uint8
		seq, ack     uint32
	}{
		{8080, 40000, packet.TCPRst | packet.TCPAck, 0, 1001}, // a SYN counts one
		{8080, 40001, packet.TCPRst, 777, 0},                  // an ACK gets its ack number back
		{443, 40002, packet.TCPRst | packet.TCPAck, 0, 10},
	} {
		tc := ps[i].TCP()
		if tc.SrcPort() != w.sport || tc.DstPort() != w.dport || tc.Flags() != w.flags || tc.Seq() != w.seq || tc.Ack() != w.ack || len(ps[i].Payload()) != 0 {
			t.Errorf("answer %d: %d > %d flags %#x seq %d ack %d payload %d, want %+v", i, tc.SrcPort(), tc.DstPort(), tc.Flags(), tc.Seq(), tc.Ack(), len(ps[i].Payload()), w)
		}
	}
	m := s.StageMetrics()
	if m["rejected"] != 3 || m["reject_sent"] != 3 {
		t.Errorf("metrics %v", m)
	}
}

func TestRejectAnswersOthersWithPortUnreachable(t *testing.T) {
	s := rejectStage(t)
	udp4 := pt.UDP4("198.18.0.1:5000", "198.18.1.2:53", "query")
	udp6 := pt.UDP6("[2001:db8::1]:5000", "[2001:db8:1::2]:53", bytes.Repeat([]byte("x"), 1400))
	ping := pt.EchoRequest4("198.18.0.1", "198.18.1.2", 7, 1, "ping")
	ps := processRoomy(s, udp4, udp6, ping)
	for i, in := range [][]byte{udp4, udp6, ping} {
		checkAnswer(t, &ps[i], in)
		v4 := i != 1
		ic := ps[i].ICMP()
		l3 := in[14:]
		var wantType, wantCode uint8 = 1, 4
		var quote []byte
		if v4 {
			wantType, wantCode, quote = 3, 3, l3[:20+8]
		} else {
			quote = l3[:1280-48]
		}
		if ic.Type() != wantType || ic.Code() != wantCode {
			t.Errorf("answer %d: ICMP %d/%d, want %d/%d", i, ic.Type(), ic.Code(), wantType, wantCode)
		}
		if got := ps[i].L4()[8:]; !bytes.Equal(got, quote) {
			t.Errorf("answer %d quotes %d bytes %x, want %d bytes of the packet", i, len(got), got[:min(len(got), 48)], len(quote))
		}
		if v4 && binary.BigEndian.Uint16(ps[i].IPv4()[6:8]) != 0x4000 {
			t.Errorf("answer %d: IPv4 answers are sent with DF", i)
		}
	}
	if n := len(ps[1].Data) - 14; n != 1280 {
		t.Errorf("ICMPv6 answer is %d bytes, want the 1280 of the minimum MTU", n)
	}
}

// What must never be answered is dropped, and the rate limit holds; the
// counters say which was which and add up.
func TestRejectStaysSilentWhereItMustAndIsRateLimited(t *testing.T) {
	s := rejectStage(t)
	silent := [][]byte{
		pt.TCP4("198.18.0.1:1", "198.18.1.2:2", "", pt.TCPFlags(packet.TCPRst)),
		pt.TCP4("198.18.0.1:1", "198.18.1.2:2", "", pt.TCPFlags(packet.TCPRst|packet.TCPAck)),
		pt.UDP4("0.0.0.0:68", "255.255.255.255:67", "dhcp"),
		pt.UDP4("198.18.0.1:5000", "224.0.0.251:5353", "mdns"),
		pt.UDP4("198.18.0.1:5000", "198.18.1.255:9", "x"), // a directed broadcast looks unicast: answered
		pt.UDP6("[::]:546", "[ff02::1:2]:547", "dhcpv6"),
	}
	// An ICMP error (a port unreachable quoting a datagram) and an
	// ICMPv6 one.
	silent = append(silent, pt.Frame(
		&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: serverIP, DstIP: clientIP},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)},
		gopacket.Payload(pt.UDP4("198.18.0.1:5000", "198.18.1.2:53", "q")[14:42])))
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	icmp6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(1, 4)}
	icmp6.SetNetworkLayerForChecksum(ip6)
	silent = append(silent, pt.Frame(
		&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv6},
		ip6, icmp6, gopacket.Payload(make([]byte, 48))))
	ps := processRoomy(s, silent...)
	for i := range ps {
		want := packet.Drop
		if i == 4 {
			want = packet.Bounce
		}
		if ps[i].Verdict != want {
			t.Errorf("frame %d: %v, want %v", i, ps[i].Verdict, want)
		}
	}
	m := s.StageMetrics()
	if m["rejected"] != 8 || m["reject_unanswerable"] != 7 || m["reject_sent"] != 1 || m["reject_limited"] != 0 {
		t.Errorf("metrics %v", m)
	}

	s = rejectStage(t)
	s.SetRejectLimit(0, 2)
	var syns [][]byte
	for i := range 5 {
		syns = append(syns, pt.TCP4("198.18.0.1:1000", "198.18.1.2:80", "", pt.TCPFlags(packet.TCPSyn), pt.Seq(uint32(i))))
	}
	bounced := 0
	for _, p := range processRoomy(s, syns...) {
		if p.Verdict == packet.Bounce {
			bounced++
		}
	}
	m = s.StageMetrics()
	if bounced != 2 || m["reject_sent"] != 2 || m["reject_limited"] != 3 || m["rejected"] != 5 {
		t.Errorf("limit of a burst of 2: %d bounced, metrics %v", bounced, m)
	}
}

func TestRejectAllocatesNothing(t *testing.T) {
	s := rejectStage(t)
	s.SetRejectLimit(1e9, 1e9)
	frames := [][]byte{
		pt.TCP4("198.18.0.1:40000", "198.18.1.2:8080", "", pt.TCPFlags(packet.TCPSyn)),
		pt.UDP4("198.18.0.1:5000", "198.18.1.2:53", "query"),
		pt.UDP6("[2001:db8::1]:5000", "[2001:db8:1::2]:53", "query"),
	}
	bufs := make([][]byte, len(frames))
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	var b packet.Batch
	run := func() {
		b.Reset()
		for i, f := range frames {
			b.Append(bufs[i][:copy(bufs[i], f)], 0, 0).Parse()
		}
		s.Process(&b)
		if b.Packets[2].Verdict != packet.Bounce {
			t.Fatalf("not answered: %v", b.Packets[2].Verdict)
		}
	}
	if a := testing.AllocsPerRun(100, run); a != 0 {
		t.Errorf("rejecting with answers allocates %.1f times per batch", a)
	}
}

// More that must not be answered: group destination MACs, loopback and
// unspecified addresses, and corrupted packets (bad IPv4 header, TCP or
// UDP checksum), as Linux's nf_reject.
func TestRejectDoesNotAnswerGroupsLoopbackOrCorruption(t *testing.T) {
	s := rejectStage(t)
	badTCP := pt.TCP4("198.18.0.1:1000", "198.18.1.2:80", "", pt.TCPFlags(packet.TCPSyn))
	badTCP[len(badTCP)-3] ^= 0xff // a byte of the TCP checksum
	badUDP := pt.UDP4("198.18.0.1:1000", "198.18.1.2:53", "query")
	badUDP[len(badUDP)-1] ^= 0xff
	badIP := pt.UDP4("198.18.0.1:1000", "198.18.1.2:53", "query")
	badIP[14+8]-- // TTL, without fixing the header checksum
	frames := [][]byte{
		pt.UDP4("198.18.0.1:5000", "198.18.1.2:53", "q", pt.DstMAC("ff:ff:ff:ff:ff:ff")),
		pt.TCP4("198.18.0.1:5000", "198.18.1.2:80", "", pt.TCPFlags(packet.TCPSyn), pt.DstMAC("01:00:5e:00:00:01")),
		pt.UDP6("[2001:db8::1]:5000", "[::]:53", "q"),
		pt.UDP6("[2001:db8::1]:5000", "[::1]:53", "q"),
		pt.UDP4("198.18.0.1:5000", "127.0.0.1:53", "q"),
		pt.UDP4("127.0.0.1:5000", "198.18.1.2:53", "q"),
		badTCP, badUDP, badIP,
	}
	for i, p := range processRoomy(s, frames...) {
		if p.Verdict != packet.Drop {
			t.Errorf("frame %d: %v, want dropped unanswered", i, p.Verdict)
		}
	}
	if m := s.StageMetrics(); m["reject_unanswerable"] != uint64(len(frames)) || m["reject_sent"] != 0 {
		t.Errorf("metrics %v", m)
	}
}

// A frame without room for its answer is unanswerable and takes no token
// from the rate limit: the next frame, with room, is answered.
func TestRejectWithoutRoomTakesNoToken(t *testing.T) {
	s := rejectStage(t)
	s.SetRejectLimit(0, 1)
	small := pt.UDP4("198.18.0.1:5000", "198.18.1.2:53", "q")
	var b packet.Batch
	for range 2 {
		b.Append(append(small[:len(small):len(small)], []byte{}...), 0, 0).Parse() // cap == len
	}
	roomy := make([]byte, len(small), 2048)
	copy(roomy, small)
	b.Append(roomy, 0, 0).Parse()
	s.Process(&b)
	if b.Packets[2].Verdict != packet.Bounce {
		t.Errorf("the frame with room: %v, want answered", b.Packets[2].Verdict)
	}
	if m := s.StageMetrics(); m["reject_sent"] != 1 || m["reject_unanswerable"] != 2 || m["reject_limited"] != 0 {
		t.Errorf("metrics %v: want 1 sent, 2 unanswerable, none limited", m)
	}
}

// A packet an earlier stage bounced (an answer it wrote) is neither
// tracked nor classified.
func TestStageLeavesBouncedPacketsAlone(t *testing.T) {
	s := statefulStage(t)
	f := pt.UDP4("198.18.0.1:5000", "198.18.1.2:9", "x")
	var b packet.Batch
	b.Append(append([]byte(nil), f...), 0, 0).Parse()
	b.Packets[0].SetBounce()
	s.Process(&b)
	m := s.StageMetrics()
	if b.Packets[0].Verdict != packet.Bounce || string(b.Packets[0].Data) != string(f) || m["dropped"]+m["accepted"] != 0 || s.Conntrack().Len() != 0 {
		t.Errorf("verdict %v, metrics %v, %d flows: want the bounced packet untouched, untracked", b.Packets[0].Verdict, m, s.Conntrack().Len())
	}
}

func TestStatsCountFlatPortTablesOnlyWhenMade(t *testing.T) {
	rules, _ := ParseRules([]string{"accept proto tcp dport 80"})
	rs, err := Compile(rules, Drop)
	if err != nil {
		t.Fatal(err)
	}
	if rs.sportT != nil || rs.dportT != nil || rs.Size().Bytes > 64<<10 {
		t.Errorf("one rule: flat tables %v %v, %d bytes", rs.sportT != nil, rs.dportT != nil, rs.Size().Bytes)
	}
}

// The answers byte for byte against gopacket's own serialization,
// checksums included: an oracle that shares no code with ours (the
// kernel checks the IPv4 answers in TestRejectAnswersRealTCPAndUDPPeers).
func TestRejectAnswersMatchGopacket(t *testing.T) {
	s := rejectStage(t)
	syn := pt.TCP6("[2001:db8::1]:40002", "[2001:db8:1::2]:443", "", pt.TCPFlags(packet.TCPSyn), pt.Seq(9))
	udp := pt.UDP6("[2001:db8::1]:5000", "[2001:db8:1::2]:53", "query")
	ps := processRoomy(s, syn, udp)
	src, dst := net.ParseIP("2001:db8:1::2"), net.ParseIP("2001:db8::1")
	ip := func(next layers.IPProtocol) *layers.IPv6 {
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: src, DstIP: dst}
	}
	eth := func(in []byte) *layers.Ethernet {
		o := packet.Ethernet(in)
		s, d := o.Src(), o.Dst()
		return &layers.Ethernet{SrcMAC: d[:], DstMAC: s[:], EthernetType: layers.EthernetTypeIPv6}
	}
	ip6 := ip(layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: 443, DstPort: 40002, Seq: 0, Ack: 10, RST: true, ACK: true}
	tcp.SetNetworkLayerForChecksum(ip6)
	wantRST := pt.Frame(eth(syn), ip6, tcp)
	ip6u := ip(layers.IPProtocolICMPv6)
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(1, 4)}
	icmp.SetNetworkLayerForChecksum(ip6u)
	wantUnreach := pt.Frame(eth(udp), ip6u, icmp, gopacket.Payload(append(make([]byte, 4), udp[14:]...)))
	for i, want := range [][]byte{wantRST, wantUnreach} {
		if !bytes.Equal(ps[i].Data, want) {
			t.Errorf("answer %d:\n got  %x\n want %x", i, ps[i].Data, want)
		}
	}

	// And an IPv4 answer to an ICMP echo with IP options (quoted whole).
	ping := pt.Frame(
		&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: clientIP, DstIP: serverIP,
			Options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1},
		gopacket.Payload("ping payload"))
	p4 := processRoomy(s, ping)[0]
	want4 := pt.Frame(
		&layers.Ethernet{SrcMAC: macB, DstMAC: macA, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolICMPv4, SrcIP: serverIP, DstIP: clientIP},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)},
		gopacket.Payload(ping[14:14+24+8]))
	if !bytes.Equal(p4.Data, want4) {
		t.Errorf("IPv4 answer:\n got  %x\n want %x", p4.Data, want4)
	}
}
