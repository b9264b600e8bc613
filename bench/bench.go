// Package bench is the macro benchmark behind `xnf bench`: it builds the
// standard lab topology (internal/lab), runs every contender on the same
// traffic in one invocation, and reports delivered packets per second as a
// table, JSON and plots.
//
//	gen (g0) ---- (in0) dut (out0) ---- (s0) sink
//
// The generator is the rig's live-frames XDP program (BPF_PROG_TEST_RUN
// with XDP_TX out of g0), the sink an XDP program on s0 that counts and
// drops. A contender is whatever moves frames from in0 to out0 inside the
// dut namespace: xnf in native and generic mode with an empty chain and
// with the example chain, the kernel's in-kernel XDP redirect (the
// ceiling), Linux forwarding with and without nftables, DPDK testpmd on
// net_af_xdp, and a forwarder on github.com/asavie/xdp. A Contender is a
// value: a name, a mode, a chain label and a Setup that returns its
// teardown, so adding one is adding a value to the list.
//
// Method: for every cell (layout, frame size, flow count) the contenders
// are measured in turn, repetition by repetition (A B C A B C ...), so
// drift of a shared, noisy machine hits them all alike; each measurement
// sets its contender up, warms up, reads the generator's and the sink's
// counters and /proc/stat at the start and the end of the window, and
// tears it down. Rows report the median, min and max of the repetitions,
// the generator's offered rate and the busy share of every CPU during the
// window. Only same-run ratios are meaningful: absolute figures on a
// shared 2-vCPU VM swing by a third between runs.
//
// Latency (Options.Latency): after a cell's throughput repetitions, each
// contender is measured once more with the generator paced to a fixed,
// low rate (DefaultLatencyRate, 20 kpps, for every contender) and every
// frame timestamped (rigbpf.GeneratorConfig.Timestamp: bpf_ktime_get_ns in
// the payload as the frame is built, in live-frames batches of 8); the
// sink records now - stamp in a per-CPU log-linear histogram
// (rigbpf.SinkConfig.Latency), read before and after the window, and the
// row gets p50, p99 and p999 of the window's probes. Generator and sink
// share the kernel's monotonic clock, so this is one-way latency g0 ->
// s0 through the DUT.
//
// Two layouts place the work (veth has no interrupts, so receive work runs
// on the sender's CPU unless NAPI is threaded):
//
//   - split: the generator (paced) and in0's receive softirq on CPU 0, the
//     DUT's worker alone on CPU 1. The best case for a userspace forwarder.
//   - one-core: in0's NAPI threaded and pinned to CPU 1 together with the
//     DUT's worker, the generator unpaced on CPU 0: all the DUT does shares
//     one core, the only fair comparison with kernel forwarding.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/rig"
	"github.com/xnfdev/xnf/internal/rig/rigbpf"
)

// Layout places the generator, the DUT's receive work and its worker on
// the machine's CPUs.
type Layout string

const (
	// Split: generator and in0's softirq on CPU 0, the worker on CPU 1.
	Split Layout = "split"
	// OneCore: in0's NAPI thread and the worker share CPU 1.
	OneCore Layout = "one-core"
)

// ParseLayouts reads a comma-separated list such as "split,one-core".
func ParseLayouts(s string) ([]Layout, error) {
	var out []Layout
	for _, f := range strings.Split(s, ",") {
		switch l := Layout(strings.TrimSpace(f)); l {
		case Split, OneCore:
			out = append(out, l)
		default:
			return nil, fmt.Errorf("bench: unknown layout %q (expected split or one-core)", f)
		}
	}
	return out, nil
}

// Sink places the sink's receive work: every frame a contender transmits
// into out0 is received by s0's NAPI, which on a veth runs as a softirq on
// the transmitting CPU unless it is threaded and pinned elsewhere.
type Sink string

const (
	// SinkLocal leaves s0's receive work on the CPU that transmits (the
	// DUT's, in the one-core layout): what a user sees forwarding between
	// containers or namespaces on one host.
	SinkLocal Sink = "local"
	// SinkRemote threads s0's NAPI and pins it to CPU 0, off the DUT's
	// core: closer to a NIC, where transmitting runs nobody's receive.
	SinkRemote Sink = "remote"
)

// ParseSinks reads a comma-separated list such as "local,remote".
func ParseSinks(s string) ([]Sink, error) {
	var out []Sink
	for _, f := range strings.Split(s, ",") {
		switch k := Sink(strings.TrimSpace(f)); k {
		case SinkLocal, SinkRemote:
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		default:
			return nil, fmt.Errorf("bench: unknown sink placement %q (expected local or remote)", f)
		}
	}
	return out, nil
}

