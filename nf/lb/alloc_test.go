package lb

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xnfdev/xnf/packet"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// Nothing is allocated per packet: established flows both ways (TCP and
// UDP, IPv4 and IPv6), ICMP errors about them, and new flows, with and
// without SNAT.
func TestZeroAllocations(t *testing.T) {
	for _, full := range []bool{false, true} {
		cfg := Config{Services: []Service{
			svcOf(packet.ProtoUDP, ep(vip, 53), servers([]uint32{1, 2, 3}, backends...)),
			svcOf(packet.ProtoTCP, ep(vip6, 80), servers(nil, backends6...)),
		}}
		src, src6 := client, client6
		if full {
			cfg.SNAT = []netip.Addr{netip.MustParseAddr(snat), netip.MustParseAddr(snat6)}
			src, src6 = snat, snat6
		}
		s := newLB(t, cfg)
		now := time.Now().UnixNano()
		be := chosen(t, s, packet.ProtoUDP, ep(client, 4000), ep(vip, 53)).String()
		be6 := chosen(t, s, packet.ProtoTCP, ep(client6, 4000), ep(vip6, 80)).String()
		frames := [][]byte{
			pt.UDP4(ep(client, 4000), ep(vip, 53), "q"),
			pt.UDP4(be, ep(src, 4000), "a"),
			pt.TCP6(ep(client6, 4000), ep(vip6, 80), "", pt.TCPFlags(packet.TCPSyn)),
			pt.TCP6(be6, ep(src6, 4000), "", pt.TCPFlags(packet.TCPSyn|packet.TCPAck)),
			pt.TCP6(ep(client6, 4000), ep(vip6, 80), "data"),
			pt.TCP6(be6, ep(src6, 4000), "data"),
		}
		for _, f := range frames { // one by one: a reply cannot share a batch with its flow's first packet
			if p := run(s, now, f)[0]; p.Verdict != packet.Forward {
				t.Fatalf("%s: %v %v", pt.Summary(f), p.Verdict, p.Reason)
			}
		}
		frames = append(frames[:2], frames[4:]...)
		frames = append(frames, icmpError(router, vip, 3, 4, 1400, pt.UDP4(ep(vip, 53), ep(client, 4000), "a")))
		pt.ZeroAllocs(t, s, frames...)

		// New flows every run, a fresh client port each, one of them
		// colliding under SNAT with a port held by another client.
		var b packet.Batch
		q := pt.UDP4(ep(client, 5000), ep(vip, 53), "q")
		q2 := pt.UDP4(ep(client2, 5000), ep(vip, 53), "q")
		buf, buf2 := make([]byte, len(q)), make([]byte, len(q2))
		port := uint16(20000)
		before := s.Counters()
		if a := testing.AllocsPerRun(200, func() {
			b.Reset()
			copy(buf, q)
			copy(buf2, q2)
			p := b.Append(buf, 0, 0)
			p.Parse()
			p.SetSrcPort(port)
			p2 := b.Append(buf2, 0, 0)
			p2.Parse()
			p2.SetSrcPort(port)
			port++
			s.ProcessAt(&b, now)
		}); a != 0 {
			t.Errorf("new flows (snat %v): %v allocations per batch", full, a)
		}
		if c := s.Counters(); c.Flows-before.Flows < 400 || c.Conflicts != 0 {
			t.Errorf("counters %+v: want 402 new flows balanced", c)
		}
	}
}
