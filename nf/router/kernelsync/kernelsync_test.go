package kernelsync_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

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
	k, err := kernelsync.Start(r, &h, map[string]uint16{"in0": 0, "out0": 1})
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