// Cell is one traffic configuration every contender is measured on.
type Cell struct {
	Layout Layout
	// Sink is where s0's receive work runs ("" in results of harnesses
	// before the sink dimension: local).
	Sink Sink
	// Frame is the Ethernet frame size on the wire, FCS included (64 is
	// the minimum frame; the generator sends Frame-4 bytes).
	Frame  int
	Flows  uint32
	Queues int
}

func (c Cell) String() string {
	sink := ""
	if c.Sink != "" {
		sink = " sink " + string(c.Sink)
	}
	return fmt.Sprintf("%s%s %dB %d flows %dq", c.Layout, sink, c.Frame, c.Flows, c.Queues)
}

// Frames says how the generator addresses its frames for a contender.
type Frames int

const (
	// L2 frames carry the sink's MAC: for forwarders that move frames
	// unchanged (an empty xnf chain, XDP redirect, testpmd io, asavie).
	L2 Frames = iota
	// Routed frames carry in0's MAC and the sink's IP: for routers (the
	// example chain, Linux forwarding).
	Routed
)

// Env is what a contender's Setup gets: the topology, the cell and the CPU
// its worker belongs on.
type Env struct {
	Topo *lab.Topology
	// Sink counts what reaches s0.
	Sink *rig.Sink
	Cell Cell
	// CPU is the DUT worker's CPU (1).
	CPU int
	// Binary is the command line that runs the xnf binary (Options.Binary)
	// and BinaryEnv what it adds to the environment, for contenders that
	// run as processes of their own.
	Binary    []string
	BinaryEnv []string
	// socket is what an xnf contender's teardown read of its in0
	// socket's XDP_STATISTICS (nil for others).
	socket *SocketDrops
}

// Contender is one way of forwarding in0 -> out0 in the DUT namespace.
type Contender struct {
	// Name, Mode (native, generic, offload or "-") and Chain (a label such
	// as "empty" or "router", "-" when not applicable) identify the row.
	// An empty Mode is read back from in0 after Setup (the mode the
	// kernel actually attached).
	Name, Mode, Chain string
	Frames            Frames
	// Multiqueue says the contender serves every queue of in0 (cells
	// with two queues); others are skipped there.
	Multiqueue bool
	// TCP says the contender forwards real kernel TCP (the TCP rows: it
	// routes, or moves frames unchanged between the peers).
	TCP bool
	// Setup configures the DUT and returns the function that undoes it.
	// An error that is a Skip marks the contender skipped for the whole
	// run (no point retrying); any other error fails only that
	// measurement, recorded in the row.
	Setup func(env *Env) (teardown func() error, err error)
}

// Label is Name, Chain and Mode in one string, unique within a run.
func (c Contender) Label() string {
	return label(c.Name, c.Chain, c.Mode)
}

func label(name, chain, mode string) string {
	s := name
	if chain != "" && chain != "-" {
		s += " " + chain
	}
	if mode != "" && mode != "-" {
		s += " " + mode
	}
	return s
}

// Skip is an error that takes a contender out of the run (not installed,
// not supported). Its text is the row's error.
type Skip struct{ Reason string }

func (s *Skip) Error() string { return s.Reason }

// Skipf returns a Skip error.
func Skipf(format string, args ...any) error { return &Skip{Reason: fmt.Sprintf(format, args...)} }

// KindTCP marks the rows of real TCP clients (Result.Kind).
const KindTCP = "tcp"

