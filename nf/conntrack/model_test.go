package conntrack

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/xnfdev/xnf/packet"
)

// A reference model: a Go map of flows with timestamps, written for
// clarity, against which random sequences of packets, lookups, deletions,
// expiry sweeps and clock jumps are checked.

type modelFlow struct {
	orig    packet.FlowKey
	replied bool
	expires int64
}

type model struct {
	flows map[packet.FlowKey]*modelFlow // by original tuple
	to    Timeouts
}

// find returns the live flow with tuple k in either direction.
func (m *model) find(k packet.FlowKey, now int64) (*modelFlow, Dir) {
	if f := m.flows[k]; f != nil && f.expires > now {
		return f, Original
	}
	if f := m.flows[k.Reverse()]; f != nil && f.expires > now {
		return f, Reply
	}
	return nil, 0
}

func (m *model) timeout(f *modelFlow) int64 {
	if f.orig.Proto != packet.ProtoUDP {
		return int64(m.to.ICMP)
	}
	if f.replied {
		return int64(m.to.UDPStream)
	}
	return int64(m.to.UDP)
}

func (m *model) track(k packet.FlowKey, echoReply bool, now int64) (State, Dir, packet.FlowKey) {
	f, d := m.find(k, now)
	if f == nil {
		if echoReply {
			return StateInvalid, 0, packet.FlowKey{}
		}
		delete(m.flows, k) // an expired flow of either tuple is gone
		delete(m.flows, k.Reverse())
		f = &modelFlow{orig: k}
		m.flows[k] = f
		f.expires = now + m.timeout(f)
		return StateNew, Original, k
	}
	if d == Reply {
		f.replied = true
	}
	f.expires = now + m.timeout(f)
	if f.replied {
		return StateEstablished, d, f.orig
	}
	return StateNew, d, f.orig
}

func (m *model) live(now int64) int {
	n := 0
	for _, f := range m.flows {
		if f.expires > now {
			n++
		}
	}
	return n
}

type modelPacket struct {
	p         *packet.Packet
	k         packet.FlowKey
	echoReply bool
}

func TestAgainstModel(t *testing.T) {
	to := Timeouts{UDP: 3 * time.Second, UDPStream: 10 * time.Second, ICMP: 2 * time.Second}
	var pkts []modelPacket
	add := func(f []byte, echoReply bool) {
		p := parsed(t, f)
		pkts = append(pkts, modelPacket{p, p.FlowKey(), echoReply})
	}
	for _, ab := range [][2]netip.Addr{{a4, b4}, {a6, b6}} {
		a, b := ab[0], ab[1]
		for sp := uint16(1); sp <= 3; sp++ {
			for dp := uint16(1); dp <= 3; dp++ {
				add(udpFrame(t, ap(a, sp), ap(b, dp)), false)
				add(udpFrame(t, ap(b, dp), ap(a, sp)), false)
			}
		}
		for id := uint16(1); id <= 2; id++ {
			add(echoFrame(t, a, b, id, false), false)
			add(echoFrame(t, b, a, id, true), true)
			add(echoFrame(t, b, a, id, false), false)
			add(echoFrame(t, a, b, id, true), true)
		}
	}
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		tb := newTable(t, Config{MaxFlows: 256, Timeouts: to, ExpireScan: 1 + int(seed%3)})
		m := &model{flows: map[packet.FlowKey]*modelFlow{}, to: to}
		now := int64(0)
		for step := range 3000 {
			mp := pkts[rng.IntN(len(pkts))]
			switch op := rng.IntN(20); {
			case op < 12:
				st, d, orig := m.track(mp.k, mp.echoReply, now)
				r := tb.Track(mp.p, now)
				if r.State != st || (st != StateInvalid && (r.Dir != d || r.Flow.Orig() != orig)) {
					t.Fatalf("seed %d step %d: Track(%v) = %v %v, model %v %v %v", seed, step, mp.k, r.State, r.Dir, st, d, orig)
				}
			case op < 15:
				now += rng.Int64N(int64(4 * time.Second))
			case op < 17:
				mf, md := m.find(mp.k, now)
				f, d, ok := tb.Lookup(mp.k, now)
				if ok != (mf != nil) || ok && (d != md || f.Orig() != mf.orig || f.Expires() != mf.expires || f.Replied() != mf.replied) {
					t.Fatalf("seed %d step %d: Lookup(%v) = %v %v, model %v", seed, step, mp.k, f, ok, mf)
				}
			case op < 18:
				mf, _ := m.find(mp.k, now)
				if mf != nil {
					delete(m.flows, mf.orig)
				}
				// Delete removes expired flows too: mirror it in the model.
				del := tb.Delete(mp.k)
				if mf != nil && !del {
					t.Fatalf("seed %d step %d: Delete(%v) found nothing", seed, step, mp.k)
				}
				delete(m.flows, mp.k)
				delete(m.flows, mp.k.Reverse())
			default:
				tb.Expire(now, rng.IntN(8))
			}
			n := 0
			for range tb.Flows(now) {
				n++
			}
			if want := m.live(now); n != want || tb.Len() < want {
				t.Fatalf("seed %d step %d: %d flows (Len %d), model %d", seed, step, n, tb.Len(), want)
			}
			if step%100 == 0 {
				tb.check(t)
			}
		}
		tb.check(t)
	}
}

