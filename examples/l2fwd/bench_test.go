package main

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/rig"
	"github.com/xnfdev/xnf/internal/rig/rigbpf"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/port/xdp"
)

// BenchmarkForwarders measures, in one run and one topology, the packets
// per second delivered gen -> DUT -> sink by: Linux forwarding, l2fwd, and
// a pipeline Worker with an empty chain (blocking-poll idle policy at nice
// -10 and at 0, and busy polling), in two layouts: split (generator, in0's receive softirq
// and sink on CPU 0, the forwarder alone on CPU 1) and one-core (in0's
// receive thread and the forwarder sharing CPU 1, the generator on CPU 0).
// The generator is the rig's live-frames XDP
// program (64-byte frames, 256 flows). Run with:
//
//	sudo go test -run '^$' -bench Forwarders -benchtime 1x ./examples/l2fwd
//
// Each b.N iteration is one 5 s window after a 1 s warm-up; compare
// contenders as ratios within one run (figures swing between runs).
func BenchmarkForwarders(b *testing.B) {
	lab.RequireRoot(b)
	if runtime.NumCPU() < 2 {
		b.Skip("skipped: needs 2 CPUs for the split layout")
	}
	window := 5 * time.Second
	if testing.Short() {
		window = time.Second
	}
	topo, err := lab.NewTopology("xb-fwd", lab.TopologyOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer topo.Close()
	sink, err := rig.AttachSink(topo.Sink, "s0")
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()

	type contender struct {
		name  string
		cfg   rigbpf.GeneratorConfig
		start func(cpu int) (stop func(), err error)
	}
	contenders := []contender{
		{"kernel", rig.ForwardConfig(60, 256), func(int) (func(), error) {
			k, err := rig.KernelForward(topo)
			if err != nil {
				return nil, err
			}
			return func() { k.Close(); topo.DUT.Sysctl("net.ipv4.ip_forward", "0") }, nil
		}},
		{"l2fwd", rig.L2Config(60, 256), func(cpu int) (func(), error) { return startL2fwd(topo, cpu) }},
		{"worker-poll", rig.L2Config(60, 256), func(cpu int) (func(), error) { return startWorker(topo, cpu, -10, false) }},
		// The same at the scheduler's default nice, for pipeline.Config.Nice.
		{"worker-poll-nice0", rig.L2Config(60, 256), func(cpu int) (func(), error) { return startWorker(topo, cpu, 0, false) }},
		{"worker-busy", rig.L2Config(60, 256), func(cpu int) (func(), error) { return startWorker(topo, cpu, -10, true) }},
	}
	// split: generator, in0's receive softirq and the sink on CPU 0 (the
	// generator paced to 1.5 Mpps, or it starves in0's softirq on its own
	// CPU), the forwarder alone on CPU 1. one-core: in0's NAPI threaded and
	// pinned to CPU 1 with the forwarder, the generator unpaced on CPU 0:
	// everything the DUT does shares one core, as kernel forwarding does.
	for _, layout := range []struct {
		name     string
		threaded bool
		rate     float64
	}{{"split", false, 1.5e6}, {"one-core", true, 0}} {
		for _, c := range contenders {
			b.Run(layout.name+"/"+c.name, func(b *testing.B) {
				stop, err := c.start(1)
				if err != nil {
					b.Fatal(err)
				}
				defer stop()
				if layout.threaded {
					if _, err := rig.ThreadNAPI(topo.DUT, "in0", 1); err != nil {
						b.Fatal(err)
					}
					defer rig.Unthread(topo.DUT, "in0")
				}
				src, err := rig.NewSource(topo.Gen, "g0", c.cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer src.Close()
				src.CPU = 0
				src.Rate = layout.rate
				var pps, offered float64
				for i := 0; i < b.N; i++ {
					m, err := rig.MeasurePPS(src, sink, time.Second, window)
					if err != nil {
						b.Fatal(err)
					}
					pps += m.DeliveredPPS
					offered += m.OfferedPPS
				}
				b.ReportMetric(pps/float64(b.N), "pps")
				b.ReportMetric(offered/float64(b.N), "offered-pps")
			})
		}
	}
}

func pin(cpu int) {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	unix.SchedSetaffinity(0, &set)
}

func startL2fwd(topo *lab.Topology, cpu int) (func(), error) {
	u, err := afxdp.NewUMEM(afxdp.UMEMConfig{FrameCount: 4096})
	if err != nil {
		return nil, err
	}
	var da, db *afxdp.Device
	var sa, sb *afxdp.Socket
	if err := topo.DUT.Do(func() (err error) {
		if da, sa, err = open("in0", afxdp.ModeNative, u); err != nil {
			return err
		}
		db, sb, err = open("out0", afxdp.ModeNative, u)
		return err
	}); err != nil {
		if da != nil {
			da.Close()
		}
		u.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pin(cpu)
		for ctx.Err() == nil {
			forward(sa, sb, time.Now().Add(100*time.Millisecond), nil)
		}
	}()
	return func() {
		cancel()
		<-done
		da.Close()
		db.Close()
		u.Close()
	}, nil
}

func startWorker(topo *lab.Topology, cpu, nice int, busy bool) (func(), error) {
	u, err := afxdp.NewUMEM(afxdp.UMEMConfig{FrameSize: 2048, FrameCount: 16384})
	if err != nil {
		return nil, err
	}
	var devs []*afxdp.Device
	var ports []pipeline.Port
	err = topo.DUT.Do(func() error {
		for _, ifname := range []string{"in0", "out0"} {
			d, err := afxdp.Attach(ifname, afxdp.DeviceConfig{Mode: afxdp.ModeNative})
			if err != nil {
				return err
			}
			devs = append(devs, d)
			s, err := d.OpenQueue(0, u, afxdp.SocketConfig{RXSize: 4096, TXSize: 4096, FillSize: 4096, CompletionSize: 4096})
			if err != nil {
				return err
			}
			ports = append(ports, xdp.NewPort(s, 4096))
		}
		return nil
	})
	closeAll := func() {
		for _, d := range devs {
			d.Close()
		}
		u.Close()
	}
	if err != nil {
		closeAll()
		return nil, err
	}
	w, err := pipeline.NewWorker(pipeline.Config{Ports: ports, CPU: cpu, Nice: nice, Idle: pipeline.Idle{Busy: busy}})
	if err != nil {
		closeAll()
		return nil, err
	}
	w.Start()
	return func() {
		w.Stop()
		if a := u.Accounting(); !a.Balanced() {
			fmt.Println("worker: UMEM accounting:", a)
		}
		closeAll()
	}, nil
}
