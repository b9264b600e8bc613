package pipeline

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/packet"
)

// Config describes what a Worker runs.
type Config struct {
	// Ports, indexed by their position: a packet's InPort and OutPort are
	// indices into this slice.
	Ports []Port
	// Stages run in order on every batch.
	Stages []Stage
	// DefaultOut is the output port preset on packets received on each
	// port (OutPort before the chain runs). Missing entries default to the
	// other port of a pair (0<->1), or the same port when there is one.
	DefaultOut []uint16
	// Burst is the most packets received per port per loop (default 64,
	// at most packet.MaxBurst).
	Burst int
	// CPU pins the worker's thread to a CPU; -1 leaves it unpinned.
	CPU int
	// Nice is the worker thread's nice value (0 leaves it). A negative
	// value lets the worker run as soon as packets wait rather than take
	// turns with other work on its core (the kernel's transmit and the
	// peer's receive softirqs run in its syscalls, ksoftirqd behind it).
	// docs/benchmarks.md (Package benchmarks) says what -10 gains. Negative
	// values need CAP_SYS_NICE; without it Start reports the error and the
	// worker runs at 0.
	Nice int
	// RealTime, when positive, runs the worker thread under SCHED_FIFO at
	// that priority, Nice ignored. On a core it shares with the kernel's
	// receive work for its queues (a NAPI thread, or a softirq deferred to
	// ksoftirqd), a normal-class worker takes turns with that work by the
	// scheduler's slices, and the kernel spends its turn receiving more
	// than the worker can take: once the fill ring is empty every further
	// frame still runs through XDP and a failed redirect before it is
	// dropped. A realtime worker runs the moment the
	// kernel's receive work hands it a batch, so the kernel receives no
	// faster than the worker forwards. It must block when idle (Idle.Spin
	// small, never Idle.Busy), or nothing else runs on its core. The cost:
	// while it forwards, the kernel cannot drain the device's receive
	// ring, so bursty traffic (TCP) loses more at that ring. Needs
	// CAP_SYS_NICE; without it Start reports the error and the worker
	// runs in the normal class at Nice.
	RealTime int
	Idle     Idle
	// Clock stamps each received batch (packet.Batch.Now), the time the
	// stages run on; nil is the wall clock. A replay passes the capture's.
	Clock func() int64

	// Steering and Handoff run each packet on the worker that owns it
	// (see Handoff): chains whose stages keep flow state per worker need
	// them when more than one worker serves the same ports. Both or
	// neither; Index is this worker's place in Handoff, Pool the
	// FramePool its ports share (frames for the packets handed to it, of
	// Handoff's frame size).
	Steering Steering
	Handoff  *Handoff
	Index    int
	Pool     FramePool
}

// Worker runs a chain over its ports on one goroutine, run to completion.
type Worker struct {
	cfg    Config
	stages []stageSlot
	ports  []portCounters
	wc     workerCounters
	batch  packet.Batch
	outs   [][]*packet.Packet // per output port
	drops  []*packet.Packet
	pfds   []unix.PollFd
	stop   atomic.Bool
	done   chan struct{}
	err    error
	// eof marks input ports that said io.EOF: never received from again.
	eof []bool
	// portErr is the first port error; it stops the loop.
	portErr error
	// Hand-off (nil Handoff: none): this worker's index, each packet's
	// owner, the packets handed off in a batch, frames for those handed
	// in, and whether every port can be polled.
	self      uint8
	owners    []uint8
	handed    []*packet.Packet
	allocs    []uint64
	freeOne   [1]uint64
	portPolls int
}

// PairedOutputs is the default output of each of n ports when nothing
// else is said: ports pair up (0<->1, 2<->3), a last odd one answers
// itself.
func PairedOutputs(n int) []uint16 {
	out := make([]uint16, n)
	for i := range out {
		out[i] = uint16(i ^ 1)
		if int(out[i]) >= n {
			out[i] = uint16(i)
		}
	}
	return out
}

