// Package rig is the benchmark rig: an in-kernel traffic generator (an XDP
// program run with BPF_PROG_TEST_RUN live frames, rigbpf.Generator) and a
// counting XDP sink (rigbpf.Sink), driven from Go inside lab namespaces, so
// benchmarks can measure the packets per second a forwarder delivers.
//
// The standard setup is lab.Topology: the generator transmits out of g0
// (gen namespace) toward in0, the forwarder under test in the dut namespace
// moves frames from in0 to out0, and a sink on s0 (sink namespace) counts
// and drops them. Delivered pps = sink delta / window.
//
// Where the work runs: veth has no interrupts, so in0's receive, the
// forwarding and s0's receive all run as softirqs on the CPU that sends,
// the generator's, unless NAPI is threaded. A MeasurePPS figure is
// therefore "generator + forwarder + sink on one core" unless the
// forwarder runs elsewhere: a userspace forwarder on the other core, or
// in0's NAPI threaded and pinned there (ThreadNAPI), the split layout.
// In the one-core layout the generator cannot outrun the forwarder (the
// receive work runs between its batches), so offered = delivered and the
// figure is the one core's combined rate. In the split layout an unpaced
// generator overruns the forwarder (in0 rx_dropped); Source.Rate paces it
// to find the rate the forwarder sustains without loss.
//
// Every run is bounded by time and, optionally, by a frame count.
package rig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/rig/rigbpf"
)

// Port is the UDP destination port of ForwardConfig's frames.
const Port = 7777

// MaxDuration caps every generator run: the rig shares the machine.
const MaxDuration = time.Minute

// ForwardConfig is a generator config for the standard topology, for a
// forwarder that routes: frames from g0 addressed to in0's MAC
// (lab.DUTInMAC) and to the sink's IP (lab.SinkAddr), UDP to Port.
func ForwardConfig(frameSize int, flows uint32) rigbpf.GeneratorConfig {
	return rigbpf.GeneratorConfig{
		SrcMAC:    mustMAC(lab.GenMAC),
		DstMAC:    mustMAC(lab.DUTInMAC),
		SrcIP:     netip.MustParseAddr(lab.GenAddr),
		DstIP:     netip.MustParseAddr(lab.SinkAddr),
		DstPort:   Port,
		FrameSize: frameSize,
		Flows:     flows,
	}
}