// Result is one row: a contender on a cell, over the repetitions.
type Result struct {
	// Kind is "" for a packet-rate row, KindTCP for an iperf3 row.
	Kind      string `json:"kind,omitempty"`
	Contender string `json:"contender"`
	Mode      string `json:"mode"`
	Chain     string `json:"chain"`
	Layout    string `json:"layout"`
	// Sink is "local" or "remote" (Sink).
	Sink      string  `json:"sink"`
	Frame     int     `json:"frame"`
	Flows     uint32  `json:"flows"`
	Queues    int     `json:"queues"`
	PPSMedian float64 `json:"pps_median"`
	PPSMin    float64 `json:"pps_min"`
	PPSMax    float64 `json:"pps_max"`
	// OfferedPPS is the median rate the generator sent at.
	OfferedPPS float64 `json:"offered_pps"`
	// MbpsMedian is PPSMedian in Mbit/s of frames (FCS included).
	MbpsMedian float64 `json:"mbps_median"`
	// Samples are the delivered pps of every repetition, in order.
	Samples []float64 `json:"samples"`
	// CPU is the busy share (percent) of each CPU during the windows,
	// averaged over the repetitions ("cpu0", "cpu1", ...).
	CPU map[string]float64 `json:"cpu"`
	// Error says why the row has no (or fewer) samples: "skipped: ...",
	// "not supported by ...", or the first failure.
	Error string `json:"error"`
	// Latency is the one-way latency of timestamped probes at a fixed
	// low load (Options.Latency); nil when not measured.
	Latency *Latency `json:"latency"`
	// In0 is what in0's receive path did (medians over the repetitions);
	// nil without ethtool.
	In0 *Receive `json:"in0,omitempty"`
	// Socket is xnf's in0 socket's XDP_STATISTICS, medians over the
	// repetitions of per-process totals (xnf contenders only).
	Socket *SocketDrops `json:"in0_socket,omitempty"`

	// TCP rows (Kind KindTCP): parallel streams, the receiver's goodput
	// (Gbit/s, median and every repetition), the sender's retransmits
	// (median), and the unloaded ping RTT's p50 and p99 over RTTProbes
	// replies.
	Streams     int       `json:"streams,omitempty"`
	GbpsMedian  float64   `json:"gbps_median,omitempty"`
	GbpsSamples []float64 `json:"gbps_samples,omitempty"`
	Retransmits float64   `json:"retransmits,omitempty"`
	// RingLost and SocketLost are the frames lost between the client and
	// the DUT per run (medians): dropped by g0 at in0's full ring, and by
	// in0 on receive (a redirect into a socket without a fill buffer).
	RingLost   float64 `json:"ring_lost,omitempty"`
	SocketLost float64 `json:"socket_lost,omitempty"`
	RTTp50us   float64 `json:"rtt_p50_us,omitempty"`
	RTTp99us   float64 `json:"rtt_p99_us,omitempty"`
	RTTProbes  int     `json:"rtt_probes,omitempty"`
}

// Latency is a contender's latency measurement on a cell: generator to
// sink (g0 -> in0 -> DUT -> out0 -> s0), from the frame's stamp taken as
// the generator builds it to the sink's clock on arrival, at OfferedPPS.
type Latency struct {
	P50us  float64 `json:"p50_us"`
	P99us  float64 `json:"p99_us"`
	P999us float64 `json:"p999_us"`
	MeanUs float64 `json:"mean_us"`
	// Samples is the number of probes that arrived in the window.
	Samples uint64 `json:"samples"`
	// OfferedPPS is the rate the probes were sent at (paced).
	OfferedPPS float64 `json:"offered_pps"`
	// Error says why there is no (or a partial) figure.
	Error string `json:"error,omitempty"`
}

