package kernelsync_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/internal/dut"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/nf/router"
	"github.com/xnfdev/xnf/nf/router/kernelsync"
	"github.com/xnfdev/xnf/pipeline"
)

// routerLab runs xnf as the only router between gen and sink, with the
// lab's addresses on its two ports and no routes but the connected ones.
func routerLab(t *testing.T, mode afxdp.AttachMode) (*lab.Topology, *router.Router, *pipeline.Worker) {
	topo := lab.TopologyForTest(t, "ksync", lab.TopologyOptions{})
	var ifs []router.Interface
	for port, a := range [][2]string{{lab.DUTInMAC, lab.DUTInAddr}, {lab.DUTOutMAC, lab.DUTOutAddr}} {
		m, err := net.ParseMAC(a[0])
		if err != nil {
			t.Fatal(err)
		}
		ifs = append(ifs, router.Interface{Port: uint16(port), MAC: [6]byte(m), Addrs: []netip.Prefix{netip.MustParsePrefix(a[1] + "/24")}})
	}
	r, err := router.NewRouter(router.Config{Interfaces: ifs})
	if err != nil {
		t.Fatal(err)
	}
	return topo, r, dut.Start(t, topo, []pipeline.Stage{r}, dut.Options{Mode: mode}).Worker
}

func ping(ns *lab.NS, dst string, id uint16) error { return ns.Ping(dst, id, 3) }

func TestKernelModeFollowsRoutesAddedWithNetlink(t *testing.T) {
	topo, r, _ := routerLab(t, afxdp.ModeAuto)
	// A subnet behind the sink that xnf knows nothing about yet.
	if err := topo.Sink.AddAddr("lo", "198.18.9.1/32"); err != nil {
		t.Fatal(err)
	}
	if err := topo.Gen.AddRoute("198.18.9.0/24", lab.DUTInAddr, "g0"); err != nil {
		t.Fatal(err)
	}
	h := topo.DUT.Handle()
	k, err := kernelsync.Start(r.Tables(), &h, map[string]uint16{"in0": 0, "out0": 1})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if err := topo.Gen.Ping("198.18.9.1", 10, 1); err == nil {
		t.Fatal("198.18.9.1 answered before any route to it existed")
	}
	if err := topo.DUT.AddRoute("198.18.9.0/24", lab.SinkAddr, "out0"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		if _, ok := r.FIB().Lookup(netip.MustParseAddr("198.18.9.1")); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("route did not reach the FIB within a second (errors %v)", k.Errors())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := ping(topo.Gen, "198.18.9.1", 11); err != nil {
		t.Fatalf("after ip route add: %v", err)
	}
	if err := topo.DUT.DelRoute("198.18.9.0/24", lab.SinkAddr, "out0"); err != nil {
		t.Fatal(err)
	}
	for deadline = time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := r.FIB().Lookup(netip.MustParseAddr("198.18.9.1")); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("route removal did not reach the FIB within a second")
		}
	}
}

