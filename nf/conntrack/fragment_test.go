package conntrack

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xnfdev/xnf/packet"
)

// families runs a test for IPv4 and IPv6.
var families = []struct {
	name     string
	src, dst netip.Addr
}{{"ipv4", a4, b4}, {"ipv6", a6, b6}}

// A datagram in three fragments, in order: the first starts the flow,
// the others follow it (same flow, same state) and the datagram leaves
// the tracker once every byte was seen.
func TestFragmentsInOrderFollowTheFirst(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			tb := newTable(t, Config{MaxFlows: 64})
			frs := split(t, fam.src, fam.dst, packet.ProtoUDP, 0x4242, udpDatagram(5353, 53, 3000), 1232)
			if len(frs) != 3 {
				t.Fatalf("%d fragments", len(frs))
			}
			first := tb.Track(pkt(t, frs[0]), sec)
			if first.State != StateNew || first.Flow == nil || first.Fragment != FragmentFirst {
				t.Fatalf("first fragment: %+v", first)
			}
			if want := key(ap(fam.src, 5353), ap(fam.dst, 53), packet.ProtoUDP); first.Flow.Orig() != want {
				t.Fatalf("flow %v, want %v", first.Flow, want)
			}
			for i, f := range frs[1:] {
				r := tb.Track(pkt(t, f), sec)
				if r.Fragment != FragmentFollowed || r.Flow != first.Flow || r.State != StateNew || r.Dir != Original {
					t.Errorf("fragment %d: %+v, want the first fragment's flow, new", i+1, r)
				}
			}
			fc := tb.Fragments().Counters()
			if fc != (FragmentCounters{Tracked: 1, Followed: 2, Complete: 1}) || tb.Fragments().Len() != 0 {
				t.Errorf("counters %+v, %d in progress", fc, tb.Fragments().Len())
			}
			if c := tb.Counters(); c.New != 1 || c.Found != 0 || c.Untracked != 0 {
				t.Errorf("conntrack counters %+v: one new flow, later fragments neither found nor untracked", c)
			}
			// A reply, then another datagram: its fragments are established.
			tb.Track(pkt(t, udpFrame(t, ap(fam.dst, 53), ap(fam.src, 5353))), sec)
			for i, f := range split(t, fam.src, fam.dst, packet.ProtoUDP, 0x4243, udpDatagram(5353, 53, 2000), 1232) {
				if r := tb.Track(pkt(t, f), sec); r.State != StateEstablished || r.Flow != first.Flow {
					t.Errorf("second datagram, fragment %d: %+v", i, r)
				}
			}
			tb.Fragments().check(t)
			tb.check(t)
		})
	}
}

// Within one batch the order does not matter: later fragments meet the
// tracker after the batch's first fragments, and their flow after it was
// made.
func TestFragmentsOutOfOrderWithinABatchAreFollowed(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			tb := newTable(t, Config{MaxFlows: 64})
			frs := split(t, fam.src, fam.dst, packet.ProtoUDP, 7, udpDatagram(1000, 2000, 4000), 1024)
			var b packet.Batch
			for i := len(frs) - 1; i >= 0; i-- {
				b.Append(frs[i], 0, 0).Parse()
			}
			out := tb.TrackBatch(&b, sec, make([]Result, 0, packet.MaxBurst))
			flow := out[len(out)-1].Flow
			if flow == nil || out[len(out)-1].Fragment != FragmentFirst || out[len(out)-1].State != StateNew {
				t.Fatalf("first fragment, last in the batch: %+v", out[len(out)-1])
			}
			for i, r := range out[:len(out)-1] {
				if r.Fragment != FragmentFollowed || r.Flow != flow || r.State != StateNew {
					t.Errorf("later fragment %d: %+v", i, r)
				}
				if fi := tb.FragmentInfo(i); fi.Proto != packet.ProtoUDP || fi.SrcPort != 1000 || fi.DstPort != 2000 || !fi.HasL4 {
					t.Errorf("later fragment %d inherited %+v", i, fi)
				}
			}
			if c := tb.Fragments().Counters(); c.Followed != uint64(len(frs)-1) || c.Complete != 1 || c.OutOfOrder != 0 {
				t.Errorf("counters %+v", c)
			}
		})
	}
}

