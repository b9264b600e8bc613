package pipeline

import (
	"iter"
	"sync/atomic"
	"unsafe"

	"github.com/xnfdev/xnf/packet"
)

// Helpers for people writing stages. docs/writing-a-stage.md is the guide.
//
// Per-worker state needs no helper: the configuration builder
// (config.Register) is called once per worker, so every worker gets its own
// stage value, and state in a field of the stage is only ever touched by
// that worker's goroutine: no locks, no atomics, no sharding by CPU.
//
//	type counter struct{ seen map[[4]byte]uint32 } // this worker's own
//
//	func build(ctx *config.BuildContext, sc *config.StageConfig) (pipeline.Stage, error) {
//		return &counter{seen: make(map[[4]byte]uint32, 4096)}, nil // ctx.Worker says which worker
//	}
//
// Only what other goroutines read (counters for metrics, state a reload
// swaps in) must be atomic, and Counters covers the first.

// Live yields the packets of b that are not dropped, with their index in
// b.Packets. The worker removes dropped packets between stages, so a stage
// sees only live packets when it starts; Live matters inside a stage that
// makes several passes, or in code that runs after another stage's
// Process within the same call.
//
//	for _, p := range pipeline.Live(b) {
//		if p.Has(packet.FlagUDP) && p.DstPort() == 53 {
//			p.SetDrop(packet.DropPolicy)
//		}
//	}
//
// It is inlined into the stage and compiles to the same loop as an indexed
// one (go test -bench Live ./pipeline; go tool objdump), and never
// allocates.
func Live(b *packet.Batch) iter.Seq2[int, *packet.Packet] {
	return func(yield func(int, *packet.Packet) bool) {
		pkts := b.Packets[:b.Len]
		for i := range pkts {
			if p := &pkts[i]; p.Verdict != packet.Drop {
				if !yield(i, p) {
					return
				}
			}
		}
	}
}

// Counter is one event counter of a stage. Add is an atomic add (a locked
// instruction, some nanoseconds): on the hot path count in a local variable
// and Add once per batch.
type Counter struct{ v atomic.Uint64 }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Load reads the counter; any goroutine may.
func (c *Counter) Load() uint64 { return c.v.Load() }

// Counters is a stage's set of named counters, registered once when the
// stage is built and read by the metrics exporter. Embed it in a stage and
// the stage implements StageMetrics, so `xnf run` exports every counter as
// xnf_stage_events_total{stage, event}:
//
//	type dnsblock struct {
//		pipeline.Counters
//		hits *pipeline.Counter
//	}
//	s := &dnsblock{}
//	s.hits = s.Counter("hits")
//
// Names are short snake_case words. Counter panics on a name used twice,
// which is a bug in the stage.
type Counters struct {
	names []string
	ctrs  []*Counter
}

// Counter registers a counter under name and returns it. Call it while
// building the stage, never from Process.
func (c *Counters) Counter(name string) *Counter {
	for _, n := range c.names {
		if n == name {
			panic("pipeline: counter " + name + " registered twice")
		}
	}
	ctr := &Counter{}
	c.names = append(c.names, name)
	c.ctrs = append(c.ctrs, ctr)
	return ctr
}

// StageMetrics reads every counter (for the metrics exporter, any
// goroutine).
func (c *Counters) StageMetrics() map[string]uint64 {
	m := make(map[string]uint64, len(c.names))
	for i, n := range c.names {
		m[n] = c.ctrs[i].Load()
	}
	return m
}

// Headroom is the number of bytes in front of p.Data in its frame, for
// frames of frameSize bytes: an AF_XDP UMEM leaves 256 before received
// data (config umem.frame_size, default 4096); a MemPool leaves none.
func Headroom(p *packet.Packet, frameSize int) int { return int(p.Addr % uint64(frameSize)) }

// PushFront makes room for n bytes in front of the frame, for a header to
// be pushed (a VLAN tag, a tunnel): afterwards the old frame is at
// p.Data[n:] and p.Data[:n] is for the caller to write. When the frame has
// n bytes of headroom (frames of frameSize bytes), only Data's start and
// Addr move back, as the Stage contract requires; otherwise the frame
// shifts n bytes toward its end, a copy of the whole frame, if its
// capacity allows. It reports false, changing nothing, when neither fits.
//
// The parsed offsets are stale afterwards: call p.Parse before reading
// headers through them (the worker parses once, before the chain).
func PushFront(p *packet.Packet, n, frameSize int) bool {
	l := len(p.Data)
	if l == 0 || n < 0 {
		return false
	}
	if Headroom(p, frameSize) >= n {
		// Data's backing array is the whole pool, so the n bytes before it
		// are the same allocation (the UMEM mapping or the MemPool slice).
		start := unsafe.Add(unsafe.Pointer(unsafe.SliceData(p.Data)), -n)
		p.Data = unsafe.Slice((*byte)(start), cap(p.Data)+n)[:l+n]
		p.Addr -= uint64(n)
		return true
	}
	if cap(p.Data)-l < n {
		return false
	}
	p.Data = p.Data[:l+n]
	copy(p.Data[n:], p.Data[:l])
	return true
}

// PopFront removes the first n bytes of the frame (a header the caller has
// already moved what it keeps out of): Data's start and Addr move forward
// by n. It reports false, changing nothing, if the frame is not longer
// than n. Call p.Parse afterwards, as for PushFront.
func PopFront(p *packet.Packet, n int) bool {
	if n < 0 || len(p.Data) <= n {
		return false
	}
	p.Data = p.Data[n:]
	p.Addr += uint64(n)
	return true
}
