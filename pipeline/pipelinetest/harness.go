package pipelinetest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

// Config shapes a Harness. The zero value is two ports (0 and 1, each the
// other's default output), burst 64, 1024 frames of 2048 bytes, 256 bytes
// of headroom.
type Config struct {
	// Ports is the number of memory ports (default 2).
	Ports int
	// DefaultOut is pipeline.Config.DefaultOut: where packets received on
	// each port go when no stage decides (default: 0<->1).
	DefaultOut []uint16
	// Burst is the most packets per batch (default 64).
	Burst int
	// FrameSize and Frames size the frame pool (defaults FrameSize and
	// 1024).
	FrameSize, Frames int
	// Headroom is the room left in front of each received frame: default
	// DefaultHeadroom, as an AF_XDP UMEM leaves; NoHeadroom for none, as
	// NewMemPort (a stage that pushes headers must cope with both).
	Headroom int
}

const (
	// FrameSize is the default size of the harness's pool frames.
	FrameSize = 2048
	// DefaultHeadroom is the headroom of AF_XDP frames (XDP_PACKET_HEADROOM).
	DefaultHeadroom = 256
	// NoHeadroom in Config.Headroom puts frames at the start of pool frames.
	NoHeadroom = -1
)

// Harness runs a chain of stages in a real pipeline.Worker over memory
// ports, records the fate of every frame it sends, and checks the frame
// contract: every frame back in the pool at the end of the test, Addr
// moved with the start of Data, nothing used after it was released (freed
// frames are overwritten with 0xdd, so a stage that kept a slice reads
// garbage).
type Harness struct {
	t      testing.TB
	w      *pipeline.Worker
	pool   *pipeline.MemPool
	ports  []*MemPort
	stages []pipeline.Stage

	// Fate of the frames of the current Send, by pool frame index.
	pending map[uint64]int
	results []Result
	dropBy  map[uint64]string
	next    int
}

// Result is what happened to one frame sent with Send.
type Result struct {
	// Index is the frame's position in the Send call; In is its bytes.
	Index int
	In    []byte
	// Verdict is Forward or Bounce for a transmitted frame, Drop otherwise.
	Verdict packet.Verdict
	Reason  packet.DropReason
	// Stage names the stage that dropped the frame; "" when the worker
	// dropped it (unparseable before the chain, no such port after it).
	Stage string
	// Port is the port the frame left by, -1 when dropped.
	Port int
	// Out is the frame as transmitted.
	Out []byte
}

func (r Result) String() string {
	switch r.Verdict {
	case packet.Drop:
		by := "the worker"
		if r.Stage != "" {
			by = "stage " + r.Stage
		}
		return fmt.Sprintf("frame %d dropped (%s) by %s: %s", r.Index, r.Reason, by, Summary(r.In))
	case packet.Bounce:
		return fmt.Sprintf("frame %d bounced out of port %d: %s", r.Index, r.Port, Summary(r.Out))
	}
	return fmt.Sprintf("frame %d forwarded to port %d: %s", r.Index, r.Port, Summary(r.Out))
}

// New runs stages in a two-port pipeline for a test.
func New(t testing.TB, stages ...pipeline.Stage) *Harness {
	t.Helper()
	return NewWith(t, Config{}, stages...)
}

// NewWith is New with a Config.
func NewWith(t testing.TB, cfg Config, stages ...pipeline.Stage) *Harness {
	t.Helper()
	cfg = cfg.withDefaults()
	h := &Harness{t: t, stages: stages, pool: pipeline.NewMemPool(cfg.Frames, cfg.FrameSize)}
	ports := make([]pipeline.Port, cfg.Ports)
	for i := range ports {
		p := &MemPort{name: fmt.Sprintf("p%d", i), pool: h.pool, Headroom: cfg.Headroom, h: h, idx: i}
		h.ports = append(h.ports, p)
		ports[i] = p
	}
	tapped := make([]pipeline.Stage, len(stages))
	for i, s := range stages {
		tapped[i] = &tap{Stage: s, h: h}
	}
	w, err := pipeline.NewWorker(pipeline.Config{Ports: ports, Stages: tapped, DefaultOut: cfg.DefaultOut, Burst: cfg.Burst, CPU: -1})
	if err != nil {
		t.Fatalf("pipelinetest: %v", err)
	}
	h.w = w
	t.Cleanup(func() {
		if a, n := h.pool.Available(), h.pool.Total(); a != n {
			t.Errorf("pipelinetest: %d of %d frames never came back to the pool", n-a, n)
		}
		if v := h.pool.Violations; v != 0 {
			t.Errorf("pipelinetest: %d frames were freed twice or never allocated", v)
		}
	})
	return h
}

