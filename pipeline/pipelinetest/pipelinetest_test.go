package pipelinetest_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/pipeline/pipelinetest"
)

func TestBuildersParse(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		flags packet.Flags
		sum   string
	}{
		{"udp4", pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:53", "hi"), packet.FlagIPv4 | packet.FlagUDP, "IPv4 198.18.0.1 > 198.18.1.2 ttl 64 UDP 1000 > 53 len 2"},
		{"udp6", pipelinetest.UDP6("[2001:db8::1]:1000", "[2001:db8:1::2]:53", ""), packet.FlagIPv6 | packet.FlagUDP, "IPv6 2001:db8::1 > 2001:db8:1::2 hlim 64 UDP 1000 > 53 len 0"},
		{"tcp4 syn", pipelinetest.TCP4("198.18.0.1:1000", "198.18.1.2:80", "", pipelinetest.TCPFlags(packet.TCPSyn), pipelinetest.Seq(7)), packet.FlagIPv4 | packet.FlagTCP, "TCP 1000 > 80 [S] seq 7"},
		{"tcp6", pipelinetest.TCP6("[2001:db8::1]:1000", "[2001:db8::2]:80", "abc"), packet.FlagIPv6 | packet.FlagTCP, "[P.]"},
		{"ping4", pipelinetest.EchoRequest4("198.18.0.1", "198.18.1.2", 9, 1, "x"), packet.FlagIPv4 | packet.FlagICMP, "ICMP EchoRequest id 9 seq 1"},
		{"pong6", pipelinetest.EchoReply6("2001:db8::2", "2001:db8::1", 9, 1, ""), packet.FlagIPv6 | packet.FlagICMPv6, "EchoReply id 9 seq 1"},
		{"arp", pipelinetest.ARPRequest("198.18.0.1", "198.18.0.2"), packet.FlagARP, "ARP who-has 198.18.0.2 tell 198.18.0.1"},
		{"vlan ttl", pipelinetest.UDP4("198.18.0.1:1", "198.18.1.2:2", "", pipelinetest.VLAN(100), pipelinetest.TTL(3)), packet.FlagVLAN | packet.FlagUDP, "vlan 100 IPv4 198.18.0.1 > 198.18.1.2 ttl 3 UDP"},
		{"qinq", pipelinetest.UDP4("198.18.0.1:1", "198.18.1.2:2", "", pipelinetest.QinQ(10, 20)), packet.FlagQinQ | packet.FlagUDP, "vlan 10 vlan 20"},
		{"dns", pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:53", pipelinetest.DNSQuery("ads.example.com")), packet.FlagUDP, `DNS query A "ads.example.com"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p packet.Packet
			p.Reset(tc.frame, 0, 0)
			if e := p.Parse(); e != packet.ErrNone || !p.Has(tc.flags) {
				t.Fatalf("parse: %v, flags %v: %s", e, p.Flags, pipelinetest.Dump(tc.frame))
			}
			if p.Has(packet.FlagIPv4) || p.Has(packet.FlagIPv6) {
				if !p.L4ChecksumValid() {
					t.Errorf("bad L4 checksum: %s", pipelinetest.Summary(tc.frame))
				}
			}
			if s := pipelinetest.Summary(tc.frame); !strings.Contains(s, tc.sum) {
				t.Errorf("summary %q does not contain %q", s, tc.sum)
			}
		})
	}
}

// recorder is a testing.TB that keeps failure messages, so the kit's own
// messages can be checked.
type recorder struct {
	testing.TB
	msgs     []string
	cleanups []func()
}

type fatal struct{}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, a ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(format, a...))
}
func (r *recorder) Fatalf(format string, a ...any) {
	r.Errorf(format, a...)
	panic(fatal{})
}

// run runs fn against a recorder, then its cleanups, and returns every
// message.
func run(t *testing.T, fn func(tb testing.TB)) string {
	r := &recorder{TB: t}
	func() {
		defer func() {
			if v := recover(); v != nil && v != (fatal{}) {
				panic(v)
			}
		}()
		fn(r)
	}()
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	return strings.Join(r.msgs, "\n")
}

var drop53 = pipeline.StageFunc{StageName: "drop53", Fn: func(b *packet.Batch) {
	for _, p := range pipeline.Live(b) {
		if p.DstPort() == 53 {
			p.SetDrop(packet.DropPolicy)
		}
	}
}}

