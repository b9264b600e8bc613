package bench

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// Command is `xnf bench`. It lives here, not in cli, so that a binary
// built on cli.Main links none of the harness (asavie/xdp, gonum/plot, the
// DPDK launcher): cmd/xnf adds it with cli.Main(bench.Command()).
func Command() *cobra.Command {
	var (
		quick, smoke, full    bool
		sizes, flows, layouts string
		sinks                 string
		contenders            string
		chains, queues        string
		reps                  int
		window, warmup        time.Duration
		rate, latencyRate     float64
		latency               bool
		tcp                   bool
		tcpStreams            string
		tcpDuration           time.Duration
		jsonFile, outDir      string
		baseline              string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "rank xnf against the kernel, XDP redirect, DPDK and asavie/xdp on a lab topology (root)",
		Long: `bench builds gen -- (in0) dut (out0) -- sink in network namespaces, then measures every
contender on the same generated traffic, interleaved (A B C A B C), and prints a markdown
table with same-run ratios. Presets: --quick (the default: 64-byte frames, 256 flows, all
contenders, both layouts and sink placements, 3 repetitions, about 5 minutes), --smoke (1 s windows, one
repetition, xnf native/generic, XDP redirect, Linux), --full (every frame size, flow
count, chain length and queue count; hours). --sizes, --flows, --layouts, --contenders,
--reps and --window override the preset; --chains 0,1,2,3 sweeps xnf's chain length,
--queues 1,2 the queue count (two queues only in the split layout). --sinks local,remote
places the sink's receive work (every frame the DUT sends into out0 is received by s0's
NAPI): local leaves it on the transmitting CPU, as between namespaces or containers on one
host; remote threads it onto CPU 0, closer to a NIC. Every row says which. --latency (on in
--quick and --full) adds, per contender and cell, p50/p99/p999 one-way latency of
timestamped probes at a fixed 20 kpps (--latency-rate). --tcp (on in --quick and --full)
adds real kernel TCP (iperf3, 1 and 4 streams) and ping RTT through Linux, Linux with
nftables, and xnf's empty and example chains, in the same lab after the packet cells.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return errors.New("bench: needs root (it creates network namespaces and attaches XDP programs)")
			}
			var o Options
			switch {
			case smoke && (quick || full), quick && full:
				return errors.New("bench: choose one of --smoke, --quick and --full")
			case smoke:
				o = Smoke()
			case full:
				o = Full()
			default:
				o = Quick()
			}
			f := cmd.Flags()
			if f.Changed("sizes") {
				v, err := parseInts(sizes)
				if err != nil {
					return fmt.Errorf("--sizes: %w", err)
				}
				o.Sizes = v
			}
			if f.Changed("flows") {
				v, err := parseInts(flows)
				if err != nil {
					return fmt.Errorf("--flows: %w", err)
				}
				o.Flows = nil
				for _, n := range v {
					o.Flows = append(o.Flows, uint32(min(max(n, 0), 65535)))
				}
			}
			if f.Changed("layouts") {
				v, err := ParseLayouts(layouts)
				if err != nil {
					return err
				}
				o.Layouts = v
			}
			if f.Changed("sinks") {
				v, err := ParseSinks(sinks)
				if err != nil {
					return err
				}
				o.Sinks = v
			}
			all := append(All(), Extras()...)
			if f.Changed("chains") {
				n, err := parseInts(chains)
				if err != nil {
					return fmt.Errorf("--chains: %w", err)
				}
				var cs []Chain
				for _, k := range n {
					c, err := ChainStages(k)
					if err != nil {
						return fmt.Errorf("--chains: %w", err)
					}
					cs = append(cs, c)
				}
				all = WithChains(all, cs)
				o.Contenders = WithChains(o.Contenders, cs)
			}
			if f.Changed("contenders") {
				v, err := ByName(all, strings.Split(contenders, ","))
				if err != nil {
					return err
				}
				o.Contenders = v
			}
			if f.Changed("queues") {
				v, err := parseInts(queues)
				if err != nil {
					return fmt.Errorf("--queues: %w", err)
				}
				o.Queues = v
			}
			if f.Changed("reps") {
				o.Reps = reps
			}
			if f.Changed("window") {
				o.Window = window
			}
			if f.Changed("warmup") {
				o.Warmup = warmup
			}
			if f.Changed("split-rate") {
				o.SplitRate = rate
			}
			if f.Changed("latency") {
				o.Latency = latency
			}
			if f.Changed("latency-rate") {
				o.LatencyRate = latencyRate
			}
			if f.Changed("tcp") {
				o.TCP = nil
				if tcp {
					o.TCP = QuickTCP()
				}
			}
			if o.TCP != nil {
				if f.Changed("reps") {
					o.TCP.Reps = reps
				}
				if f.Changed("tcp-streams") {
					v, err := parseInts(tcpStreams)
					if err != nil {
						return fmt.Errorf("--tcp-streams: %w", err)
					}
					o.TCP.Streams = v
				}
				if f.Changed("tcp-duration") {
					o.TCP.Duration = tcpDuration
				}
				if f.Changed("contenders") {
					// The contenders the user picked that carry TCP.
					var keep []Contender
					for _, c := range o.Contenders {
						if c.TCP && c.Mode != "generic" {
							keep = append(keep, c)
						}
					}
					o.TCP.Contenders = keep
					if len(keep) == 0 {
						o.TCP = nil
					}
				}
			}
			if baseline != "" {
				base := []Contender{XNFBinary("xnf-base", baseline, "native", EmptyChain), XNFBinary("xnf-base", baseline, "native", ExampleChain)}
				o.Contenders = append(o.Contenders, base...)
				if o.TCP != nil {
					o.TCP.Contenders = append(o.TCP.Contenders, base...)
				}
			}
			o.Progress = cmd.ErrOrStderr()
			o.ProgressTTY = isTerminal(os.Stderr)
			out := cmd.OutOrStdout()
			fmt.Fprintf(cmd.ErrOrStderr(), "bench: %d contenders x %d cells x %d repetitions, about %v\n",
				len(o.Contenders), len(o.Sizes)*len(o.Flows)*len(o.Layouts)*max(len(o.Sinks), 1)*max(len(o.Queues), 1), o.Reps, o.Estimate().Round(time.Second))

			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			start := time.Now()
			results, err := Run(ctx, o)
			if len(results) > 0 {
				fmt.Fprintf(out, "\n## xnf bench (%s, %s)\n\n", strings.Join(os.Args[1:], " "), time.Since(start).Round(time.Second))
				WriteMarkdown(out, results)
				if ex := ExampleChain.Label(); hasRows(results, "xnf "+ex) {
					fmt.Fprintf(out, "\n### goals (the example chain, %s, against its peers, first cell of each layout)\n\n", ex)
					WriteGoals(out, Goals(results, ex))
				}
				if jsonFile != "" {
					if werr := writeJSONFile(jsonFile, results); werr != nil {
						err = errors.Join(err, werr)
					} else {
						fmt.Fprintf(cmd.ErrOrStderr(), "bench: wrote %s\n", jsonFile)
					}
				}
				if outDir != "" {
					files, perr := Plot(outDir, results)
					err = errors.Join(err, perr)
					if len(files) > 0 {
						fmt.Fprintf(cmd.ErrOrStderr(), "bench: wrote %s\n", strings.Join(files, " "))
					}
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&quick, "quick", false, "quick preset (default): 64-byte frames, 256 flows, all contenders, 3 repetitions, < 3 min")
	f.BoolVar(&smoke, "smoke", false, "smoke preset: 1 s windows, 1 repetition, xnf native/generic, XDP redirect, Linux")
	f.BoolVar(&full, "full", false, "full sweep: frame sizes 64..1500, flows 1, 256, 65535, chains 0..3, queues 1 and 2")
	f.StringVar(&sizes, "sizes", "64", "frame sizes on the wire, comma-separated (64..1518)")
	f.StringVar(&flows, "flows", "256", "flow counts, comma-separated (1..65535; 64k means 65535)")
	f.StringVar(&layouts, "layouts", "split,one-core", "layouts: split (worker alone on CPU 1), one-core (in0's NAPI thread and worker on CPU 1)")
	f.StringVar(&sinks, "sinks", "local,remote", "sink placements: local (s0's receive work on the transmitting CPU), remote (s0's NAPI threaded on CPU 0)")
	f.StringVar(&contenders, "contenders", "", "contenders by name or label prefix, comma-separated (xnf, \"xnf empty native\", xdp-redirect, linux, dpdk-testpmd, asavie/xdp)")
	f.StringVar(&chains, "chains", "0,3", "xnf chain lengths, comma-separated: 0 empty, 1 router, 2 nat>router, 3 firewall>nat>router (the example chain's last stages)")
	f.StringVar(&queues, "queues", "1", "queue counts, comma-separated (1, 2); 2 queues: split layout only, generator and xnf workers on both CPUs")
	f.IntVar(&reps, "reps", 3, "repetitions per contender and cell (interleaved)")
	f.DurationVar(&window, "window", time.Second, "measurement window")
	f.DurationVar(&warmup, "warmup", 400*time.Millisecond, "warm-up before each window")
	f.Float64Var(&rate, "split-rate", 1.5e6, "generator pacing in the split layout (pps)")
	f.BoolVar(&latency, "latency", false, "measure p50/p99/p999 latency per contender and cell with timestamped probes (default on in --quick and --full, off in --smoke)")
	f.Float64Var(&latencyRate, "latency-rate", DefaultLatencyRate, "offered load of the latency probes (pps, paced, every contender alike)")
	f.BoolVar(&tcp, "tcp", false, "add real TCP rows (default on in --quick and --full): iperf3 through linux, linux+nftables, xnf empty and xnf's example chain, 1 and 4 streams, with ping RTT")
	f.StringVar(&tcpStreams, "tcp-streams", "1,4", "iperf3 parallel stream counts, comma-separated")
	f.DurationVar(&tcpDuration, "tcp-duration", 3*time.Second, "one iperf3 run")
	f.StringVar(&baseline, "baseline", "", "another xnf binary (a build of an earlier commit): adds xnf-base rows (empty and example chain, native) run from it, side by side")
	f.StringVar(&jsonFile, "json", "", "write the results as JSON to this file")
	f.StringVar(&outDir, "out", "", "write PNG and SVG plots into this directory")
	cmd.AddCommand(asavieCmd())
	return cmd
}

// asavieCmd is the asavie/xdp contender's forwarder binary: the harness
// runs it as a process of its own in the DUT namespace, as a user runs a
// forwarder, until SIGTERM.
func asavieCmd() *cobra.Command {
	var in, out string
	var cpu int
	cmd := &cobra.Command{
		Use:    "asavie-l2fwd --in IF --out IF --cpu N",
		Short:  "forward IF -> IF on github.com/asavie/xdp (the harness's asavie/xdp contender)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return AsavieForward(in, out, cpu, func() {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s -> %s on CPU %d\n", AsavieReady, in, out, cpu)
			}, ctx.Done())
		},
	}
	cmd.Flags().StringVar(&in, "in", "in0", "interface to receive on (queue 0)")
	cmd.Flags().StringVar(&out, "out", "out0", "interface to transmit on (queue 0)")
	cmd.Flags().IntVar(&cpu, "cpu", 1, "CPU the forwarding loop is pinned to")
	return cmd
}

func hasRows(results []Result, prefix string) bool {
	for _, r := range results {
		if strings.HasPrefix(r.Label(), prefix) && r.PPSMedian > 0 {
			return true
		}
	}
	return false
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		mult := 1
		if strings.HasSuffix(strings.ToLower(f), "k") {
			f, mult = f[:len(f)-1], 1024
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		n *= mult
		if n == 65536 {
			n = 65535 // "64k" flows: every source port but 0
		}
		out = append(out, n)
	}
	return out, nil
}

func writeJSONFile(path string, results []Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteJSON(f, results); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