func (c Config) withDefaults() Config {
	if c.Ports == 0 {
		c.Ports = 2
	}
	if c.Burst == 0 {
		c.Burst = 64
	}
	if c.FrameSize == 0 {
		c.FrameSize = FrameSize
	}
	switch c.Headroom {
	case 0:
		c.Headroom = DefaultHeadroom
	case NoHeadroom:
		c.Headroom = 0
	}
	if c.Frames == 0 {
		c.Frames = 1024
	}
	return c
}

// Worker is the pipeline worker under test.
func (h *Harness) Worker() *pipeline.Worker { return h.w }

// Pool is the frame pool of the memory ports.
func (h *Harness) Pool() *pipeline.MemPool { return h.pool }

// Send receives frames on port, runs them through the chain until every
// one has been transmitted or dropped, and returns their fates in order.
// Transmitted frames are also kept for Out.
func (h *Harness) Send(port int, frames ...[]byte) []Result {
	h.t.Helper()
	if port < 0 || port >= len(h.ports) {
		h.t.Fatalf("pipelinetest: Send on port %d, but there are %d ports", port, len(h.ports))
	}
	h.pending, h.dropBy, h.next = map[uint64]int{}, map[uint64]string{}, 0
	h.results = make([]Result, len(frames))
	for i, f := range frames {
		h.results[i] = Result{Index: i, In: f, Port: -1, Verdict: 255}
	}
	h.ports[port].Inject(frames...)
	for idle := 0; h.ports[port].Pending() > 0; {
		if h.w.Poll() > 0 {
			idle = 0
		} else if idle++; idle > 100 {
			h.t.Fatalf("pipelinetest: %d frames cannot be received: the pool has %d of %d frames free", h.ports[port].Pending(), h.pool.Available(), h.pool.Total())
		}
	}
	for _, r := range h.results {
		if r.Verdict == 255 {
			h.t.Fatalf("pipelinetest: frame %d neither transmitted nor dropped (%s)", r.Index, Summary(r.In))
		}
	}
	res := h.results
	h.results = nil
	return res
}

// Out returns the frames transmitted on port since the last call.
func (h *Harness) Out(port int) [][]byte { return h.ports[port].Output() }

// Stage returns the i-th stage of the chain, as given to New.
func (h *Harness) Stage(i int) pipeline.Stage { return h.stages[i] }

// StageCounters are the worker's counters of each stage, in chain order.
func (h *Harness) StageCounters() []pipeline.StageCounters { return h.w.StageCounters() }

// PortCounters are the worker's counters of each port.
func (h *Harness) PortCounters() []pipeline.PortCounters { return h.w.PortCounters() }

// Want is an expected fate of a frame, for Expect.
type Want struct {
	verdict packet.Verdict
	reason  packet.DropReason
	port    int
	out     []byte
}

// Forwarded expects a frame transmitted on port.
func Forwarded(port int) Want { return Want{verdict: packet.Forward, port: port} }

// Dropped expects a frame dropped for reason.
func Dropped(reason packet.DropReason) Want {
	return Want{verdict: packet.Drop, reason: reason, port: -1}
}

// Bounced expects a frame sent back out of the port it came in by.
func Bounced() Want { return Want{verdict: packet.Bounce, port: -1} }

// Bytes also expects the transmitted frame to be exactly frame.
func (w Want) Bytes(frame []byte) Want { w.out = frame; return w }

func (w Want) String() string {
	switch w.verdict {
	case packet.Drop:
		return fmt.Sprintf("dropped (%s)", w.reason)
	case packet.Bounce:
		return "bounced"
	}
	return fmt.Sprintf("forwarded to port %d", w.port)
}

// Expect checks each result against the Want at the same position, and
// reports every mismatch with the decoded frame.
func (h *Harness) Expect(res []Result, want ...Want) {
	h.t.Helper()
	if len(res) != len(want) {
		h.t.Errorf("pipelinetest: %d results, %d expectations", len(res), len(want))
	}
	for i := range min(len(res), len(want)) {
		r, w := res[i], want[i]
		ok := r.Verdict == w.verdict
		switch {
		case w.verdict == packet.Drop:
			ok = ok && r.Reason == w.reason
		case w.verdict == packet.Forward:
			ok = ok && r.Port == w.port
		}
		if !ok {
			h.t.Errorf("%s; want %s", r, w)
			continue
		}
		if w.out != nil {
			if d := Diff(r.Out, w.out); d != "" {
				h.t.Errorf("frame %d (%s) left port %d with other bytes than expected:\n%s", r.Index, Summary(r.In), r.Port, d)
			}
		}
	}
}

