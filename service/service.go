// Package service runs a chain: it opens every port (for AF_XDP, attaches
// the XDP program to the interface), makes one UMEM per worker, opens each
// worker's port on every port (one AF_XDP socket per queue), builds each
// worker's stages, starts the pinned workers, serves metrics, and stops
// cleanly (drain, close, detach, every frame accounted for).
//
// A chain is a Spec: Go values (port.Config per port, a function building
// each worker's stages). A Go program builds one directly; chain files
// become one through FileSpec, so `xnf run`, the demo, the benchmark
// harness and a user's own binary all run chains through the same code:
//
//	s, err := service.New(spec, log, service.Options{})
//	...
//	err = s.Run(ctx, service.RunOptions{Out: os.Stdout}) // until SIGINT/SIGTERM
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
	"github.com/xnfdev/xnf/port"
	"github.com/xnfdev/xnf/port/xdp"
)

// Spec is a chain as Go values: what a Service runs.
type Spec struct {
	// Ports, in order: a packet's InPort and OutPort index this list.
	Ports []Port
	// Stages builds worker w's chain. It is called once per worker, so
	// each worker gets stage values of its own (per-worker state needs no
	// locks); what they share across workers (a router's tables) is the
	// builder's to share. Nil runs an empty chain.
	Stages func(w int) ([]pipeline.Stage, error)
	// Shared, when set, is closed once by Stop after every worker has
	// stopped and every stage is closed, and on a failed start: what the
	// workers' stages share and that holds resources (FileSpec's
	// config.Shared, with each router's kernel sync).
	Shared io.Closer
	// DefaultOut is each port's output when no stage decides (nil: ports
	// pair up, see pipeline.PairedOutputs).
	DefaultOut []uint16
	// Workers is the number of workers (default 1); AF_XDP ports list one
	// queue per worker.
	Workers int
	// UMEM sizes each worker's frame pool (FrameCount default: 4096 per
	// port).
	UMEM afxdp.UMEMConfig
	// CPUs pins worker i to CPUs[i]; missing entries leave it unpinned.
	CPUs []int
	// Burst, Nice, RealTime and Idle are pipeline.Config's, for every
	// worker.
	Burst    int
	Nice     int
	RealTime int
	Idle     pipeline.Idle
	// Steering, with more than one worker, runs every packet on the
	// worker that owns its flow: the workers hand each other packets
	// (pipeline.Handoff). Chains whose stages keep flow state per worker
	// need it (FileSpec sets config.File.Steering's).
	Steering pipeline.Steering
}

// Port is one named port of a Spec.
type Port struct {
	// Name is how logs, counters and metrics name the port.
	Name string
	// Config is the port's type and settings (xdp.Interface, pcap.File,
	// or a type of your own).
	Config port.Config
}

// Service is a running chain.
type Service struct {
	Spec Spec
	// File is the chain file the Spec came from (nil for a Spec built in
	// Go); Reload needs it.
	File    *config.File
	Devices []*Device
	Workers []*Worker
	opened  []port.Device
	log     *slog.Logger
	mu      sync.Mutex
	stopped bool
	handoff *pipeline.Handoff
}

// Device is an interface attached for an AF_XDP port.
type Device struct {
	Port string // port name
	*afxdp.Device
}

// Worker is one pipeline worker with its UMEM, ports and stages.
type Worker struct {
	Index  int
	Queue  []int // queue served on each port (0 for ports without queues)
	UMEM   *afxdp.UMEM
	Ports  []pipeline.Port
	Stages []pipeline.Stage
	*pipeline.Worker
}

// Start runs the chain a file describes (see FileSpec and New), in the
// calling thread's network namespace. On error, whatever was set up is
// torn down again.
func Start(f *config.File, log *slog.Logger) (*Service, error) {
	return StartWith(f, log, Options{})
}

// Options change how a service sets things up.
type Options struct {
	// Force detaches XDP programs other tools left on the interfaces
	// (see afxdp.DeviceConfig.Force).
	Force bool
}

