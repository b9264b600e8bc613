package conntrack

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xnfdev/xnf/packet"
)

// fragmentSeeds are the fuzz target's seeds: three fragments of one
// datagram each, and an order. They are also committed under
// testdata/fuzz/FuzzFragments (TestWriteFragmentFuzzSeedCorpus).
func fragmentSeeds(tb testing.TB) map[string][4]any {
	seeds := map[string][4]any{}
	for _, fam := range families {
		frs := split(tb, fam.src, fam.dst, packet.ProtoUDP, 0x77, udpDatagram(1, 2, 40), 16)
		seeds[fam.name+"-udp-in-order"] = [4]any{frs[0], frs[1], frs[2], uint8(0)}
		seeds[fam.name+"-udp-reversed"] = [4]any{frs[2], frs[1], frs[0], uint8(1)}
		seeds[fam.name+"-overlap"] = [4]any{frs[0],
			fragFrame(tb, fam.src, fam.dst, packet.ProtoUDP, 0x77, 8, true, make([]byte, 16)), frs[2], uint8(2)}
		tcp := tcpFrame(tb, ap(fam.src, 1), ap(fam.dst, 2), packet.TCPSyn)
		l4 := tcp[14+20:]
		if fam.src.Is6() {
			l4 = tcp[14+40:]
		}
		tf := split(tb, fam.src, fam.dst, packet.ProtoTCP, 5, append(append([]byte(nil), l4...), make([]byte, 20)...), 24)
		seeds[fam.name+"-tcp"] = [4]any{tf[0], tf[1], fragFrame(tb, fam.src, fam.dst, packet.ProtoTCP, 5, 8, true, make([]byte, 8)), uint8(3)}
	}
	dst := []byte{packet.ProtoUDP, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	seeds["ipv6-chain-cut"] = [4]any{fragFrame(tb, a6, b6, packet.ProtoDstOpts, 3, 0, true, dst),
		fragFrame(tb, a6, b6, packet.ProtoDstOpts, 3, 16, false, udpDatagram(1, 2, 8)), echoFrame(tb, a6, b6, 1, false), uint8(4)}
	return seeds
}

// FuzzFragments feeds three frames to a tiny tracker in several orders,
// one by one and as batches, across its timeout: nothing may panic, the
// tracker's and the table's invariants hold, and the verdicts agree with
// the frames (only later fragments follow; a condemned packet is invalid
// and has no flow).
func FuzzFragments(f *testing.F) {
	for _, s := range fragmentSeeds(f) {
		f.Add(s[0].([]byte), s[1].([]byte), s[2].([]byte), s[3].(uint8))
	}
	f.Fuzz(func(t *testing.T, a, b, c []byte, order uint8) {
		tb, err := New(Config{MaxFlows: 8, Full: EvictOldest, EvictScan: 2,
			Fragments: FragmentConfig{Datagrams: 8, Timeout: 3 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		frames := [3][]byte{a, b, c}
		perm := [6][3]int{{0, 1, 2}, {2, 1, 0}, {1, 0, 2}, {0, 2, 1}, {2, 0, 1}, {1, 2, 0}}[order%6]
		judge := func(p *packet.Packet, r Result) {
			t.Helper()
			switch {
			case r.Fragment == FragmentFollowed && p.Flags&packet.FlagLaterFragment == 0:
				t.Fatalf("followed, but not a later fragment (flags %v)", p.Flags)
			case r.Fragment == FragmentFirst && p.Flags&(packet.FlagFragment|packet.FlagLaterFragment) != packet.FlagFragment:
				t.Fatalf("first, but flags %v", p.Flags)
			case r.Fragment.Drop() && (r.State != StateInvalid || r.Flow != nil):
				t.Fatalf("dropped as %v with %+v", r.Fragment, r)
			case r.Flow != nil && r.Flow.status&stLive == 0:
				t.Fatal("result points at a free entry")
			}
		}
		var batch packet.Batch
		out := make([]Result, 0, packet.MaxBurst)
		for round := range int64(4) {
			now := (1 + 2*round) * sec // the first datagram's entry times out in round 2
			if order&0x80 == 0 {
				for _, i := range perm {
					var p packet.Packet
					p.Reset(frames[i], 0, uint16(order>>6&1))
					p.Parse()
					judge(&p, tb.Track(&p, now))
					tb.LookupPacket(&p, now)
				}
			} else {
				batch.Reset()
				for _, i := range append(perm[:], perm[0]) {
					batch.Append(frames[i], 0, uint16(order>>6&1)).Parse()
				}
				for i, r := range tb.TrackBatch(&batch, now, out) {
					judge(&batch.Packets[i], r)
				}
			}
			tb.Fragments().check(t)
			tb.check(t)
			order ^= 0x80 // alternate single packets and batches
		}
	})
}

// TestWriteFragmentFuzzSeedCorpus regenerates testdata/fuzz/FuzzFragments
// from fragmentSeeds when XNF_WRITE_FUZZ_CORPUS=1; the files are
// committed.
func TestWriteFragmentFuzzSeedCorpus(t *testing.T) {
	if os.Getenv("XNF_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set XNF_WRITE_FUZZ_CORPUS=1 to regenerate the committed seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzFragments")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range fragmentSeeds(t) {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n[]byte(%q)\n[]byte(%q)\nbyte(%q)\n", s[0], s[1], s[2], s[3])
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
