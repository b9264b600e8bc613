// Package service runs a chain file: it attaches the XDP program to every
// configured interface, opens one AF_XDP socket per (port, queue) over one
// UMEM per worker, builds each worker's stages, starts the pinned workers,
// and stops them cleanly (drain, detach, every frame accounted for). The
// CLI, the demo and the benchmark harness all run chains through it.
package service

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/port/xdp"
)

// Service is a running chain.
type Service struct {
	File    *config.File
	Devices []*Device
	Workers []*Worker
	log     *slog.Logger
	mu      sync.Mutex
	stopped bool
}

// Device is an attached interface.
type Device struct {
	Port string // config port name
	*afxdp.Device
}

// Worker is one pipeline worker with its UMEM, ports and stages.
type Worker struct {
	Index  int
	Queue  []int // queue served on each port
	UMEM   *afxdp.UMEM
	Ports  []*xdp.Port
	Stages []pipeline.Stage
	*pipeline.Worker
}

// Start attaches, opens and starts everything the file describes, in the
// calling thread's network namespace. On error, whatever was set up is
// torn down again.
func Start(f *config.File, log *slog.Logger) (*Service, error) {
	return StartWith(f, log, Options{})
}

// Options change how Start sets things up.
type Options struct {
	// Force detaches XDP programs other tools left on the interfaces
	// (see afxdp.DeviceConfig.Force).
	Force bool
}

// StartWith is Start with options.
func StartWith(f *config.File, log *slog.Logger, o Options) (s *Service, err error) {
	if log == nil {
		log = slog.Default()
	}
	svc := &Service{File: f, log: log}
	s = svc
	defer func() {
		if err != nil {
			// The return statement has set s to nil: clean up through svc.
			svc.Stop()
			s = nil
		}
	}()
	for _, p := range f.Ports {
		mode, _ := afxdp.ParseAttachMode(p.Mode)
		filter, _ := p.Filter.BPF()
		d, err := afxdp.Attach(p.Interface, afxdp.DeviceConfig{Mode: mode, Filter: filter, Frags: p.Frags, Force: o.Force})
		if err != nil {
			return nil, fmt.Errorf("port %s: %w", p.Name, err)
		}
		s.Devices = append(s.Devices, &Device{Port: p.Name, Device: d})
		log.Info("attached XDP program", "port", p.Name, "interface", p.Interface, "mode", d.Mode().String(), "asked", mode.String(), "filter", filter.String(), "queues", d.Queues())
	}
	nworkers := len(f.Ports[0].Queues)
	for wi := 0; wi < nworkers; wi++ {
		if _, err := s.startWorker(wi); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Service) startWorker(wi int) (*Worker, error) {
	f := s.File
	frameSize, frames := f.UMEM.FrameSize, f.UMEM.Frames
	if frames == 0 {
		frames = 4096 * len(f.Ports)
	}
	hp := afxdp.HugePagesOff
	if f.UMEM.HugePages {
		hp = afxdp.HugePagesTry
	}
	u, err := afxdp.NewUMEM(afxdp.UMEMConfig{FrameSize: frameSize, FrameCount: frames, HugePages: hp})
	if err != nil {
		return nil, fmt.Errorf("worker %d: %w", wi, err)
	}
	w := &Worker{Index: wi, UMEM: u}
	s.Workers = append(s.Workers, w) // Stop cleans up even a half-built worker
	var ports []pipeline.Port
	for pi, p := range f.Ports {
		q := p.Queues[wi]
		zc, _ := config.ParseZeroCopy(p.ZeroCopy)
		ring := p.RingSize
		sock, err := s.Devices[pi].OpenQueue(q, u, afxdp.SocketConfig{RXSize: ring, TXSize: ring, FillSize: ring, CompletionSize: ring, ZeroCopy: zc})
		if err != nil {
			return nil, fmt.Errorf("port %s queue %d: %w", p.Name, q, err)
		}
		fill := frames / len(f.Ports) / 2
		if ring != 0 {
			fill = min(fill, ring)
		} else {
			fill = min(fill, 2048)
		}
		xp := xdp.NewPort(sock, fill)
		w.Ports = append(w.Ports, xp)
		w.Queue = append(w.Queue, q)
		ports = append(ports, xp)
		s.log.Info("opened queue", "worker", wi, "port", p.Name, "queue", q, "zero_copy", sock.ZeroCopy(), "need_wakeup", sock.NeedWakeup(), "tx_budget", sock.TXBudget())
	}
	stages, err := f.Stages(&config.BuildContext{File: f, Worker: wi})
	if err != nil {
		return nil, err
	}
	w.Stages = stages
	cpu := -1
	if wi < len(f.Workers.CPUs) {
		cpu = f.Workers.CPUs[wi]
	}
	pw, err := pipeline.NewWorker(pipeline.Config{
		Ports: ports, Stages: stages, DefaultOut: f.DefaultOut(), Burst: f.Workers.Burst, CPU: cpu,
		Nice: f.Workers.WorkerNice(),
		Idle: pipeline.Idle{Spin: f.Workers.Spin, Busy: f.Workers.BusyPoll},
	})
	if err != nil {
		return nil, err
	}
	w.Worker = pw
	if err := pw.Start(); err != nil {
		s.log.Warn("worker setup", "worker", wi, "err", err)
	}
	s.log.Info("worker started", "worker", wi, "cpu", cpu, "nice", f.Workers.WorkerNice(), "stages", len(stages))
	return w, nil
}

// Stop drains the workers, detaches the programs and closes the sockets.
// Every frame must be back on its UMEM's free stack afterwards; an error
// says otherwise.
func (s *Service) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	var errs []error
	for _, w := range s.Workers {
		if w.Worker != nil {
			errs = append(errs, w.Worker.Stop())
		}
	}
	// Stages that hold resources (a sampler's file, a kernel-sync
	// subscription) release them once no worker runs them.
	for _, w := range s.Workers {
		for _, st := range w.Stages {
			if c, ok := find[io.Closer](st); ok {
				errs = append(errs, c.Close())
			}
		}
	}
	for _, w := range s.Workers {
		for _, p := range w.Ports {
			errs = append(errs, p.Close())
		}
	}
	for _, d := range s.Devices {
		errs = append(errs, d.Close())
	}
	for _, w := range s.Workers {
		if a := w.UMEM.Accounting(); !a.Balanced() || a.Free != a.Total {
			errs = append(errs, fmt.Errorf("worker %d: UMEM frames not all returned: %v", w.Index, a))
		}
		errs = append(errs, w.UMEM.Close())
	}
	return errors.Join(errs...)
}