// latencyOf summarizes a window's histogram.
func latencyOf(h rigbpf.LatencyHistogram, offered float64) (*Latency, error) {
	l := &Latency{Samples: h.Samples(), OfferedPPS: offered, MeanUs: round3(h.Mean().Seconds() * 1e6)}
	for _, x := range []struct {
		q   float64
		dst *float64
	}{{0.5, &l.P50us}, {0.99, &l.P99us}, {0.999, &l.P999us}} {
		d, err := h.Percentile(x.q)
		if err != nil {
			return nil, err
		}
		*x.dst = round3(d.Seconds() * 1e6)
	}
	if l.Samples == 0 {
		l.Error = "no timestamped frame arrived"
	}
	return l, nil
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

// Label is the row's contender label (Contender.Label).
func (r Result) Label() string { return label(r.Contender, r.Chain, r.Mode) }

// Options drive Run.
type Options struct {
	Contenders []Contender
	// Sizes are frame sizes on the wire (64..1518), Flows flow counts
	// (1..65535), Layouts the layouts; every combination is a cell.
	Sizes   []int
	Flows   []uint32
	Layouts []Layout
	// Sinks are the sink placements (default both), a dimension of every
	// cell like Layouts.
	Sinks []Sink
	// Queues are the queue counts of the veths (1 or 2; default 1), each
	// in a lab of its own. Two queues are measured in the split layout
	// only: see Run.
	Queues []int
	// Reps is the number of repetitions per contender and cell.
	Reps           int
	Warmup, Window time.Duration
	// SplitRate paces the generator in the split layout (pps), where it
	// shares CPU 0 with in0's receive softirq: unpaced it starves it.
	SplitRate float64
	// Latency adds a latency measurement per contender and cell, after
	// its throughput repetitions: the generator paced to LatencyRate
	// (pps, default DefaultLatencyRate) in both layouts, every frame
	// timestamped, for a warm-up and one window; the sink's histogram
	// gives p50, p99 and p999 (Result.Latency).
	Latency     bool
	LatencyRate float64
	// Baseline is another xnf binary (a build of an earlier commit): its
	// empty chain and example chain (native) run as xnf-base rows next to
	// the others, for side-by-side comparison of a change.
	Baseline string
	// TCP adds real clients after the packet cells (nil: none).
	TCP *TCP
	// Prefix names the lab's namespaces (Prefix-<random>-gen, ...).
	Prefix string
	// Binary is the xnf binary that process contenders run (`xnf run`,
	// `xnf bench asavie-l2fwd`); "" is this process's executable, which is
	// xnf when run as `xnf bench`. BinaryEnv is added to their environment
	// (tests use it to make the test binary act as xnf).
	Binary    string
	BinaryEnv []string
	// Progress, when set, gets a progress line per measurement; with
	// ProgressTTY the line is rewritten in place.
	Progress    io.Writer
	ProgressTTY bool
}

// DefaultLatencyRate is the fixed offered load of latency measurements:
// 20 kpps, the same for every contender, which is at most ~10% of what
// the slowest data path here (xnf's one-core layout, ~0.2 Mpps) forwards,
// so no contender queues because of load.
const DefaultLatencyRate = 20e3

// Presets.

// Smoke is the CI preset: 1 s windows, one repetition, 64-byte frames,
// 256 flows, both layouts and sink placements, and the contenders every
// machine has: xnf native and generic (empty chain), XDP redirect and
// Linux forwarding.
func Smoke() Options {
	return Options{
		Contenders: []Contender{XNF("native", EmptyChain), XNF("generic", EmptyChain), XDPRedirect(), Linux()},
		Sizes:      []int{64}, Flows: []uint32{256}, Layouts: []Layout{Split, OneCore}, Sinks: []Sink{SinkLocal, SinkRemote}, Queues: []int{1},
		Reps: 1, Warmup: 300 * time.Millisecond, Window: time.Second,
		SplitRate: 1.5e6, Prefix: "xbench",
	}
}

// Quick is one cell size (64 bytes, 256 flows), all contenders, both
// layouts and both sink placements, three repetitions, short windows:
// about 5 minutes.
func Quick() Options {
	o := Smoke()
	o.Contenders = All()
	o.Reps = 3
	o.Latency = true
	o.Warmup = 400 * time.Millisecond
	o.Window = time.Second
	o.TCP = QuickTCP()
	return o
}

// Full is the opt-in sweep: six frame sizes, three flow counts, xnf's
// chain at every length (0..3 stages, ChainStages), one and two queues,
// both layouts, three repetitions of 2 s windows and latency. Slow
// (several hours; Estimate says how long).
func Full() Options {
	o := Quick()
	var chains []Chain
	for n := 0; n <= 3; n++ {
		c, err := ChainStages(n)
		if err != nil {
			panic(err) // ExampleChainYAML has three stages
		}
		chains = append(chains, c)
	}
	o.Contenders = WithChains(o.Contenders, chains)
	o.Sizes = []int{64, 128, 256, 512, 1024, 1500}
	o.Flows = []uint32{1, 256, 65535}
	o.Queues = []int{1, 2}
	o.Warmup = 500 * time.Millisecond
	o.Window = 2 * time.Second
	return o
}

// All is every contender, in the order the table shows them.
func All() []Contender {
	return []Contender{
		XNF("native", EmptyChain), XNF("generic", EmptyChain),
		XNF("native", ExampleChain), XNF("generic", ExampleChain),
		Offload(),
		XDPRedirect(),
		Linux(), LinuxNFT(),
		DPDK(),
		Asavie(),
	}
}

// Extras are contenders outside the default set, for --contenders:
// xnf run inside the harness's own process (xnf-inproc), to compare with
// xnf as its own process, and xnf with normal-class workers (xnf-normal).
func Extras() []Contender {
	// The A/B rows of the worker's scheduling on a shared core: the
	// normal class at nice -10 spinning 256 loops, the default before
	// realtime workers.
	normal := "  realtime: 0\n  spin: 256\n"
	return []Contender{XNFInProcess("native", EmptyChain), XNFInProcess("native", ExampleChain),
		XNFWith("xnf-normal", "", normal, "native", EmptyChain), XNFWith("xnf-normal", "", normal, "native", ExampleChain)}
}

// ByName picks contenders by label prefix ("xnf", "linux", "dpdk-testpmd",
// "xnf empty native"); every name must match at least one.
func ByName(all []Contender, names []string) ([]Contender, error) {
	var out []Contender
	for _, n := range names {
		n = strings.TrimSpace(n)
		found := false
		for _, c := range all {
			if c.Label() == n || strings.HasPrefix(c.Label(), n+" ") || c.Name == n {
				if !slices.ContainsFunc(out, func(o Contender) bool { return o.Label() == c.Label() }) {
					out = append(out, c)
				}
				found = true
			}
		}
		if !found {
			var labels []string
			for _, c := range all {
				labels = append(labels, c.Label())
			}
			return nil, fmt.Errorf("bench: no contender %q (expected one of: %s)", n, strings.Join(labels, ", "))
		}
	}
	return out, nil
}

// Estimate is about how long Run takes with o (setup costs included).
func (o Options) Estimate() time.Duration {
	layouts := 0
	for _, q := range o.Queues {
		if q == 1 {
			layouts += len(o.Layouts)
		} else if slices.Contains(o.Layouts, Split) {
			layouts++
		}
	}
	cells := len(o.Sizes) * len(o.Flows) * max(layouts, 1) * max(len(o.Sinks), 1) * len(o.Contenders)
	n := cells * max(o.Reps, 1)
	if o.Latency {
		n += cells
	}
	d := time.Duration(n) * (o.Warmup + o.Window + 400*time.Millisecond)
	if t := o.TCP; t != nil {
		per := time.Duration(len(t.Streams))*(t.Duration+300*time.Millisecond) + time.Duration(t.Pings)*t.PingInterval + time.Second
		d += time.Duration(max(t.Reps, 1)*len(t.Contenders)) * per
	}
	return d
}

func (o *Options) check() error {
	if len(o.Contenders) == 0 || len(o.Sizes) == 0 || len(o.Flows) == 0 || len(o.Layouts) == 0 {
		return errors.New("bench: nothing to run (no contenders, sizes, flows or layouts)")
	}
	if o.Reps <= 0 {
		o.Reps = 1
	}
	if o.Window <= 0 || o.Warmup < 0 || o.Warmup+o.Window+2*time.Second > rig.MaxDuration {
		return fmt.Errorf("bench: window %v and warm-up %v (the window must be positive, the run under %v)", o.Window, o.Warmup, rig.MaxDuration)
	}
	for _, s := range o.Sizes {
		if s < rigbpf.MinFrameSize+4 || s > rigbpf.MaxFrameSize+4 {
			return fmt.Errorf("bench: frame size %d outside %d..%d (wire size, FCS included)", s, rigbpf.MinFrameSize+4, rigbpf.MaxFrameSize+4)
		}
	}
	for _, f := range o.Flows {
		if f < 1 || f > 65535 {
			return fmt.Errorf("bench: %d flows outside 1..65535", f)
		}
	}
	if o.Prefix == "" {
		o.Prefix = "xbench"
	}
	if len(o.Sinks) == 0 {
		o.Sinks = []Sink{SinkLocal, SinkRemote}
	}
	if o.TCP != nil {
		if err := o.TCP.check(); err != nil {
			return err
		}
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: finding the xnf binary to run contenders with: %w", err)
		}
		o.Binary = exe
	}
	if len(o.Queues) == 0 {
		o.Queues = []int{1}
	}
	for _, q := range o.Queues {
		if q != 1 && q != 2 {
			return fmt.Errorf("bench: %d queues (1 or 2)", q)
		}
	}
	if o.SplitRate < 0 {
		return fmt.Errorf("bench: split rate %v", o.SplitRate)
	}
	if o.LatencyRate < 0 {
		return fmt.Errorf("bench: latency rate %v", o.LatencyRate)
	}
	if o.LatencyRate == 0 {
		o.LatencyRate = DefaultLatencyRate
	}
	seen := map[string]bool{}
	for _, c := range o.Contenders {
		if seen[c.Label()] {
			return fmt.Errorf("bench: contender %q listed twice", c.Label())
		}
		seen[c.Label()] = true
	}
	return nil
}

