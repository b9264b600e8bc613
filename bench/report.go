package bench

import (
	"encoding/json"
	"fmt"
	"io"
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

// Cells lists the cells of results in their order.
func Cells(results []Result) []Cell {
	var out []Cell
	seen := map[Cell]bool{}
	for _, r := range results {
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
			if cellOf(r) == cell && want(r) && r.PPSMedian > 0 {
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
		if cellOf(r) != cell || r.PPSMedian <= 0 {
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
		lat, nic := false, false
		for _, r := range results {
			if cellOf(r) == cell && r.Latency != nil {
				lat = true
			}
			if cellOf(r) == cell && r.In0 != nil {
				nic = true
			}
		}
		fmt.Fprintf(&b, "| contender | chain | mode | Mpps median | min | max | offered Mpps | %s |", ratioHead)
		for c := 0; c < ncpu; c++ {
			fmt.Fprintf(&b, " cpu%d %% |", c)
		}
		if nic {
			b.WriteString(" in0 xdp/redirect/drop Mpps |")
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
	_, err := io.WriteString(w, b.String())
	return err
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

// Goal is one of the project's targets, as a same-run ratio.
type Goal struct {
	What   string
	Layout Layout
	Want   float64
	// Got is the measured ratio; OK is false when a side is missing.
	Got float64
	OK  bool
}

// Met says whether the measured ratio reaches the goal.
func (g Goal) Met() bool { return g.OK && g.Got >= g.Want }

// Goals evaluates the project's targets (issue 8) on the first frame size
// and flow count of results: the example chain (xnf's best mode) against
// DPDK testpmd io, the asavie/xdp forwarder, Linux with the equivalent
// nftables rules and in-kernel XDP redirect.
func Goals(results []Result, chainLabel string) []Goal {
	var out []Goal
	cells := Cells(results)
	for _, spec := range []struct {
		what   string
		layout Layout
		peer   string
		want   float64
	}{
		{"chain vs DPDK testpmd io", Split, "dpdk-testpmd", 1.1},
		{"chain vs DPDK testpmd io", OneCore, "dpdk-testpmd", 2.5},
		{"chain vs asavie/xdp", Split, "asavie/xdp", 1.5},
		{"chain vs asavie/xdp", OneCore, "asavie/xdp", 1.5},
		{"chain vs Linux + nftables", OneCore, "linux " + LinuxNFT().Chain, 3},
		{"chain vs XDP redirect", Split, "xdp-redirect", 0.5},
		{"chain vs XDP redirect", OneCore, "xdp-redirect", 0.5},
	} {
		g := Goal{What: spec.what, Layout: spec.layout, Want: spec.want}
		for _, c := range cells {
			if c.Layout != spec.layout {
				continue
			}
			x, ok1 := Find(results, c, "xnf "+chainLabel)
			p, ok2 := Find(results, c, spec.peer)
			if ok1 && ok2 {
				g.Got, g.OK = x.PPSMedian/p.PPSMedian, true
			}
			break
		}
		out = append(out, g)
	}
	return out
}

// WriteGoals writes the goals as a markdown table.
func WriteGoals(w io.Writer, goals []Goal) error {
	var b strings.Builder
	b.WriteString("| goal | layout | target | measured | |\n|---|---|--:|--:|---|\n")
	for _, g := range goals {
		got, mark := "n/a", "not measured"
		if g.OK {
			got = fmt.Sprintf("%.2fx", g.Got)
			mark = "missed"
			if g.Met() {
				mark = "met"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | >= %.2gx | %s | %s |\n", g.What, g.Layout, g.Want, got, mark)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
