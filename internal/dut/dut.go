// Package dut runs a pipeline worker as the device under test of an
// end-to-end test: xnf attached to the standard lab's in0 and out0 (port 0
// and port 1) over one shared UMEM, the given stages, and a cleanup that
// stops the worker, detaches, and fails the test unless every frame is back
// on the free stack.
package dut

import (
	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/bpf"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/port/xdp"
)

// Options tune Start; the zero value is auto mode, claim everything,
// 8192 frames, 2048 on each fill ring.
type Options struct {
	Mode   afxdp.AttachMode
	Filter bpf.Filter
	Frames int
	Fill   int
	// Ifnames are the DUT namespace's interfaces, in port order (default
	// in0, out0).
	Ifnames []string
}

// DUT is the running device under test.
type DUT struct {
	Worker  *pipeline.Worker
	UMEM    *afxdp.UMEM
	Devices []*afxdp.Device
	Ports   []*xdp.Port
}

// Start attaches, opens the queues, builds and starts the worker over
// stages, and registers the cleanup. It fails the test on any error.
func Start(t lab.TB, topo *lab.Topology, stages []pipeline.Stage, o Options) *DUT {
	t.Helper()
	if o.Frames == 0 {
		o.Frames = 8192
	}
	if o.Fill == 0 {
		o.Fill = 2048
	}
	if o.Ifnames == nil {
		o.Ifnames = []string{"in0", "out0"}
	}
	u, err := afxdp.NewUMEM(afxdp.UMEMConfig{FrameCount: o.Frames})
	if err != nil {
		t.Fatalf("%v", err)
	}
	d := &DUT{UMEM: u}
	t.Cleanup(d.stop(t))
	var ports []pipeline.Port
	if err := topo.DUT.Do(func() error {
		for _, ifname := range o.Ifnames {
			dev, err := afxdp.Attach(ifname, afxdp.DeviceConfig{Mode: o.Mode, Filter: o.Filter})
			if err != nil {
				return err
			}
			d.Devices = append(d.Devices, dev)
			s, err := dev.OpenQueue(0, u, afxdp.SocketConfig{})
			if err != nil {
				return err
			}
			xp := xdp.NewPort(s, o.Fill)
			d.Ports = append(d.Ports, xp)
			ports = append(ports, xp)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v", err)
	}
	w, err := pipeline.NewWorker(pipeline.Config{Ports: ports, Stages: stages, CPU: -1})
	if err != nil {
		t.Fatalf("%v", err)
	}
	d.Worker = w
	w.Start()
	return d
}

func (d *DUT) stop(t lab.TB) func() {
	return func() {
		if d.Worker != nil {
			d.Worker.Stop()
		}
		for _, dev := range d.Devices {
			dev.Close()
		}
		if a := d.UMEM.Accounting(); !a.Balanced() || a.Free != a.Total {
			t.Errorf("UMEM accounting after the test: %v", a)
		}
		d.UMEM.Close()
	}
}