// Across batches a later fragment that comes before its first cannot be
// kept (a stage holds no frame past its batch): it is dropped and counted,
// and the datagram's other fragments still follow the first when it
// comes.
func TestFragmentsBeforeTheirFirstAcrossBatchesAreDropped(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			tb := newTable(t, Config{MaxFlows: 64})
			frs := split(t, fam.src, fam.dst, packet.ProtoUDP, 9, udpDatagram(1000, 2000, 3000), 1232)
			if r := tb.Track(pkt(t, frs[2]), sec); r.Fragment != FragmentOutOfOrder || !r.Fragment.Drop() || r.State != StateInvalid || r.Flow != nil {
				t.Fatalf("last fragment first: %+v", r)
			}
			if r := tb.Track(pkt(t, frs[0]), sec); r.Fragment != FragmentFirst {
				t.Fatalf("first: %+v", r)
			}
			if r := tb.Track(pkt(t, frs[1]), sec); r.Fragment != FragmentFollowed {
				t.Fatalf("middle: %+v", r)
			}
			fr := tb.Fragments()
			if c := fr.Counters(); c.OutOfOrder != 1 || c.Followed != 1 || c.Complete != 0 || fr.Len() != 1 {
				t.Errorf("counters %+v, %d in progress: the datagram misses its last fragment", c, fr.Len())
			}
			// The last fragment again (the sender does not resend, but
			// a duplicate might come): now it follows.
			if r := tb.Track(pkt(t, frs[2]), sec); r.Fragment != FragmentFollowed || fr.Counters().Complete != 1 {
				t.Errorf("last fragment after its first: %+v", r)
			}
			fr.check(t)
		})
	}
}

