package pipelinetest

import (
	"testing"
	"time"

	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

// BenchBurst is the burst of Benchmark and ZeroAllocs: the worker's default.
const BenchBurst = 64

// loop is a worker that receives frames for ever on port 0 and discards
// what it transmits, at burst BenchBurst, with frames laid out as the
// harness's default (FrameSize, DefaultHeadroom).
func loop(tb testing.TB, stages []pipeline.Stage, frames [][]byte) *pipeline.Worker {
	tb.Helper()
	if len(frames) == 0 {
		tb.Fatalf("pipelinetest: no frames to loop over")
	}
	pool := pipeline.NewMemPool(1024, FrameSize)
	a := &MemPort{name: "p0", pool: pool, Headroom: DefaultHeadroom, Loop: true, Discard: true}
	b := &MemPort{name: "p1", pool: pool, Headroom: DefaultHeadroom, Discard: true}
	a.Inject(frames...)
	w, err := pipeline.NewWorker(pipeline.Config{Ports: []pipeline.Port{a, b}, Stages: stages, Burst: BenchBurst, CPU: -1})
	if err != nil {
		tb.Fatalf("pipelinetest: %v", err)
	}
	return w
}

// AllocsPerBatch runs the chain over batches of BenchBurst packets (the
// frames, repeated) and returns the average allocations per batch.
func AllocsPerBatch(tb testing.TB, stages []pipeline.Stage, frames ...[]byte) float64 {
	tb.Helper()
	w := loop(tb, stages, frames)
	for range 4 {
		w.Poll() // warm up: lazily built state, first map growth
	}
	return testing.AllocsPerRun(200, func() { w.Poll() })
}

// ZeroAllocs fails the test if stage s allocates while processing batches
// of the frames. The worker's own loop allocates nothing, so any
// allocation is the stage's: find it with go test -gcflags=-m (what
// escapes) or -memprofile.
func ZeroAllocs(tb testing.TB, s pipeline.Stage, frames ...[]byte) {
	tb.Helper()
	if a := AllocsPerBatch(tb, []pipeline.Stage{s}, frames...); a != 0 {
		tb.Errorf("stage %s allocates %.2f times per batch of %d packets (want 0; look with go test -gcflags=-m or -memprofile)", s.Name(), a, BenchBurst)
	}
}

// Benchmark measures stage s on the frames (repeated) at burst BenchBurst
// in a real worker over memory ports. It reports
//
//	ns/pkt        the whole loop per packet: copy in, parse, the stage, transmit
//	stage-ns/pkt  the stage's Process alone, per packet
//
// and allocs/op per batch (one op is one batch of BenchBurst packets).
// Run it with go test -run XXX -bench . -benchmem.
func Benchmark(b *testing.B, s pipeline.Stage, frames ...[]byte) {
	b.Helper()
	BenchmarkChain(b, []pipeline.Stage{s}, frames...)
}

// BenchmarkChain is Benchmark for a chain; stage-ns/pkt sums the stages.
func BenchmarkChain(b *testing.B, stages []pipeline.Stage, frames ...[]byte) {
	b.Helper()
	var spent time.Duration
	timed := make([]pipeline.Stage, len(stages))
	for i, s := range stages {
		timed[i] = &timer{Stage: s, spent: &spent}
	}
	w := loop(b, timed, frames)
	for range 4 {
		w.Poll()
	}
	spent = 0
	b.ReportAllocs()
	b.ResetTimer()
	pkts := 0
	for b.Loop() {
		pkts += w.Poll()
	}
	b.StopTimer()
	if pkts > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pkts), "ns/pkt")
		b.ReportMetric(float64(spent.Nanoseconds())/float64(pkts), "stage-ns/pkt")
	}
}

// timer adds the time a stage spends in Process to spent.
type timer struct {
	pipeline.Stage
	spent *time.Duration
}

func (t *timer) Process(b *packet.Batch) {
	start := time.Now()
	t.Stage.Process(b)
	*t.spent += time.Since(start)
}
