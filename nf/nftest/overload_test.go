package nftest

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/xnfdev/xnf/internal/rig"
)

// TestOverloadIsCountedAndRecovers offers far more than the chain can take
// (the unpaced live-frames generator) for 10 s (2 s with -short), then
// checks that every frame the XDP program handed to xnf is accounted for
// (received, or dropped by the kernel for want of a fill buffer or RX ring
// space), that the pipeline's counters add up, that the heap stayed flat,
// and that a paced stream afterwards gets through whole.
func TestOverloadIsCountedAndRecovers(t *testing.T) {
	topo, w, _, devs, xps := liveChain(t)
	sink, err := rig.AttachSink(topo.Sink, "s0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	src, err := rig.NewSource(topo.Gen, "g0", rig.ForwardConfig(60, 256))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	d := 10 * time.Second
	if testing.Short() {
		d = 2 * time.Second
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()

	sent, err := src.Run(context.Background(), d, 0)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the rings drain
	runtime.GC()
	runtime.ReadMemStats(&after)

	ports := w.PortCounters()
	in := ports[0]
	dropped := in.DroppedTotal()
	if in.RX != ports[1].TX+dropped {
		t.Errorf("pipeline: in rx %d != out tx %d + dropped %d %v", in.RX, ports[1].TX, dropped, in.Dropped)
	}
	// Kernel side: every frame the XDP program redirected was received
	// by xnf or dropped by the kernel, counted by the socket.
	xc, _ := devs[0].Counters()
	st, _ := xps[0].Socket().Stats()
	if xc.Redirected != in.RX+st.RXDropped+st.RXRingFull {
		t.Errorf("XDP redirected %d != received %d + rx_dropped %d + rx_ring_full %d", xc.Redirected, in.RX, st.RXDropped, st.RXRingFull)
	}
	t.Logf("kernel: redirected %d, rx_dropped %d (fill ring empty %d), rx_ring_full %d", xc.Redirected, st.RXDropped, st.RXFillRingEmpty, st.RXRingFull)
	delivered, _ := sink.Count()
	t.Logf("offered %d frames in %v (%.2f Mpps); xnf received %d, forwarded %d (%.2f Mpps), dropped %v; sink counted %d",
		sent, d, float64(sent)/d.Seconds()/1e6, in.RX, ports[1].TX, float64(ports[1].TX)/d.Seconds()/1e6, in.Dropped, delivered)
	if in.RX >= sent {
		t.Errorf("xnf received all %d frames: not an overload, the test proves nothing", sent)
	}
	if delivered != ports[1].TX {
		t.Errorf("sink counted %d, xnf transmitted %d", delivered, ports[1].TX)
	}
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 8<<20 {
		t.Errorf("heap grew by %d bytes under overload", grow)
	}
	if g := runtime.NumGoroutine(); g > goroutines+2 {
		t.Errorf("goroutines %d -> %d", goroutines, g)
	}

	// Recovery: a paced stream after the overload arrives whole.
	start, _ := sink.Count()
	src.Rate = 50000
	n, err := src.Run(context.Background(), time.Second, 20000)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := sink.WaitCount(start+n, 100*time.Millisecond, 3*time.Second)
	if got-start != n {
		t.Errorf("after the overload, %d of %d paced frames arrived", got-start, n)
	}
}