// Overlaps: a fragment that would rewrite bytes an earlier fragment
// carried is dropped, and so is the rest of its datagram (RFC 5722; as
// Linux does for IPv4 too); a TCP fragment at offset 8 is dropped (RFC
// 1858).
func TestFragmentOverlapsAreDropped(t *testing.T) {
	type step struct {
		off  int
		more bool
		n    int // bytes
		want FragmentVerdict
	}
	cases := []struct {
		name  string
		proto uint8
		steps []step
	}{
		{"a later fragment overlapping the first", packet.ProtoUDP, []step{
			{0, true, 64, FragmentFirst}, {56, true, 64, FragmentOverlap}, {64, false, 64, FragmentOverlap}}},
		{"a later fragment overlapping another later one", packet.ProtoUDP, []step{
			{0, true, 64, FragmentFirst}, {128, true, 64, FragmentFollowed}, {120, true, 16, FragmentOverlap}, {64, true, 64, FragmentOverlap}}},
		{"an exact duplicate", packet.ProtoUDP, []step{
			{0, true, 64, FragmentFirst}, {64, true, 64, FragmentFollowed}, {64, true, 64, FragmentOverlap}, {128, false, 8, FragmentOverlap}}},
		{"a second first fragment", packet.ProtoUDP, []step{
			{0, true, 64, FragmentFirst}, {0, true, 64, FragmentOverlap}, {64, false, 8, FragmentOverlap}}},
		{"data past the last fragment", packet.ProtoUDP, []step{
			{0, true, 64, FragmentFirst}, {128, false, 8, FragmentFollowed}, {192, true, 8, FragmentOverlap}}},
		{"a last fragment short of data seen", packet.ProtoUDP, []step{
			{0, true, 64, FragmentFirst}, {128, true, 64, FragmentFollowed}, {64, false, 8, FragmentOverlap}}},
		{"a second last fragment", packet.ProtoUDP, []step{
			{0, true, 64, FragmentFirst}, {128, false, 8, FragmentFollowed}, {136, false, 8, FragmentOverlap}}},
		{"a duplicate after the datagram was complete", packet.ProtoUDP, []step{
			{0, true, 64, FragmentFirst}, {64, false, 8, FragmentFollowed}, {64, false, 8, FragmentOverlap}}},
		{"touching fragments do not overlap", packet.ProtoUDP, []step{
			{0, true, 64, FragmentFirst}, {128, true, 64, FragmentFollowed}, {64, true, 64, FragmentFollowed}, {192, false, 1, FragmentFollowed}}},
	}
	for _, fam := range families {
		for _, tc := range cases {
			t.Run(fam.name+"/"+tc.name, func(t *testing.T) {
				tb := newTable(t, Config{MaxFlows: 64})
				for i, s := range tc.steps {
					var data []byte
					if s.off == 0 {
						data = udpDatagram(1, 2, s.n-8)
					} else {
						data = make([]byte, s.n)
					}
					r := tb.Track(pkt(t, fragFrame(t, fam.src, fam.dst, tc.proto, 77, s.off, s.more, data)), sec)
					if r.Fragment != s.want {
						t.Fatalf("step %d (%+v): %v", i, s, r.Fragment)
					}
				}
				tb.Fragments().check(t)
			})
		}
	}
	t.Run("ipv4/a TCP fragment at offset 8", func(t *testing.T) {
		tb := newTable(t, Config{MaxFlows: 64})
		r := tb.Track(pkt(t, fragFrame(t, a4, b4, packet.ProtoTCP, 5, 8, true, make([]byte, 16))), sec)
		if r.Fragment != FragmentOverlap || tb.Fragments().Counters().Overlap != 1 {
			t.Errorf("%+v %+v", r, tb.Fragments().Counters())
		}
	})
	t.Run("overlaps are counted", func(t *testing.T) {
		tb := newTable(t, Config{MaxFlows: 64})
		tb.Track(pkt(t, fragFrame(t, a6, b6, packet.ProtoUDP, 5, 0, true, udpDatagram(1, 2, 56))), sec)
		tb.Track(pkt(t, fragFrame(t, a6, b6, packet.ProtoUDP, 5, 32, true, make([]byte, 64))), sec)
		tb.Track(pkt(t, fragFrame(t, a6, b6, packet.ProtoUDP, 5, 96, false, make([]byte, 8))), sec)
		fr := tb.Fragments()
		if c := fr.Counters(); c.Overlap != 2 || c.Followed != 0 || c.Expired != 0 {
			t.Errorf("counters %+v", c)
		}
		// A condemned datagram is not looked up either, and its entry
		// goes when it times out, not counted as expired.
		if _, ok := fr.Lookup(pkt(t, fragFrame(t, a6, b6, packet.ProtoUDP, 5, 96, false, make([]byte, 8))), sec); ok {
			t.Error("Lookup found a condemned datagram")
		}
		tb.Track(pkt(t, fragFrame(t, a6, b6, packet.ProtoUDP, 5, 0, true, udpDatagram(1, 2, 56))), 10*sec)
		if c := fr.Counters(); c.Expired != 0 || c.Tracked != 2 {
			t.Errorf("after the timeout: %+v", c)
		}
	})
}