// generatorConfig is the generator's frames for a contender on a cell.
func generatorConfig(c Contender, cell Cell) rigbpf.GeneratorConfig {
	size := min(max(cell.Frame-4, rigbpf.MinFrameSize), rigbpf.MaxFrameSize)
	var g rigbpf.GeneratorConfig
	if c.Frames == Routed {
		g = rig.ForwardConfig(size, cell.Flows)
	} else {
		g = rig.L2Config(size, cell.Flows)
	}
	if uint32(1024)+cell.Flows-1 > 0xffff {
		g.SrcPort = 1 // 65535 flows: ports 1..65535
	}
	return g
}

// sample is one measurement.
type sample struct {
	pps, offered float64
	cpu          []float64 // busy percent per CPU
	mode         string    // in0's attach mode seen during the run
	lat          rigbpf.LatencyHistogram
	in0          *Receive
	socket       *SocketDrops
}

type row struct {
	c       Contender
	samples []sample
	errs    []string
	skip    string
	pre     bool // skip known before the cell ran (queues)
	lat     *Latency
}

// Run measures every contender on every cell and returns one Result per
// (cell, contender). It needs root and at least 2 CPUs. Each queue count
// gets a lab of its own, removed at the end, also when ctx is cancelled
// (Ctrl-C) or a step fails; the results measured so far are returned
// with the error.
func Run(ctx context.Context, o Options) (results []Result, err error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if runtime.NumCPU() < 2 {
		return nil, errors.New("bench: needs at least 2 CPUs (generator on CPU 0, DUT worker on CPU 1)")
	}
	steps := o.Reps
	if o.Latency {
		steps++
	}
	p := &progress{w: o.Progress, tty: o.ProgressTTY,
		total: len(o.Queues) * len(o.Layouts) * len(o.Sinks) * len(o.Sizes) * len(o.Flows) * steps * len(o.Contenders)}
	if o.TCP != nil {
		p.total += o.TCP.Reps * len(o.TCP.Contenders)
	}
	defer p.done()
	skipped := map[string]string{}
	for _, q := range o.Queues {
		if err := runQueues(ctx, o, q, p, skipped, &results); err != nil {
			return results, err
		}
	}
	return results, nil
}

