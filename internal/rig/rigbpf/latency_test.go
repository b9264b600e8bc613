package rigbpf_test

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/rig/rigbpf"
)

func TestLatencyBuckets(t *testing.T) {
	// Bounds are contiguous and increasing, every value lands in the
	// bucket whose bounds hold it, and a bucket is at most 1/16 of its
	// lower bound wide.
	for i := 0; i < rigbpf.LatencyBuckets; i++ {
		lo, hi := rigbpf.LatencyBucketLow(i), rigbpf.LatencyBucketLow(i+1)
		if hi <= lo {
			t.Fatalf("bucket %d: [%d, %d)", i, lo, hi)
		}
		if lo >= 16 && float64(hi-lo) > float64(lo)/16 {
			t.Fatalf("bucket %d: [%d, %d) wider than 1/16", i, lo, hi)
		}
		for _, v := range []uint64{lo, hi - 1, lo + (hi-lo)/2} {
			if got := rigbpf.LatencyBucket(v); got != i {
				t.Fatalf("%d ns: bucket %d, want %d [%d, %d)", v, got, i, lo, hi)
			}
		}
	}
	if b := rigbpf.LatencyBucket(math.MaxUint64); b != rigbpf.LatencyBuckets-1 {
		t.Errorf("huge age in bucket %d", b)
	}
	if rigbpf.LatencyBucketLow(rigbpf.LatencyBuckets) != 1<<40 {
		t.Errorf("end of the last bucket %d", rigbpf.LatencyBucketLow(rigbpf.LatencyBuckets))
	}
}

// TestLatencyPercentiles computes percentiles from synthetic histograms
// whose answer is known.
func TestLatencyPercentiles(t *testing.T) {
	var h rigbpf.LatencyHistogram
	if d, err := h.Percentile(0.5); d != 0 || err != nil {
		t.Errorf("empty: %v %v", d, err)
	}
	// 1000 samples: 1..1000 us, one each.
	for v := uint64(1); v <= 1000; v++ {
		h.Add(v*1000, 1)
	}
	for _, c := range []struct {
		q    float64
		want float64 // us
	}{{0.5, 500}, {0.99, 990}, {0.999, 999}, {1, 1000}, {0.001, 1}} {
		d, err := h.Percentile(c.q)
		if err != nil {
			t.Fatal(err)
		}
		got := d.Seconds() * 1e6
		if math.Abs(got-c.want) > c.want/16 {
			t.Errorf("p%v = %.2f us, want %.0f us within a bucket", c.q*100, got, c.want)
		}
	}
	if m := h.Mean(); m != 500500*time.Nanosecond {
		t.Errorf("mean %v", m)
	}
	// Skewed: 990 samples at 2 us, 9 at 50 us, 1 at 3 ms.
	var s rigbpf.LatencyHistogram
	s.Add(2000, 990)
	s.Add(50000, 9)
	s.Add(3000000, 1)
	p50, _ := s.Percentile(0.5)
	p99, _ := s.Percentile(0.99)
	p999, _ := s.Percentile(0.999)
	p9999, _ := s.Percentile(0.9999)
	near := func(d time.Duration, want float64) bool {
		return math.Abs(float64(d)-want) <= want/16
	}
	if !near(p50, 2000) || !near(p99, 2000) || !near(p999, 50000) || !near(p9999, 3e6) {
		t.Errorf("skewed: p50 %v p99 %v p999 %v p9999 %v", p50, p99, p999, p9999)
	}
	if !(p50 <= p99 && p99 <= p999 && p999 <= p9999) {
		t.Errorf("not ordered: %v %v %v %v", p50, p99, p999, p9999)
	}
	// Sub gives a window's histogram.
	a := rigbpf.LatencyHistogram{}
	a.Add(100, 5)
	b := a
	b.Buckets = append([]uint64(nil), a.Buckets...)
	b.Add(7000, 3)
	d := b.Sub(a)
	if d.Count != 3 || d.Samples() != 3 || d.SumNs != 21000 {
		t.Errorf("sub %+v", d)
	}
	if p, _ := d.Percentile(0.5); !near(p, 7000) {
		t.Errorf("window p50 %v", p)
	}
	if _, err := d.Percentile(0); err == nil {
		t.Error("percentile 0 accepted")
	}
}

