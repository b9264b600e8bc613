package conntrack

import (
	"testing"

	"github.com/xnfdev/xnf/packet"
)

// FuzzTrack feeds arbitrary frames, as pairs, to a small table that evicts:
// nothing may panic (TranslateError of the related ones included), and the
// index must stay sound.
func FuzzTrack(f *testing.F) {
	q := udpFrame(f, ap(a4, 1), ap(b4, 2))
	q6 := udpFrame(f, ap(a6, 1), ap(b6, 2))
	for _, fr := range [][]byte{
		q, q6,
		tcpFrame(f, ap(a4, 1), ap(b4, 2), syn), tcpFrame(f, ap(b6, 2), ap(a6, 1), synack),
		echoFrame(f, a4, b4, 5, false), echoFrame(f, b6, a6, 5, true),
		icmpErrorFrame(f, b4, a4, 3, 3, q, 0), icmpErrorFrame(f, b6, a6, 1, 4, q6, 0),
		icmpErrorFrame(f, b4, a4, 11, 0, q, 28),
	} {
		f.Add(fr, q)
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		tb, err := New(Config{MaxFlows: 4, Full: EvictOldest, EvictScan: 2})
		if err != nil {
			t.Fatal(err)
		}
		var p packet.Packet
		for i, fr := range [][]byte{a, b, a, b} {
			p.Reset(fr, 0, 0)
			p.Parse()
			if _, off, ok := QuotedKey(&p); ok && (off < int(p.L4Off) || off >= int(p.L3End)) {
				t.Fatalf("QuotedKey offset %d outside the ICMP payload", off)
			}
			r := tb.Track(&p, int64(i)*sec)
			if r.Flow != nil && r.Flow.status&stLive == 0 {
				t.Fatal("result points at a free entry")
			}
			if r.State == StateRelated {
				TranslateError(&p, r.Flow, r.Dir)
			}
			tb.check(t)
		}
	})
}