// NewWorker checks the configuration and prepares every buffer the loop
// needs, so the loop itself allocates nothing.
func NewWorker(cfg Config) (*Worker, error) {
	if len(cfg.Ports) == 0 {
		return nil, errors.New("pipeline: a worker needs at least one port")
	}
	if len(cfg.Ports) > 65535 {
		return nil, errors.New("pipeline: too many ports")
	}
	if cfg.Burst == 0 {
		cfg.Burst = 64
	}
	if cfg.Burst < 1 || cfg.Burst > packet.MaxBurst {
		return nil, fmt.Errorf("pipeline: burst %d: must be between 1 and %d", cfg.Burst, packet.MaxBurst)
	}
	if cfg.Idle.Spin == 0 {
		cfg.Idle.Spin = 256
	}
	if cfg.Idle.PollTimeout == 0 {
		cfg.Idle.PollTimeout = 100 * time.Millisecond
	}
	def := PairedOutputs(len(cfg.Ports))
	for i, o := range cfg.DefaultOut {
		if i >= len(def) {
			break
		}
		if int(o) >= len(cfg.Ports) {
			return nil, fmt.Errorf("pipeline: default output of port %d is port %d, but there are %d ports", i, o, len(cfg.Ports))
		}
		def[i] = o
	}
	cfg.DefaultOut = def
	w := &Worker{cfg: cfg, ports: make([]portCounters, len(cfg.Ports)), done: make(chan struct{}), eof: make([]bool, len(cfg.Ports))}
	w.stages = make([]stageSlot, len(cfg.Stages))
	for i, s := range cfg.Stages {
		w.stages[i].name = s.Name()
		for n, ok := s.(named); ok; n, ok = s.(named) {
			s = n.Stage
		}
		w.stages[i].stage = s
	}
	w.outs = make([][]*packet.Packet, len(cfg.Ports))
	for i := range w.outs {
		w.outs[i] = make([]*packet.Packet, 0, packet.MaxBurst)
	}
	w.drops = make([]*packet.Packet, 0, packet.MaxBurst)
	for _, p := range cfg.Ports {
		if pl, ok := p.(Poller); ok {
			w.pfds = append(w.pfds, unix.PollFd{Fd: int32(pl.PollFD()), Events: unix.POLLIN})
		}
	}
	w.portPolls = len(w.pfds)
	if err := w.joinHandoff(); err != nil {
		return nil, err
	}
	return w, nil
}

// PinError is Start's error when the worker's thread cannot be pinned to
// its CPU (a CPU the machine or the process's affinity does not have): the
// worker does not run, and whoever started it must not leave its ports to
// nobody.
type PinError struct {
	CPU int
	Err error
}

func (e *PinError) Error() string {
	return fmt.Sprintf("pipeline: pinning worker to CPU %d: %v", e.CPU, e.Err)
}

func (e *PinError) Unwrap() error { return e.Err }

// joinHandoff checks the hand-off settings and prepares their buffers.
func (w *Worker) joinHandoff() error {
	cfg := &w.cfg
	if (cfg.Steering == nil) != (cfg.Handoff == nil) {
		return errors.New("pipeline: Steering and Handoff go together: a steering needs rings to hand packets off on, rings need a steering to pick owners")
	}
	h := cfg.Handoff
	if h == nil {
		return nil
	}
	if cfg.Index < 0 || cfg.Index >= h.n {
		return fmt.Errorf("pipeline: worker index %d, but the hand-off joins %d workers", cfg.Index, h.n)
	}
	if cfg.Pool == nil {
		return errors.New("pipeline: a worker with hand-off needs Config.Pool, the FramePool its ports share")
	}
	if cfg.Pool.FrameSize() != h.frameSize {
		return fmt.Errorf("pipeline: the worker's pool has %d-byte frames, the hand-off's rings %d-byte slots", cfg.Pool.FrameSize(), h.frameSize)
	}
	w.self = uint8(cfg.Index)
	w.owners = make([]uint8, packet.MaxBurst)
	w.handed = make([]*packet.Packet, 0, packet.MaxBurst)
	w.allocs = make([]uint64, packet.MaxBurst)
	w.pfds = append(w.pfds, unix.PollFd{Fd: int32(h.wake[cfg.Index].fd), Events: unix.POLLIN})
	return nil
}