func monoNow(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// TestTimestampedFrames runs the generator with Timestamp (no live frames)
// and feeds its frames to a latency sink: the stamp is the kernel's clock,
// the sink records ages where they belong, and unmarked or future-stamped
// frames are not recorded.
func TestTimestampedFrames(t *testing.T) {
	lab.RequireRoot(t)
	cfg := genConfig(60)
	cfg.Timestamp = true
	g, err := rigbpf.LoadGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	tmpl := g.Frame()
	if string(tmpl[42:46]) != "xnfT" {
		t.Fatalf("template payload %x lacks the marker", tmpl[42:56])
	}
	s, err := rigbpf.LoadSinkWith(rigbpf.SinkConfig{Latency: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := make([]byte, 60)
	before := monoNow(t)
	if ret, err := g.Program.Run(&ebpf.RunOptions{Data: tmpl, DataOut: out}); err != nil || ret != xdpTX {
		t.Fatalf("generator: %v %v", ret, err)
	}
	after := monoNow(t)
	stamp := binary.LittleEndian.Uint64(out[48:56])
	if stamp < before || stamp > after {
		t.Fatalf("stamp %d outside [%d, %d]", stamp, before, after)
	}

	// record runs the sink on f and returns the age it recorded (the
	// histogram's only new sample), checked against the clock around the
	// run: between start - stamp and end - stamp, give or take a bucket.
	record := func(f []byte) (age time.Duration, recorded bool) {
		t.Helper()
		h0, err := s.Latency()
		if err != nil {
			t.Fatal(err)
		}
		start := monoNow(t)
		if _, err := s.Program.Run(&ebpf.RunOptions{Data: f}); err != nil {
			t.Fatal(err)
		}
		end := monoNow(t)
		h1, err := s.Latency()
		if err != nil {
			t.Fatal(err)
		}
		d := h1.Sub(h0)
		if d.Samples() == 0 {
			return 0, false
		}
		age, _ = d.Percentile(1)
		st := binary.LittleEndian.Uint64(f[48:56])
		lo, hi := time.Duration(start-st), time.Duration(end-st)
		if d.Count != 1 || d.Samples() != 1 || age < lo-lo/16 || age > hi+hi/16 {
			t.Errorf("recorded %d samples, age %v, want one in [%v, %v]", d.Samples(), age, lo, hi)
		}
		return age, true
	}
	if _, ok := record(out); !ok { // a fresh stamp
		t.Error("fresh stamp not recorded")
	}
	aged := append([]byte(nil), out...)
	binary.LittleEndian.PutUint64(aged[48:], monoNow(t)-uint64(5*time.Millisecond))
	if age, ok := record(aged); !ok || age < 5*time.Millisecond*15/16 {
		t.Errorf("a 5 ms old stamp: recorded %v, %v", ok, age)
	}
	future := append([]byte(nil), out...)
	binary.LittleEndian.PutUint64(future[48:], monoNow(t)+uint64(time.Hour))
	if _, ok := record(future); ok {
		t.Error("a stamp from the future recorded")
	}
	plain, _ := genConfig(60).Frame()
	if _, ok := record(plain); ok {
		t.Error("a frame without the marker recorded")
	}
	h, err := s.Latency()
	if err != nil {
		t.Fatal(err)
	}
	if h.Count != 2 || h.Samples() != 2 || h.Bad != 1 {
		t.Fatalf("histogram count %d samples %d bad %d, want 2, 2, 1", h.Count, h.Samples(), h.Bad)
	}
	// A sink without Latency records nothing.
	s2, err := rigbpf.LoadSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Program.Run(&ebpf.RunOptions{Data: out}); err != nil {
		t.Fatal(err)
	}
	if h, _ := s2.Latency(); h.Count != 0 {
		t.Errorf("latency recorded without SinkConfig.Latency: %d", h.Count)
	}
}
