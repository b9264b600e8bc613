package firewall

import (
	"fmt"
	"testing"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/packet"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

func stageWith(t testing.TB, cc *conntrack.Config, rules ...string) *Stage {
	t.Helper()
	rs, err := ParseRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	fw, err := New(1, rs, Drop)
	if err != nil {
		t.Fatal(err)
	}
	if cc == nil {
		return NewStage(fw, nil, 0)
	}
	ct, err := conntrack.New(*cc)
	if err != nil {
		t.Fatal(err)
	}
	return NewStage(fw, ct, 0)
}

// verdicts sends each frame in a batch of its own (from port 0) and
// returns the drop reason of each, DropNone for a packet let through.
func verdicts(s *Stage, frames ...[]byte) []packet.DropReason {
	var out []packet.DropReason
	for _, f := range frames {
		p := process(s, frame{0, f})[0]
		out = append(out, p.Reason)
	}
	return out
}

func allAre(got []packet.DropReason, want packet.DropReason) bool {
	for _, r := range got {
		if r != want {
			return false
		}
	}
	return true
}

var issue16Rules = []string{"accept state established,related", "accept in 0 state new"}

// Issue 16: behind "accept established,related; accept in 0 state new;
// default drop", every fragment of a datagram from port 0 passes (the
// later ones carry no ports but follow the first), IPv4 and IPv6; from
// port 1 none does.
func TestFragmentsFollowTheFirstFragmentsVerdict(t *testing.T) {
	big := make([]byte, 4000)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"ipv4", pt.UDP4("198.18.0.1:5000", "198.18.1.2:53", big)},
		{"ipv6", pt.UDP6("[2001:db8::1]:5000", "[2001:db8:1::2]:53", big)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := stageWith(t, &conntrack.Config{MaxFlows: 64}, issue16Rules...)
			frs := pt.Fragments(tc.frame, 1448, 99)
			if got := verdicts(s, frs...); !allAre(got, packet.DropNone) {
				t.Errorf("from port 0: %v", got)
			}
			m := s.StageMetrics()
			if m["fragment_tracked"] != 1 || m["fragment_followed"] != 2 || m["fragment_complete"] != 1 || m["fragment_datagrams"] != 0 || m["accepted"] != 3 {
				t.Errorf("metrics %v", m)
			}
			// From the other port the first fragment is a new flow no
			// rule accepts; its later fragments are dropped alike.
			var b []packet.DropReason
			for _, f := range pt.Fragments(tc.frame, 1448, 100) {
				b = append(b, process(s, frame{1, f})[0].Reason)
			}
			if !allAre(b, packet.DropPolicy) {
				t.Errorf("from port 1: %v", b)
			}
		})
	}
}

// Rules that match ports see a later fragment's datagram's ports, and ICMP
// rules its type: a port or type rule decides every fragment alike, with
// conntrack or without a state condition.
func TestFragmentsMatchTheirDatagramsPortsAndType(t *testing.T) {
	big := make([]byte, 3000)
	cc := &conntrack.Config{MaxFlows: 64}
	s := stageWith(t, cc, "accept proto udp dport 53", "accept proto icmp type 8")
	if got := verdicts(s, pt.Fragments(pt.UDP4("198.18.0.1:5000", "198.18.1.2:53", big), 1480, 1)...); !allAre(got, packet.DropNone) {
		t.Errorf("udp dport 53: %v", got)
	}
	if got := verdicts(s, pt.Fragments(pt.UDP4("198.18.0.1:5000", "198.18.1.2:54", big), 1480, 2)...); !allAre(got, packet.DropPolicy) {
		t.Errorf("udp dport 54: %v", got)
	}
	if got := verdicts(s, pt.Fragments(pt.EchoRequest4("198.18.0.1", "198.18.1.2", 7, 1, big), 1480, 3)...); !allAre(got, packet.DropNone) {
		t.Errorf("a big ping: %v", got)
	}
	// A reject rule rejects every fragment; none is answered (the first
	// fragment's UDP checksum cannot be checked, a later fragment is
	// never answered).
	r := stageWith(t, cc, "reject proto udp dport 53")
	frs := pt.Fragments(pt.UDP4("198.18.0.1:5000", "198.18.1.2:53", big), 1480, 4)
	if got := verdicts(r, frs...); !allAre(got, packet.DropPolicy) {
		t.Errorf("a rejected datagram: %v", got)
	}
	if m := r.StageMetrics(); m["rejected"] != 3 || m["reject_unanswerable"] != 3 {
		t.Errorf("metrics %v", m)
	}
}