// QueuesNote is the note of every row of a two-queue cell in the
// one-core layout, which is not measured.
const QueuesNote = "not measured: 2 queues only in the split layout (2 vCPUs: both cores take traffic)"

// runQueues runs every cell of one queue count in a lab of its own.
func runQueues(ctx context.Context, o Options, queues int, p *progress, skipped map[string]string, results *[]Result) (err error) {
	topo, err := lab.NewTopology(o.Prefix, lab.TopologyOptions{Queues: queues})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := topo.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	sink, err := rig.AttachSinkWith(topo.Sink, "s0", rig.SinkOptions{Config: rigbpf.SinkConfig{Latency: true}})
	if err != nil {
		return err
	}
	sinkOn := true
	defer func() {
		if sinkOn {
			err = errors.Join(err, sink.Close())
		}
	}()

	steps := o.Reps
	if o.Latency {
		steps++
	}
	for _, cell := range cellsOf(o, queues) {
		env := &Env{Topo: topo, Sink: sink, Cell: cell, CPU: 1, Binary: []string{o.Binary}, BinaryEnv: o.BinaryEnv}
		rows := make([]*row, len(o.Contenders))
		for i, c := range o.Contenders {
			rows[i] = &row{c: c}
		}
		flush := func() {
			for _, r := range rows {
				*results = append(*results, r.result(cell))
			}
		}
		// Rows this cell does not measure.
		for _, r := range rows {
			switch {
			case queues > 1 && cell.Layout != Split:
				r.skip = QueuesNote
			case queues > 1 && !r.c.Multiqueue:
				r.skip = fmt.Sprintf("skipped: the harness runs %s on one queue only", r.c.Name)
			}
			if r.skip != "" {
				r.pre = true
				for i := 0; i < steps; i++ {
					p.step(cell, min(i, o.Reps-1), o.Reps, r.c, r.skip)
				}
			}
		}
		for rep := 0; rep < o.Reps; rep++ {
			for _, r := range rows {
				if ctx.Err() != nil {
					for _, r := range rows {
						if len(r.samples) == 0 && len(r.errs) == 0 && r.skip == "" {
							r.errs = append(r.errs, "not measured: interrupted")
						}
					}
					flush()
					return fmt.Errorf("bench: interrupted: %w", ctx.Err())
				}
				if r.pre {
					continue
				}
				key := fmt.Sprintf("%s/%dq", r.c.Label(), queues)
				if why, ok := skipped[key]; ok {
					r.skip = why
					p.step(cell, rep, o.Reps, r.c, "skipped")
					continue
				}
				t0 := time.Now()
				s, err := measure(ctx, env, r.c, o, false)
				took := time.Since(t0).Round(100 * time.Millisecond)
				var sk *Skip
				switch {
				case errors.As(err, &sk):
					skipped[key] = sk.Reason
					r.skip = sk.Reason
					p.step(cell, rep, o.Reps, r.c, sk.Reason)
				case err != nil:
					r.errs = append(r.errs, err.Error())
					p.step(cell, rep, o.Reps, r.c, "error: "+err.Error())
					if leak := checkClean(topo); leak != nil {
						flush()
						return leak
					}
				default:
					r.samples = append(r.samples, s)
					p.step(cell, rep, o.Reps, r.c, fmt.Sprintf("%.3f Mpps (offered %.3f) in %v", s.pps/1e6, s.offered/1e6, took))
				}
			}
		}
		if o.Latency {
			for _, r := range rows {
				if ctx.Err() != nil {
					flush()
					return fmt.Errorf("bench: interrupted: %w", ctx.Err())
				}
				if r.skip != "" {
					if !r.pre {
						p.step(cell, o.Reps-1, o.Reps, r.c, "latency: skipped")
					}
					continue
				}
				s, err := measure(ctx, env, r.c, o, true)
				if err == nil {
					r.lat, err = latencyOf(s.lat, s.offered)
				}
				var sk *Skip
				switch {
				case errors.As(err, &sk):
					r.lat = &Latency{Error: sk.Reason}
					p.step(cell, o.Reps-1, o.Reps, r.c, "latency: "+sk.Reason)
				case err != nil:
					r.lat = &Latency{Error: err.Error()}
					p.step(cell, o.Reps-1, o.Reps, r.c, "latency error: "+err.Error())
					if leak := checkClean(topo); leak != nil {
						flush()
						return leak
					}
				default:
					p.step(cell, o.Reps-1, o.Reps, r.c, fmt.Sprintf("latency p50 %.1f p99 %.1f p999 %.1f us (%d probes at %.0f pps)",
						r.lat.P50us, r.lat.P99us, r.lat.P999us, r.lat.Samples, r.lat.OfferedPPS))
				}
			}
		}
		flush()
	}
	if o.TCP != nil && queues == 1 {
		// The server's kernel receives on s0 now.
		sinkOn = false
		if err := sink.Close(); err != nil {
			return err
		}
		return runTCP(ctx, o, topo, p, results)
	}
	return nil
}

