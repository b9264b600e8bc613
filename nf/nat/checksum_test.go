package nat

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/packet"
)

// exactChecksums fails unless the IPv4 header checksum and the L4 checksum
// fields hold exactly what a full recompute gives (a zero UDP checksum
// must stay zero).
func exactChecksums(t *testing.T, p *packet.Packet, udpZero bool) {
	t.Helper()
	q := &packet.Packet{}
	q.Reset(p.Data, 0, 0)
	if q.Parse() != packet.ErrNone {
		t.Fatalf("translated frame does not parse: %v", q.Err)
	}
	ip := q.IPv4()
	if ip.Checksum() != ip.ComputeChecksum() {
		t.Fatalf("IPv4 checksum %#04x, full recompute %#04x", ip.Checksum(), ip.ComputeChecksum())
	}
	want, _ := q.ComputeL4Checksum()
	var got uint16
	switch {
	case q.Flags&packet.FlagTCP != 0:
		got = q.TCP().Checksum()
	case q.Flags&packet.FlagUDP != 0:
		got = q.UDP().Checksum()
		if udpZero {
			want = 0
		}
	case q.Flags&packet.FlagICMP != 0:
		got = q.ICMP().Checksum()
	}
	if got != want {
		t.Fatalf("L4 checksum %#04x, full recompute %#04x", got, want)
	}
}

// Random flows through SNAT and back, with ports and ids made to collide
// so that kept and allocated translations both occur; every translated
// packet's checksums must equal a full recompute.
func TestChecksumsEqualFullRecomputeRandomised(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := masq(t, func(c *Config) { c.Pool = []netip.Addr{natX, natY} })
	servers := []netip.Addr{srvB, rtrR, netip.MustParseAddr("198.19.7.7")}
	kept, moved, withOptions, n := 0, 0, 0, 3000
	for i := range n {
		src := netip.AddrFrom4([4]byte{198, 18, 0, byte(1 + rng.IntN(40))})
		dst := servers[rng.IntN(len(servers))]
		sport := uint16(1000 + rng.IntN(8)) // few ports: many collisions
		dport := uint16(53 + rng.IntN(2))
		pl := make([]byte, rng.IntN(300))
		for j := range pl {
			pl[j] = byte(rng.Uint32())
		}
		udpZero := false
		opts := ipOpts{id: uint16(rng.Uint32()), options: rng.IntN(4) == 0}
		var out []byte
		proto := rng.IntN(3)
		switch proto {
		case 0:
			out = frame(t, src, dst, layers.IPProtocolTCP, opts, &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport),
				SYN: true, Seq: rng.Uint32(), Window: 1000}, gopacket.Payload(pl))
		case 1:
			udpZero = rng.IntN(4) == 0
			opts.noChksum = udpZero
			out = frame(t, src, dst, layers.IPProtocolUDP, opts, udpL(sport, dport), gopacket.Payload(pl))
		case 2:
			icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: sport, Seq: uint16(i)}
			out = frame(t, src, dst, layers.IPProtocolICMPv4, opts, icmp, gopacket.Payload(pl))
		}
		if out[14]&15 != 5 {
			withOptions++
		}
		p := run(t, s, portIn, out, int64(i+1)*1000)
		if p.Verdict != packet.Forward {
			// A repeated tuple from the random draw may be an echo or
			// TCP SYN retransmission: still forwarded. Nothing drops here.
			t.Fatalf("packet %d dropped: %v", i, p.Reason)
		}
		exactChecksums(t, p, udpZero)
		tr := tupleOf(p)
		if tr.src.Addr() == src {
			t.Fatalf("packet %d left with its inside source", i)
		}
		if tr.src.Port() == sport {
			kept++
		} else {
			moved++
		}
		// The reply, built for the translated tuple, comes back to the
		// inside host's original tuple.
		var back []byte
		switch proto {
		case 0:
			back = tcpFrame(t, ap(dst, dport), tr.src, packet.TCPSyn|packet.TCPAck, pl...)
		case 1:
			back = frame(t, dst, tr.src.Addr(), layers.IPProtocolUDP, ipOpts{noChksum: udpZero},
				udpL(dport, tr.src.Port()), gopacket.Payload(pl))
		case 2:
			icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(0, 0), Id: tr.src.Port(), Seq: uint16(i)}
			back = frame(t, dst, tr.src.Addr(), layers.IPProtocolICMPv4, ipOpts{}, icmp, gopacket.Payload(pl))
		}
		r := run(t, s, portOut, back, int64(i+1)*1000)
		if r.Verdict != packet.Forward {
			t.Fatalf("reply %d dropped: %v", i, r.Reason)
		}
		exactChecksums(t, r, udpZero)
		got := tupleOf(r).dst
		if got.Addr() != src || (proto != 2 && got.Port() != sport) || (proto == 2 && r.ICMP().ID() != sport) {
			t.Fatalf("reply %d went to %v, want %v:%d", i, got, src, sport)
		}
	}
	if withOptions == 0 {
		t.Error("no packet with IPv4 options in the draw")
	}
	if kept == 0 || moved == 0 {
		t.Errorf("kept %d, moved %d: the draw should give both", kept, moved)
	}
	t.Logf("%d flows: %d kept their port, %d were given another", n, kept, moved)
}

