package xdp_test

import (
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/bpf"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/rig"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/port/xdp"
)

func mac(s string) [6]byte {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return [6]byte(m)
}

// macRewrite is the L2 half of a router: frames leaving each port get that
// port's MAC as source and the neighbor's as destination.
type macRewrite struct {
	src, dst [2][6]byte // by output port
}

func (macRewrite) Name() string { return "mac-rewrite" }
func (m *macRewrite) Process(b *packet.Batch) {
	for i := range b.Slice() {
		p := &b.Packets[i]
		o := p.OutPort & 1
		p.SetSrcMAC(m.src[o])
		p.SetDstMAC(m.dst[o])
	}
}

// TestWorkerForwardsRealTrafficBetweenVethPairs forwards an exact count
// in each XDP mode, with every data-path option of the worker on and off:
// a normal-class worker, a realtime one pinned to a CPU with in0's NAPI
// threaded onto it (the one-core layout, where realtime matters), and
// sockets with the busy-poll options set (on veth's copy-mode sockets the
// kernel polls nothing for them since 6.13, so this checks that asking
// costs nothing and loses nothing).
func TestWorkerForwardsRealTrafficBetweenVethPairs(t *testing.T) {
	for _, opt := range []struct {
		name     string
		realtime bool
		busyPoll bool
	}{{"normal", false, false}, {"realtime", true, false}, {"busy-poll-options", false, true}} {
		for _, mode := range []afxdp.AttachMode{afxdp.ModeNative, afxdp.ModeGeneric} {
			t.Run(opt.name+"/"+mode.String(), func(t *testing.T) {
				forwardExactly(t, mode, opt.realtime, opt.busyPoll)
			})
		}
	}
}

func forwardExactly(t *testing.T, mode afxdp.AttachMode, realtime, busyPoll bool) {
	topo := lab.TopologyForTest(t, "worker", lab.TopologyOptions{})
	if err := topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC); err != nil {
		t.Fatal(err)
	}
	// Copy-mode TX into a veth whose peer is a local socket holds each
	// frame until the receiving application has read its datagram (the
	// skb's destructor completes it): frames enough that a reader
	// running late never empties the fill ring.
	u, err := afxdp.NewUMEM(afxdp.UMEMConfig{FrameCount: 16384})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	var devs []*afxdp.Device
	var ports []pipeline.Port
	err = topo.DUT.Do(func() error {
		for _, ifname := range []string{"in0", "out0"} {
			d, err := afxdp.Attach(ifname, afxdp.DeviceConfig{Mode: mode, Filter: bpf.Filter{EtherType: 0x0800, IPProto: 17}})
			if err != nil {
				return err
			}
			devs = append(devs, d)
			if d.Mode() != mode {
				return fmt.Errorf("%s attached in %v, asked for %v", ifname, d.Mode(), mode)
			}
			sc := afxdp.SocketConfig{}
			if busyPoll {
				sc.BusyPoll = &afxdp.BusyPoll{}
			}
			s, err := d.OpenQueue(0, u, sc)
			if err != nil {
				return err
			}
			ports = append(ports, xdp.NewPort(s, 1024))
		}
		return nil
	})
	defer func() {
		for _, d := range devs {
			d.Close()
		}
	}()
	if err != nil {
		t.Fatal(err)
	}
	stage := &macRewrite{
		src: [2][6]byte{mac(lab.DUTInMAC), mac(lab.DUTOutMAC)},
		dst: [2][6]byte{mac(lab.GenMAC), mac(lab.SinkMAC)},
	}
	cfg := pipeline.Config{Ports: ports, Stages: []pipeline.Stage{stage}, CPU: -1}
	if realtime {
		if runtime.NumCPU() < 2 {
			t.Skip("skipped: the realtime case pins the worker to CPU 1")
		}
		cfg.CPU, cfg.RealTime, cfg.Idle.Spin = 1, 1, 1
		if mode == afxdp.ModeNative {
			if _, err := rig.ThreadNAPI(topo.DUT, "in0", 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	w, err := pipeline.NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}

	sink, err := topo.Sink.ListenUDP(lab.SinkAddr, 9000)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	if err := w.Start(); err != nil {
		t.Fatalf("worker start: %v", err)
	}
	const n = 5000
	// A bounded rate: exact counts, not a load test; bursts stay well
	// within in0's 256-frame ring.
	every := 64
	if err := topo.Gen.SendUDP(lab.SinkAddr+":9000", n, "pkt-%d", every, time.Millisecond); err != nil {
		w.Stop()
		t.Fatal(err)
	}
	seen := map[string]bool{}
	buf := make([]byte, 2048)
	sink.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(seen) < n {
		k, _, err := sink.ReadFromUDP(buf)
		if err != nil {
			break
		}
		seen[string(buf[:k])] = true
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Errorf("sink received %d of %d datagrams", len(seen), n)
		st, _ := ports[0].(*xdp.Port).Socket().Stats()
		ls, _ := rig.LinkStats(topo.DUT, "in0")
		t.Logf("in0 socket: %+v; in0 link rx %d dropped %d; worker %+v", st, ls.RxPackets, ls.RxDropped, w.Counters())
	}
	pc := w.PortCounters()
	sc := w.StageCounters()
	if pc[0].RX != n || pc[1].TX != n || sc[0].In != n || sc[0].Out != n {
		t.Errorf("counters: in0 rx %d, out0 tx %d, stage in %d out %d; want %d each", pc[0].RX, pc[1].TX, sc[0].In, sc[0].Out, n)
	}
	if a := u.Accounting(); !a.Balanced() || a.App != 0 || a.TX != 0 {
		t.Errorf("UMEM accounting after stop: %v", a)
	}
	for _, d := range devs {
		d.Close()
	}
	devs = nil
	if a := u.Accounting(); !a.Balanced() || a.Free != a.Total {
		t.Errorf("UMEM accounting after close: %v", a)
	}
	if busyPoll {
		var polls uint64
		for _, p := range ports {
			polls += p.(*xdp.Port).Socket().Counters().BusyPolls
		}
		if polls == 0 {
			t.Error("busy-poll options set, but the worker never busy-polled")
		}
	}
}
