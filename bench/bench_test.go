package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/rig/rigbpf"
)

// synthetic is a run of two cells (split and one-core, 64 bytes) with
// DPDK in the split cell only, so the one-core cell falls back to Linux.
func synthetic() []Result {
	row := func(layout, name, mode, chain string, pps float64, errText string) Result {
		r := Result{Contender: name, Mode: mode, Chain: chain, Layout: layout, Frame: 64, Flows: 256, Queues: 1,
			PPSMedian: pps, PPSMin: pps * 0.9, PPSMax: pps * 1.1, OfferedPPS: 1.5e6, MbpsMedian: pps * 64 * 8 / 1e6,
			CPU: map[string]float64{"cpu0": 99, "cpu1": 80}, Error: errText}
		if pps > 0 {
			r.Samples = []float64{pps * 0.9, pps, pps * 1.1}
		} else {
			r.CPU = map[string]float64{}
		}
		return r
	}
	return []Result{
		row("split", "xnf", "native", "empty", 1.2e6, ""),
		row("split", "xnf", "native", "router", 1.0e6, ""),
		row("split", "xnf", "offload", "-", 0, "not supported by veth: invalid argument"),
		row("split", "xdp-redirect", "native", "-", 1.5e6, ""),
		row("split", "linux", "-", "-", 0.9e6, ""),
		row("split", "linux", "-", "nft-fw21-ct-masq", 0.3e6, ""),
		row("split", "dpdk-testpmd", "native", "io", 0.8e6, ""),
		row("split", "asavie/xdp", "native", "l2fwd", 0.5e6, ""),
		row("one-core", "xnf", "native", "empty", 0.6e6, ""),
		row("one-core", "xnf", "native", "router", 0.5e6, ""),
		row("one-core", "xdp-redirect", "native", "-", 2.0e6, ""),
		row("one-core", "linux", "-", "-", 0.4e6, ""),
		row("one-core", "linux", "-", "nft-fw21-ct-masq", 0.2e6, ""),
		row("one-core", "dpdk-testpmd", "-", "io", 0, "skipped: dpdk-testpmd not found"),
	}
}

func TestJSONHasTheIssueSchema(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, synthetic()); err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(b.Bytes(), &rows); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(rows) != len(synthetic()) {
		t.Fatalf("%d rows, want %d", len(rows), len(synthetic()))
	}
	for _, k := range []string{"contender", "mode", "chain", "frame", "flows", "queues", "pps_median", "pps_min", "pps_max", "offered_pps", "cpu", "error"} {
		if _, ok := rows[0][k]; !ok {
			t.Errorf("field %q missing: %v", k, rows[0])
		}
	}
	if rows[0]["contender"] != "xnf" || rows[0]["pps_median"] != 1.2e6 || rows[0]["frame"] != 64.0 {
		t.Errorf("first row %v", rows[0])
	}
	if _, ok := rows[0]["cpu"].(map[string]any)["cpu1"]; !ok {
		t.Errorf("cpu %v", rows[0]["cpu"])
	}
	if rows[2]["error"] != "not supported by veth: invalid argument" {
		t.Errorf("offload row error %q", rows[2]["error"])
	}
	// Round trip.
	var back []Result
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back[6].Label() != "dpdk-testpmd io native" {
		t.Errorf("round trip: %v %+v", err, back)
	}
	b.Reset()
	WriteJSON(&b, nil)
	if strings.TrimSpace(b.String()) != "[]" {
		t.Errorf("no results: %q", b.String())
	}
}

func TestMarkdownRatiosToDPDKOrLinux(t *testing.T) {
	var b bytes.Buffer
	if err := WriteMarkdown(&b, synthetic()); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"### split, 64-byte frames, 256 flows, 1 queue(s)",
		"Ratios are to dpdk-testpmd io native in this cell",
		"| xnf | empty | native | 1.200 | 1.080 | 1.320 | 1.500 | 1.50 | 99 | 80 |  |",
		"| dpdk-testpmd | io | native | 0.800 | 0.720 | 0.880 | 1.500 | 1.00 |",
		"| xnf | - | offload | - | - | - | - | - | - | - | not supported by veth: invalid argument |",
		"### one-core, 64-byte frames, 256 flows, 1 queue(s)",
		"Ratios are to linux in this cell",
		"| xnf | router | native | 0.500 | 0.450 | 0.550 | 1.500 | 1.25 |",
		"skipped: dpdk-testpmd not found",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if n := strings.Count(md, "\n| "); n != 2+len(synthetic()) { // a header per table, a line per row
		t.Errorf("%d table lines:\n%s", n, md)
	}
}