// RFC 7112: the first fragment of an IPv6 datagram must hold the whole
// header chain; one that does not is dropped and counted. One that does,
// with an extension header in the fragmentable part, is followed, and its
// later fragments (whose next header is that extension header) get the
// upper-layer protocol.
func TestFirstIPv6FragmentWithoutTheWholeChainIsDropped(t *testing.T) {
	dstOpts := func(next uint8) []byte { // 16 bytes: PadN options
		return []byte{next, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	}
	udp := udpDatagram(4000, 53, 100)
	tcpHdr := tcpFrame(t, ap(a6, 4000), ap(b6, 80), packet.TCPSyn)[14+40:]
	cases := []struct {
		name string
		next uint8
		data []byte
		want FragmentVerdict
	}{
		{"the chain ends inside the extension header", packet.ProtoDstOpts, dstOpts(packet.ProtoUDP)[:8], FragmentIncomplete},
		{"no room for the UDP header", packet.ProtoDstOpts, dstOpts(packet.ProtoUDP), FragmentIncomplete},
		{"half a TCP header", packet.ProtoTCP, tcpHdr[:16], FragmentIncomplete},
		{"two extension headers, then UDP", packet.ProtoDstOpts, append(append(dstOpts(packet.ProtoDstOpts), dstOpts(packet.ProtoUDP)...), udp[:64]...), FragmentFirst},
		{"UDP", packet.ProtoUDP, udp[:64], FragmentFirst},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable(t, Config{MaxFlows: 64})
			p := &packet.Packet{}
			p.Reset(fragFrame(t, a6, b6, tc.next, 3, 0, true, tc.data), 0, 0)
			p.Parse()
			r := tb.Track(p, sec)
			if r.Fragment != tc.want {
				t.Fatalf("%v (parse: %v), want %v", r.Fragment, p.Err, tc.want)
			}
			if tc.want == FragmentIncomplete {
				if r.State != StateInvalid || tb.Fragments().Counters().Incomplete != 1 {
					t.Errorf("%+v, counters %+v", r, tb.Fragments().Counters())
				}
				return
			}
			later := tb.Track(pkt(t, fragFrame(t, a6, b6, tc.next, 3, len(tc.data), false, make([]byte, 40))), sec)
			if later.Fragment != FragmentFollowed || later.Flow == nil || later.Flow != r.Flow || later.Flow.Proto() != packet.ProtoUDP {
				t.Errorf("later fragment: %+v (first %+v)", later, r)
			}
		})
	}
}

// A datagram's fragments are followed for the timeout after its first
// fragment, then it is forgotten (and counted as expired).
func TestFragmentsExpire(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 64, Fragments: FragmentConfig{Timeout: 500 * time.Millisecond}})
	frs := split(t, a4, b4, packet.ProtoUDP, 1, udpDatagram(1, 2, 3000), 1024)
	tb.Track(pkt(t, frs[0]), sec)
	if r := tb.Track(pkt(t, frs[1]), sec+499*int64(time.Millisecond)); r.Fragment != FragmentFollowed {
		t.Fatalf("within the timeout: %+v", r)
	}
	if r := tb.Track(pkt(t, frs[2]), sec+500*int64(time.Millisecond)); r.Fragment != FragmentOutOfOrder {
		t.Fatalf("at the timeout: %+v", r)
	}
	fr := tb.Fragments()
	if c := fr.Counters(); c.Expired != 1 || c.OutOfOrder != 1 || fr.Len() != 0 {
		t.Errorf("counters %+v, %d in progress", c, fr.Len())
	}
	if DefaultFragmentTimeout != 2*time.Second || newTable(t, Config{}).Fragments().Timeout() != DefaultFragmentTimeout {
		t.Error("default timeout")
	}
	fr.check(t)
}

// The table is bounded: a first fragment that finds no room pushes out
// the unfinished datagram seen first (counted), whose later fragments are
// then dropped; finished datagrams make room without being counted.
func TestFragmentTableFull(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 64, Fragments: FragmentConfig{Datagrams: 8}})
	fr := tb.Fragments()
	if fr.Cap() != 8 {
		t.Fatalf("cap %d", fr.Cap())
	}
	dg := func(id uint32) [][]byte { return split(t, a4, b4, packet.ProtoUDP, id, udpDatagram(1, 2, 2000), 1024) }
	for id := uint32(1); id <= 8; id++ {
		tb.Track(pkt(t, dg(id)[0]), sec+int64(id))
	}
	if fr.Len() != 8 {
		t.Fatalf("%d in progress", fr.Len())
	}
	tb.Track(pkt(t, dg(9)[0]), sec+9)
	if c := fr.Counters(); c.Overflow != 1 || c.Expired != 0 || fr.Len() != 8 {
		t.Errorf("after a ninth datagram: %+v, %d in progress", c, fr.Len())
	}
	if r := tb.Track(pkt(t, dg(1)[1]), sec+10); r.Fragment != FragmentOutOfOrder {
		t.Errorf("the datagram pushed out: %+v", r)
	}
	for id := uint32(2); id <= 9; id++ {
		if r := tb.Track(pkt(t, dg(id)[1]), sec+11); r.Fragment != FragmentFollowed {
			t.Errorf("datagram %d: %+v", id, r)
		}
	}
	// All complete now: new datagrams take their entries silently.
	for id := uint32(10); id <= 17; id++ {
		tb.Track(pkt(t, dg(id)[0]), sec+12)
	}
	if c := fr.Counters(); c.Overflow != 1 || c.Complete != 8 || fr.Len() != 8 {
		t.Errorf("counters %+v, %d in progress", c, fr.Len())
	}
	// Unfinished and timed out: a new datagram takes an expired entry,
	// counted as expired, not as overflow.
	tb.Track(pkt(t, dg(18)[0]), sec+12+3*sec)
	if c := fr.Counters(); c.Overflow != 1 || c.Expired != 1 {
		t.Errorf("after the timeout: %+v", c)
	}
	fr.check(t)

	if _, err := New(Config{Fragments: FragmentConfig{Datagrams: -2}}); err == nil {
		t.Error("Datagrams -2 accepted")
	}
	if _, err := New(Config{Fragments: FragmentConfig{Timeout: -1}}); err == nil {
		t.Error("a negative timeout accepted")
	}
	if newTable(t, Config{Fragments: FragmentConfig{Datagrams: 1000}}).Fragments().Cap() != 1024 {
		t.Error("1000 datagrams: want 1024 entries")
	}
	if newTable(t, Config{Fragments: FragmentConfig{Datagrams: 1}}).Fragments().Cap() != 8 {
		t.Error("1 datagram: want one bucket of 8 entries")
	}
}