// The FIB follows the kernel's choice for a prefix: the lowest metric of
// the routes to it, and no route at all when that choice leaves through an
// interface xnf does not serve.
func TestKernelModeFollowsMetricsAndRoutesThatLeave(t *testing.T) {
	topo, r, _ := routerLab(t, afxdp.ModeAuto)
	h := topo.DUT.Handle()
	k, err := kernelsync.Start(r.Tables(), &h, map[string]uint16{"in0": 0, "out0": 1})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	nl := topo.DUT.Netlink()
	out, err := topo.DUT.Link("out0")
	if err != nil {
		t.Fatal(err)
	}
	lo, err := topo.DUT.Link("lo")
	if err != nil {
		t.Fatal(err)
	}
	_, dst, _ := net.ParseCIDR("198.18.9.0/24")
	addr := netip.MustParseAddr("198.18.9.1")
	route := func(link netlink.Link, gw string, metric int) *netlink.Route {
		rt := &netlink.Route{Dst: dst, LinkIndex: link.Attrs().Index, Priority: metric}
		if gw != "" {
			rt.Gw = net.ParseIP(gw)
		}
		return rt
	}
	// waitFor waits (a second at most) until the sync has applied an
	// update since applied and the FIB's answer for addr is want (false:
	// no route).
	waitFor := func(step string, applied uint64, want bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, ok := r.FIB().Lookup(addr); ok == want && k.Applied() > applied {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: route present %v after a second, want %v (errors %v)", step, !want, want, k.Errors())
			}
		}
	}
	steps := []struct {
		name  string
		do    func() error
		route bool
	}{
		{"a route at metric 10 is mirrored", func() error { return nl.RouteAdd(route(out, lab.SinkAddr, 10)) }, true},
		{"a second route at metric 20 changes nothing", func() error { return nl.RouteAdd(route(out, lab.SinkAddr, 20)) }, true},
		{"deleting the metric 10 route leaves the metric 20 one", func() error { return nl.RouteDel(route(out, lab.SinkAddr, 10)) }, true},
		{"the route moving to lo (not served) removes it", func() error { return nl.RouteReplace(route(lo, "", 20)) }, false},
		{"moving back to out0 restores it", func() error { return nl.RouteReplace(route(out, lab.SinkAddr, 20)) }, true},
		{"deleting the last route removes it", func() error { return nl.RouteDel(route(out, lab.SinkAddr, 20)) }, false},
	}
	for _, s := range steps {
		applied := k.Applied()
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		waitFor(s.name, applied, s.route)
	}
	// The connected route of out0's own subnet was never touched.
	if _, ok := r.FIB().Lookup(netip.MustParseAddr(lab.SinkAddr)); !ok {
		t.Error("the connected route to the sink's subnet is gone")
	}
}

// syncGoroutines counts the goroutines of kernel syncs and of the netlink
// subscriptions they opened.
func syncGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "nf/router/kernelsync.") || strings.Contains(g, "netlink.routeSubscribeAt") || strings.Contains(g, "netlink.neighSubscribeAt") {
			n++
		}
	}
	return n
}

// sockets counts the process's open sockets.
func sockets(t *testing.T) int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// Close ends every goroutine the Sync and its netlink subscriptions
// started and closes their sockets, even while the kernel's dump of a
// table larger than the Sync's queues is still arriving; a second Close
// does nothing.
func TestCloseEndsGoroutinesAndSockets(t *testing.T) {
	topo := lab.TopologyForTest(t, "ksclose", lab.TopologyOptions{})
	tables, err := router.NewTables(router.Config{Interfaces: []router.Interface{
		{Port: 0, Addrs: []netip.Prefix{netip.MustParsePrefix(lab.DUTInAddr + "/24")}},
		{Port: 1, Addrs: []netip.Prefix{netip.MustParsePrefix(lab.DUTOutAddr + "/24")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// 2000 routes: the dump Start asks for is several netlink reads of
	// hundreds of routes, more than the Sync queues.
	for i := range 2000 {
		if err := topo.DUT.AddRoute(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), lab.SinkAddr, "out0"); err != nil {
			t.Fatal(err)
		}
	}
	if n := syncGoroutines(); n != 0 {
		t.Fatalf("%d kernel-sync goroutines before any Start", n)
	}
	socks := sockets(t)
	h := topo.DUT.Handle()
	for round := range 3 {
		k, err := kernelsync.Start(tables, &h, map[string]uint16{"in0": 0, "out0": 1})
		if err != nil {
			t.Fatal(err)
		}
		if n := syncGoroutines(); n == 0 {
			t.Fatal("no kernel-sync goroutine after Start: the test cannot see them")
		}
		if s := sockets(t); s < socks+2 {
			t.Fatalf("%d sockets after Start, %d before: want the two subscriptions' sockets", s, socks)
		}
		k.Close() // the dump is still arriving
		k.Close()
		deadline := time.Now().Add(2 * time.Second)
		for syncGoroutines() != 0 || sockets(t) != socks {
			if time.Now().After(deadline) {
				t.Fatalf("round %d, after Close: %d kernel-sync goroutines, %d sockets (%d before Start)", round, syncGoroutines(), sockets(t), socks)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if errs := k.Errors(); len(errs) != 0 {
			t.Errorf("closing reported errors: %v", errs)
		}
	}
}