func TestGoals(t *testing.T) {
	g := Goals(synthetic(), "router")
	byKey := map[string]Goal{}
	for _, x := range g {
		byKey[x.What+"/"+string(x.Layout)+"/"+string(x.Sink)] = x
	}
	// The synthetic rows predate the sink dimension: they count as local.
	if x := byKey["chain vs DPDK testpmd io/split/local"]; !x.OK || x.Got != 1.25 || !x.Met() {
		t.Errorf("DPDK split %+v", x)
	}
	if x := byKey["chain vs DPDK testpmd io/split/remote"]; x.OK {
		t.Errorf("DPDK split measured with the sink remote, which no row has: %+v", x)
	}
	if x := byKey["chain vs DPDK testpmd io/one-core/local"]; x.OK {
		t.Errorf("DPDK one-core measured without DPDK: %+v", x)
	}
	if x := byKey["chain vs Linux + nftables/one-core/local"]; !x.OK || x.Got != 2.5 || !x.Met() {
		t.Errorf("nft one-core %+v", x)
	}
	if x := byKey["empty chain vs Linux/one-core/local"]; !x.OK || x.Got != 1.5 || !x.Met() {
		t.Errorf("empty chain one-core %+v", x)
	}
	if x := byKey["chain vs XDP redirect/one-core/local"]; !x.OK || x.Got != 0.25 || x.Met() {
		t.Errorf("XDP redirect one-core %+v", x)
	}
	var b bytes.Buffer
	WriteGoals(&b, g)
	for _, want := range []string{
		"| chain vs DPDK testpmd io | split | local | >= 1.2x | 1.25x | met |",
		"| chain vs DPDK testpmd io | one-core | local | >= 2.5x | n/a | not measured |",
		"| chain vs Linux + nftables | one-core | remote | >= 4x | n/a | not measured |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("goals table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestPlotsWritten(t *testing.T) {
	dir := t.TempDir()
	files, err := Plot(dir, synthetic())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pps-split-256flows.png", "pps-split-256flows.svg", "ratio-split-256flows.png", "ratio-split-256flows.svg",
		"pps-one-core-256flows.png", "pps-one-core-256flows.svg", "ratio-one-core-256flows.png", "ratio-one-core-256flows.svg"}
	if len(files) != len(want) {
		t.Errorf("files %v", files)
	}
	for _, w := range want {
		data, err := os.ReadFile(filepath.Join(dir, w))
		if err != nil {
			t.Error(err)
			continue
		}
		switch {
		case len(data) < 1000:
			t.Errorf("%s: only %d bytes", w, len(data))
		case strings.HasSuffix(w, ".png") && !bytes.HasPrefix(data, []byte("\x89PNG")):
			t.Errorf("%s is not a PNG", w)
		case strings.HasSuffix(w, ".svg") && !bytes.Contains(data, []byte("<svg")):
			t.Errorf("%s is not an SVG", w)
		}
	}
	// Ratio titles say which baseline.
	svg, _ := os.ReadFile(filepath.Join(dir, "ratio-one-core-256flows.svg"))
	if !bytes.Contains(svg, []byte("ratio to linux")) {
		t.Errorf("one-core ratio plot does not name Linux as its baseline")
	}
	// A sweep of several sizes plots too.
	var sweep []Result
	for _, size := range []int{64, 512, 1500} {
		for _, r := range synthetic() {
			r.Frame = size
			sweep = append(sweep, r)
		}
	}
	if _, err := Plot(t.TempDir(), sweep); err != nil {
		t.Fatal(err)
	}
}

func TestRowStatistics(t *testing.T) {
	r := &row{c: Contender{Name: "x", Mode: "", Chain: "c"}, samples: []sample{
		{pps: 3e5, offered: 1e6, cpu: []float64{100, 50}, mode: "generic"},
		{pps: 1e5, offered: 2e6, cpu: []float64{90, 40}},
		{pps: 2e5, offered: 3e6, cpu: []float64{80, 60}},
	}, errs: []string{"boom"}}
	res := r.result(Cell{Layout: OneCore, Frame: 128, Flows: 1, Queues: 1})
	if res.PPSMedian != 2e5 || res.PPSMin != 1e5 || res.PPSMax != 3e5 || res.OfferedPPS != 2e6 {
		t.Errorf("stats %+v", res)
	}
	if res.Mode != "generic" || res.CPU["cpu0"] != 90 || res.CPU["cpu1"] != 50 || res.MbpsMedian != 2e5*128*8/1e6 {
		t.Errorf("mode/cpu/mbps %+v", res)
	}
	if res.Error != "boom" || len(res.Samples) != 3 {
		t.Errorf("error/samples %+v", res)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median %v", m)
	}
}

func TestOptionsAndNames(t *testing.T) {
	if l, err := ParseLayouts("split, one-core"); err != nil || len(l) != 2 || l[1] != OneCore {
		t.Errorf("%v %v", l, err)
	}
	if _, err := ParseLayouts("both"); err == nil {
		t.Error("unknown layout accepted")
	}
	cs, err := ByName(All(), []string{"xnf empty", "linux", "dpdk-testpmd"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.Label())
	}
	if strings.Join(got, ",") != "xnf empty native,xnf empty generic,linux,linux nft-fw21-ct-masq,dpdk-testpmd io" {
		t.Errorf("picked %v", got)
	}
	if _, err := ByName(All(), []string{"vpp"}); err == nil || !strings.Contains(err.Error(), "expected one of") {
		t.Errorf("unknown contender: %v", err)
	}
	seen := map[string]bool{}
	for _, c := range All() {
		if seen[c.Label()] {
			t.Errorf("duplicate label %q", c.Label())
		}
		seen[c.Label()] = true
	}
	if ExampleChain.Label() != "router" && !strings.HasSuffix(ExampleChain.Label(), "router") {
		t.Errorf("example chain %q", ExampleChain.Label())
	}
	o := Quick()
	if o.Estimate() > 7*time.Minute {
		t.Errorf("quick preset estimated at %v", o.Estimate())
	}
	o.Sizes = []int{40}
	if err := o.check(); err == nil {
		t.Error("40-byte frames accepted")
	}
	g := generatorConfig(Contender{Frames: L2}, Cell{Frame: 64, Flows: 65535})
	if g.FrameSize != 60 || g.SrcPort != 1 || g.Flows != 65535 || g.DstMAC.String() != lab.SinkMAC {
		t.Errorf("generator config %+v", g)
	}
	if _, err := g.Frame(); err != nil {
		t.Error(err)
	}
}

func TestCPUReadings(t *testing.T) {
	a, err := readCPU()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) < runtime.NumCPU() {
		t.Fatalf("%d CPUs in /proc/stat, %d online", len(a), runtime.NumCPU())
	}
	end := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(end) {
	}
	b, _ := readCPU()
	for i, v := range busy(a, b) {
		if v < 0 || v > 100 {
			t.Errorf("cpu%d busy %v%%", i, v)
		}
	}
}

