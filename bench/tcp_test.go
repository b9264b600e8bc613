package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xnfdev/xnf/internal/lab"
)

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Recorded outputs of Debian's iperf3 3.12 and iputils ping, in a pair of
// lab namespaces.
func TestParseIperf3Recorded(t *testing.T) {
	r, err := ParseIperf3(readTestdata(t, "iperf3-client-P2.json"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Gbps != 13.135 || r.Retransmits != 7796 {
		t.Errorf("parsed %+v, want 13.135 Gbit/s and 7796 retransmits (end.sum_received, end.sum_sent)", r)
	}
	if _, err := ParseIperf3(readTestdata(t, "iperf3-refused.json")); err == nil || !strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("a refused run: %v, want iperf3's own error", err)
	}
	if _, err := ParseIperf3("iperf3: error - unable to connect"); err == nil || !strings.Contains(err.Error(), "not its JSON report") {
		t.Errorf("plain text: %v", err)
	}
	if _, err := ParseIperf3(`{"end": {}}`); err == nil {
		t.Error("a report without sums was accepted")
	}
}

func TestParsePingRecorded(t *testing.T) {
	rtt, err := ParsePing(readTestdata(t, "ping-5.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{46 * time.Microsecond, 24 * time.Microsecond, 11 * time.Microsecond, 10 * time.Microsecond, 8 * time.Microsecond}
	if fmt.Sprint(rtt) != fmt.Sprint(want) {
		t.Errorf("rtt %v, want %v", rtt, want)
	}
	if p := percentile(rtt, 0.5); p != 11*time.Microsecond {
		t.Errorf("p50 %v, want 11us", p)
	}
	if p := percentile(rtt, 0.99); p != 46*time.Microsecond {
		t.Errorf("p99 %v, want 46us", p)
	}
	if _, err := ParsePing(readTestdata(t, "ping-unreachable.txt")); err == nil {
		t.Error("no reply parsed as RTTs")
	}
}

// TCP rows reach the JSON with the fields the issue names, get a table of
// their own, and feed the TCP goals.
func TestTCPRowsReport(t *testing.T) {
	row := func(name, chain, mode string, streams int, gbps, p50 float64) Result {
		return Result{Kind: KindTCP, Contender: name, Chain: chain, Mode: mode, Layout: "one-core", Sink: "local", Queues: 1,
			Streams: streams, GbpsMedian: gbps, GbpsSamples: []float64{gbps}, RTTp50us: p50, RTTp99us: 2 * p50, RTTProbes: 200}
	}
	rs := append(synthetic(),
		row("linux", "-", "-", 1, 3.5, 31), row("linux", "nft-fw21-ct-masq", "-", 1, 2.8, 33),
		row("xnf", "router", "native", 1, 3.1, 45), row("xnf", "router", "native", 4, 2.0, 45))
	var b bytes.Buffer
	if err := WriteJSON(&b, rs); err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(b.Bytes(), &rows); err != nil {
		t.Fatal(err)
	}
	last := rows[len(rows)-1]
	for _, k := range []string{"contender", "chain", "streams", "gbps_median", "rtt_p50_us", "rtt_p99_us", "kind", "layout", "sink"} {
		if _, ok := last[k]; !ok {
			t.Errorf("TCP row lacks %q: %v", k, last)
		}
	}
	if _, ok := rows[0]["streams"]; ok {
		t.Errorf("a packet row carries TCP fields: %v", rows[0])
	}
	b.Reset()
	WriteMarkdown(&b, rs)
	md := b.String()
	for _, want := range []string{
		"### TCP through the DUT (iperf3, one-core, sink local)",
		"| xnf | router | native | 1 | 3.10 | 3.10 | 3.10 | 0.89 |",
		"| xnf | router | native | 4 | 2.00 | 2.00 | 2.00 | - |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if got := len(Cells(rs)); got != len(Cells(synthetic())) {
		t.Errorf("TCP rows made packet cells: %d", got)
	}
	g := Goals(rs, "router")
	var tcp, ping Goal
	for _, x := range g {
		switch {
		case strings.HasPrefix(x.What, "TCP 1 stream"):
			tcp = x
		case strings.HasPrefix(x.What, "ping p50"):
			ping = x
		}
	}
	if !tcp.OK || tcp.Got < 1.107 || tcp.Got > 1.108 || !tcp.Met() {
		t.Errorf("TCP goal %+v, want 3.1/2.8 met", tcp)
	}
	if !ping.OK || ping.Got != 14 || ping.Met() {
		t.Errorf("ping goal %+v, want +14 us, missed", ping)
	}
}

// TestTCPRealRun is one bounded real run: 1 s of one stream through
// Linux forwarding and xnf's empty chain, and a few pings, from kernel
// peers in the lab.
func TestTCPRealRun(t *testing.T) {
	lab.RequireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("skipped: needs 2 CPUs")
	}
	for _, bin := range []string{"iperf3", "ping"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("skipped: %s not installed (.ci/run installs it)", bin)
		}
	}
	o := Options{
		Contenders: []Contender{Linux()},
		Sizes:      []int{64}, Flows: []uint32{256}, Layouts: []Layout{OneCore}, Sinks: []Sink{SinkLocal},
		Reps: 1, Warmup: 200 * time.Millisecond, Window: 300 * time.Millisecond,
		TCP:    &TCP{Contenders: []Contender{Linux(), XNF("native", EmptyChain)}, Streams: []int{1}, Duration: time.Second, Reps: 1, Pings: 20, PingInterval: 5 * time.Millisecond},
		Prefix: fmt.Sprintf("xt-tcp%d", os.Getpid()),
	}
	var progress bytes.Buffer
	o.Progress = &progress
	asXNF(&o)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	results, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	n := 0
	for _, r := range results {
		if r.Kind != KindTCP {
			continue
		}
		n++
		if r.Error != "" || r.GbpsMedian <= 0 || r.RTTProbes < 15 || r.RTTp50us <= 0 || r.RTTp99us < r.RTTp50us {
			t.Errorf("%s: %+v", r.Label(), r)
		}
	}
	if n != 2 {
		t.Errorf("%d TCP rows, want 2:\n%s", n, progress.String())
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

// The kernel-counters table `xnf run` prints on exit (a recorded one, its
// in0 socket figures edited to be distinct) gives in0's socket drops.
func TestParseSocketDrops(t *testing.T) {
	out := readTestdata(t, "xnf-run-counters.txt")
	got := parseSocketDrops(out, "in0")
	if got == nil || *got != (SocketDrops{RXDropped: 4113, RXRingFull: 2961402, FillRingEmpty: 902}) {
		t.Errorf("in0: %+v", got)
	}
	if o := parseSocketDrops(out, "out0"); o == nil || *o != (SocketDrops{}) {
		t.Errorf("out0: %+v", o)
	}
	if parseSocketDrops("in0: XDP attached to in0 in native mode\n", "in0") != nil {
		t.Error("found a table where there is none")
	}
}
