package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/rig"
)

// TCP is the real-client part of a run (Options.TCP): iperf3 between the
// generator's and the sink's namespaces (real kernel TCP stacks, offloads
// off as on a wire) through each contender, after the packet cells, in the
// same lab; and ping's round-trip time through it, unloaded.
//
// Placement is the one-core layout with the sink local: in0's NAPI
// threaded onto the DUT's CPU 1 with the worker, the client and server
// pinned to CPU 0.
type TCP struct {
	// Contenders are measured in turn, repetition by repetition (default
	// TCPContenders).
	Contenders []Contender
	// Streams are the parallel stream counts (iperf3 -P), each a row.
	Streams []int
	// Duration is one iperf3 run (-t); Reps runs per contender and streams.
	Duration time.Duration
	Reps     int
	// Pings probes at PingInterval measure the RTT (0: no ping).
	Pings        int
	PingInterval time.Duration
}

// TCPPort is the server's port: one the example chain's firewall and its
// nftables twin admit (HTTPS).
const TCPPort = 443

// TCPContenders are the TCP rows' contenders: Linux forwarding without
// rules and with the example chain's nftables twin, xnf with the empty
// chain and with the example chain (native).
func TCPContenders() []Contender {
	return []Contender{Linux(), LinuxNFT(), XNF("native", EmptyChain), XNF("native", ExampleChain)}
}

// QuickTCP is the TCP part of --quick: 1 and 4 streams, 3 s runs, three
// repetitions, 200 pings at 5 ms.
func QuickTCP() *TCP {
	return &TCP{Contenders: TCPContenders(), Streams: []int{1, 4}, Duration: 3 * time.Second, Reps: 3, Pings: 200, PingInterval: 5 * time.Millisecond}
}

func (t *TCP) check() error {
	if len(t.Contenders) == 0 {
		t.Contenders = TCPContenders()
	}
	if len(t.Streams) == 0 {
		t.Streams = []int{1}
	}
	for _, n := range t.Streams {
		if n < 1 || n > 128 {
			return fmt.Errorf("bench: %d TCP streams (1..128)", n)
		}
	}
	if t.Duration <= 0 {
		t.Duration = 3 * time.Second
	}
	if t.Duration < time.Second || t.Duration > time.Minute {
		return fmt.Errorf("bench: TCP duration %v (1s..1m)", t.Duration)
	}
	if t.Reps <= 0 {
		t.Reps = 1
	}
	if t.Pings > 0 && t.PingInterval <= 0 {
		t.PingInterval = 5 * time.Millisecond
	}
	return nil
}

// tcpRow is one contender's TCP measurements.
type tcpRow struct {
	c    Contender
	gbps map[int][]float64 // by streams
	retr map[int][]float64
	// ringLost and sockLost are the frames lost on the way in per run:
	// the client's veth (g0) dropping them at in0's full ring, and in0
	// dropping them on receive (a failed redirect into the socket).
	ringLost, sockLost map[int][]float64
	rtt                []time.Duration // every ping reply of every repetition
	errs               []string
	skip               string
}

