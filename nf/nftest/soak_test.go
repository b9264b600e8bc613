package nftest

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/xnfdev/xnf/internal/rig"
	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/firewall"
)

// TestChurnSoak pushes new flows at a high rate (64k source ports cycling)
// through the firewall's conntrack with a small table and short timeouts:
// the table stays within its bound, evictions are counted, the heap and
// goroutine count stay flat, and every frame is back in the UMEM at the
// end (checked at cleanup). 20 s by default, XNF_SOAK=2m for `make soak`,
// 3 s with -short.
func TestChurnSoak(t *testing.T) {
	d := 20 * time.Second
	if testing.Short() {
		d = 3 * time.Second
	}
	if s := os.Getenv("XNF_SOAK"); s != "" {
		if v, err := time.ParseDuration(s); err == nil && v <= 10*time.Minute {
			d = v
		}
	}
	var fs *firewall.Stage
	const maxFlows = 2048
	topo, w, _, _, _ := liveChainWith(t, conntrack.Config{MaxFlows: maxFlows, Full: conntrack.EvictOldest,
		Timeouts: conntrack.Timeouts{UDP: time.Second, UDPStream: time.Second}}, &fs, nil)
	cfg := rig.ForwardConfig(60, 60000) // source ports 1024-61023
	src, err := rig.NewSource(topo.Gen, "g0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	src.Rate = 100000 // 100k new-ish flows a second, within what the chain forwards

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	var maxSeen uint64
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := src.Run(ctx, d, 0); done <- err }()
	for tick := time.NewTicker(250 * time.Millisecond); ; {
		select {
		case err := <-done:
			tick.Stop()
			if err != nil {
				t.Fatal(err)
			}
			goto finished
		case <-tick.C:
			if n := fs.StageMetrics()["conntrack_flows"]; n > maxSeen {
				maxSeen = n
			}
		}
	}
finished:
	time.Sleep(200 * time.Millisecond)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	m := fs.StageMetrics()
	t.Logf("%v of churn: %d packets, conntrack: most %d flows (bound %d), %d created, %d evicted, %d expired, %d refused",
		d, w.PortCounters()[0].RX, maxSeen, maxFlows, m["conntrack_new"], m["conntrack_evicted"], m["conntrack_expired"], m["conntrack_full"])
	if maxSeen > maxFlows {
		t.Errorf("conntrack held %d flows, bound %d", maxSeen, maxFlows)
	}
	if m["conntrack_evicted"]+m["conntrack_expired"] == 0 {
		t.Error("no flow was evicted or expired: the churn did not churn")
	}
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 8<<20 {
		t.Errorf("heap grew by %d bytes", grow)
	}
	if g := runtime.NumGoroutine(); g > goroutines+2 {
		t.Errorf("goroutines %d -> %d", goroutines, g)
	}
}