// Reloader is implemented by stages that can take a new configuration
// while traffic flows (an atomic swap: no packet sees half of it).
type Reloader interface {
	Reload(ctx *config.BuildContext, cfg *config.StageConfig) error
}

// Reload hands every reloadable stage its section of nf. The chain's shape
// (stage types in order) must not change; nothing is applied unless every
// stage accepts its new configuration... as far as a stage can check up
// front: each stage validates before it swaps.
func (s *Service) Reload(nf *config.File) (int, error) {
	if len(nf.Chain) != len(s.File.Chain) {
		return 0, fmt.Errorf("reload: the chain has %d stages, the running one %d: restart to change the chain's shape", len(nf.Chain), len(s.File.Chain))
	}
	for i := range nf.Chain {
		if nf.Chain[i].Type != s.File.Chain[i].Type {
			return 0, fmt.Errorf("reload: chain[%d] is %s, the running one %s: restart to change the chain's shape", i, nf.Chain[i].Type, s.File.Chain[i].Type)
		}
	}
	n := 0
	for _, w := range s.Workers {
		for i, st := range w.Stages {
			r, ok := find[Reloader](st)
			if !ok {
				continue
			}
			if err := r.Reload(&config.BuildContext{File: nf, Worker: w.Index}, nf.StageConfig(i)); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// find returns the first layer of st, from the outside in through the
// wrappers config adds (a name, reload support), that implements T.
func find[T any](st pipeline.Stage) (T, bool) {
	for {
		if t, ok := st.(T); ok {
			return t, true
		}
		u, ok := st.(interface{ Unwrap() pipeline.Stage })
		if !ok {
			var zero T
			return zero, false
		}
		st = u.Unwrap()
	}
}
