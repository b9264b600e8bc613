package kernelsync_test

import (
	"net"
	"net/netip"
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
