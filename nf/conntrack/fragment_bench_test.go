package conntrack

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/xnfdev/xnf/packet"
)

// fragBatch fills a batch with dgrams datagrams of one UDP flow, each in
// 4 fragments of 1024 bytes, in order, and returns a function that gives
// every datagram a new identification (as a sender would), in place.
func fragBatch(tb testing.TB, b *packet.Batch, v6 bool, dgrams int) (renumber func(base uint32)) {
	src, dst := a4, b4
	if v6 {
		src, dst = a6, b6
	}
	b.Reset()
	for d := range dgrams {
		for _, f := range split(tb, src, dst, packet.ProtoUDP, uint32(d), udpDatagram(5000, 53, 4096-8), 1024) {
			if b.Append(f, 0, 0).Parse() != packet.ErrNone {
				tb.Fatal("parse")
			}
		}
	}
	return func(base uint32) {
		for i := range b.Packets[:b.Len] {
			p := &b.Packets[i]
			id := base + uint32(i/4)
			if v6 {
				binary.BigEndian.PutUint32(p.Data[p.L3Off+40+4:], id)
			} else {
				binary.BigEndian.PutUint16(p.Data[p.L3Off+4:], uint16(id))
			}
		}
	}
}

func TestFragmentsDoNotAllocate(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		tb := newTable(t, Config{MaxFlows: 1 << 10})
		var b packet.Batch
		renumber := fragBatch(t, &b, v6, 16)
		out := make([]Result, packet.MaxBurst)
		now, base := int64(sec), uint32(0)
		if n := testing.AllocsPerRun(100, func() {
			now++
			base += 16
			renumber(base)
			tb.TrackBatch(&b, now, out)
			tb.LookupPacket(&b.Packets[1], now)
			tb.Track(&b.Packets[1], now) // its datagram is complete: a duplicate
		}); n != 0 {
			t.Errorf("v6 %v: %v allocs", v6, n)
		}
		if c := tb.Fragments().Counters(); c.Complete == 0 || c.Overlap == 0 || out[3].Fragment != FragmentFollowed {
			t.Errorf("v6 %v: counters %+v, %+v", v6, c, out[3])
		}
	}
}

// BenchmarkTrackBatchFragments: TrackBatch of 64 fragments, 16 UDP
// datagrams of one flow in 4 fragments each, every datagram new (its
// first fragment remembered, its later ones followed, its entry freed by
// the last); ns/op is per packet. Compare BenchmarkTrackBatch/flows=1000,
// the same batch unfragmented.
func BenchmarkTrackBatchFragments(b *testing.B) {
	for _, fam := range []struct {
		name string
		v6   bool
	}{{"ipv4", false}, {"ipv6", true}} {
		b.Run(fam.name, func(b *testing.B) {
			const burst = 64
			tb := newTable(b, Config{MaxFlows: 1000})
			var batch packet.Batch
			renumber := fragBatch(b, &batch, fam.v6, burst/4)
			out := make([]Result, packet.MaxBurst)
			now, base := int64(time.Second), uint32(0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += burst {
				base += burst / 4
				renumber(base)
				tb.TrackBatch(&batch, now, out)
			}
			b.StopTimer()
			if c := tb.Fragments().Counters(); out[burst-1].Fragment != FragmentFollowed || c.Overflow != 0 || c.Overlap != 0 {
				b.Fatalf("%+v %+v", out[burst-1], c)
			}
		})
	}
}
