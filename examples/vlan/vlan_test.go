package main

import (
	"strings"
	"testing"

	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// bridge pushes 100 on port 0 and pops 100 on port 1.
func bridge() *VLAN { return New([]Action{{Push: 100}, {Pop: 100}}, pt.FrameSize) }

func TestPushesOnAccessPopsOnTrunk(t *testing.T) {
	for _, hr := range []struct {
		name     string
		headroom int
	}{{"with headroom (AF_XDP)", pt.DefaultHeadroom}, {"without headroom (shifted)", pt.NoHeadroom}} {
		t.Run(hr.name, func(t *testing.T) {
			h := pt.NewWith(t, pt.Config{Headroom: hr.headroom}, bridge())
			udp := pt.UDP4("198.18.0.1:1000", "198.18.0.3:9", "hello")
			tcp := pt.TCP6("[2001:db8::1]:1000", "[2001:db8::3]:80", "")
			arp := pt.ARPRequest("198.18.0.1", "198.18.0.3")
			tagged := pt.UDP4("198.18.0.1:1000", "198.18.0.3:9", "hello", pt.VLAN(100))
			h.Expect(h.Send(0, udp, tcp, arp, tagged),
				pt.Forwarded(1).Bytes(pt.UDP4("198.18.0.1:1000", "198.18.0.3:9", "hello", pt.VLAN(100))),
				pt.Forwarded(1).Bytes(pt.TCP6("[2001:db8::1]:1000", "[2001:db8::3]:80", "", pt.VLAN(100))),
				pt.Forwarded(1).Bytes(pt.ARPRequest("198.18.0.1", "198.18.0.3", pt.VLAN(100))),
				pt.Forwarded(1).Bytes(pt.UDP4("198.18.0.1:1000", "198.18.0.3:9", "hello", pt.VLAN(100), pt.VLAN(100))),
			)
			h.Expect(h.Send(1,
				pt.UDP4("198.18.0.3:9", "198.18.0.1:1000", "back", pt.VLAN(100)),
				pt.UDP4("198.18.0.3:9", "198.18.0.1:1000", "other vlan", pt.VLAN(200)),
				pt.UDP4("198.18.0.3:9", "198.18.0.1:1000", "untagged"),
				pt.UDP4("198.18.0.3:9", "198.18.0.1:1000", "q-in-q", pt.QinQ(100, 5)),
				pt.ARPReply("198.18.0.3", "198.18.0.1", pt.VLAN(100)),
			),
				pt.Forwarded(0).Bytes(pt.UDP4("198.18.0.3:9", "198.18.0.1:1000", "back")),
				pt.Dropped(packet.DropPolicy),
				pt.Dropped(packet.DropPolicy),
				pt.Dropped(packet.DropPolicy), // an 802.1ad outer tag is not ours
				pt.Forwarded(0).Bytes(pt.ARPReply("198.18.0.3", "198.18.0.1")),
			)
			h.ExpectMetrics(0, map[string]uint64{"pushed": 4, "popped": 2, "foreign": 3, "no_room": 0})
			h.Out(0)
			h.Out(1)
		})
	}
}

// A later stage sees the new layout: the stage parses again after moving
// the frame.
func TestLaterStagesSeeTheTag(t *testing.T) {
	var tags []uint16
	probe := pipeline.StageFunc{StageName: "probe", Fn: func(b *packet.Batch) {
		for _, p := range pipeline.Live(b) {
			tags = append(tags, p.VLANTags[0]&0xfff, p.DstPort())
		}
	}}
	h := pt.New(t, bridge(), probe)
	h.Send(0, pt.UDP4("198.18.0.1:1000", "198.18.0.3:9", "x"))
	h.Send(1, pt.UDP4("198.18.0.3:9", "198.18.0.1:1000", "x", pt.VLAN(100)))
	if len(tags) != 4 || tags[0] != 100 || tags[1] != 9 || tags[2] != 0 || tags[3] != 1000 {
		t.Errorf("later stage saw tag, port = %v; want [100 9 0 1000]", tags)
	}
	h.Out(0)
	h.Out(1)
}

func TestNoRoomForATagDrops(t *testing.T) {
	// A frame filling its pool frame, no headroom: nowhere to put 4 bytes.
	h := pt.NewWith(t, pt.Config{Headroom: pt.NoHeadroom}, bridge())
	full := pt.UDP4("198.18.0.1:1000", "198.18.0.3:9", strings.Repeat("x", pt.FrameSize-42))
	h.Expect(h.Send(0, full), pt.Dropped(packet.DropFull))
	h.ExpectMetrics(0, map[string]uint64{"no_room": 1})
}

func TestConfig(t *testing.T) {
	f, err := config.Load("chain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stages(&config.BuildContext{File: f, Check: true})
	if err != nil {
		t.Fatal(err)
	}
	if v := st[0].(*VLAN); len(v.actions) != 2 || v.actions[0] != (Action{Push: 100}) || v.actions[1] != (Action{Pop: 100}) || v.frameSize != 4096 {
		t.Errorf("built %+v, frame size %d", v.actions, v.frameSize)
	}
	text := `ports: [{name: in, interface: in0}, {name: out, interface: out0}]
chain:
  - type: example/vlan
    ports:
      - {port: in, push: 100}
      - REPLACE
`
	for _, tc := range []struct{ entry, want string }{
		{"{port: up, pop: 1}", `<config>:6: chain[0].ports[1].port: unknown port "up" (expected one of in, out)`},
		{"{port: out, pop: 1, push: 2}", `chain[0].ports[1]: expected one of push or pop`},
		{"{port: out}", `chain[0].ports[1]: expected one of push or pop`},
		{"{port: out, push: 4095}", `VLAN IDs are 1-4094`},
		{"{port: out, push: 5, pcp: 8}", `chain[0].ports[1].pcp: 8: expected 0-7`},
		{"{port: out, tag: 5}", `chain[0].ports[1].tag: unknown field (expected one of port, push, pcp, pop)`},
	} {
		_, err := config.Parse("", []byte(strings.Replace(text, "REPLACE", tc.entry, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.entry, err, tc.want)
		}
	}
}

func TestAllocatesNothing(t *testing.T) {
	pt.ZeroAllocs(t, bridge(), pt.UDP4("198.18.0.1:1000", "198.18.0.3:9", "x"))
}

func BenchmarkVLAN(b *testing.B) {
	payload := strings.Repeat("x", 64)
	b.Run("push", func(b *testing.B) { pt.Benchmark(b, bridge(), pt.UDP4("198.18.0.1:1000", "198.18.0.3:9", payload)) })
	b.Run("pop", func(b *testing.B) {
		pop := New([]Action{{Pop: 100}}, pt.FrameSize) // frames come in on port 0
		pt.Benchmark(b, pop, pt.UDP4("198.18.0.1:1000", "198.18.0.3:9", payload, pt.VLAN(100)))
	})
}