// Fragments: the first is translated with its flow; the later ones follow
// it through the conntrack table's fragment tracker and get the same
// addresses, in either direction; a later fragment whose first was not
// seen, or came after the tracker's timeout, is dropped and counted.
func TestFragments(t *testing.T) {
	s := masq(t, nil)
	run(t, s, portIn, udpFrame(t, ap(inA, 4000), ap(srvB, 53), "x"), sec) // holds natX:4000
	// A 32-byte UDP datagram (checksum over all of it) cut in two.
	dgram := udpFrame(t, ap(inA2, 4000), ap(srvB, 53), "0123456789abcdefghijklmn")[14+20:]
	first := frame(t, inA2, srvB, layers.IPProtocolUDP, ipOpts{id: 0x1234, mf: true}, payload(string(dgram[:24])))
	later := frame(t, inA2, srvB, layers.IPProtocolUDP, ipOpts{id: 0x1234, fragOff: 3}, payload(string(dgram[24:])))
	p := run(t, s, portIn, first, sec)
	if p.Verdict != packet.Forward || tupleOf(p).src != ap(natX, 1024) {
		t.Fatalf("first fragment: %v %v", p.Verdict, tupleOf(p))
	}
	checksumsRight(t, p)
	q := run(t, s, portIn, later, sec)
	if q.Verdict != packet.Forward || q.IPv4().SrcAddr() != natX || !q.IPv4().ChecksumValid() {
		t.Fatalf("later fragment: %v src %v", q.Verdict, q.IPv4().SrcAddr())
	}
	// The datagram reassembles with a valid UDP checksum: incremental
	// updates of the first fragment were right for the whole datagram.
	whole := append(append([]byte(nil), p.Data[14+20:]...), q.Data[14+20:]...)
	ps := packet.PseudoHeaderSumIPv4(natX.As4(), srvB.As4(), 17, uint16(len(whole)))
	if packet.Sum(whole, ps) != 0xffff {
		t.Errorf("reassembled datagram's UDP checksum is wrong")
	}
	// A fragmented answer, in one batch and reversed, gets the inside
	// address back.
	answer := udpFrame(t, ap(srvB, 53), ap(natX, 1024), "0123456789abcdefghijklmn")[14+20:]
	var b packet.Batch
	b.Append(frame(t, srvB, natX, layers.IPProtocolUDP, ipOpts{id: 7, fragOff: 3}, payload(string(answer[24:]))), 0, portOut).Parse()
	b.Append(frame(t, srvB, natX, layers.IPProtocolUDP, ipOpts{id: 7, mf: true}, payload(string(answer[:24]))), 0, portOut).Parse()
	s.ProcessAt(&b, sec)
	for i, a := range b.Slice() {
		if a.Verdict != packet.Forward || a.IPv4().DstAddr() != inA2 || !a.IPv4().ChecksumValid() {
			t.Errorf("answer fragment %d: %v to %v", i, a.Verdict, a.IPv4().DstAddr())
		}
	}
	if tupleOf(&b.Packets[1]).dst != ap(inA2, 4000) {
		t.Errorf("answer's first fragment: %v", tupleOf(&b.Packets[1]))
	}
	orphan := frame(t, inA2, srvB, layers.IPProtocolUDP, ipOpts{id: 0x9999, fragOff: 3}, payload(string(dgram[24:])))
	o := run(t, s, portIn, orphan, sec)
	if o.Verdict != packet.Drop || o.Reason != packet.DropFragment {
		t.Errorf("orphan fragment: %v %v", o.Verdict, o.Reason)
	}
	// Expired: the tracker forgets a datagram 2 s after its first
	// fragment.
	run(t, s, portIn, frame(t, inA2, srvB, layers.IPProtocolUDP, ipOpts{id: 0x1235, mf: true}, payload(string(dgram[:24]))), 2*sec)
	q = run(t, s, portIn, frame(t, inA2, srvB, layers.IPProtocolUDP, ipOpts{id: 0x1235, fragOff: 3}, payload(string(dgram[24:]))), 4*sec)
	if q.Verdict != packet.Drop || q.Reason != packet.DropFragment {
		t.Errorf("later fragment after the timeout: %v %v", q.Verdict, q.Reason)
	}
	if st := s.Counters(); st.FragmentsKept != 2 || st.FragmentsDropped != 2 {
		t.Errorf("stats %+v", st)
	}
	m := s.StageMetrics()
	if m["fragment_tracked"] != 3 || m["fragment_followed"] != 2 || m["fragment_out_of_order"] != 2 || m["fragment_expired"] != 1 {
		t.Errorf("metrics %v", m)
	}
}

