package nat

import (
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/packet"
)

// Nothing is allocated per packet: established flows both ways, new flows
// (kept and allocated ports), ICMP errors and fragments.
func TestZeroAllocations(t *testing.T) {
	s := masq(t, nil)
	frames := [][]byte{
		udpFrame(t, ap(inA, 4000), ap(srvB, 53), "q"),
		udpFrame(t, ap(srvB, 53), ap(natX, 4000), "a"),
		tcpFrame(t, ap(inA, 4001), ap(srvB, 80), packet.TCPSyn),
		tcpFrame(t, ap(srvB, 80), ap(natX, 4001), packet.TCPSyn|packet.TCPAck),
		tcpFrame(t, ap(inA, 4001), ap(srvB, 80), packet.TCPAck),
		echoFrame(t, inA, srvB, 9, false),
		echoFrame(t, srvB, natX, 9, true),
	}
	frames = append(frames, icmpErrorFrame(t, srvB, natX, 3, 3, udpFrame(t, ap(natX, 4000), ap(srvB, 53), "q"), 0))
	ports := []uint16{portIn, portOut, portIn, portOut, portIn, portIn, portOut, portOut}
	bufs := make([][]byte, len(frames))
	for i, f := range frames {
		bufs[i] = make([]byte, len(f))
	}
	var b packet.Batch
	fill := func() {
		b.Reset()
		for i, f := range frames {
			copy(bufs[i], f)
			b.Append(bufs[i], 0, ports[i]).Parse()
		}
	}
	now := sec
	// First one by one (a reply cannot share a batch with the packet
	// that opened its flow), then whole batches.
	for i, f := range frames {
		if p := run(t, s, ports[i], f, now); p.Verdict != packet.Forward {
			t.Fatalf("packet %d: %v %v", i, p.Verdict, p.Reason)
		}
	}
	if st := s.Counters(); st.Translated != uint64(len(frames)) || st.ICMPErrors != 1 {
		t.Fatalf("stats %+v", st)
	}
	if a := testing.AllocsPerRun(100, func() { fill(); now++; s.ProcessAt(&b, now) }); a != 0 {
		t.Errorf("established: %v allocations per batch", a)
	}
	// New flows every run: a fresh source port each time, half of them
	// colliding with a held port.
	hold := udpFrame(t, ap(inA2, 5000), ap(srvB, 53), "q")
	b.Reset()
	b.Append(hold, 0, portIn).Parse()
	s.ProcessAt(&b, now)
	f := udpFrame(t, ap(inA, 5000), ap(srvB, 53), "q")
	port := uint16(20000)
	if a := testing.AllocsPerRun(200, func() {
		b.Reset()
		p := b.Append(f, 0, portIn)
		p.Parse()
		p.SetSrcPort(port)
		port++
		q := b.Append(hold, 0, portIn)
		q.Parse()
		q.SetSrcPort(port)
		q.SetIPv4Src(inA.As4())
		port++
		now++
		s.ProcessAt(&b, now)
	}); a != 0 {
		t.Errorf("new flows: %v allocations per batch", a)
	}
	if s.Counters().Exhausted != 0 {
		t.Errorf("exhausted %d", s.Counters().Exhausted)
	}
	// Fragments: a datagram of the established flow in two, with a new
	// identification every run.
	dgram := udpFrame(t, ap(inA, 4000), ap(srvB, 53), "0123456789abcdefghijklmn")[14+20:]
	frag := [][]byte{
		frame(t, inA, srvB, layers.IPProtocolUDP, ipOpts{id: 1, mf: true}, payload(string(dgram[:24]))),
		frame(t, inA, srvB, layers.IPProtocolUDP, ipOpts{id: 1, fragOff: 3}, payload(string(dgram[24:]))),
	}
	fbufs := [][]byte{make([]byte, len(frag[0])), make([]byte, len(frag[1]))}
	id := uint16(1)
	kept := s.Counters().FragmentsKept
	if a := testing.AllocsPerRun(100, func() {
		b.Reset()
		id++
		for i := range frag {
			copy(fbufs[i], frag[i])
			binary.BigEndian.PutUint16(fbufs[i][14+4:], id)
			b.Append(fbufs[i], 0, portIn).Parse()
		}
		now++
		s.ProcessAt(&b, now)
	}); a != 0 {
		t.Errorf("fragments: %v allocations per batch", a)
	}
	if s.Counters().FragmentsKept < kept+100 {
		t.Errorf("fragments kept: %+v", s.Counters())
	}
}