// Fragments the tracker condemns are dropped before any rule, as
// DropFragment, even where a rule would accept them: a later fragment
// before its first (in another batch), overlaps, a first IPv6 fragment
// without its header chain.
func TestCondemnedFragmentsAreDropped(t *testing.T) {
	big := make([]byte, 3000)
	s := stageWith(t, &conntrack.Config{MaxFlows: 64}, "accept")
	frs := pt.Fragments(pt.UDP4("198.18.0.1:5000", "198.18.1.2:53", big), 1480, 5)
	if got := verdicts(s, frs[2], frs[0], frs[1], frs[1]); got[0] != packet.DropFragment || got[1] != packet.DropNone ||
		got[2] != packet.DropNone || got[3] != packet.DropFragment {
		t.Errorf("last, first, middle, middle again: %v", got)
	}
	// In one batch, the same out-of-order fragments all pass.
	frs = pt.Fragments(pt.UDP4("198.18.0.1:5000", "198.18.1.2:53", big), 1480, 6)
	for i, p := range process(s, frame{0, frs[2]}, frame{0, frs[1]}, frame{0, frs[0]}) {
		if p.Verdict != packet.Forward {
			t.Errorf("reversed in one batch, packet %d: %v %v", i, p.Verdict, p.Reason)
		}
	}
	// RFC 7112: destination options (16 bytes) fill the first fragment.
	v6 := pt.Fragments(pt.UDP6("[2001:db8::1]:5000", "[2001:db8:1::2]:53", big), 1448, 7)[0]
	cut := append([]byte(nil), v6[:14+40+8]...)
	cut[14+40] = packet.ProtoDstOpts
	cut = append(cut, packet.ProtoUDP, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	cut[14+4], cut[14+5] = 0, 8+16
	if got := verdicts(s, cut); got[0] != packet.DropFragment {
		t.Errorf("first IPv6 fragment without its UDP header: %v", got)
	}
	m := s.StageMetrics()
	if m["fragment_out_of_order"] != 1 || m["fragment_overlap"] != 1 || m["fragment_incomplete_chain"] != 1 || m["malformed"] != 0 {
		t.Errorf("metrics %v", m)
	}
}

// A stateless firewall has no tracker: later fragments have no ports and
// only rules without ports match them, as before.
func TestStatelessFirewallLeavesFragmentsToItsRules(t *testing.T) {
	big := make([]byte, 3000)
	s := stageWith(t, nil, "accept proto udp dport 53")
	got := verdicts(s, pt.Fragments(pt.UDP4("198.18.0.1:5000", "198.18.1.2:53", big), 1480, 1)...)
	if got[0] != packet.DropNone || got[1] != packet.DropPolicy || got[2] != packet.DropPolicy {
		t.Errorf("%v", got)
	}
	if _, ok := s.StageMetrics()["fragment_tracked"]; ok {
		t.Error("a stateless firewall publishes fragment metrics")
	}
}

func TestFragmentsThroughTheStageDoNotAllocate(t *testing.T) {
	s := stageWith(t, &conntrack.Config{MaxFlows: 64}, issue16Rules...)
	pt.ZeroAllocs(t, s, pt.Fragments(pt.UDP6("[2001:db8::1]:5000", "[2001:db8:1::2]:53", make([]byte, 3000)), 1448, 7)...)
}

// BenchmarkStageFragments: the stage (conntrack, fragment tracker,
// classification; issue 16's rules) over 64 packets: 16 UDP datagrams of
// 16 flows, each in 4 fragments (every datagram's identification comes
// back each batch, after the datagram finished: a new datagram), beside
// the same 16 flows' 64 datagrams unfragmented. ns/pkt is per packet.
func BenchmarkStageFragments(b *testing.B) {
	var frags, whole [][]byte
	for i := range 16 {
		src := fmt.Sprintf("198.18.0.1:%d", 5000+i)
		frags = append(frags, pt.Fragments(pt.UDP4(src, "198.18.1.2:53", make([]byte, 4000)), 1024, uint32(i))...)
		for range 4 {
			whole = append(whole, pt.UDP4(src, "198.18.1.2:53", make([]byte, 100)))
		}
	}
	for _, tc := range []struct {
		name   string
		frames [][]byte
	}{{"unfragmented", whole}, {"fragments", frags}} {
		b.Run(tc.name, func(b *testing.B) {
			s := stageWith(b, &conntrack.Config{MaxFlows: 1024}, issue16Rules...)
			var batch packet.Batch
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				batch.Reset()
				for j := range tc.frames {
					batch.Append(tc.frames[j], 0, 0).Parse()
				}
				s.Process(&batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(tc.frames)), "ns/pkt")
			if m := s.StageMetrics(); m["dropped"] != 0 || tc.name == "fragments" && m["fragment_followed"] == 0 {
				b.Fatalf("metrics %v", m)
			}
		})
	}
}