// ExpectOut checks the frames transmitted on port since the last Out
// against want, in order.
func (h *Harness) ExpectOut(port int, want ...[]byte) {
	h.t.Helper()
	got := h.Out(port)
	for i := range min(len(got), len(want)) {
		if d := Diff(got[i], want[i]); d != "" {
			h.t.Errorf("port %d, frame %d differs:\n%s", port, i, d)
		}
	}
	if len(got) != len(want) {
		var b strings.Builder
		for i, f := range got {
			fmt.Fprintf(&b, "\n  %d: %s", i, Summary(f))
		}
		h.t.Errorf("port %d transmitted %d frames, want %d:%s", port, len(got), len(want), b.String())
	}
}

// Metrics is stage i's own counters (pipeline.StageMetrics); it fails the
// test if the stage keeps none.
func (h *Harness) Metrics(i int) map[string]uint64 {
	h.t.Helper()
	m, ok := h.stages[i].(pipeline.StageMetrics)
	if !ok {
		h.t.Fatalf("pipelinetest: stage %d (%s) does not implement pipeline.StageMetrics", i, h.stages[i].Name())
	}
	return m.StageMetrics()
}

// ExpectMetrics checks the named counters of stage i (others are ignored;
// a name missing from the stage's counters reads as 0).
func (h *Harness) ExpectMetrics(i int, want map[string]uint64) {
	h.t.Helper()
	got := h.Metrics(i)
	var bad []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			bad = append(bad, fmt.Sprintf("%s = %d, want %d", k, got[k], want[k]))
		}
	}
	if len(bad) > 0 {
		h.t.Errorf("stage %d (%s) counters: %s\n  all: %s", i, h.stages[i].Name(), strings.Join(bad, "; "), formatCounters(got))
	}
}

// ExpectDropped checks the drops the worker counted against stage i, by
// reason, exactly.
func (h *Harness) ExpectDropped(i int, want map[packet.DropReason]uint64) {
	h.t.Helper()
	got := h.StageCounters()[i].Dropped
	if !maps.Equal(got, want) {
		h.t.Errorf("stage %d (%s) dropped %v, want %v", i, h.stages[i].Name(), got, want)
	}
}

func formatCounters(m map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, " ")
}

// MemPort is a port in memory: frames are injected (copied into pool
// frames on Receive, after Headroom bytes) and transmitted frames are
// captured (copied out, frame freed). It is for unit tests and benchmarks
// of stages and of the worker; it never stands in for the kernel in an
// end-to-end test. The harness's ports are MemPorts that also report every
// frame's fate (h is nil otherwise).
type MemPort struct {
	name string
	pool *pipeline.MemPool
	// Headroom is left in front of each received frame (0: none, frames
	// start their pool frames; DefaultHeadroom: as an AF_XDP UMEM).
	Headroom int
	// Loop replays the injected frames for ever (benchmarks).
	Loop bool
	// Discard counts transmitted frames without capturing them.
	Discard bool
	h       *Harness
	idx     int
	in      [][]byte
	next    int
	out     [][]byte
	sent    uint64
	addrs   [packet.MaxBurst]uint64
	closed  bool
}

// NewMemPort makes a memory port over pool, without headroom.
func NewMemPort(name string, pool *pipeline.MemPool) *MemPort {
	return &MemPort{name: name, pool: pool}
}

func (p *MemPort) Name() string { return p.name }
func (p *MemPort) Flush() error { return nil }

// Close makes the port refuse further use.
func (p *MemPort) Close() error {
	p.closed = true
	return nil
}

// Inject queues frames to be received.
func (p *MemPort) Inject(frames ...[]byte) {
	for _, f := range frames {
		if len(f)+p.Headroom > p.pool.FrameSize() {
			panic(fmt.Sprintf("pipelinetest: a frame of %d bytes does not fit a %d-byte pool frame after %d bytes of headroom", len(f), p.pool.FrameSize(), p.Headroom))
		}
	}
	p.in = append(p.in, frames...)
}

// Pending is the number of injected frames not yet received.
func (p *MemPort) Pending() int { return len(p.in) - p.next }

// Output returns the captured transmitted frames and forgets them.
func (p *MemPort) Output() [][]byte {
	o := p.out
	p.out = nil
	return o
}

// Sent is the number of frames transmitted.
func (p *MemPort) Sent() uint64 { return p.sent }