// TestRandomKeepsIndexSound throws random TCP, UDP and ICMP traffic with
// random flags and times at a small table that evicts, and checks the
// index after every packet.
func TestRandomKeepsIndexSound(t *testing.T) {
	var frames []*packet.Packet
	for sp := uint16(1); sp <= 6; sp++ {
		for _, fl := range []uint8{syn, synack, ack, data, finack, rst, rstack, syn | fin, 0} {
			frames = append(frames, parsed(t, tcpFrame(t, ap(a4, sp), ap(b4, 80), fl)), parsed(t, tcpFrame(t, ap(b4, 80), ap(a4, sp), fl)))
		}
		frames = append(frames, parsed(t, udpFrame(t, ap(a6, sp), ap(b6, 53))), parsed(t, udpFrame(t, ap(b6, 53), ap(a6, sp))))
		frames = append(frames, parsed(t, echoFrame(t, a4, b4, sp, false)), parsed(t, echoFrame(t, b4, a4, sp, true)))
	}
	q := udpFrame(t, ap(a6, 1), ap(b6, 53))
	frames = append(frames, parsed(t, icmpErrorFrame(t, b6, a6, 1, 4, q, 0)))
	for _, policy := range []FullPolicy{Refuse, EvictOldest} {
		rng := rand.New(rand.NewPCG(uint64(policy), 2))
		tb := newTable(t, Config{MaxFlows: 8, Full: policy, EvictScan: 3, Timeouts: Timeouts{TCPEstablished: 20 * time.Second}})
		var b packet.Batch
		out := make([]Result, packet.MaxBurst)
		now := int64(0)
		for step := range 20000 {
			now += rng.Int64N(int64(500 * time.Millisecond))
			if rng.IntN(10) == 0 {
				b.Reset()
				for range 1 + rng.IntN(20) {
					f := frames[rng.IntN(len(frames))]
					b.Append(f.Data, 0, 0).Parse()
				}
				for i, r := range tb.TrackBatch(&b, now, out) {
					if r.Flow != nil && r.Flow.status&stLive == 0 {
						t.Fatalf("step %d: result %d points at a free entry", step, i)
					}
				}
			} else {
				tb.Track(frames[rng.IntN(len(frames))], now)
			}
			tb.check(t)
			if tb.Len() > tb.Cap() {
				t.Fatalf("Len %d > Cap", tb.Len())
			}
		}
		c := tb.Counters()
		t.Logf("%v: %+v", policy, c)
		if policy == EvictOldest && c.Evicted == 0 || policy == Refuse && (c.Evicted != 0 || c.Full == 0) {
			t.Fatalf("policy %v: counters %+v", policy, c)
		}
	}
}