// asXNF makes the contenders' processes run this test binary as xnf
// (TestMain in main_test.go).
func asXNF(o *Options) {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	o.Binary, o.BinaryEnv = exe, []string{"XNF_BENCH_EXEC=1"}
}

// TestSmoke is `xnf bench --smoke`: every smoke contender delivers in
// both layouts and both sink placements, and nothing of the lab is left
// afterwards.
func TestSmoke(t *testing.T) {
	lab.RequireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("skipped: needs 2 CPUs")
	}
	o := Smoke()
	o.Prefix = fmt.Sprintf("xt-bench%d", os.Getpid()) // ours alone, whatever others left
	var progress bytes.Buffer
	o.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	asXNF(&o)
	results, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if want := len(o.Contenders) * len(o.Layouts) * len(o.Sinks); len(o.Sinks) != 2 || len(results) != want {
		t.Fatalf("%d rows over %d sink placements, want %d over both", len(results), len(o.Sinks), want)
	}
	sinks := map[string]int{}
	for _, r := range results {
		sinks[r.Sink]++
	}
	if sinks["local"] != len(results)/2 || sinks["remote"] != len(results)/2 {
		t.Errorf("rows per sink placement: %v", sinks)
	}
	for _, r := range results {
		if r.PPSMedian <= 0 || r.Error != "" {
			t.Errorf("%s %s: %.0f pps, error %q", r.Layout, r.Label(), r.PPSMedian, r.Error)
		}
		if r.OfferedPPS <= 0 || len(r.CPU) < 2 {
			t.Errorf("%s %s: offered %.0f, cpu %v", r.Layout, r.Label(), r.OfferedPPS, r.CPU)
		}
	}
	if left := lab.Leftovers(o.Prefix); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
	if t.Failed() {
		var b bytes.Buffer
		WriteMarkdown(&b, results)
		t.Logf("progress:\n%s\n%s", progress.String(), b.String())
	}
}

