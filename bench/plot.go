package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Plot writes, for every layout and flow count of results, two figures as
// PNG and SVG into dir: delivered Mpps by frame size per contender
// (pps-<layout>-sink-<sink>-<flows>flows), and each contender's ratio to
// the cell's baseline (DPDK testpmd, or Linux forwarding when DPDK is
// absent; the title says which) per frame size (ratio-...). Two
// queues get their own figures (suffix -2q); cells with no measurement
// get none. It returns the files written.
func Plot(dir string, results []Result) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	type group struct {
		layout Layout
		sink   Sink
		flows  uint32
		queues int
	}
	var groups []group
	for _, c := range Cells(results) {
		g := group{c.Layout, c.Sink, c.Flows, c.Queues}
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	var files []string
	for _, g := range groups {
		var rs []Result
		measured := false
		for _, r := range results {
			if Layout(r.Layout) == g.layout && Sink(r.Sink) == g.sink && r.Flows == g.flows && r.Queues == g.queues {
				rs = append(rs, r)
				measured = measured || len(r.Samples) > 0
			}
		}
		if !measured {
			continue // a cell of notes only (two queues in one-core)
		}
		// One queue keeps the names of the single-queue harness.
		base, what := string(g.layout), string(g.layout)+" layout"
		if g.sink != "" {
			base += "-sink-" + string(g.sink)
			what += ", sink " + string(g.sink)
		}
		base += fmt.Sprintf("-%dflows", g.flows)
		what += fmt.Sprintf(", %d flows", g.flows)
		if g.queues > 1 {
			base += fmt.Sprintf("-%dq", g.queues)
			what += fmt.Sprintf(", %d queues", g.queues)
		}
		p, err := ppsPlot(rs, "delivered Mpps, "+what)
		if err != nil {
			return files, err
		}
		fs, err := save(p, dir, "pps-"+base, 16*vg.Centimeter, 11*vg.Centimeter)
		files = append(files, fs...)
		if err != nil {
			return files, err
		}
		p, err = ratioPlot(rs, what)
		if err != nil {
			return files, err
		}
		fs, err = save(p, dir, "ratio-"+base, 16*vg.Centimeter, 12*vg.Centimeter)
		files = append(files, fs...)
		if err != nil {
			return files, err
		}
	}
	return files, nil
}

func save(p *plot.Plot, dir, name string, w, h vg.Length) ([]string, error) {
	var files []string
	for _, ext := range []string{".png", ".svg"} {
		f := filepath.Join(dir, name+ext)
		if err := p.Save(w, h, f); err != nil {
			return files, fmt.Errorf("bench: saving %s: %w", f, err)
		}
		files = append(files, f)
	}
	return files, nil
}

// labels lists the contender labels of rs with at least one figure, in order.
func labels(rs []Result) []string {
	var out []string
	for _, r := range rs {
		if r.PPSMedian > 0 && !slices.Contains(out, r.Label()) {
			out = append(out, r.Label())
		}
	}
	return out
}

func sizes(rs []Result) []int {
	var out []int
	for _, r := range rs {
		if !slices.Contains(out, r.Frame) {
			out = append(out, r.Frame)
		}
	}
	slices.Sort(out)
	return out
}

func ppsPlot(rs []Result, title string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "frame size (bytes, FCS included)"
	p.Y.Label.Text = "Mpps (median)"
	p.Y.Min = 0
	p.Legend.Top = true
	ss := sizes(rs)
	var args []any
	for _, l := range labels(rs) {
		var xys plotter.XYs
		for _, s := range ss {
			for _, r := range rs {
				if r.Label() == l && r.Frame == s && r.PPSMedian > 0 {
					xys = append(xys, plotter.XY{X: float64(s), Y: r.PPSMedian / 1e6})
				}
			}
		}
		if len(xys) > 0 {
			args = append(args, l, xys)
		}
	}
	if len(args) > 0 {
		if err := plotutil.AddLinePoints(p, args...); err != nil {
			return nil, err
		}
	}
	if len(ss) > 0 && ss[0] == ss[len(ss)-1] {
		p.X.Min, p.X.Max = float64(ss[0])-32, float64(ss[0])+32
	}
	if p.Y.Max <= 0 {
		p.Y.Max = 1
	}
	p.Y.Max *= 1.25 // room for the legend
	return p, nil
}

func ratioPlot(rs []Result, title string) (*plot.Plot, error) {
	p := plot.New()
	ls := labels(rs)
	ss := sizes(rs)
	baseName := ""
	maxRatio := 1.0
	const barW = 8
	for i, s := range ss {
		cell := Cell{}
		for _, r := range rs {
			if r.Frame == s {
				cell = cellOf(r)
				break
			}
		}
		base, ok := Baseline(rs, cell)
		if !ok {
			continue
		}
		if baseName == "" {
			baseName = base.Label()
		} else if baseName != base.Label() {
			baseName = "DPDK testpmd, or Linux forwarding where DPDK is missing"
		}
		// The first contender at the top: NominalY counts from the bottom.
		vals := make(plotter.Values, len(ls))
		for k, l := range ls {
			for _, r := range rs {
				if r.Label() == l && r.Frame == s {
					vals[len(ls)-1-k] = r.PPSMedian / base.PPSMedian
					maxRatio = max(maxRatio, vals[len(ls)-1-k])
				}
			}
		}
		bars, err := plotter.NewBarChart(vals, vg.Points(barW))
		if err != nil {
			return nil, err
		}
		bars.Horizontal = true
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = vg.Points(barW * (float64(i) - float64(len(ss)-1)/2))
		p.Add(bars)
		p.Legend.Add(fmt.Sprintf("%d B", s), bars)
	}
	if baseName == "" {
		baseName = "no baseline measured"
	}
	p.Title.Text = fmt.Sprintf("ratio to %s\n%s", baseName, title)
	p.X.Label.Text = "delivered pps / baseline pps (same run)"
	p.X.Min = 0
	p.X.Max = maxRatio * 1.2 // room for the legend
	if len(ls) > 0 {
		rev := slices.Clone(ls)
		slices.Reverse(rev)
		p.NominalY(rev...)
	}
	p.Y.Tick.Label.XAlign = draw.XRight
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p, nil
}
