package service

import (
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/nf/router"
)

// kernelSyncs counts running kernel syncs (their own goroutine) and every
// goroutine of theirs and of their netlink subscriptions.
func kernelSyncs() (syncs, goroutines int) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "kernelsync.(*Sync).run") {
			syncs++
		}
		if strings.Contains(g, "nf/router/kernelsync.") || strings.Contains(g, "netlink.routeSubscribeAt") || strings.Contains(g, "netlink.neighSubscribeAt") {
			goroutines++
		}
	}
	return syncs, goroutines
}

// waitNoKernelSync waits (two seconds at most) until no goroutine of a
// kernel sync is left.
func waitNoKernelSync(t *testing.T, when string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, g := kernelSyncs()
		if g == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d kernel-sync goroutines left", when, g)
		}
	}
}

// kernelChain is a two-worker chain whose router follows the kernel.
func kernelChain(t *testing.T, cpus string) *config.File {
	t.Helper()
	yaml := fmt.Sprintf(`ports:
  - {name: in, interface: in0, queues: [0, 1]}
  - {name: out, interface: out0, queues: [0, 1]}
workers: {realtime: 0, nice: 0%s}
metrics: {listen: "off"}
chain:
  - type: router
    fib: kernel
    interfaces:
      - {port: in, addrs: [%s/24]}
      - {port: out, addrs: [%s/24]}
`, cpus, lab.DUTInAddr, lab.DUTOutAddr)
	f, err := config.Parse("kernel.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Two workers of a kernel-mode router share one FIB, one neighbor table
// and one kernel sync, which follows `ip route` for both and is closed,
// with its netlink sockets and goroutines, when the service stops.
func TestWorkersShareOneKernelSyncClosedOnStop(t *testing.T) {
	topo := lab.TopologyForTest(t, "svcks", lab.TopologyOptions{Queues: 2})
	if _, g := kernelSyncs(); g != 0 {
		t.Fatalf("%d kernel-sync goroutines before the service", g)
	}
	var s *Service
	if err := topo.DUT.Do(func() (err error) {
		s, err = Start(kernelChain(t, ""), slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()
	if len(s.Workers) != 2 {
		t.Fatalf("%d workers, want 2", len(s.Workers))
	}
	r0 := config.Unwrap(s.Workers[0].Stages[0]).(*router.Router)
	r1 := config.Unwrap(s.Workers[1].Stages[0]).(*router.Router)
	if r0 == r1 || r0.Tables() != r1.Tables() {
		t.Fatalf("workers' routers: same stage %v, same tables %v; want two stages over one Tables", r0 == r1, r0.Tables() == r1.Tables())
	}
	if n, _ := kernelSyncs(); n != 1 {
		t.Fatalf("%d kernel syncs running for one router stage on two workers, want 1", n)
	}
	if err := topo.DUT.AddRoute("198.18.9.0/24", lab.SinkAddr, "out0"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		if nh, ok := r1.FIB().Lookup(netip.MustParseAddr("198.18.9.1")); ok && nh.Port == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the kernel's route did not reach the workers' FIB within a second")
		}
	}
	stopped = true
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	waitNoKernelSync(t, "after Stop")
}