func TestSendReportsEachFramesFate(t *testing.T) {
	bounce7 := pipeline.StageFunc{StageName: "bounce7", Fn: func(b *packet.Batch) {
		for _, p := range pipeline.Live(b) {
			if p.DstPort() == 7 {
				p.SetBounce()
			}
		}
	}}
	h := pipelinetest.New(t, drop53, bounce7)
	f := pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:9", "x")
	echo := pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:7", "x")
	res := h.Send(0, f, pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:53", "x"), []byte{1, 2, 3}, echo)
	h.Expect(res,
		pipelinetest.Forwarded(1).Bytes(f),
		pipelinetest.Dropped(packet.DropPolicy),
		pipelinetest.Dropped(packet.DropMalformed),
		pipelinetest.Bounced().Bytes(echo))
	if res[1].Stage != "drop53" || res[2].Stage != "" || res[3].Port != 0 {
		t.Errorf("drop attribution %q and %q, bounce port %d", res[1].Stage, res[2].Stage, res[3].Port)
	}
	h.ExpectOut(1, f)
	h.ExpectOut(0, echo)
	h.ExpectDropped(0, map[packet.DropReason]uint64{packet.DropPolicy: 1})
	h.ExpectDropped(1, map[packet.DropReason]uint64{})
	if pc := h.PortCounters(); pc[0].RX != 4 || pc[1].TX != 1 || pc[0].TX != 1 {
		t.Errorf("port counters %+v", pc)
	}
	// More frames than a burst and than... the pool recycles frames
	// between batches; fates stay right.
	var many [][]byte
	var want []pipelinetest.Want
	for i := range 300 {
		if i%3 == 0 {
			many = append(many, pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:53", fmt.Sprint(i)))
			want = append(want, pipelinetest.Dropped(packet.DropPolicy))
		} else {
			many = append(many, pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:9", fmt.Sprint(i)))
			want = append(want, pipelinetest.Forwarded(1).Bytes(many[i]))
		}
	}
	h.Expect(h.Send(0, many...), want...)
	h.Out(1)
}

func TestFailureMessagesShowDecodedPackets(t *testing.T) {
	f := pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:53", pipelinetest.DNSQuery("ads.example.com"))
	for _, tc := range []struct {
		name string
		fn   func(tb testing.TB)
		want []string
	}{
		{"wrong verdict", func(tb testing.TB) {
			h := pipelinetest.New(tb, drop53)
			h.Expect(h.Send(0, f), pipelinetest.Forwarded(1))
		}, []string{`frame 0 dropped (policy) by stage drop53: 02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 198.18.0.1 > 198.18.1.2 ttl 64 UDP 1000 > 53 len 33 DNS query A "ads.example.com" (75 bytes); want forwarded to port 1`}},
		{"wrong bytes", func(tb testing.TB) {
			h := pipelinetest.New(tb)
			h.Expect(h.Send(0, f), pipelinetest.Forwarded(1).Bytes(pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:53", pipelinetest.DNSQuery("ads.example.com"), pipelinetest.TTL(63))))
		}, []string{"left port 1 with other bytes than expected", "got:  02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 198.18.0.1 > 198.18.1.2 ttl 64", "want: 02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 198.18.0.1 > 198.18.1.2 ttl 63", "first difference at byte 22 (IPv4 header, byte 8): got 40"}},
		{"missing output", func(tb testing.TB) {
			h := pipelinetest.New(tb, drop53)
			h.Send(0, f)
			h.ExpectOut(1, f)
		}, []string{"port 1 transmitted 0 frames, want 1"}},
		{"counters", func(tb testing.TB) {
			h := pipelinetest.New(tb, drop53)
			h.Send(0, f)
			h.ExpectDropped(0, map[packet.DropReason]uint64{packet.DropPolicy: 2})
		}, []string{"stage 0 (drop53) dropped map[policy:1], want map[policy:2]"}},
		{"no metrics", func(tb testing.TB) {
			pipelinetest.New(tb, drop53).Metrics(0)
		}, []string{"stage 0 (drop53) does not implement pipeline.StageMetrics"}},
		{"Addr not moved with Data", func(tb testing.TB) {
			h := pipelinetest.New(tb, pipeline.StageFunc{StageName: "bad", Fn: func(b *packet.Batch) {
				for i := range b.Slice() {
					b.Packets[i].Data = b.Packets[i].Data[4:] // Addr left behind
				}
			}})
			h.Send(0, f)
		}, []string{"a stage moved the start of Data without moving Addr"}},
		{"no free frames", func(tb testing.TB) {
			h := pipelinetest.NewWith(tb, pipelinetest.Config{Frames: 2})
			h.Pool().Alloc(make([]uint64, 2))
			h.Send(0, f)
		}, []string{"1 frames cannot be received: the pool has 0 of 2 frames free"}},
		{"frame kept", func(tb testing.TB) {
			h := pipelinetest.New(tb, pipeline.StageFunc{StageName: "leak", Fn: func(b *packet.Batch) {}})
			h.Pool().Alloc(make([]uint64, 1))
		}, []string{"1 of 1024 frames never came back to the pool"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := run(t, tc.fn)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("messages\n%s\ndo not contain\n%s", got, w)
				}
			}
		})
	}
}

func TestStageKeepingAFrameSliceReadsPoison(t *testing.T) {
	var kept []byte
	h := pipelinetest.New(t, pipeline.StageFunc{StageName: "keeper", Fn: func(b *packet.Batch) {
		kept = b.Packets[0].Data // wrong: the frame is not ours after Process
	}})
	h.Send(0, pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:9", "x"))
	if kept[0] != 0xdd {
		t.Errorf("a released frame still holds the old packet: %s", pipelinetest.Summary(kept))
	}
	h.Out(1)
}

func TestZeroAllocsCatchesAllocation(t *testing.T) {
	var sink []*int
	alloc := pipeline.StageFunc{StageName: "alloc", Fn: func(b *packet.Batch) {
		for range b.Len {
			sink = append(sink[:0], new(int))
		}
	}}
	f := pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:9", "x")
	if msg := run(t, func(tb testing.TB) { pipelinetest.ZeroAllocs(tb, alloc, f) }); !strings.Contains(msg, "stage alloc allocates 64.00 times per batch of 64 packets") {
		t.Errorf("got %q", msg)
	}
	if msg := run(t, func(tb testing.TB) { pipelinetest.ZeroAllocs(tb, drop53, f) }); msg != "" {
		t.Errorf("a stage that allocates nothing: %q", msg)
	}
}

func BenchmarkEmptyStage(b *testing.B) {
	pipelinetest.Benchmark(b, pipeline.StageFunc{StageName: "empty", Fn: func(*packet.Batch) {}},
		pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:9", "0123456789012345"))
}

// Fragments cut a datagram as a host does: the pieces parse as fragments
// of one datagram and together carry its bytes.
func TestFragments(t *testing.T) {
	payload := make([]byte, 3000)
	for i := range payload {
		payload[i] = byte(i)
	}
	for _, f := range [][]byte{
		pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:53", payload),
		pipelinetest.UDP6("[2001:db8::1]:1000", "[2001:db8:1::2]:53", payload),
	} {
		var whole packet.Packet
		whole.Reset(f, 0, 0)
		whole.Parse()
		want := whole.L4()
		frs := pipelinetest.Fragments(f, 1232, 0x10203)
		if len(frs) != 3 {
			t.Fatalf("%d fragments", len(frs))
		}
		var got []byte
		for i, fr := range frs {
			var p packet.Packet
			p.Reset(fr, 0, 0)
			if p.Parse() != packet.ErrNone {
				t.Fatalf("fragment %d: %v", i, p.Err)
			}
			d, ok := p.Fragment()
			if !ok || d.Offset != len(got) || d.More != (i < 2) || d.Next != packet.ProtoUDP {
				t.Fatalf("fragment %d: %+v %v", i, d, ok)
			}
			if p.Flags&packet.FlagIPv4 != 0 && (!p.IPv4().ChecksumValid() || d.ID != 0x0203) || p.Flags&packet.FlagIPv6 != 0 && d.ID != 0x10203 {
				t.Fatalf("fragment %d: header checksum or identification", i)
			}
			got = append(got, fr[len(fr)-d.Len:]...)
		}
		if string(got) != string(want) {
			t.Error("the fragments do not carry the datagram")
		}
	}
}