func (p *MemPort) Receive(b *packet.Batch, max int) (int, error) {
	if p.closed {
		return 0, pipeline.ErrClosed
	}
	want := min(max, b.Free())
	if !p.Loop {
		want = min(want, len(p.in)-p.next)
	} else if len(p.in) == 0 {
		want = 0
	}
	have := p.pool.Alloc(p.addrs[:want])
	for _, base := range p.addrs[:have] {
		if p.next >= len(p.in) {
			p.next = 0 // Loop
		}
		src := p.in[p.next]
		addr := base + uint64(p.Headroom)
		f := p.pool.Frame(addr, uint32(len(src)))
		copy(f, src)
		b.Append(f, addr, 0)
		if h := p.h; h != nil && h.pending != nil {
			fi := base / uint64(p.pool.FrameSize())
			h.pending[fi] = h.next
			delete(h.dropBy, fi)
			h.next++
		}
		p.next++
	}
	if !p.Loop && p.next == len(p.in) {
		p.in, p.next = p.in[:0], 0
	}
	return have, nil
}

func (p *MemPort) Transmit(pkts []*packet.Packet) (int, error) {
	if p.closed {
		return 0, pipeline.ErrClosed
	}
	for _, pk := range pkts {
		if p.h != nil {
			p.h.checkAddr(pk)
			if r := p.h.fate(pk); r != nil {
				r.Verdict, r.Port, r.Out = pk.Verdict, p.idx, append([]byte(nil), pk.Data...)
			}
		}
		if !p.Discard {
			p.out = append(p.out, append([]byte(nil), pk.Data...))
		}
	}
	p.free(pkts)
	p.sent += uint64(len(pkts))
	return len(pkts), nil
}

func (p *MemPort) Release(pkts []*packet.Packet) {
	if p.h != nil {
		for _, pk := range pkts {
			p.h.checkAddr(pk)
			if r := p.h.fate(pk); r != nil {
				r.Verdict, r.Reason, r.Stage = packet.Drop, pk.Reason, p.h.dropBy[pk.Addr/uint64(p.pool.FrameSize())]
			}
		}
	}
	p.free(pkts)
}

// free returns frames to the pool; under a harness it first overwrites
// them so that a stage that kept a slice into one reads 0xdd bytes, not
// the packet.
func (p *MemPort) free(pkts []*packet.Packet) {
	fs := uint64(p.pool.FrameSize())
	for i := 0; i < len(pkts); i += len(p.addrs) {
		chunk := pkts[i:min(i+len(p.addrs), len(pkts))]
		for j, pk := range chunk {
			if p.h != nil {
				f := p.pool.Frame(pk.Addr-pk.Addr%fs, uint32(fs))
				for k := range f {
					f[k] = 0xdd
				}
			}
			p.addrs[j] = pk.Addr
		}
		p.pool.Free(p.addrs[:len(chunk)])
	}
}

// fate is the result slot of a packet of the current Send.
func (h *Harness) fate(pk *packet.Packet) *Result {
	if h == nil || h.results == nil {
		return nil
	}
	i, ok := h.pending[pk.Addr/uint64(h.pool.FrameSize())]
	if !ok || i >= len(h.results) {
		return nil
	}
	return &h.results[i]
}

// checkAddr fails the test when a packet's Data does not start at its Addr
// (a stage moved one without the other).
func (h *Harness) checkAddr(pk *packet.Packet) {
	fs := uint64(h.pool.FrameSize())
	base := pk.Addr - pk.Addr%fs
	frame := h.pool.Frame(base, 0)[:fs]
	start := uintptr(unsafe.Pointer(unsafe.SliceData(pk.Data))) - uintptr(unsafe.Pointer(unsafe.SliceData(frame)))
	if len(pk.Data) == 0 || start >= uintptr(fs) || start+uintptr(len(pk.Data)) > uintptr(fs) {
		h.t.Errorf("pipelinetest: a packet's Data (%d bytes) is not inside its frame at Addr %#x: stages may move the start of Data only inside the frame", len(pk.Data), pk.Addr)
		return
	}
	if uint64(start) != pk.Addr-base {
		h.t.Errorf("pipelinetest: a packet's Data starts %d bytes into its frame but Addr says %d: a stage moved the start of Data without moving Addr by the same amount (%s)",
			start, pk.Addr-base, Summary(pk.Data))
	}
}

// tap runs a stage and notes which packets it dropped.
type tap struct {
	pipeline.Stage
	h *Harness
}

func (t *tap) Process(b *packet.Batch) {
	t.Stage.Process(b)
	if t.h.dropBy == nil {
		return
	}
	fs := uint64(t.h.pool.FrameSize())
	for i := range b.Slice() {
		if p := &b.Packets[i]; p.Verdict == packet.Drop {
			t.h.dropBy[p.Addr/fs] = t.Stage.Name()
		}
	}
}