// TestFlowKeyAgrees checks classify's key against packet.FlowKey, and
// sameKey against ==, on every frame the tests build.
func TestFlowKeyAgrees(t *testing.T) {
	q := udpFrame(t, ap(a4, 1), ap(b4, 2))
	frames := [][]byte{
		q, udpFrame(t, ap(a6, 1), ap(b6, 2)),
		tcpFrame(t, ap(a4, 1), ap(b4, 2), syn), tcpFrame(t, ap(a6, 1), ap(b6, 2), ack),
		echoFrame(t, a4, b4, 77, false), echoFrame(t, a6, b6, 77, true),
		icmpErrorFrame(t, b4, a4, 3, 3, q, 0),
	}
	var keys []packet.FlowKey
	for _, f := range frames {
		p := parsed(t, f)
		var k packet.FlowKey
		k.SrcPort = 0xdead // classify must overwrite everything
		kd := classify(p, &k)
		want := p.FlowKey()
		if kd == kindError {
			q, _, _ := QuotedKey(p)
			want = q.Reverse()
		}
		if k != want {
			t.Errorf("classify key %v, FlowKey %v", k, want)
		}
		keys = append(keys, k)
	}
	for i := range keys {
		for j := range keys {
			for _, mod := range []func(*packet.FlowKey){func(*packet.FlowKey) {}, func(k *packet.FlowKey) { k.Proto++ }, func(k *packet.FlowKey) { k.Dst[3]++ }} {
				b := keys[j]
				mod(&b)
				if sameKey(&keys[i], &b) != (keys[i] == b) {
					t.Errorf("sameKey(%v, %v) wrong", keys[i], b)
				}
			}
		}
	}
}

// TestTrackBatchMatchesTrack runs the same random traffic through
// TrackBatch on one table and Track on another, in a table large enough
// for TrackBatch's prefetch passes, and wants the same results.
func TestTrackBatchMatchesTrack(t *testing.T) {
	const flows = prefetchMin + 8000
	cfg := Config{MaxFlows: 2 * flows}
	tb, tt := newTable(t, cfg), newTable(t, cfg)
	q := parsed(t, udpFrame(t, ap(a4, 1000), ap(b4, 53)))
	reply := parsed(t, udpFrame(t, ap(b4, 53), ap(a4, 1000)))
	syn := parsed(t, tcpFrame(t, ap(a6, 1000), ap(b6, 443), syn))
	rng := rand.New(rand.NewPCG(7, 7))
	var b packet.Batch
	out := make([]Result, packet.MaxBurst)
	now := int64(0)
	for i := range uint32(flows) { // fill, half through each path
		if b.Full() {
			tb.TrackBatch(&b, now, out)
			b.Reset()
		}
		p := b.Append(append([]byte(nil), q.Data...), 0, 0)
		p.Parse()
		binary.BigEndian.PutUint32(p.Data[p.L3Off+12:], 10<<24|i)
		tt.Track(p, now)
	}
	tb.TrackBatch(&b, now, out)
	for round := range 2000 {
		now += int64(time.Millisecond)
		b.Reset()
		for range 1 + rng.IntN(packet.MaxBurst) {
			tmpl := [...]*packet.Packet{q, reply, syn}[rng.IntN(3)]
			p := b.Append(append([]byte(nil), tmpl.Data...), 0, 0)
			p.Parse()
			i := uint32(rng.IntN(flows + round*8)) // mostly hits, some new flows
			if tmpl == reply {
				binary.BigEndian.PutUint32(p.Data[p.L3Off+16:], 10<<24|i) // the reply's destination
			} else if tmpl == q {
				binary.BigEndian.PutUint32(p.Data[p.L3Off+12:], 10<<24|i)
			} else {
				binary.BigEndian.PutUint32(p.Data[p.L3Off+8+12:], i) // low bits of the IPv6 source
			}
			if rng.IntN(50) == 0 {
				p.SetDrop(packet.DropPolicy)
			}
		}
		got := tb.TrackBatch(&b, now, out)
		wants := make([]Result, b.Len)
		for i := range b.Packets[:b.Len] {
			if p := &b.Packets[i]; p.Verdict != packet.Drop {
				wants[i] = tt.Track(p, now)
			}
		}
		// Flows are compared as they are after the batch on both sides.
		for i, want := range wants {
			g := got[i]
			if g.State != want.State || g.Dir != want.Dir || (g.Flow == nil) != (want.Flow == nil) ||
				g.Flow != nil && (g.Flow.Orig() != want.Flow.Orig() || g.Flow.Reply() != want.Flow.Reply() || g.Flow.Expires() != want.Flow.Expires() || g.Flow.Replied() != want.Flow.Replied()) {
				t.Fatalf("round %d packet %d: batch %v %v %v, single %v %v %v", round, i, g.State, g.Dir, g.Flow, want.State, want.Dir, want.Flow)
			}
		}
		if tb.used <= prefetchMin {
			t.Fatalf("round %d: %d entries used, the prefetch passes do not run", round, tb.used)
		}
	}
	if tb.Counters() != tt.Counters() || tb.Len() != tt.Len() {
		t.Fatalf("counters %+v / %+v", tb.Counters(), tt.Counters())
	}
	tb.check(t)
}