// TestLatencyTrivialPath measures latency through in-kernel XDP redirect
// (the shortest path of the rig): percentiles must be non-zero, ordered
// and plausible (microseconds, not seconds), from about rate x window
// probes.
func TestLatencyTrivialPath(t *testing.T) {
	lab.RequireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("skipped: needs 2 CPUs")
	}
	o := Options{
		Contenders: []Contender{XDPRedirect()},
		Sizes:      []int{64}, Flows: []uint32{256}, Layouts: []Layout{Split}, Sinks: []Sink{SinkLocal},
		Reps: 1, Warmup: 200 * time.Millisecond, Window: 500 * time.Millisecond,
		SplitRate: 1e6, Latency: true, LatencyRate: 20e3,
		Prefix: fmt.Sprintf("xt-lat%d", os.Getpid()),
	}
	var progress bytes.Buffer
	o.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	asXNF(&o)
	results, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	t.Logf("took %v\n%s", time.Since(start), progress.String())
	if len(results) != 1 || results[0].Latency == nil {
		t.Fatalf("results %+v", results)
	}
	l := results[0].Latency
	t.Logf("latency %+v", *l)
	if l.Error != "" || l.Samples < 2000 || l.Samples > 20000 {
		t.Errorf("%d probes (error %q), want about %v", l.Samples, l.Error, o.LatencyRate*o.Window.Seconds())
	}
	if !(l.P50us > 0 && l.P50us <= l.P99us && l.P99us <= l.P999us) {
		t.Errorf("percentiles not positive and ordered: %+v", *l)
	}
	if l.P50us > 1000 || l.P999us > 100000 {
		t.Errorf("implausible latency for XDP redirect at 20 kpps: %+v", *l)
	}
	if l.OfferedPPS < 10e3 || l.OfferedPPS > 21e3 {
		t.Errorf("probes offered at %.0f pps, paced to 20k", l.OfferedPPS)
	}
	var b bytes.Buffer
	WriteMarkdown(&b, results)
	if !strings.Contains(b.String(), "| p50 us | p99 us | p999 us |") {
		t.Errorf("markdown has no latency columns:\n%s", b.String())
	}
	if left := lab.Leftovers(o.Prefix); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
}