// Start runs the loop on a new goroutine, pinned when Config.CPU >= 0 and
// with Config.RealTime or Config.Nice applied, and returns once the thread
// is set up. A pinning failure is a *PinError and the loop never runs (Stop
// returns the error too); a priority that cannot be set is returned while
// the worker runs on in the normal class.
func (w *Worker) Start() error {
	ready := make(chan error, 1)
	go func() {
		defer close(w.done)
		if w.cfg.CPU >= 0 || w.cfg.Nice != 0 || w.cfg.RealTime > 0 {
			// The pinning and the priority belong to this OS thread: keep
			// the loop on it, and never unlock it. A thread that went
			// back to the runtime's pool would carry the worker's CPU and
			// SCHED_FIFO to whatever goroutine ran on it next, and to the
			// processes it forks (a realtime child busy-polling the
			// worker's core froze the benchmark once). Exiting while
			// locked makes the runtime end the thread.
			runtime.LockOSThread()
		}
		if w.cfg.CPU >= 0 {
			var set unix.CPUSet
			set.Set(w.cfg.CPU)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				w.err = &PinError{CPU: w.cfg.CPU, Err: err}
				ready <- w.err
				return
			}
		}
		var niceErr error
		nice := w.cfg.Nice
		if w.cfg.RealTime > 0 {
			attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: uint32(w.cfg.RealTime)}
			if err := unix.SchedSetAttr(0, &attr, 0); err == nil {
				nice = 0
			} else {
				niceErr = fmt.Errorf("pipeline: worker realtime priority %d: %w (runs in the normal class; needs CAP_SYS_NICE)", w.cfg.RealTime, err)
			}
		}
		if nice != 0 {
			if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), w.cfg.Nice); err != nil {
				niceErr = errors.Join(niceErr, fmt.Errorf("pipeline: worker nice %d: %w (runs at 0; negative values need CAP_SYS_NICE)", w.cfg.Nice, err))
			}
		}
		ready <- niceErr
		w.Run()
	}()
	return <-ready
}

// Stop asks the loop to end, then waits until it has drained: packets in
// the RX rings are processed, transmissions complete, every frame is back.
// It returns the loop's error, if any: a pinning failure or the first port
// error (see Port), which ends the loop by itself.
func (w *Worker) Stop() error {
	w.stop.Store(true)
	if h := w.cfg.Handoff; h != nil {
		// Wake the loop if it sleeps in poll(2).
		var one = [8]byte{1}
		unix.Write(h.wake[w.cfg.Index].fd, one[:])
	}
	<-w.done
	return errors.Join(w.err, w.portErr)
}

// Done is closed when a worker started with Start has ended its loop:
// after Stop, or by itself after a port error.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Err is the first port error, if any. A worker that saw one stops;
// read Err from the worker's goroutine or after Done.
func (w *Worker) Err() error { return w.portErr }

// fail records the first port error and asks the loop to end.
func (w *Worker) fail(i int, op string, err error) {
	w.wc.portErrors.Add(1)
	if w.portErr == nil {
		w.portErr = fmt.Errorf("pipeline: port %s: %s: %w", w.cfg.Ports[i].Name(), op, err)
	}
	w.stop.Store(true)
}

// Run is the loop; it returns after Stop once drained. Use Start to run it
// on its own goroutine.
func (w *Worker) Run() {
	empty := 0
	for !w.stop.Load() {
		n := w.Poll()
		if n > 0 {
			empty = 0
			continue
		}
		empty++
		w.wc.idle.Add(1)
		if !w.cfg.Idle.Busy && empty >= w.cfg.Idle.Spin {
			w.block()
			empty = 0
		}
	}
	w.drain()
}

// block sleeps in poll(2) on every pollable port until one has packets,
// or until another worker hands this one packets. Without a pollable port
// it sleeps 50us.
func (w *Worker) block() {
	w.wc.polls.Add(1)
	h := w.cfg.Handoff
	if h == nil && len(w.pfds) == 0 {
		time.Sleep(50 * time.Microsecond)
		return
	}
	if h != nil {
		// Announce the sleep, then look once more: a producer that
		// published before the announcement was seen is found here, one
		// that publishes after it sees the announcement and writes the
		// eventfd.
		wk := &h.wake[w.self]
		wk.sleeping.Store(1)
		if w.handoffWaiting() {
			wk.sleeping.Store(0)
			return
		}
	}
	for i := range w.pfds {
		w.pfds[i].Revents = 0
	}
	if w.portPolls > 0 {
		unix.Poll(w.pfds, int(w.cfg.Idle.PollTimeout/time.Millisecond))
	} else {
		ts := unix.NsecToTimespec(int64(50 * time.Microsecond))
		unix.Ppoll(w.pfds, &ts, nil)
	}
	if h != nil {
		wk := &h.wake[w.self]
		wk.sleeping.Store(0)
		if w.pfds[len(w.pfds)-1].Revents&unix.POLLIN != 0 {
			var buf [8]byte
			unix.Read(wk.fd, buf[:])
		}
	}
}