// L2Config is like ForwardConfig but addressed to the sink's MAC
// (lab.SinkMAC), for a forwarder that moves frames unchanged (l2fwd).
func L2Config(frameSize int, flows uint32) rigbpf.GeneratorConfig {
	c := ForwardConfig(frameSize, flows)
	c.DstMAC = mustMAC(lab.SinkMAC)
	return c
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Source is a generator loaded for one device of a namespace.
type Source struct {
	NS     *lab.NS
	Ifname string
	Gen    *rigbpf.Generator
	// Workers is the number of threads making generator calls (default 2).
	// Each call ends in a blocking wait of ~20 ms (the kernel tearing down
	// its page pool) that leaves the core idle; a second thread on the
	// same CPU runs meanwhile, so the generator keeps one core busy.
	Workers int
	// CPU pins the workers' threads to one CPU for the run (restored
	// after); -1 (NewSource's default) pins them to the CPU Run is called
	// on, -2 leaves them unpinned (they may then take both cores).
	CPU int
	// Rate paces the run to this many frames per second (0: as fast as
	// the core goes). Frames leave evenly spaced (rigbpf.Generator.SetRate),
	// which a forwarder on another core needs to show its no-loss rate:
	// unpaced, the generator overruns the 256-frame veth ring and all a
	// run shows is the forwarder's rate under overload. Needs a pinned
	// CPU (the schedule is per CPU). When other processes take the CPU
	// the offered rate falls below Rate; it never bursts above it by more
	// than 64 frames.
	Rate    float64
	ifindex uint32
}

// NewSource loads a generator for frames cfg that leave ns's device ifname.
// Frames sent out of a veth are delivered only if the peer has an XDP
// program attached or GRO on (otherwise they are xdp_xmit_errors).
func NewSource(ns *lab.NS, ifname string, cfg rigbpf.GeneratorConfig) (*Source, error) {
	l, err := ns.Link(ifname)
	if err != nil {
		return nil, err
	}
	if q := uint32(l.Attrs().NumRxQueues); q > 0 && cfg.Queue >= q {
		return nil, fmt.Errorf("rig: queue %d of %s: the device has %d RX queues", cfg.Queue, ifname, q)
	}
	g, err := rigbpf.LoadGenerator(cfg)
	if err != nil {
		return nil, err
	}
	return &Source{NS: ns, Ifname: ifname, Gen: g, Workers: 2, CPU: -1, ifindex: uint32(l.Attrs().Index)}, nil
}

// Sent is the number of frames the source has sent, in total.
func (s *Source) Sent() (uint64, error) { return s.Gen.Sent() }

// Close unloads the generator.
func (s *Source) Close() error { return s.Gen.Close() }

// Sizing of generator calls: the first is firstChunk runs; the next ones
// last about sliceTarget of CPU time, at the rate measured by the thread's
// CPU time (the wall time of a call includes the ~20 ms teardown sleep, which
// the other worker fills). Near the deadline they shrink to the time left.
const (
	sliceTarget = 50 * time.Millisecond
	firstChunk  = 4096
	maxChunk    = 1 << 24
)

// Run sends frames until d has passed, maxPackets frames are sent
// (0: no count bound) or ctx ends, and returns how many it sent (exactly
// maxPackets when the count bound is reached). Generator calls run back to
// back on Workers OS threads locked inside the namespace: a call is a busy
// loop in the kernel, so one core is busy for d. d must be positive and at
// most MaxDuration. The last call may end up to a slice (~20 ms) past d.
func (s *Source) Run(ctx context.Context, d time.Duration, maxPackets uint64) (sent uint64, err error) {
	if d <= 0 || d > MaxDuration {
		return 0, fmt.Errorf("rig: generator duration %v outside (0, %v]", d, MaxDuration)
	}
	if maxPackets > 1<<62 {
		maxPackets = 1 << 62
	}
	start, err := s.Gen.Sent()
	if err != nil {
		return 0, err
	}
	workers := max(s.Workers, 1)
	cpu := s.CPU
	if cpu == -1 {
		cpu = currentCPU()
	}
	if s.Rate < 0 || (s.Rate > 0 && cpu < 0) {
		return 0, fmt.Errorf("rig: rate %v pps needs a positive rate and a pinned CPU (CPU %d)", s.Rate, s.CPU)
	}
	if err := s.Gen.SetRate(s.Rate); err != nil {
		return 0, err
	}
	// Unpaced, workers claim exact run counts from budget. Paced, runs
	// send fewer frames than runs: the program's per-CPU limit keeps the
	// count exact and the workers stop when the counter reaches it.
	var budget *atomic.Int64
	var until uint64
	if maxPackets > 0 {
		if s.Rate > 0 {
			if err := s.Gen.SetLimit(cpu, maxPackets); err != nil {
				return 0, err
			}
			defer s.Gen.SetLimit(cpu, 0)
			until = start + maxPackets
		} else {
			budget = new(atomic.Int64)
			budget.Store(int64(maxPackets))
		}
	}
	deadline := time.Now().Add(d)
	errs := make(chan error, workers)
	for i := 0; i < workers; i++ {
		go func() {
			errs <- s.NS.Do(func() error {
				if cpu >= 0 {
					restore, err := pin(cpu)
					if err != nil {
						return err
					}
					defer restore()
				}
				return s.loop(ctx, deadline, budget, until)
			})
		}()
	}
	var errl []error
	for i := 0; i < workers; i++ {
		if e := <-errs; e != nil {
			errl = append(errl, e)
		}
	}
	err = errors.Join(errl...)
	// The counter is the truth.
	end, cerr := s.Gen.Sent()
	if cerr != nil {
		return 0, errors.Join(err, cerr)
	}
	return end - start, err
}

// loop is one worker: generator calls until the deadline, the budget or ctx.
func (s *Source) loop(ctx context.Context, deadline time.Time, budget *atomic.Int64, until uint64) error {
	chunk := uint64(firstChunk)
	for ctx.Err() == nil {
		if until > 0 {
			if sent, err := s.Gen.Sent(); err != nil || sent >= until {
				return err
			}
		}
		now := time.Now()
		left := deadline.Sub(now)
		if left <= 0 {
			return nil
		}
		n := chunk
		if budget != nil {
			for {
				b := budget.Load()
				if b <= 0 {
					return nil
				}
				k := min(int64(n), b)
				if budget.CompareAndSwap(b, b-k) {
					n = uint64(k)
					break
				}
			}
		}
		cpu0 := threadCPUTime()
		if err := s.Gen.Run(s.ifindex, uint32(n)); err != nil {
			return err
		}
		el := max(time.Since(now), time.Microsecond)
		busy := threadCPUTime() - cpu0
		if busy < time.Millisecond {
			chunk = min(n*8, maxChunk)
		} else {
			chunk = uint64(float64(n) * float64(sliceTarget) / float64(busy))
		}
		// Never plan past the deadline: scale to the time left at the
		// wall-clock rate (teardown included: this undershoots).
		if left := time.Until(deadline); left < 2*sliceTarget {
			chunk = min(chunk, uint64(float64(n)*float64(left)/float64(el)))
		}
		chunk = max(1, min(chunk, maxChunk))
	}
	return nil
}

// threadCPUTime is the calling thread's CPU time, user and system.
func threadCPUTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// currentCPU is the CPU the calling thread runs on.
func currentCPU() int {
	var c uint32
	if _, _, e := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&c)), 0, 0); e != 0 {
		return -2
	}
	return int(c)
}