// A datagram whose fragments leave more than MaxFragmentHoles gaps
// cannot be checked for overlaps any more: the fragment that would open
// another gap is dropped.
func TestFragmentsWithTooManyHoles(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 64})
	tb.Track(pkt(t, fragFrame(t, a4, b4, packet.ProtoUDP, 1, 0, true, udpDatagram(1, 2, 8))), sec)
	for i := 1; i < MaxFragmentHoles; i++ {
		if r := tb.Track(pkt(t, fragFrame(t, a4, b4, packet.ProtoUDP, 1, 32*i, true, make([]byte, 8))), sec); r.Fragment != FragmentFollowed {
			t.Fatalf("piece %d: %v", i, r.Fragment)
		}
	}
	if r := tb.Track(pkt(t, fragFrame(t, a4, b4, packet.ProtoUDP, 1, 32*MaxFragmentHoles, true, make([]byte, 8))), sec); r.Fragment != FragmentHoles {
		t.Fatalf("one gap too many: %v", r.Fragment)
	}
	// Filling a gap is still fine.
	if r := tb.Track(pkt(t, fragFrame(t, a4, b4, packet.ProtoUDP, 1, 16, true, make([]byte, 16))), sec); r.Fragment != FragmentFollowed {
		t.Fatalf("filling a gap: %v", r.Fragment)
	}
	if c := tb.Fragments().Counters(); c.Holes != 1 {
		t.Errorf("counters %+v", c)
	}
	tb.Fragments().check(t)
}

// A datagram is one per ingress port, protocol and identification: the
// same identification from another port, or of another protocol, is
// another datagram.
func TestFragmentDatagramKey(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 64})
	tb.Track(pkt(t, fragFrame(t, a4, b4, packet.ProtoUDP, 1, 0, true, udpDatagram(1, 2, 8))), sec)
	later := func(proto uint8, id uint32, in uint16, src netip.Addr) FragmentVerdict {
		p := pkt(t, fragFrame(t, src, b4, proto, id, 16, false, make([]byte, 8)))
		p.InPort = in
		_, ok := tb.Fragments().Lookup(p, sec)
		r := tb.Track(p, sec)
		if ok != (r.Fragment == FragmentFollowed) {
			t.Errorf("Lookup %v, Track %v", ok, r.Fragment)
		}
		return r.Fragment
	}
	for _, tc := range []struct {
		name  string
		proto uint8
		id    uint32
		in    uint16
		src   netip.Addr
	}{
		{"another port", packet.ProtoUDP, 1, 1, a4},
		{"another protocol", packet.ProtoTCP, 1, 0, a4},
		{"another identification", packet.ProtoUDP, 2, 0, a4},
		{"another source", packet.ProtoUDP, 1, 0, r4},
	} {
		if v := later(tc.proto, tc.id, tc.in, tc.src); v != FragmentOutOfOrder {
			t.Errorf("%s: %v", tc.name, v)
		}
	}
	if v := later(packet.ProtoUDP, 1, 0, a4); v != FragmentFollowed {
		t.Errorf("the datagram itself: %v", v)
	}
}