// Behind a firewall that shares its table, the NAT follows fragments
// through the firewall's tracker (and publishes none of its counters).
func TestFragmentsSharedTable(t *testing.T) {
	ct, err := conntrack.New(conntrack.Config{MaxFlows: 64})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStageShared(Config{Inside: []uint16{portIn}, Outside: []uint16{portOut}, Pool: []netip.Addr{natX}}, ct)
	if err != nil {
		t.Fatal(err)
	}
	dgram := udpFrame(t, ap(inA2, 4000), ap(srvB, 53), "0123456789abcdefghijklmn")[14+20:]
	var b packet.Batch
	b.Append(frame(t, inA2, srvB, layers.IPProtocolUDP, ipOpts{id: 1, mf: true}, payload(string(dgram[:24]))), 0, portIn).Parse()
	b.Append(frame(t, inA2, srvB, layers.IPProtocolUDP, ipOpts{id: 1, fragOff: 3}, payload(string(dgram[24:]))), 0, portIn).Parse()
	b.Append(frame(t, inA2, srvB, layers.IPProtocolUDP, ipOpts{id: 2, fragOff: 3}, payload(string(dgram[24:]))), 0, portIn).Parse()
	ct.TrackBatch(&b, sec, make([]conntrack.Result, 0, 3)) // the firewall's part
	s.ProcessAt(&b, sec)
	if p := &b.Packets[1]; p.Verdict != packet.Forward || p.IPv4().SrcAddr() != natX {
		t.Errorf("later fragment: %v from %v", p.Verdict, p.IPv4().SrcAddr())
	}
	if p := &b.Packets[2]; p.Verdict != packet.Drop || p.Reason != packet.DropFragment {
		t.Errorf("unknown datagram: %v %v", p.Verdict, p.Reason)
	}
	if _, ok := s.StageMetrics()["fragment_tracked"]; ok {
		t.Error("a sharing stage publishes the tracker's counters")
	}
}