// cellsOf is every cell of one queue count, in the order they are measured.
func cellsOf(o Options, queues int) []Cell {
	var out []Cell
	for _, layout := range o.Layouts {
		for _, sink := range o.Sinks {
			for _, size := range o.Sizes {
				for _, flows := range o.Flows {
					out = append(out, Cell{Layout: layout, Sink: sink, Frame: size, Flows: flows, Queues: queues})
				}
			}
		}
	}
	return out
}

func (r *row) result(cell Cell) Result {
	res := Result{Contender: r.c.Name, Mode: r.c.Mode, Chain: r.c.Chain, Layout: string(cell.Layout), Sink: string(cell.Sink),
		Frame: cell.Frame, Flows: cell.Flows, Queues: cell.Queues, CPU: map[string]float64{}}
	if res.Chain == "" {
		res.Chain = "-"
	}
	res.Latency = r.lat
	res.Error = rowError(r.skip, r.errs, len(r.errs)+len(r.samples))
	if len(r.samples) == 0 {
		if res.Mode == "" {
			res.Mode = "-"
		}
		return res
	}
	var pps, off []float64
	ncpu := 0
	for _, s := range r.samples {
		pps = append(pps, s.pps)
		off = append(off, s.offered)
		ncpu = max(ncpu, len(s.cpu))
		if res.Mode == "" && s.mode != "" {
			res.Mode = s.mode
		}
	}
	if res.Mode == "" {
		res.Mode = "-"
	}
	res.Samples = pps
	var xdp, redir, drops []float64
	for _, s := range r.samples {
		if s.in0 != nil {
			xdp, redir, drops = append(xdp, s.in0.XDPPackets), append(redir, s.in0.Redirected), append(drops, s.in0.Drops)
		}
	}
	if len(xdp) > 0 {
		res.In0 = &Receive{XDPPackets: round1(median(xdp)), Redirected: round1(median(redir)), Drops: round1(median(drops))}
	}
	var sd, sf, se []float64
	for _, s := range r.samples {
		if s.socket != nil {
			sd, sf, se = append(sd, float64(s.socket.RXDropped)), append(sf, float64(s.socket.RXRingFull)), append(se, float64(s.socket.FillRingEmpty))
		}
	}
	if len(sd) > 0 {
		res.Socket = &SocketDrops{RXDropped: uint64(median(sd)), RXRingFull: uint64(median(sf)), FillRingEmpty: uint64(median(se))}
	}
	res.PPSMedian, res.PPSMin, res.PPSMax = median(pps), slices.Min(pps), slices.Max(pps)
	res.OfferedPPS = median(off)
	res.MbpsMedian = res.PPSMedian * float64(cell.Frame) * 8 / 1e6
	for c := 0; c < ncpu; c++ {
		var sum float64
		n := 0
		for _, s := range r.samples {
			if c < len(s.cpu) {
				sum += s.cpu[c]
				n++
			}
		}
		res.CPU[fmt.Sprintf("cpu%d", c)] = round1(sum / float64(n))
	}
	return res
}