// pin binds the calling (locked) thread to cpu and returns the function
// restoring its previous affinity.
func pin(cpu int) (func(), error) {
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("rig: reading CPU affinity: %w", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("rig: pinning the generator to CPU %d: %w", cpu, err)
	}
	return func() { unix.SchedSetaffinity(0, &old) }, nil
}

// Generate loads a generator for cfg, sends out of ns's device ifname for
// d or until maxPackets frames (0: no count bound), and returns how many
// frames it sent.
func Generate(ns *lab.NS, ifname string, cfg rigbpf.GeneratorConfig, d time.Duration, maxPackets uint64) (sent uint64, err error) {
	src, err := NewSource(ns, ifname, cfg)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	return src.Run(context.Background(), d, maxPackets)
}

// Sink is a counting XDP program attached to a device in a namespace.
type Sink struct {
	NS     *lab.NS
	Ifname string
	Prog   *rigbpf.Sink
	link   link.Link
}

// SinkOptions configure AttachSinkWith.
type SinkOptions struct {
	// Config is the program's (marker port, pass instead of drop).
	Config rigbpf.SinkConfig
	// Mode is link.XDPGenericMode or link.XDPDriverMode (0: the kernel
	// chooses, native on veth).
	Mode link.XDPAttachFlags
}

// AttachSink attaches a sink that counts every frame arriving on ns's
// device ifname and drops it.
func AttachSink(ns *lab.NS, ifname string) (*Sink, error) {
	return AttachSinkWith(ns, ifname, SinkOptions{})
}

// AttachSinkWith attaches a sink with options.
func AttachSinkWith(ns *lab.NS, ifname string, o SinkOptions) (*Sink, error) {
	l, err := ns.Link(ifname)
	if err != nil {
		return nil, err
	}
	p, err := rigbpf.LoadSinkWith(o.Config)
	if err != nil {
		return nil, err
	}
	s := &Sink{NS: ns, Ifname: ifname, Prog: p}
	if err := ns.Do(func() (err error) {
		s.link, err = link.AttachXDP(link.XDPOptions{Program: p.Program, Interface: l.Attrs().Index, Flags: o.Mode})
		return err
	}); err != nil {
		p.Close()
		return nil, fmt.Errorf("rig: attaching sink to %s in %s: %w", ifname, ns.Name, err)
	}
	return s, nil
}

// Count is the number of frames counted so far.
func (s *Sink) Count() (uint64, error) {
	c, err := s.Prog.Stats()
	return c.Packets, err
}

// Counters are all the sink's counters.
func (s *Sink) Counters() (rigbpf.SinkCounters, error) { return s.Prog.Stats() }

// Close detaches and unloads the sink.
func (s *Sink) Close() error {
	var err error
	if s.link != nil {
		err = s.link.Close()
	}
	return errors.Join(err, s.Prog.Close())
}

// WaitCount waits until the sink has counted want frames or its count has
// not moved for settle, at most timeout, and returns the last count.
// Frames sent are counted a little later: the receive softirq may run
// after the generator call returns.
func (s *Sink) WaitCount(want uint64, settle, timeout time.Duration) (uint64, error) {
	end := time.Now().Add(timeout)
	last, err := s.Count()
	if err != nil {
		return 0, err
	}
	moved := time.Now()
	for last < want && time.Now().Before(end) && time.Since(moved) < settle {
		time.Sleep(time.Millisecond)
		c, err := s.Count()
		if err != nil {
			return last, err
		}
		if c != last {
			last, moved = c, time.Now()
		}
	}
	return last, nil
}

// Measurement is one MeasurePPS result.
type Measurement struct {
	// Window is the sink's measured window (between its two counter
	// reads); the generator's window encloses it.
	Window time.Duration
	// Sent and Delivered are the frames the generator sent and the sink
	// counted during the window.
	Sent, Delivered uint64
	// OfferedPPS and DeliveredPPS are Sent and Delivered per second.
	OfferedPPS, DeliveredPPS float64
}

func (m Measurement) String() string {
	return fmt.Sprintf("offered %.3f Mpps, delivered %.3f Mpps (%d/%d frames in %v)",
		m.OfferedPPS/1e6, m.DeliveredPPS/1e6, m.Delivered, m.Sent, m.Window.Round(time.Millisecond))
}