// runTCP measures o.TCP's contenders on topo, whose s0 must be free of
// the sink's program (the server's kernel receives).
func runTCP(ctx context.Context, o Options, topo *lab.Topology, p *progress, results *[]Result) error {
	t := o.TCP
	rows := make([]*tcpRow, len(t.Contenders))
	for i, c := range t.Contenders {
		rows[i] = &tcpRow{c: c, gbps: map[int][]float64{}, retr: map[int][]float64{}, ringLost: map[int][]float64{}, sockLost: map[int][]float64{}}
	}
	flush := func() {
		for _, r := range rows {
			*results = append(*results, r.results(t)...)
		}
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		for _, r := range rows {
			r.skip = "skipped: iperf3 not found (apt-get install iperf3)"
		}
		flush()
		return nil
	}
	for _, ns := range []struct {
		ns *lab.NS
		dv string
	}{{topo.Gen, "g0"}, {topo.Sink, "s0"}} {
		if err := ns.ns.DisableOffloads(ns.dv); err != nil {
			return err
		}
	}
	server, err := startProcess(topo.Sink, "iperf3 server",
		[]string{"iperf3", "-s", "--forceflush", "-B", lab.SinkAddr, "-p", strconv.Itoa(TCPPort), "-A", "0"}, nil,
		func(out string) bool { return strings.Contains(out, "Server listening") }, 5*time.Second)
	if err != nil {
		return err
	}
	defer server.kill()
	cell := Cell{Layout: OneCore, Sink: SinkLocal, Queues: 1}
	env := &Env{Topo: topo, Cell: cell, CPU: 1, Binary: []string{o.Binary}, BinaryEnv: o.BinaryEnv}
	for rep := 0; rep < t.Reps; rep++ {
		for _, r := range rows {
			if ctx.Err() != nil {
				flush()
				return fmt.Errorf("bench: interrupted: %w", ctx.Err())
			}
			if r.skip != "" {
				continue
			}
			err := measureTCP(ctx, env, r, t)
			var sk *Skip
			switch {
			case errors.As(err, &sk):
				r.skip = sk.Reason
				p.line(fmt.Sprintf("tcp rep %d/%d  %-24s %s", rep+1, t.Reps, r.c.Label(), sk.Reason))
			case err != nil:
				r.errs = append(r.errs, err.Error())
				p.line(fmt.Sprintf("tcp rep %d/%d  %-24s error: %v", rep+1, t.Reps, r.c.Label(), err))
				if leak := checkClean(topo); leak != nil {
					flush()
					return leak
				}
			default:
				var parts []string
				for _, n := range t.Streams {
					if g := r.gbps[n]; len(g) > 0 {
						parts = append(parts, fmt.Sprintf("%d stream(s) %.2f Gbit/s", n, g[len(g)-1]))
					}
				}
				p.line(fmt.Sprintf("tcp rep %d/%d  %-24s %s", rep+1, t.Reps, r.c.Label(), strings.Join(parts, ", ")))
			}
		}
	}
	flush()
	return nil
}

// measureTCP sets c up, addresses the peers for it, and runs iperf3 for
// every stream count and the pings once.
func measureTCP(ctx context.Context, env *Env, r *tcpRow, t *TCP) (err error) {
	topo := env.Topo
	// The peers' next hop: the DUT's MACs for a router, the other peer's
	// for an L2 forwarder (an empty chain moves frames unchanged).
	genNext, sinkNext := lab.DUTInMAC, lab.DUTOutMAC
	if r.c.Frames == L2 {
		genNext, sinkNext = lab.SinkMAC, lab.GenMAC
	}
	if err := errors.Join(topo.Gen.AddNeigh("g0", lab.DUTInAddr, genNext), topo.Sink.AddNeigh("s0", lab.DUTOutAddr, sinkNext)); err != nil {
		return err
	}
	teardown, err := r.c.Setup(env)
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, teardown())
		time.Sleep(20 * time.Millisecond)
		err = errors.Join(err, checkClean(topo))
	}()
	if _, err := rig.ThreadNAPI(topo.DUT, "in0", env.CPU); err != nil {
		return fmt.Errorf("threading in0's NAPI: %w", err)
	}
	defer func() { err = errors.Join(err, rig.Unthread(topo.DUT, "in0")) }()
	if t.Pings > 0 {
		out, err := runIn(ctx, topo.Gen, 5*time.Second+time.Duration(t.Pings)*t.PingInterval, "",
			"ping", "-n", "-q", "-c", "3", "-i", "0.01", "-W", "1", lab.SinkAddr)
		if err != nil {
			return fmt.Errorf("no path through %s (ping): %w: %s", r.c.Label(), err, tail(out, 3))
		}
		out, err = runIn(ctx, topo.Gen, 5*time.Second+2*time.Duration(t.Pings)*t.PingInterval, "",
			"ping", "-n", "-c", strconv.Itoa(t.Pings), "-i", fmt.Sprintf("%.3f", t.PingInterval.Seconds()), "-W", "1", lab.SinkAddr)
		rtt, perr := ParsePing(out)
		if perr != nil {
			return fmt.Errorf("ping: %w (%v): %s", perr, err, tail(out, 3))
		}
		r.rtt = append(r.rtt, rtt...)
	}
	for _, n := range t.Streams {
		ring0, sock0, lerr := ingressLost(topo)
		out, err := runIn(ctx, topo.Gen, t.Duration+15*time.Second, "",
			"iperf3", "-c", lab.SinkAddr, "-p", strconv.Itoa(TCPPort), "-t", strconv.Itoa(int(t.Duration/time.Second)),
			"-P", strconv.Itoa(n), "-A", "0", "-J")
		res, perr := ParseIperf3(out)
		if perr != nil {
			return fmt.Errorf("iperf3 -P %d: %w (%v)", n, perr, err)
		}
		r.gbps[n] = append(r.gbps[n], res.Gbps)
		r.retr[n] = append(r.retr[n], float64(res.Retransmits))
		if ring1, sock1, err := ingressLost(topo); err == nil && lerr == nil {
			r.ringLost[n] = append(r.ringLost[n], float64(ring1-ring0))
			r.sockLost[n] = append(r.sockLost[n], float64(sock1-sock0))
		}
	}
	return nil
}

