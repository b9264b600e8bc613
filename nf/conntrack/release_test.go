package conntrack

import (
	"testing"
	"time"

	"github.com/xnfdev/xnf/packet"
)

// OnRelease sees every flow with a User as it is freed, whatever frees it,
// and never a flow without one.
func TestOnReleaseSeesEveryClaimedFlowFreed(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 4, Full: EvictOldest, EvictScan: 4,
		Timeouts: Timeouts{UDP: 10 * time.Second, TCPClose: time.Second}})
	var seen []packet.FlowKey
	if prev := tb.OnRelease(func(f *Flow) { seen = append(seen, f.Orig()) }); prev != nil {
		t.Fatal("a new table has a hook")
	}
	claim := func(f []byte, now int64) *Flow {
		t.Helper()
		r := tb.Track(parsed(t, f), now)
		if r.Flow == nil {
			t.Fatalf("no flow for %x", f)
		}
		r.Flow.User = 1
		return r.Flow
	}
	k := func(sport uint16) packet.FlowKey { return key(ap(a4, sport), ap(b4, 53), packet.ProtoUDP) }
	expect := func(what string, want ...packet.FlowKey) {
		t.Helper()
		if len(seen) != len(want) {
			t.Fatalf("%s: hook saw %v, want %v", what, seen, want)
		}
		for i := range want {
			if seen[i] != want[i] {
				t.Fatalf("%s: hook saw %v, want %v", what, seen, want)
			}
		}
		seen = seen[:0]
	}

	claim(udpFrame(t, ap(a4, 1), ap(b4, 53)), sec)
	tb.Track(parsed(t, udpFrame(t, ap(a4, 2), ap(b4, 53))), sec) // not claimed: User 0
	claim(udpFrame(t, ap(a4, 3), ap(b4, 53)), sec)
	tb.Delete(k(3))
	expect("delete", k(3))
	tb.Expire(20*sec, 0)
	expect("expiry", k(1)) // flow 2 expired too, unseen: nobody claimed it

	for i := uint16(10); i < 14; i++ {
		claim(udpFrame(t, ap(a4, i), ap(b4, 53)), 30*sec+int64(i))
	}
	claim(udpFrame(t, ap(a4, 14), ap(b4, 53)), 30*sec+14) // full: evicts the oldest
	expect("eviction", k(10))

	// A SYN after the end of a TCP connection replaces its flow.
	tb.Expire(100*sec, 0)
	seen = seen[:0]
	syn := tcpFrame(t, ap(a4, 7), ap(b4, 80), packet.TCPSyn)
	claim(syn, 100*sec)
	tb.Track(parsed(t, tcpFrame(t, ap(b4, 80), ap(a4, 7), packet.TCPRst|packet.TCPAck)), 100*sec)
	r := tb.Track(parsed(t, syn), 100*sec+1)
	if r.State != StateNew || r.Flow.User != 0 {
		t.Fatalf("reopened: %v, User %d", r.State, r.Flow.User)
	}
	expect("reopen", key(ap(a4, 7), ap(b4, 80), packet.ProtoTCP))

	var chained int
	prev := tb.OnRelease(func(f *Flow) { chained++ })
	if prev == nil {
		t.Fatal("OnRelease did not return the hook it replaced")
	}
	r.Flow.User = 2
	tb.Delete(r.Flow.Orig())
	if chained != 1 || len(seen) != 0 {
		t.Errorf("replaced hook: new one called %d times, old one saw %v", chained, seen)
	}
	tb.check(t)
}