// StartWith is Start with options.
func StartWith(f *config.File, log *slog.Logger, o Options) (*Service, error) {
	sp, err := FileSpec(f)
	if err != nil {
		return nil, err
	}
	s, err := New(sp, log, o)
	if err != nil {
		return nil, err
	}
	s.File = f
	return s, nil
}

// FileSpec turns a chain file into the Spec it describes: the YAML front
// end of the service. The workers' stages share one config.Shared (Spec.Shared):
// a router's FIB, neighbor table and kernel sync are made once, by the
// first worker's build, and closed when the service stops; so is the
// XDP pre-filter of a firewall at chain[0] with offload auto, which every
// AF_XDP port loads. Run the Spec once: a second service from it would
// share the first one's. On more than one worker, a chain that keeps flow
// state gets the file's Steering (Spec.Steering).
func FileSpec(f *config.File) (Spec, error) {
	pcs, err := f.PortConfigs()
	if err != nil {
		return Spec{}, err
	}
	shared := config.NewShared()
	// A chain that starts with a firewall offloading its drops: every
	// AF_XDP port's program runs the one pre-filter, whose rules worker
	// 0's firewall installs (config.Shared.XDPOffload).
	if off := shared.XDPOffload(f); off != nil {
		for i, pc := range pcs {
			if x, ok := pc.(xdp.Interface); ok {
				x.Offload = off
				pcs[i] = x
			}
		}
	}
	sp := Spec{
		Stages: func(w int) ([]pipeline.Stage, error) {
			return f.Stages(&config.BuildContext{File: f, Worker: w, Shared: shared})
		},
		Shared:     shared,
		DefaultOut: f.DefaultOut(),
		Workers:    f.WorkerCount(),
		UMEM:       afxdp.UMEMConfig{FrameSize: f.UMEM.FrameSize, FrameCount: f.UMEM.Frames},
		CPUs:       f.Workers.CPUs,
		Burst:      f.Workers.Burst,
		Nice:       f.Workers.WorkerNice(),
		RealTime:   f.Workers.WorkerRealTime(),
		Idle:       pipeline.Idle{Spin: f.Workers.WorkerSpin(), Busy: f.Workers.BusyPoll},
	}
	if f.UMEM.HugePages {
		sp.UMEM.HugePages = afxdp.HugePagesTry
	}
	// Stages that keep flow state per worker need each flow on one worker.
	if st, err := f.Steering(); err != nil {
		return Spec{}, err
	} else if st != nil {
		sp.Steering = st
	}
	for i, p := range f.Ports {
		sp.Ports = append(sp.Ports, Port{Name: p.Name, Config: pcs[i]})
	}
	return sp, nil
}