// rowError is a row's error: why it was skipped, or its first failure and
// how many of its reps repetitions failed.
func rowError(skip string, errs []string, reps int) string {
	switch {
	case skip != "":
		return skip
	case len(errs) == 1:
		return errs[0]
	case len(errs) > 1:
		return fmt.Sprintf("%s (%d of %d repetitions failed)", errs[0], len(errs), reps)
	}
	return ""
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// measure sets c up, places the work for the layout, runs the generator
// for warm-up + window and tears everything down again.
// With lat, the frames are timestamped and the generator paced to
// o.LatencyRate in both layouts, and the sample carries the window's
// latency histogram.
func measure(ctx context.Context, env *Env, c Contender, o Options, lat bool) (s sample, err error) {
	topo := env.Topo
	teardown, err := c.Setup(env)
	if err != nil {
		return s, err
	}
	env.socket = nil
	defer func() {
		err = errors.Join(err, teardown())
		s.socket = env.socket
		// A socket's queue stays busy for a few ms after close.
		time.Sleep(20 * time.Millisecond)
		err = errors.Join(err, checkClean(topo))
	}()
	s.mode = attachMode(topo.DUT, "in0")
	if env.Cell.Layout == OneCore {
		if _, err := rig.ThreadNAPI(topo.DUT, "in0", env.CPU); err != nil {
			return s, fmt.Errorf("threading in0's NAPI: %w", err)
		}
		defer func() { err = errors.Join(err, rig.Unthread(topo.DUT, "in0")) }()
	}
	if env.Cell.Sink == SinkRemote {
		if _, err := rig.ThreadNAPI(topo.Sink, "s0", 0); err != nil {
			return s, fmt.Errorf("threading s0's NAPI: %w", err)
		}
		defer func() { err = errors.Join(err, rig.Unthread(topo.Sink, "s0")) }()
	}
	gcfg := generatorConfig(c, env.Cell)
	gcfg.Timestamp = lat
	if lat {
		gcfg.BatchSize = 8
	}
	var rate float64
	switch {
	case lat:
		rate = o.LatencyRate
	case env.Cell.Layout == Split:
		rate = o.SplitRate
	}
	// One queue: one source on CPU 0. Two queues: a source per CPU at
	// half the rate each, since a veth delivers to the peer's queue of
	// the sending CPU's number.
	var srcs []*rig.Source
	defer func() {
		for _, src := range srcs {
			src.Close()
		}
	}()
	for cpu := 0; cpu < env.Cell.Queues; cpu++ {
		src, err := rig.NewSource(topo.Gen, "g0", gcfg)
		if err != nil {
			return s, err
		}
		srcs = append(srcs, src)
		src.CPU = cpu
		src.Rate = rate / float64(env.Cell.Queues)
	}
	mode := s.mode
	s, err = window(ctx, srcs, env, o, lat)
	s.mode = mode
	return s, err
}

// window runs src and reads the counters and /proc/stat around the window.
func window(ctx context.Context, srcs []*rig.Source, env *Env, o Options, lat bool) (s sample, err error) {
	sink := env.Sink
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, len(srcs))
	for _, src := range srcs {
		go func() {
			_, err := src.Run(ctx, o.Warmup+o.Window+time.Second, 0)
			done <- err
		}()
	}
	var nic [2]map[string]uint64
	readNIC := func(i int) {
		if _, err := exec.LookPath("ethtool"); err == nil {
			nic[i], _ = vethStats(env.Topo.DUT, "in0")
		}
	}
	read := func() (g, k uint64, cpu []cpuTimes, t time.Time, err error) {
		cpu, err = readCPU()
		if err != nil {
			return
		}
		for _, src := range srcs {
			n, err := src.Sent()
			if err != nil {
				return 0, 0, nil, t, err
			}
			g += n
		}
		k, err = sink.Count()
		return g, k, cpu, time.Now(), err
	}
	stopped := 0
	early := func() error {
		select {
		case err := <-done:
			stopped++
			if err == nil {
				err = ctx.Err()
			}
			if err == nil {
				err = errors.New("bench: generator stopped early")
			}
			return err
		default:
			return nil
		}
	}
	stop := func(err error) (sample, error) {
		cancel()
		for ; stopped < len(srcs); stopped++ {
			if rerr := <-done; err == nil && rerr != nil && !errors.Is(rerr, context.Canceled) {
				err = rerr
			}
		}
		return s, err
	}
	hist := func() (rigbpf.LatencyHistogram, error) {
		if !lat {
			return rigbpf.LatencyHistogram{}, nil
		}
		return sink.Prog.Latency()
	}
	sleep(ctx, o.Warmup)
	readNIC(0)
	h0, err := hist()
	var g0, k0 uint64
	var c0 []cpuTimes
	var t0 time.Time
	if err == nil {
		g0, k0, c0, t0, err = read()
	}
	if err == nil {
		err = early()
	}
	if err != nil {
		return stop(err)
	}
	sleep(ctx, o.Window)
	g1, k1, c1, t1, err := read()
	readNIC(1)
	var h1 rigbpf.LatencyHistogram
	if err == nil {
		h1, err = hist()
	}
	if err == nil {
		err = early()
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return stop(err)
	}
	sec := t1.Sub(t0).Seconds()
	s.offered = float64(g1-g0) / sec
	s.pps = float64(k1-k0) / sec
	s.cpu = busy(c0, c1)
	if nic[0] != nil && nic[1] != nil {
		s.in0 = receiveOf(nic[0], nic[1], sec)
	}
	if lat {
		s.lat = h1.Sub(h0)
	}
	return stop(nil)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