// ingressLost is the frames lost between the client and the DUT so far:
// g0's TX drops (in0's ring full) and in0's RX drops (failed redirects).
func ingressLost(topo *lab.Topology) (ring, sock uint64, err error) {
	g, err := rig.LinkStats(topo.Gen, "g0")
	if err != nil {
		return 0, 0, err
	}
	i, err := rig.LinkStats(topo.DUT, "in0")
	if err != nil {
		return 0, 0, err
	}
	return g.TxDropped, i.RxDropped, nil
}

// runIn runs a command in ns and returns its combined output.
func runIn(ctx context.Context, ns *lab.NS, timeout time.Duration, stdin string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name}, argv...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Iperf3 is what ParseIperf3 reads from iperf3's JSON report.
type Iperf3 struct {
	// Gbps is what the receiver got (end.sum_received), in Gbit/s.
	Gbps float64
	// Retransmits is the sender's count (end.sum_sent.retransmits).
	Retransmits int
}

// ParseIperf3 reads an iperf3 -J report of a TCP client run.
func ParseIperf3(out string) (Iperf3, error) {
	var rep struct {
		Error string `json:"error"`
		End   struct {
			SumSent struct {
				Retransmits *int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond *float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		return Iperf3{}, fmt.Errorf("iperf3 output is not its JSON report: %w", err)
	}
	if rep.Error != "" {
		return Iperf3{}, fmt.Errorf("iperf3: %s", rep.Error)
	}
	if rep.End.SumReceived.BitsPerSecond == nil || rep.End.SumSent.Retransmits == nil {
		return Iperf3{}, errors.New("iperf3 report has no end.sum_received.bits_per_second or end.sum_sent.retransmits (not a TCP client run?)")
	}
	return Iperf3{Gbps: round3(*rep.End.SumReceived.BitsPerSecond / 1e9), Retransmits: *rep.End.SumSent.Retransmits}, nil
}

var pingReply = regexp.MustCompile(`icmp_seq=\d+ .*time=([0-9.]+) ms`)

// ParsePing reads the round-trip time of every reply in iputils ping's
// output ("64 bytes from ...: icmp_seq=1 ttl=63 time=0.054 ms"). No reply
// at all is an error.
func ParsePing(out string) ([]time.Duration, error) {
	var rtt []time.Duration
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := pingReply.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		ms, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return nil, fmt.Errorf("ping: %q: %w", sc.Text(), err)
		}
		rtt = append(rtt, time.Duration(ms*float64(time.Millisecond)))
	}
	if len(rtt) == 0 {
		return nil, errors.New("ping: no reply")
	}
	return rtt, nil
}

// percentile is the q-quantile of d (nearest rank).
func percentile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// results is one Result per stream count.
func (r *tcpRow) results(t *TCP) []Result {
	var out []Result
	for _, n := range t.Streams {
		res := Result{Kind: KindTCP, Contender: r.c.Name, Mode: r.c.Mode, Chain: r.c.Chain, Layout: string(OneCore), Sink: string(SinkLocal),
			Queues: 1, Streams: n, CPU: map[string]float64{}}
		if res.Mode == "" {
			res.Mode = "-"
		}
		res.Error = rowError(r.skip, r.errs, t.Reps)
		if g := r.gbps[n]; len(g) > 0 {
			res.GbpsSamples = g
			res.GbpsMedian = round3(median(g))
			res.Retransmits = median(r.retr[n])
			if l := r.ringLost[n]; len(l) > 0 {
				res.RingLost, res.SocketLost = median(l), median(r.sockLost[n])
			}
		}
		if len(r.rtt) > 0 {
			res.RTTp50us = round3(percentile(r.rtt, 0.5).Seconds() * 1e6)
			res.RTTp99us = round3(percentile(r.rtt, 0.99).Seconds() * 1e6)
			res.RTTProbes = len(r.rtt)
		}
		out = append(out, res)
	}
	return out
}