// New opens, builds and starts everything sp describes, in the calling
// thread's network namespace. On error, whatever was set up is torn down
// again.
func New(sp Spec, log *slog.Logger, o Options) (s *Service, err error) {
	if log == nil {
		log = slog.Default()
	}
	if len(sp.Ports) == 0 {
		return nil, errors.New("service: no ports")
	}
	if sp.Workers == 0 {
		sp.Workers = 1
	}
	if sp.UMEM.FrameCount == 0 {
		sp.UMEM.FrameCount = 4096 * len(sp.Ports)
	}
	svc := &Service{Spec: sp, log: log}
	s = svc
	defer func() {
		if err != nil {
			// The return statement has set s to nil: clean up through svc.
			svc.Stop()
			s = nil
		}
	}()
	opened := func(name string) (port.Device, bool) {
		for i, d := range s.opened {
			if sp.Ports[i].Name == name {
				return d, true
			}
		}
		return nil, false
	}
	for i, p := range sp.Ports {
		if p.Config == nil {
			return nil, fmt.Errorf("port %s: no configuration", p.Name)
		}
		d, err := p.Config.Open(port.Env{Name: p.Name, Index: i, Workers: sp.Workers, Ports: len(sp.Ports), Force: o.Force, Log: log, Opened: opened})
		if err != nil {
			return nil, err
		}
		s.opened = append(s.opened, d)
		if x, ok := d.(*xdp.Device); ok {
			s.Devices = append(s.Devices, &Device{Port: p.Name, Device: x.Device})
		}
	}
	for wi := 0; wi < sp.Workers; wi++ {
		if _, err := s.startWorker(wi); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Service) startWorker(wi int) (*Worker, error) {
	sp := &s.Spec
	u, err := afxdp.NewUMEM(sp.UMEM)
	if err != nil {
		return nil, fmt.Errorf("worker %d: %w", wi, err)
	}
	w := &Worker{Index: wi, UMEM: u}
	s.Workers = append(s.Workers, w) // Stop cleans up even a half-built worker
	for _, d := range s.opened {
		p, err := d.Port(wi, u)
		if err != nil {
			return nil, fmt.Errorf("worker %d: %w", wi, err)
		}
		q := 0
		if qp, ok := p.(port.Queuer); ok {
			q = qp.Queue()
		}
		w.Ports = append(w.Ports, p)
		w.Queue = append(w.Queue, q)
	}
	if sp.Stages != nil {
		stages, err := sp.Stages(wi)
		if err != nil {
			return nil, err
		}
		w.Stages = stages
	}
	cpu := -1
	if wi < len(sp.CPUs) {
		cpu = sp.CPUs[wi]
	}
	pc := pipeline.Config{
		Ports: w.Ports, Stages: w.Stages, DefaultOut: sp.DefaultOut, Burst: sp.Burst, CPU: cpu,
		Nice: sp.Nice, RealTime: sp.RealTime, Idle: sp.Idle,
	}
	if sp.Steering != nil && sp.Workers > 1 {
		if s.handoff == nil {
			if s.handoff, err = pipeline.NewHandoff(sp.Workers, u.FrameSize(), 0); err != nil {
				return nil, err
			}
		}
		pc.Steering, pc.Handoff, pc.Index, pc.Pool = sp.Steering, s.handoff, wi, u
	}
	pw, err := pipeline.NewWorker(pc)
	if err != nil {
		return nil, err
	}
	w.Worker = pw
	if err := pw.Start(); err != nil {
		if _, ok := errors.AsType[*pipeline.PinError](err); ok {
			// The worker is not running: its sockets would sit in the
			// XSKMAP with nobody reading them.
			return nil, fmt.Errorf("worker %d: %w", wi, err)
		}
		s.log.Warn("worker setup", "worker", wi, "err", err)
	}
	s.log.Info("worker started", "worker", wi, "cpu", cpu, "realtime", sp.RealTime, "nice", sp.Nice, "spin", sp.Idle.Spin, "stages", len(w.Stages))
	return w, nil
}

// PortName is the name of port i.
func (s *Service) PortName(i int) string { return s.Spec.Ports[i].Name }

// Stop drains the workers, closes their ports, detaches the programs and
// closes the sockets. Every frame must be back on its UMEM's free stack
// afterwards; an error says otherwise. It also returns the error a port
// failed with, if one stopped its worker.
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
	if s.Spec.Shared != nil {
		errs = append(errs, s.Spec.Shared.Close())
	}
	if s.handoff != nil {
		errs = append(errs, s.handoff.Close())
	}
	for _, w := range s.Workers {
		for _, p := range w.Ports {
			errs = append(errs, p.Close())
		}
	}
	for _, d := range s.opened {
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
// front: each stage validates before it swaps. A service started from a
// Spec built in Go has no file to reload from: reload its stages directly.
func (s *Service) Reload(nf *config.File) (int, error) {
	if s.File == nil {
		return 0, errors.New("reload: the service was not started from a chain file")
	}
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

// find is config.Find: the first layer of st, from the outside in through
// the wrappers config adds, that implements T.
func find[T any](st pipeline.Stage) (T, bool) { return config.Find[T](st) }