// TestLatencyReport: a window's histogram becomes the latency section of
// the JSON and three columns of the markdown.
func TestLatencyReport(t *testing.T) {
	var h rigbpf.LatencyHistogram
	h.Add(3000, 980) // 3 us
	h.Add(40000, 19) // 40 us
	h.Add(900000, 1) // 0.9 ms
	l, err := latencyOf(h, 20e3)
	if err != nil {
		t.Fatal(err)
	}
	within := func(got, want float64) bool { return got >= want*15/16 && got <= want*17/16 }
	if !within(l.P50us, 3) || !within(l.P99us, 40) || !within(l.P999us, 40) || l.Samples != 1000 || l.OfferedPPS != 20e3 {
		t.Errorf("latency %+v", *l)
	}
	if empty, _ := latencyOf(rigbpf.LatencyHistogram{}, 20e3); empty.Error == "" || empty.P50us != 0 {
		t.Errorf("no samples: %+v", *empty)
	}
	rs := synthetic()[:2]
	rs[0].Latency = l
	rs[1].Latency = &Latency{Error: "boom"}
	var b bytes.Buffer
	WriteJSON(&b, rs)
	var rows []map[string]any
	if err := json.Unmarshal(b.Bytes(), &rows); err != nil {
		t.Fatal(err)
	}
	lat, _ := rows[0]["latency"].(map[string]any)
	for _, k := range []string{"p50_us", "p99_us", "p999_us", "samples"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency lacks %q: %v", k, rows[0]["latency"])
		}
	}
	b.Reset()
	WriteMarkdown(&b, rs)
	md := b.String()
	for _, want := range []string{
		"| cpu1 % | p50 us | p99 us | p999 us | note |",
		fmt.Sprintf("| 99 | 80 | %s | %s | %s |  |", us(l.P50us), us(l.P99us), us(l.P999us)),
		"| 99 | 80 | - | - | - | latency: boom |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestChainSweep(t *testing.T) {
	want := []string{"empty", "router", "nat>router", "firewall>nat>router"}
	var chains []Chain
	for n, w := range want {
		c, err := ChainStages(n)
		if err != nil {
			t.Fatal(err)
		}
		if c.Label() != w {
			t.Errorf("%d stages: %q, want %q\n%s", n, c.Label(), w, c.YAML)
		}
		if (n == 0) != (c.Frames == L2) {
			t.Errorf("%d stages: frames %v", n, c.Frames)
		}
		chains = append(chains, c)
	}
	if c, _ := ChainStages(3); c.YAML != ExampleChainYAML {
		t.Errorf("three stages differ from the example chain:\n%s", c.YAML)
	}
	if _, err := ChainStages(4); err == nil {
		t.Error("4 stages accepted")
	}
	var got []string
	for _, c := range WithChains(Smoke().Contenders, chains[1:3]) {
		got = append(got, c.Label())
	}
	if strings.Join(got, ",") != "xnf router native,xnf router generic,xnf nat>router native,xnf nat>router generic,xdp-redirect native,linux" {
		t.Errorf("smoke with chains 1, 2: %v", got)
	}
	seen := map[string]bool{}
	for _, c := range Full().Contenders {
		if seen[c.Label()] {
			t.Errorf("full: %q twice", c.Label())
		}
		seen[c.Label()] = true
	}
	if !seen["xnf nat>router generic"] || !seen["dpdk-testpmd io"] || len(seen) != len(All())+4 {
		t.Errorf("full contenders %v", seen)
	}
	cfg := XNFConfigQueues("native", []int{0, 1}, "chain: []\n")
	if !strings.Contains(cfg, "queues: [0, 1]") || !strings.Contains(cfg, "cpus: [0, 1]") {
		t.Errorf("two-queue config:\n%s", cfg)
	}
}

// TestTwoQueues: in a two-queue lab (split only), XDP redirect and xnf
// with two workers deliver, the one-core cell and the single-queue
// contenders say why they are not measured.
func TestTwoQueues(t *testing.T) {
	lab.RequireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("skipped: needs 2 CPUs")
	}
	o := Options{
		Contenders: []Contender{XNF("native", EmptyChain), XDPRedirect(), Asavie()},
		Sizes:      []int{64}, Flows: []uint32{256}, Layouts: []Layout{Split, OneCore}, Sinks: []Sink{SinkLocal}, Queues: []int{2},
		Reps: 1, Warmup: 300 * time.Millisecond, Window: 500 * time.Millisecond, SplitRate: 1e6,
		Prefix: fmt.Sprintf("xt-q2%d", os.Getpid()),
	}
	var progress bytes.Buffer
	o.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	asXNF(&o)
	results, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	var b bytes.Buffer
	WriteMarkdown(&b, results)
	t.Logf("%s\n%s", progress.String(), b.String())
	if len(results) != 6 {
		t.Fatalf("%d rows", len(results))
	}
	if !strings.Contains(b.String(), "### one-core, sink local, 64-byte frames, 256 flows, 2 queue(s)\n\nNot measured: 2 queues only in the split layout") {
		t.Errorf("the one-core cell is not a single note")
	}
	files, err := Plot(t.TempDir(), results)
	if err != nil || len(files) != 4 || !strings.HasSuffix(files[0], "pps-split-sink-local-256flows-2q.png") {
		t.Errorf("plots %v %v", files, err)
	}
	for _, r := range results {
		switch {
		case r.Queues != 2:
			t.Errorf("%s: %d queues", r.Label(), r.Queues)
		case r.Layout == string(OneCore):
			if r.Error != QueuesNote || len(r.Samples) != 0 {
				t.Errorf("one-core %s: %q", r.Label(), r.Error)
			}
		case r.Contender == "asavie/xdp":
			if !strings.Contains(r.Error, "one queue only") {
				t.Errorf("asavie: %q", r.Error)
			}
		default:
			if r.PPSMedian <= 0 || r.Error != "" {
				t.Errorf("%s: %.0f pps, %q", r.Label(), r.PPSMedian, r.Error)
			}
		}
	}
}
