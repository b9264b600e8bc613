package rig_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/rig"
	"github.com/xnfdev/xnf/internal/rig/rigbpf"
)

func sinkOn(t *testing.T, ns *lab.NS, ifname string) *rig.Sink {
	t.Helper()
	s, err := rig.AttachSink(ns, ifname)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSinkCountsDirectBurstExactly: g0 -> in0 with the sink on in0.
func TestSinkCountsDirectBurstExactly(t *testing.T) {
	topo := lab.TopologyForTest(t, "rigdirect", lab.TopologyOptions{})
	sink := sinkOn(t, topo.DUT, "in0")
	const n = 10000
	sent, err := rig.Generate(topo.Gen, "g0", rig.ForwardConfig(60, 16), 2*time.Second, n)
	if err != nil {
		t.Fatal(err)
	}
	if sent != n {
		t.Fatalf("sent %d frames, want %d", sent, n)
	}
	got, err := sink.WaitCount(n, 100*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := sink.Counters()
	if got != n || c.Bytes != n*60 || c.Other != 0 {
		t.Fatalf("sink counted %+v, want %d frames of 60 bytes", c, n)
	}
}

// TestKernelForwardBurstExactly: g0 -> in0, Linux forwards, out0 -> s0.
func TestKernelForwardBurstExactly(t *testing.T) {
	topo := lab.TopologyForTest(t, "rigkfwd", lab.TopologyOptions{})
	fwd, err := rig.KernelForward(topo)
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	// The sink also checks the IPv4 checksums the kernel rewrote (TTL).
	sink, err := rig.AttachSinkWith(topo.Sink, "s0", rig.SinkOptions{Config: rigbpf.SinkConfig{CheckIPv4: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	before, err := rig.LinkStats(topo.DUT, "out0")
	if err != nil {
		t.Fatal(err)
	}
	const n = 10000
	sent, err := rig.Generate(topo.Gen, "g0", rig.ForwardConfig(60, 16), 2*time.Second, n)
	if err != nil {
		t.Fatal(err)
	}
	got, err := sink.WaitCount(n, 100*time.Millisecond, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := fwd.In.Count()
	after, err := rig.LinkStats(topo.DUT, "out0")
	if err != nil {
		t.Fatal(err)
	}
	inStats, _ := rig.LinkStats(topo.DUT, "in0")
	fwdTx := after.TxPackets - before.TxPackets
	t.Logf("sent %d, in0 saw %d, out0 transmitted %d, sink counted %d (in0 rx_dropped %d, out0 tx_dropped %d)",
		sent, in, fwdTx, got, inStats.RxDropped, after.TxDropped)
	if sent != n || in != n {
		t.Fatalf("sent %d and in0 saw %d, want %d", sent, in, n)
	}
	if got != fwdTx {
		t.Fatalf("sink counted %d, out0 transmitted %d", got, fwdTx)
	}
	if got != n {
		t.Fatalf("sink counted %d of %d forwarded frames", got, n)
	}
	c, _ := sink.Counters()
	if c.Bytes != n*60 || c.Other != 0 || c.BadChecksum != 0 {
		t.Fatalf("sink counters %+v", c)
	}
}

// TestGenerateStopsAtDeadlineAndCancel bounds a run by time only.
func TestGenerateStopsAtDeadlineAndCancel(t *testing.T) {
	topo := lab.TopologyForTest(t, "rigtime", lab.TopologyOptions{})
	sink := sinkOn(t, topo.DUT, "in0")
	src, err := rig.NewSource(topo.Gen, "g0", rig.ForwardConfig(60, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	start := time.Now()
	sent, err := src.Run(context.Background(), 200*time.Millisecond, 0)
	el := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if el < 200*time.Millisecond || el > 400*time.Millisecond {
		t.Errorf("a 200ms run took %v", el)
	}
	got, _ := sink.WaitCount(sent, 100*time.Millisecond, time.Second)
	if sent == 0 || got != sent {
		t.Fatalf("sent %d, sink counted %d", sent, got)
	}
	t.Logf("200ms unbounded burst: %d frames (%.2f Mpps offered into an XDP drop)", sent, float64(sent)/el.Seconds()/1e6)

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start = time.Now()
	if _, err := src.Run(ctx, 2*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 300*time.Millisecond {
		t.Errorf("cancelled after 50ms, returned after %v", el)
	}
	if _, err := src.Run(context.Background(), 0, 10); err == nil {
		t.Error("a run without a time bound was accepted")
	}
}

// measureKernelForward measures Linux forwarding g0 -> in0 -> out0 -> s0.
// With split, in0's NAPI is threaded and pinned to the other CPU than the
// generator's, so forwarding and sink run there; otherwise everything
// (generator, in0 receive, forwarding, s0 receive) runs on one CPU.
func measureKernelForward(t testing.TB, size int, split bool) rig.Measurement {
	topo := lab.TopologyForTest(t, "rigkpps", lab.TopologyOptions{})
	fwd, err := rig.KernelForward(topo)
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer fwd.Close()
	sink, err := rig.AttachSink(topo.Sink, "s0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer sink.Close()
	src, err := rig.NewSource(topo.Gen, "g0", rig.ForwardConfig(size, 64))
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer src.Close()
	if split {
		if runtime.NumCPU() < 2 {
			t.Skipf("skipped: the split layout needs 2 CPUs")
		}
		src.CPU = 0
		if _, err := rig.ThreadNAPI(topo.DUT, "in0", 1); err != nil {
			t.Fatalf("%v", err)
		}
	}
	m, err := rig.MeasurePPS(src, sink, 500*time.Millisecond, 2*time.Second)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return m
}

// TestKernelForwardPPS logs Linux's forwarding rate for 64-byte frames
// (60 bytes without FCS) over a 2 s window, generator and forwarding on
// one CPU: a figure that the rig works, not a pass/fail threshold.
func TestKernelForwardPPS(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: a 2.5 s traffic run")
	}
	m := measureKernelForward(t, 60, false)
	t.Logf("kernel ip_forward, 64-byte frames, 64 flows, one CPU: %v", m)
	if m.Delivered == 0 {
		t.Fatal("nothing delivered")
	}
	// The sink's window nests inside the generator's (MeasurePPS), so only
	// frames in flight when it opened may be counted without being sent in
	// it: up to in0's and s0's rings (256 each) and a NAPI batch on each.
	if m.Delivered > m.Sent+640 {
		t.Fatalf("delivered %d > sent %d", m.Delivered, m.Sent)
	}
}

// BenchmarkKernelForward64 reports the same figure as metrics, in both
// layouts: one 2 s measurement per iteration (with -benchtime 1s, one).
func BenchmarkKernelForward64(b *testing.B) {
	for _, layout := range []struct {
		name  string
		split bool
	}{{"one-cpu", false}, {"split", true}} {
		b.Run(layout.name, func(b *testing.B) {
			for b.Loop() {
				m := measureKernelForward(b, 60, layout.split)
				b.ReportMetric(m.DeliveredPPS, "pps")
				b.ReportMetric(m.OfferedPPS, "offered-pps")
			}
		})
	}
}

// TestThreadNAPI threads in0's NAPI, pins it, and turns it back.
func TestThreadNAPI(t *testing.T) {
	topo := lab.TopologyForTest(t, "rignapi", lab.TopologyOptions{})
	if _, err := rig.ThreadNAPI(topo.DUT, "in0", 0); err == nil {
		t.Fatal("threading a veth end without XDP or GRO succeeded")
	}
	sinkOn(t, topo.DUT, "in0")
	napis, err := rig.ThreadNAPI(topo.DUT, "in0", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(napis) != 1 || napis[0].PID == 0 {
		t.Fatalf("NAPI contexts %+v, want one with a thread", napis)
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(napis[0].PID, &set); err != nil {
		t.Fatal(err)
	}
	if set.Count() != 1 || !set.IsSet(0) {
		t.Errorf("NAPI thread %d affinity has %d CPUs, want CPU 0 only", napis[0].PID, set.Count())
	}
	if err := rig.Unthread(topo.DUT, "in0"); err != nil {
		t.Fatal(err)
	}
	napis, err = rig.NAPIs(topo.DUT, "in0")
	if err != nil || len(napis) != 1 || napis[0].PID != 0 {
		t.Fatalf("after Unthread: %+v, %v", napis, err)
	}
}

// TestPacedRun checks the rate and the exact count of paced runs.
func TestPacedRun(t *testing.T) {
	topo := lab.TopologyForTest(t, "rigpace", lab.TopologyOptions{})
	sink := sinkOn(t, topo.DUT, "in0")
	src, err := rig.NewSource(topo.Gen, "g0", rig.ForwardConfig(60, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	src.Rate = 100e3

	start := time.Now()
	sent, err := src.Run(context.Background(), 300*time.Millisecond, 0)
	el := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	// Never above the rate; below it when other processes take the CPU
	// (a CPU more than 64 frames behind drops its backlog, not bursts).
	want := src.Rate * el.Seconds()
	if sent == 0 || float64(sent) > want+64 {
		t.Errorf("paced at 100 kpps for %v: sent %d, want at most %.0f", el, sent, want)
	}
	got, _ := sink.WaitCount(sent, 100*time.Millisecond, time.Second)
	if got != sent {
		t.Fatalf("sent %d, sink counted %d", sent, got)
	}
	t.Logf("paced at 100 kpps: %d frames in %v", sent, el)

	start = time.Now()
	sent, err = src.Run(context.Background(), 2*time.Second, 5000)
	el = time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if sent != 5000 {
		t.Fatalf("a paced run bounded to 5000 frames sent %d", sent)
	}
	if el < 45*time.Millisecond {
		t.Errorf("5000 frames at 100 kpps took only %v", el)
	}
	total, _ := sink.WaitCount(got+5000, 100*time.Millisecond, time.Second)
	st, _ := src.Gen.Stats()
	if total != st.Sent {
		t.Fatalf("generator sent %d in all, sink counted %d", st.Sent, total)
	}

	src.CPU = -2
	if _, err := src.Run(context.Background(), 10*time.Millisecond, 0); err == nil {
		t.Error("a paced run on unpinned threads was accepted")
	}
}