// drain processes what is still in the RX rings (bounded), then waits a
// bounded time for transmissions to complete.
func (w *Worker) drain() {
	for i := 0; i < 64 && w.Poll() > 0; i++ {
	}
	deadline := time.Now().Add(time.Second)
	for {
		all := true
		for i, p := range w.cfg.Ports {
			if err := p.Flush(); err != nil {
				w.fail(i, "flush", err)
			}
			if d, ok := p.(Drainer); ok && !d.Drained() {
				all = false
			}
		}
		if all || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// Poll runs one loop iteration: a burst from every port through the chain
// and out, then housekeeping. It returns how many packets it moved. Tests
// and single-threaded programs may call it directly instead of Start.
func (w *Worker) Poll() int {
	w.wc.loops.Add(1)
	total := 0
	for i, in := range w.cfg.Ports {
		if w.eof[i] {
			continue
		}
		b := &w.batch
		b.Reset()
		n, err := in.Receive(b, w.cfg.Burst)
		if err != nil {
			if err == io.EOF {
				w.eof[i] = true
			} else {
				w.fail(i, "receive", err)
			}
		}
		if n == 0 {
			continue
		}
		total += n
		w.ports[i].rx.Add(uint64(n))
		w.process(b, uint16(i))
	}
	total += w.takeHandoffs()
	for i, p := range w.cfg.Ports {
		if err := p.Flush(); err != nil {
			w.fail(i, "flush", err)
		}
	}
	if total > 0 {
		w.wc.packets.Add(uint64(total))
	}
	return total
}

// process parses, runs the chain and dispatches one batch from port in.
func (w *Worker) process(b *packet.Batch, in uint16) {
	w.wc.batches.Add(1)
	b.Now = w.now()
	def := w.cfg.DefaultOut[in]
	pkts := b.Slice()
	for i := range pkts {
		p := &pkts[i]
		p.InPort, p.OutPort = in, def
		// Parse once for every stage. Frames without a whole Ethernet
		// header are useless downstream and dropped here; other problems
		// are flagged for the stages to judge (an L2 stage may not care).
		if p.Parse(); !p.Has(packet.FlagEthernet) {
			p.SetDrop(packet.DropMalformed)
		}
	}
	w.compact(b, nil)
	if w.cfg.Steering != nil && b.Len > 0 {
		w.handOff(b)
	}
	w.chain(b)
}

// now is the worker's clock: Config.Clock, or the wall clock.
func (w *Worker) now() int64 {
	if w.cfg.Clock != nil {
		return w.cfg.Clock()
	}
	return time.Now().UnixNano()
}

// chain runs the stages over a parsed batch and dispatches what is left.
// Packets may come from different ports (a batch handed in by other
// workers): each is counted and released by its own InPort.
func (w *Worker) chain(b *packet.Batch) {
	for si := range w.stages {
		s := &w.stages[si]
		if b.Len == 0 {
			break
		}
		s.ctr.in.Add(uint64(b.Len))
		s.stage.Process(b)
		w.compact(b, &s.ctr)
		s.ctr.out.Add(uint64(b.Len))
	}
	w.dispatch(b)
}

// compact removes dropped packets from the batch, keeping order, counts
// them against the stage (if any) and the ingress port, and releases their
// frames at once.
func (w *Worker) compact(b *packet.Batch, ctr *counterSet) {
	pkts := b.Packets[:b.Len]
	drops := w.drops[:0]
	for i := range pkts {
		if p := &pkts[i]; p.Verdict == packet.Drop {
			drops = append(drops, p)
		}
	}
	if len(drops) == 0 {
		return
	}
	w.countDrops(drops, ctr)
	w.release(drops)
	j := 0
	for i := range pkts {
		if pkts[i].Verdict == packet.Drop {
			continue
		}
		if i != j {
			pkts[j] = pkts[i]
		}
		j++
	}
	b.Len = j
}

// dispatch groups the surviving packets by output port and transmits each
// group with one call. Packets for a port that does not exist, and those a
// full TX ring refused, are dropped and counted.
func (w *Worker) dispatch(b *packet.Batch) {
	pkts := b.Packets[:b.Len]
	nports := uint16(len(w.cfg.Ports))
	drops := w.drops[:0]
	for i := range pkts {
		p := &pkts[i]
		out := p.OutPort
		if p.Verdict == packet.Bounce {
			out = p.InPort
		}
		if out >= nports {
			p.SetDrop(packet.DropNoPort)
			drops = append(drops, p)
			continue
		}
		w.outs[out] = append(w.outs[out], p)
	}
	for o := range w.outs {
		list := w.outs[o]
		if len(list) == 0 {
			continue
		}
		sent, err := w.cfg.Ports[o].Transmit(list)
		if err != nil {
			w.fail(o, "transmit", err)
		}
		w.ports[o].tx.Add(uint64(sent))
		if rest := list[sent:]; len(rest) > 0 {
			w.ports[o].txFull.Add(uint64(len(rest)))
			for _, p := range rest {
				p.SetDrop(packet.DropFull)
			}
			drops = append(drops, rest...)
		}
		w.outs[o] = list[:0]
	}
	if len(drops) > 0 {
		w.countDrops(drops, nil)
		w.release(drops)
	}
	b.Reset()
}

// release returns the frames of packets that will not be sent through
// their ingress ports, one call per run of packets from the same port.
func (w *Worker) release(pkts []*packet.Packet) {
	for i := 0; i < len(pkts); {
		in := pkts[i].InPort
		j := i + 1
		for j < len(pkts) && pkts[j].InPort == in {
			j++
		}
		w.cfg.Ports[in].Release(pkts[i:j])
		i = j
	}
}

// countDrops counts dropped packets against their ingress ports and, when
// ctr is not nil, the stage that dropped them, with one atomic add per run
// of packets from one port dropped for the same reason rather than one per
// packet.
func (w *Worker) countDrops(drops []*packet.Packet, ctr *counterSet) {
	for i := 0; i < len(drops); {
		r, in := drops[i].Reason, drops[i].InPort
		j := i + 1
		for j < len(drops) && drops[j].Reason == r && drops[j].InPort == in {
			j++
		}
		w.ports[in].drops[r].Add(uint64(j - i))
		if ctr != nil {
			ctr.drops[r].Add(uint64(j - i))
		}
		i = j
	}
}

// Counters reads the worker's own counters.
func (w *Worker) Counters() WorkerCounters {
	c := WorkerCounters{Loops: w.wc.loops.Load(), Idle: w.wc.idle.Load(), Polls: w.wc.polls.Load(),
		Batches: w.wc.batches.Load(), Packets: w.wc.packets.Load(), PortErrors: w.wc.portErrors.Load(),
		HandedOff: w.wc.handedOff.Load(), ReceivedHandoff: w.wc.receivedHandoff.Load(),
		HandoffFull: w.wc.handoffFull.Load(), HandoffNoFrame: w.wc.handoffNoFrame.Load()}
	c.HandoffDropped = c.HandoffFull + c.HandoffNoFrame
	return c
}

// PortCounters reads every port's counters, indexed like Config.Ports.
func (w *Worker) PortCounters() []PortCounters {
	out := make([]PortCounters, len(w.ports))
	for i := range w.ports {
		c := &w.ports[i]
		out[i] = PortCounters{Name: w.cfg.Ports[i].Name(), RX: c.rx.Load(), TX: c.tx.Load(), TXFull: c.txFull.Load(), Dropped: dropped(&c.drops)}
	}
	return out
}

// StageCounters reads every stage's counters, in chain order.
func (w *Worker) StageCounters() []StageCounters {
	out := make([]StageCounters, len(w.stages))
	for i := range w.stages {
		s := &w.stages[i]
		out[i] = StageCounters{Name: s.name, In: s.ctr.in.Load(), Out: s.ctr.out.Load(), Dropped: dropped(&s.ctr.drops)}
	}
	return out
}
