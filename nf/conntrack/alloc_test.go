package conntrack

import (
	"encoding/binary"
	"testing"

	"github.com/xnfdev/xnf/packet"
)

func TestTrackDoesNotAllocate(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 1 << 12})
	q := parsed(t, udpFrame(t, ap(a4, 5353), ap(b4, 53)))
	a := parsed(t, udpFrame(t, ap(b4, 53), ap(a4, 5353)))
	syn := parsed(t, tcpFrame(t, ap(a6, 40000), ap(b6, 443), packet.TCPSyn))
	icmpErr := parsed(t, icmpErrorFrame(t, b4, a4, 3, 3, q.Data, 0))
	now := int64(1)
	tb.Track(q, now)
	if n := testing.AllocsPerRun(1000, func() {
		now++
		tb.Track(q, now)
		tb.Track(a, now)
		tb.Track(icmpErr, now)
		tb.LookupPacket(a, now)
	}); n != 0 {
		t.Errorf("Track of an established flow and a related error: %v allocs", n)
	}

	// New flows, once the slab is warm: each iteration starts a flow on a
	// fresh port and deletes it again.
	port := uint16(1)
	if n := testing.AllocsPerRun(1000, func() {
		port++
		binary.BigEndian.PutUint16(syn.Data[syn.L4Off:], port)
		r := tb.Track(syn, now)
		if r.State != StateNew {
			t.Fatalf("%+v", r)
		}
		tb.Delete(r.Flow.Orig())
	}); n != 0 {
		t.Errorf("Track of a new flow: %v allocs", n)
	}

	var b packet.Batch
	for range 64 {
		b.Append(q.Data, 0, 0).Parse()
	}
	out := make([]Result, packet.MaxBurst)
	if n := testing.AllocsPerRun(100, func() {
		now++
		tb.TrackBatch(&b, now, out)
	}); n != 0 {
		t.Errorf("TrackBatch: %v allocs", n)
	}
}