// LookupPacket, for stages after the one that tracks, finds a later
// fragment's flow the way Track did and changes nothing.
func TestLookupPacketFollowsFragments(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 64})
	frs := split(t, a4, b4, packet.ProtoUDP, 3, udpDatagram(1, 2, 2000), 1024)
	first := tb.Track(pkt(t, frs[0]), sec)
	before := tb.Fragments().Counters()
	r := tb.LookupPacket(pkt(t, frs[1]), sec)
	if r.Flow != first.Flow || r.State != StateNew || r.Fragment != FragmentFollowed {
		t.Errorf("%+v", r)
	}
	if tb.Fragments().Counters() != before {
		t.Error("LookupPacket counted")
	}
	var b packet.Batch
	b.Append(frs[0], 0, 0).Parse()
	b.Append(frs[1], 0, 0).Parse()
	out := tb.LookupBatch(&b, sec, make([]Result, 0, 2))
	if out[1].Flow != first.Flow || out[1].Fragment != FragmentFollowed || tb.FragmentInfo(1).SrcPort != 1 || tb.FragmentInfo(1).DstPort != 2 {
		t.Errorf("LookupBatch: %+v, inherited %+v", out[1], tb.FragmentInfo(1))
	}
	if r := tb.LookupPacket(pkt(t, fragFrame(t, a4, b4, packet.ProtoUDP, 4, 1024, false, make([]byte, 8))), sec); r.Fragment != FragmentOutOfOrder || r.Flow != nil {
		t.Errorf("unknown datagram: %+v", r)
	}
}

// With the tracker off, later fragments are untracked, as they were
// before it existed.
func TestFragmentTrackingOff(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 64, Fragments: FragmentConfig{Datagrams: -1}})
	if tb.Fragments() != nil {
		t.Fatal("a tracker")
	}
	frs := split(t, a4, b4, packet.ProtoUDP, 3, udpDatagram(1, 2, 2000), 1024)
	if r := tb.Track(pkt(t, frs[0]), sec); r.State != StateNew || r.Fragment != FragmentNone {
		t.Errorf("first: %+v", r)
	}
	if r := tb.Track(pkt(t, frs[1]), sec); r.State != StateUntracked || r.Flow != nil || r.Fragment != FragmentNone {
		t.Errorf("later: %+v", r)
	}
	var b packet.Batch
	b.Append(frs[1], 0, 0).Parse()
	if r := tb.TrackBatch(&b, sec, make([]Result, 0, 1)); r[0] != (Result{}) {
		t.Errorf("later, in a batch: %+v", r[0])
	}
}

// An IPv6 atomic fragment (offset 0, no more fragments: RFC 6946) is a
// datagram of one piece: tracked as any packet, not remembered.
func TestIPv6AtomicFragmentIsAPacket(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 64})
	r := tb.Track(pkt(t, fragFrame(t, a6, b6, packet.ProtoUDP, 9, 0, false, udpDatagram(1, 2, 20))), sec)
	if r.State != StateNew || r.Fragment != FragmentNone || tb.Fragments().Counters().Tracked != 0 {
		t.Errorf("%+v %+v", r, tb.Fragments().Counters())
	}
}

func TestFragmentVerdictString(t *testing.T) {
	for v, want := range map[FragmentVerdict]string{FragmentNone: "none", FragmentFollowed: "followed", FragmentIncomplete: "incomplete", 99: "fragment(99)"} {
		if v.String() != want {
			t.Errorf("%d: %q", v, v.String())
		}
	}
	for v := FragmentNone; v <= FragmentIncomplete; v++ {
		if v.Drop() != (v >= FragmentOutOfOrder) {
			t.Errorf("%v.Drop() = %v", v, v.Drop())
		}
	}
}