// MeasurePPS runs src for warmup+window (plus a little slack) and reads
// src's and sink's counters at the start and the end of the window.
func MeasurePPS(src *Source, sink *Sink, warmup, window time.Duration) (Measurement, error) {
	if warmup < 0 || window <= 0 {
		return Measurement{}, fmt.Errorf("rig: warm-up %v and window %v", warmup, window)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := src.Run(ctx, warmup+window+time.Second, 0)
		done <- err
	}()
	// The sink's window nests inside the generator's: the source is read
	// first at the start and last at the end. Every frame counted in the
	// sink's window was then sent in the generator's or was in flight when
	// it opened, however long this goroutine is preempted between reads on
	// a CPU the generator saturates.
	type reading struct {
		g, s   uint64
		tg, ts time.Time
	}
	read := func(sinkFirst bool) (r reading, err error) {
		readSrc := func() error {
			r.g, err = src.Sent()
			r.tg = time.Now()
			return err
		}
		readSink := func() error {
			r.s, err = sink.Count()
			r.ts = time.Now()
			return err
		}
		if sinkFirst {
			if readSink() == nil {
				readSrc()
			}
		} else if readSrc() == nil {
			readSink()
		}
		return r, err
	}
	early := func() error {
		select {
		case err := <-done:
			if err == nil {
				err = errors.New("rig: generator stopped early")
			}
			return err
		default:
			return nil
		}
	}
	time.Sleep(warmup)
	r0, err := read(false)
	if err == nil {
		err = early()
	}
	if err != nil {
		cancel()
		<-done
		return Measurement{}, err
	}
	time.Sleep(window)
	r1, err := read(true)
	if err == nil {
		err = early()
	}
	cancel()
	if rerr := <-done; err == nil && rerr != nil {
		err = rerr
	}
	if err != nil {
		return Measurement{}, err
	}
	m := Measurement{Window: r1.ts.Sub(r0.ts), Sent: r1.g - r0.g, Delivered: r1.s - r0.s}
	m.OfferedPPS = float64(m.Sent) / r1.tg.Sub(r0.tg).Seconds()
	m.DeliveredPPS = float64(m.Delivered) / m.Window.Seconds()
	return m, nil
}

// Measure is MeasurePPS with a generator loaded for the run.
func Measure(ns *lab.NS, ifname string, cfg rigbpf.GeneratorConfig, sink *Sink, warmup, window time.Duration) (Measurement, error) {
	src, err := NewSource(ns, ifname, cfg)
	if err != nil {
		return Measurement{}, err
	}
	defer src.Close()
	return MeasurePPS(src, sink, warmup, window)
}

// KernelForwarder is the DUT namespace configured for Linux IPv4
// forwarding from in0 to out0.
type KernelForwarder struct {
	Topo *lab.Topology
	// In is a counting XDP_PASS program on in0. It is what makes the
	// generator's XDP_TX out of g0 deliver into in0 (a veth receives
	// XDP frames only with an XDP program or GRO on), and it counts what
	// reached the DUT.
	In *Sink
}

// KernelForward configures topo's DUT for kernel forwarding: ip_forward=1,
// permanent neighbors for the generator (on in0) and the sink (on out0),
// and in the gen and sink namespaces for the DUT's addresses, so no ARP is
// needed; and a counting XDP_PASS program on in0 (native mode). Frames
// must be addressed to in0's MAC and the sink's IP (ForwardConfig), and
// s0 needs a sink attached. Close detaches the in0 program; the sysctl
// and neighbors stay with the namespaces.
func KernelForward(topo *lab.Topology) (*KernelForwarder, error) {
	if err := errors.Join(
		topo.DUT.Sysctl("net.ipv4.ip_forward", "1"),
		topo.DUT.AddNeigh("in0", lab.GenAddr, lab.GenMAC),
		topo.DUT.AddNeigh("out0", lab.SinkAddr, lab.SinkMAC),
		topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC),
		topo.Sink.AddNeigh("s0", lab.DUTOutAddr, lab.DUTOutMAC),
	); err != nil {
		return nil, fmt.Errorf("rig: kernel forwarding: %w", err)
	}
	in, err := AttachSinkWith(topo.DUT, "in0", SinkOptions{Config: rigbpf.SinkConfig{Pass: true}})
	if err != nil {
		return nil, err
	}
	return &KernelForwarder{Topo: topo, In: in}, nil
}

// Close detaches the in0 program.
func (k *KernelForwarder) Close() error { return k.In.Close() }

// LinkStats returns the kernel's counters of ns's device ifname.
func LinkStats(ns *lab.NS, ifname string) (*netlink.LinkStatistics, error) {
	l, err := ns.Link(ifname)
	if err != nil {
		return nil, err
	}
	if l.Attrs().Statistics == nil {
		return nil, fmt.Errorf("rig: no statistics for %s in %s", ifname, ns.Name)
	}
	return l.Attrs().Statistics, nil
}
