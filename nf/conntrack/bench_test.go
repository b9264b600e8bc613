package conntrack

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/xnfdev/xnf/packet"
)

// Benchmark traffic: IPv4 UDP flow i runs from 10.0.0.0+i (low 24 bits of
// i) port 1000+(i>>24) to 198.19.0.2:53. One parsed template is rewritten
// in place for each packet, so the working set is the table, not the
// frames.

const srcOff = packet.EthernetLen + 12 // IPv4 source address

func benchPacket(b *testing.B) *packet.Packet {
	return parsed(b, udpFrame(b, ap(a4, 1000), ap(b4, 53)))
}

func setFlow(p *packet.Packet, i uint32) {
	binary.BigEndian.PutUint32(p.Data[srcOff:], 10<<24|i&0xffffff)
	binary.BigEndian.PutUint16(p.Data[p.L4Off:], uint16(1000+i>>24))
}

// xorshift is the benchmarks' random flow picker: cheap and inlined.
type xorshift uint64

func (x *xorshift) below(n uint32) uint32 {
	*x ^= *x << 13
	*x ^= *x >> 7
	*x ^= *x << 17
	return uint32((uint64(uint32(*x>>32)) * uint64(n)) >> 32)
}

var benchSizes = []int{1_000, 100_000, 1_000_000}

func filled(b *testing.B, n int) *Table {
	tb := newTable(b, Config{MaxFlows: n})
	p := benchPacket(b)
	for i := range uint32(n) {
		setFlow(p, i)
		if r := tb.Track(p, 0); r.State != StateNew {
			b.Fatalf("fill %d: %+v", i, r)
		}
	}
	return tb
}

// BenchmarkTrack: one Track (lookup and update) of a random live flow per
// op, at several table sizes; the table is exactly full.
func BenchmarkTrack(b *testing.B) {
	for _, n := range benchSizes {
		tb := filled(b, n)
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			p := benchPacket(b)
			x := xorshift(0x9e3779b97f4a7c15)
			now := int64(time.Second)
			b.ReportAllocs()
			for b.Loop() {
				setFlow(p, x.below(uint32(n)))
				if r := tb.Track(p, now); r.State != StateNew {
					b.Fatalf("%+v", r)
				}
			}
			b.ReportMetric(float64(tb.MemoryBytes())/float64(tb.Cap()), "B/flow")
		})
	}
}

// BenchmarkTrackBatch: TrackBatch of 64 random live flows; ns/op is per
// packet.
func BenchmarkTrackBatch(b *testing.B) {
	const burst = 64
	for _, n := range benchSizes {
		tb := filled(b, n)
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			var batch packet.Batch
			tmpl := benchPacket(b)
			for range burst {
				batch.Append(append([]byte(nil), tmpl.Data...), 0, 0).Parse()
			}
			out := make([]Result, packet.MaxBurst)
			x := xorshift(0x9e3779b97f4a7c15)
			now := int64(time.Second)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += burst {
				for j := range batch.Packets[:burst] {
					setFlow(&batch.Packets[j], x.below(uint32(n)))
				}
				tb.TrackBatch(&batch, now, out)
			}
			if out[0].State != StateNew {
				b.Fatalf("%+v", out[0])
			}
		})
	}
}

// BenchmarkNewFlow: every packet starts a flow. Flows time out after as
// many packets as the live count, so the clock hand frees one flow per new
// one and the table holds about that many: the cost of a flow's whole life
// in the table (insert, and its share of the expiry scan).
func BenchmarkNewFlow(b *testing.B) {
	for _, live := range benchSizes {
		b.Run(fmt.Sprintf("live=%d", live), func(b *testing.B) {
			tb := newTable(b, Config{MaxFlows: 4 * live, Timeouts: Timeouts{UDP: time.Duration(live)}})
			p := benchPacket(b)
			b.ReportAllocs()
			i := uint32(0)
			for b.Loop() {
				setFlow(p, i)
				tb.Track(p, int64(i))
				i++
			}
			if c := tb.Counters(); c.Full != 0 || c.New != uint64(i) {
				b.Fatalf("counters %+v after %d packets", c, i)
			}
		})
	}
}

func BenchmarkHash(b *testing.B) {
	h := newHasher()
	k := key(ap(a6, 1), ap(b6, 2), packet.ProtoUDP)
	var s uint32
	for b.Loop() {
		k.SrcPort++
		s += h.sum(&k)
	}
	_ = s
}
