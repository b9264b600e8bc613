package pipeline_test

import (
	"fmt"

	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

// telnetBlock drops TCP to port 23 and counts it with a registered counter.
type telnetBlock struct {
	pipeline.Counters
	dropped *pipeline.Counter
}

func newTelnetBlock() *telnetBlock {
	s := &telnetBlock{}
	s.dropped = s.Counter("telnet_dropped") // once, when the stage is built
	return s
}

func (s *telnetBlock) Name() string { return "telnet-block" }

func (s *telnetBlock) Process(b *packet.Batch) {
	var n uint64
	for _, p := range pipeline.Live(b) {
		if p.Has(packet.FlagTCP) && p.DstPort() == 23 {
			p.SetDrop(packet.DropPolicy)
			n++
		}
	}
	s.dropped.Add(n) // once per batch
}

// A stage that embeds Counters exports its counters as
// xnf_stage_events_total{event="telnet_dropped"} with no more code.
func ExampleCounters() {
	s := newTelnetBlock()
	var m pipeline.StageMetrics = s
	s.dropped.Add(2)
	fmt.Println(m.StageMetrics())
	// Output: map[telnet_dropped:2]
}

func ExampleLive() {
	var b packet.Batch
	for i := range 4 {
		b.Append(make([]byte, 60), uint64(i), 0)
	}
	b.Packets[1].SetDrop(packet.DropPolicy)
	for i, p := range pipeline.Live(&b) {
		fmt.Println(i, p.Verdict)
	}
	// Output:
	// 0 forward
	// 2 forward
	// 3 forward
}

// Pushing a 4-byte header: with headroom only Data's start and Addr move
// back; the caller writes the new bytes in front.
func ExamplePushFront() {
	pool := pipeline.NewMemPool(2, 2048)
	frames := make([]uint64, 1)
	pool.Alloc(frames)
	base := frames[0]
	addr := base + 256 // received with 256 bytes of headroom, as from AF_XDP
	p := &packet.Packet{Data: pool.Frame(addr, 4), Addr: addr}
	copy(p.Data, "body")
	pipeline.PushFront(p, 4, pool.FrameSize())
	copy(p.Data, "head")
	fmt.Printf("%s, Addr moved by %d, headroom left %d\n", p.Data, int(p.Addr)-int(addr), pipeline.Headroom(p, pool.FrameSize()))
	// Output: headbody, Addr moved by -4, headroom left 252
}
