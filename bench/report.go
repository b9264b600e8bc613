package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// progress prints a line per measurement.
type progress struct {
	w          io.Writer
	tty        bool
	n, total   int
	inProgress bool
}

func (p *progress) step(cell Cell, rep, reps int, c Contender, msg string) {
	p.n++
	if p.w == nil {
		return
	}
	line := fmt.Sprintf("[%d/%d] %s rep %d/%d  %-24s %s", p.n, p.total, cell, rep+1, reps, c.Label(), msg)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.inProgress = true
		return
	}
	fmt.Fprintln(p.w, line)
}

// line prints a progress line that is not a packet cell's.
func (p *progress) line(msg string) {
	p.n++
	if p.w == nil {
		return
	}
	line := fmt.Sprintf("[%d/%d] %s", p.n, p.total, msg)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.inProgress = true
		return
	}
	fmt.Fprintln(p.w, line)
}

func (p *progress) done() {
	if p.w != nil && p.inProgress {
		fmt.Fprintln(p.w)
		p.inProgress = false
	}
}

// WriteJSON writes the results as a JSON array (the schema of Result).
func WriteJSON(w io.Writer, results []Result) error {
	if results == nil {
		results = []Result{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(results)
}

// cellOf is a result's cell.
func cellOf(r Result) Cell {
	return Cell{Layout: Layout(r.Layout), Sink: Sink(r.Sink), Frame: r.Frame, Flows: r.Flows, Queues: r.Queues}
}

// Cells lists the cells of the packet-rate results in their order.
func Cells(results []Result) []Cell {
	var out []Cell
	seen := map[Cell]bool{}
	for _, r := range results {
		if r.Kind != "" {
			continue
		}
		c := cellOf(r)
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// Baseline is the row ratios are taken to in a cell: DPDK testpmd when it
// delivered, else Linux forwarding without rules. ok is false when
// neither has a figure.
func Baseline(results []Result, cell Cell) (base Result, ok bool) {
	for _, want := range []func(Result) bool{
		func(r Result) bool { return r.Contender == "dpdk-testpmd" },
		func(r Result) bool { return r.Contender == "linux" && r.Chain == "-" },
	} {
		for _, r := range results {
			if r.Kind == "" && cellOf(r) == cell && want(r) && r.PPSMedian > 0 {
				return r, true
			}
		}
	}
	return Result{}, false
}

// Find returns the row of cell whose label starts with prefix and that
// delivered the most.
func Find(results []Result, cell Cell, prefix string) (best Result, ok bool) {
	for _, r := range results {
		if r.Kind != "" || cellOf(r) != cell || r.PPSMedian <= 0 {
			continue
		}
		if l := r.Label(); l == prefix || strings.HasPrefix(l, prefix+" ") {
			if !ok || r.PPSMedian > best.PPSMedian {
				best, ok = r, true
			}
		}
	}
	return best, ok
}

func mpps(v float64) string { return fmt.Sprintf("%.3f", v/1e6) }

// us formats microseconds with three significant digits or more.
func us(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// WriteMarkdown writes one table per cell: delivered Mpps (median, min,
// max), the generator's offered rate, the ratio to the cell's baseline,
// the CPUs' busy share, the latency percentiles when the cell has any,
// and the row's error.
func WriteMarkdown(w io.Writer, results []Result) error {
	var b strings.Builder
	for i, cell := range Cells(results) {
		if i > 0 {
			b.WriteString("\n")
		}
		sink := ""
		if cell.Sink != "" {
			sink = ", sink " + string(cell.Sink)
		}
		fmt.Fprintf(&b, "### %s%s, %d-byte frames, %d flows, %d queue(s)\n\n", cell.Layout, sink, cell.Frame, cell.Flows, cell.Queues)
		if allNoted(results, cell, QueuesNote) {
			fmt.Fprintf(&b, "%s.\n", strings.ToUpper(QueuesNote[:1])+QueuesNote[1:])
			continue
		}
		if cell.Queues > 1 && cell.Layout == Split {
			b.WriteString("Two queues: the generator sends from both CPUs at half the rate each (a veth delivers to the peer's queue of the sending CPU's number), so in0 queue i's receive softirq, the generator and xnf's worker i share CPU i: no forwarder has a core of its own. Compare these rows with each other, not with one queue.\n\n")
		}
		base, hasBase := Baseline(results, cell)
		ratioHead := "ratio"
		if hasBase {
			fmt.Fprintf(&b, "Ratios are to %s in this cell (same run).\n\n", base.Label())
			ratioHead = "x " + base.Contender
		} else {
			b.WriteString("No baseline (neither DPDK testpmd nor Linux forwarding delivered): no ratios.\n\n")
		}
		ncpu := 0
		for _, r := range results {
			if cellOf(r) == cell {
				ncpu = max(ncpu, len(r.CPU))
			}
		}
		lat, nic, sock := false, false, false
		for _, r := range results {
			if cellOf(r) == cell && r.Latency != nil {
				lat = true
			}
			if cellOf(r) == cell && r.In0 != nil {
				nic = true
			}
			if cellOf(r) == cell && r.Socket != nil {
				sock = true
			}
		}
		fmt.Fprintf(&b, "| contender | chain | mode | Mpps median | min | max | offered Mpps | %s |", ratioHead)
		for c := 0; c < ncpu; c++ {
			fmt.Fprintf(&b, " cpu%d %% |", c)
		}
		if nic {
			b.WriteString(" in0 xdp/redirect/drop Mpps |")
		}
		if sock {
			b.WriteString(" socket ring_full/fill_empty |")
		}
		if lat {
			b.WriteString(" p50 us | p99 us | p999 us |")
		}
		b.WriteString(" note |\n|---|---|---|--:|--:|--:|--:|--:|")
		for c := 0; c < ncpu; c++ {
			b.WriteString("--:|")
		}
		if nic {
			b.WriteString("--:|")
		}
		if sock {
			b.WriteString("--:|")
		}
		if lat {
			b.WriteString("--:|--:|--:|")
		}
		b.WriteString("---|\n")
		for _, r := range results {
			if cellOf(r) != cell {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s |", r.Contender, r.Chain, r.Mode)
			if len(r.Samples) == 0 {
				b.WriteString(" - | - | - | - | - |")
				for c := 0; c < ncpu; c++ {
					b.WriteString(" - |")
				}
			} else {
				ratio := "-"
				if hasBase {
					ratio = fmt.Sprintf("%.2f", r.PPSMedian/base.PPSMedian)
				}
				fmt.Fprintf(&b, " %s | %s | %s | %s | %s |", mpps(r.PPSMedian), mpps(r.PPSMin), mpps(r.PPSMax), mpps(r.OfferedPPS), ratio)
				for c := 0; c < ncpu; c++ {
					if v, ok := r.CPU[fmt.Sprintf("cpu%d", c)]; ok {
						fmt.Fprintf(&b, " %.0f |", v)
					} else {
						b.WriteString(" - |")
					}
				}
			}
			if nic {
				if x := r.In0; x != nil {
					fmt.Fprintf(&b, " %.2f/%.2f/%.2f |", x.XDPPackets/1e6, x.Redirected/1e6, x.Drops/1e6)
				} else {
					b.WriteString(" - |")
				}
			}
			if sock {
				if x := r.Socket; x != nil {
					fmt.Fprintf(&b, " %d/%d |", x.RXRingFull, x.FillRingEmpty)
				} else {
					b.WriteString(" - |")
				}
			}
			note := r.Error
			if lat {
				l := r.Latency
				if l == nil || l.Samples == 0 {
					b.WriteString(" - | - | - |")
				} else {
					fmt.Fprintf(&b, " %s | %s | %s |", us(l.P50us), us(l.P99us), us(l.P999us))
				}
				if l != nil && l.Error != "" && r.Error == "" {
					note = "latency: " + l.Error
				}
			}
			fmt.Fprintf(&b, " %s |\n", strings.ReplaceAll(note, "|", "/"))
		}
	}
	writeTCP(&b, results)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeTCP writes the TCP rows as one table: goodput per stream count
// with its ratio to Linux forwarding without rules, retransmits and the
// unloaded ping RTT.
func writeTCP(b *strings.Builder, results []Result) {
	var rows []Result
	for _, r := range results {
		if r.Kind == KindTCP {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	b.WriteString("### TCP through the DUT (iperf3, one-core, sink local)\n\n")
	b.WriteString("Real kernel TCP from the generator's namespace to a server in the sink's, offloads off on both peers; in0's NAPI and the DUT's worker on CPU 1, client and server on CPU 0. RTT is ping's, unloaded. Ratios are to linux with the same stream count (same run).\n\n")
	b.WriteString("| contender | chain | mode | streams | Gbit/s median | min | max | x linux | retransmits | lost at ring/socket | rtt p50 us | rtt p99 us | note |\n|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s | %s | %s | %d |", r.Contender, r.Chain, r.Mode, r.Streams)
		if len(r.GbpsSamples) == 0 {
			b.WriteString(" - | - | - | - | - | - |")
		} else {
			ratio := "-"
			if base, ok := tcpBaseline(rows, r.Streams); ok && base.GbpsMedian > 0 {
				ratio = fmt.Sprintf("%.2f", r.GbpsMedian/base.GbpsMedian)
			}
			fmt.Fprintf(b, " %.2f | %.2f | %.2f | %s | %.0f | %.0f/%.0f |", r.GbpsMedian, slices.Min(r.GbpsSamples), slices.Max(r.GbpsSamples), ratio, r.Retransmits, r.RingLost, r.SocketLost)
		}
		if r.RTTProbes == 0 {
			b.WriteString(" - | - |")
		} else {
			fmt.Fprintf(b, " %s | %s |", us(r.RTTp50us), us(r.RTTp99us))
		}
		fmt.Fprintf(b, " %s |\n", strings.ReplaceAll(r.Error, "|", "/"))
	}
}

// tcpBaseline is Linux forwarding without rules with the given streams.
func tcpBaseline(rows []Result, streams int) (Result, bool) {
	for _, r := range rows {
		if r.Kind == KindTCP && r.Contender == "linux" && r.Chain == "-" && r.Streams == streams && r.GbpsMedian > 0 {
			return r, true
		}
	}
	return Result{}, false
}

// findTCP is the TCP row of label prefix with the given streams.
func findTCP(results []Result, prefix string, streams int) (Result, bool) {
	for _, r := range results {
		if r.Kind != KindTCP || r.Streams != streams || len(r.GbpsSamples) == 0 {
			continue
		}
		if l := r.Label(); l == prefix || strings.HasPrefix(l, prefix+" ") {
			return r, true
		}
	}
	return Result{}, false
}

// allNoted says every row of cell carries note as its error.
func allNoted(results []Result, cell Cell, note string) bool {
	n := 0
	for _, r := range results {
		if cellOf(r) == cell {
			if r.Error != note {
				return false
			}
			n++
		}
	}
	return n > 0
}

// Goal is one of the project's targets, as a same-run ratio (or, for
// latency, a difference in microseconds).
type Goal struct {
	What   string
	Layout Layout
	// Sink is the sink placement the goal is judged in ("" for TCP).
	Sink Sink
	Want float64
	// AtMost says Want is a ceiling (latency over a peer's, in us), not a
	// ratio to reach.
	AtMost bool
	// Got is the measured ratio; OK is false when a side is missing.
	Got float64
	OK  bool
}

// Met says whether the measurement reaches the goal.
func (g Goal) Met() bool {
	if !g.OK {
		return false
	}
	if g.AtMost {
		return g.Got <= g.Want
	}
	return g.Got >= g.Want
}

// goalSpecs are the project's targets: issue 14's per layout and sink
// placement, and issue 8's that it did not restate.
var goalSpecs = []struct {
	what   string
	layout Layout
	sink   Sink
	chain  string // "example" or "empty"
	peer   string
	want   float64
}{
	{"chain vs Linux + nftables", OneCore, SinkLocal, "example", "linux " + LinuxNFT().Chain, 1.5},
	{"chain vs Linux + nftables", OneCore, SinkRemote, "example", "linux " + LinuxNFT().Chain, 4},
	{"empty chain vs Linux", OneCore, SinkLocal, "empty", "linux", 0.8},
	{"empty chain vs Linux", OneCore, SinkRemote, "empty", "linux", 2},
	{"chain vs asavie/xdp", OneCore, SinkLocal, "example", "asavie/xdp", 2},
	{"chain vs asavie/xdp", OneCore, SinkRemote, "example", "asavie/xdp", 2},
	{"chain vs DPDK testpmd io", Split, SinkLocal, "example", "dpdk-testpmd", 1.2},
	{"chain vs DPDK testpmd io", Split, SinkRemote, "example", "dpdk-testpmd", 1.2},
	{"chain vs DPDK testpmd io", OneCore, SinkLocal, "example", "dpdk-testpmd", 2.5},
	{"chain vs DPDK testpmd io", OneCore, SinkRemote, "example", "dpdk-testpmd", 2.5},
	{"chain vs asavie/xdp", Split, SinkLocal, "example", "asavie/xdp", 1.5},
	{"chain vs asavie/xdp", Split, SinkRemote, "example", "asavie/xdp", 1.5},
	{"chain vs XDP redirect", Split, SinkLocal, "example", "xdp-redirect", 0.5},
	{"chain vs XDP redirect", OneCore, SinkLocal, "example", "xdp-redirect", 0.5},
}

// Goals evaluates the project's targets on the first frame size and flow
// count of each layout and sink placement of results: the example chain
// (label chainLabel, xnf's best mode) and the empty chain against their
// peers, and with TCP rows, the example chain's one-stream goodput
// against Linux with nftables and its ping p50 against Linux forwarding.
func Goals(results []Result, chainLabel string) []Goal {
	var out []Goal
	cells := Cells(results)
	for _, spec := range goalSpecs {
		g := Goal{What: spec.what, Layout: spec.layout, Sink: spec.sink, Want: spec.want}
		label := "xnf " + chainLabel
		if spec.chain == "empty" {
			label = "xnf empty"
		}
		for _, c := range cells {
			if c.Layout != spec.layout || (c.Sink != spec.sink && !(c.Sink == "" && spec.sink == SinkLocal)) {
				continue
			}
			x, ok1 := Find(results, c, label)
			var p Result
			ok2 := false
			if spec.peer == "linux" {
				for _, r := range results {
					if r.Kind == "" && cellOf(r) == c && r.Contender == "linux" && r.Chain == "-" && r.PPSMedian > 0 {
						p, ok2 = r, true
					}
				}
			} else {
				p, ok2 = Find(results, c, spec.peer)
			}
			if ok1 && ok2 {
				g.Got, g.OK = x.PPSMedian/p.PPSMedian, true
			}
			break
		}
		out = append(out, g)
	}
	tcp := Goal{What: "TCP 1 stream: chain vs Linux + nftables", Layout: OneCore, Want: 1}
	if x, ok := findTCP(results, "xnf "+chainLabel, 1); ok {
		if p, ok := findTCP(results, "linux "+LinuxNFT().Chain, 1); ok && p.GbpsMedian > 0 {
			tcp.Got, tcp.OK = x.GbpsMedian/p.GbpsMedian, true
		}
	}
	ping := Goal{What: "ping p50 through the chain over Linux forwarding (us)", Layout: OneCore, Want: 10, AtMost: true}
	if x, ok := findTCP(results, "xnf "+chainLabel, 1); ok && x.RTTProbes > 0 {
		if p, ok := tcpBaseline(results, 1); ok && p.RTTProbes > 0 {
			ping.Got, ping.OK = round3(x.RTTp50us-p.RTTp50us), true
		}
	}
	hasTCP := false
	for _, r := range results {
		hasTCP = hasTCP || r.Kind == KindTCP
	}
	if hasTCP {
		out = append(out, tcp, ping)
	}
	return out
}

// WriteGoals writes the goals as a markdown table.
func WriteGoals(w io.Writer, goals []Goal) error {
	var b strings.Builder
	b.WriteString("| goal | layout | sink | target | measured | |\n|---|---|---|--:|--:|---|\n")
	for _, g := range goals {
		got, mark := "n/a", "not measured"
		target := fmt.Sprintf(">= %.2gx", g.Want)
		if g.AtMost {
			target = fmt.Sprintf("<= +%.0f us", g.Want)
		}
		if g.OK {
			got = fmt.Sprintf("%.2fx", g.Got)
			if g.AtMost {
				got = fmt.Sprintf("%+.1f us", g.Got)
			}
			mark = "missed"
			if g.Met() {
				mark = "met"
			}
		}
		sink := string(g.Sink)
		if sink == "" {
			sink = "-"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", g.What, g.Layout, sink, target, got, mark)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
