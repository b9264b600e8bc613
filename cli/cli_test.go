package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xnfdev/xnf/internal/lab"
)

func TestDemoRunsToCompletionAndCleansUp(t *testing.T) {
	lab.RequireRoot(t)
	if lab.Exists(demoNames[0]) {
		t.Skipf("skipped: a demo lab is up on this machine (%s); 'xnf lab down' first", demoNames[0])
	}
	var out bytes.Buffer
	err := Demo(&out, "auto", 20000)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"summary: 7 of 7 checks passed", "lab removed", "router", "rule_2_hits=1", "rule_5_hits=1", "reject_sent=1", "clean stop"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	for _, n := range demoNames {
		if lab.Exists(n) {
			t.Errorf("namespace %s left behind", n)
		}
	}
}

func TestRunCheckValidatesTheDemoChain(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "chain.yaml")
	os.WriteFile(p, demoChain, 0o644)
	var out bytes.Buffer
	cmd := Root()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"run", "--check", "-c", p})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ok (2 ports, 1 workers, 3 stages)") {
		t.Errorf("output %q", out.String())
	}
	os.WriteFile(p, bytes.Replace(demoChain, []byte("interface: in0"), []byte("interfaze: in0"), 1), 0o644)
	cmd = Root()
	cmd.SetArgs([]string{"run", "--check", "-c", p})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), p+":8: ports[0].interfaze: unknown field") {
		t.Errorf("broken file: %v", err)
	}
}

// --check prints the firewall's offload plan: each rule, and why it is or
// is not dropped in XDP.
func TestRunCheckPrintsTheOffloadPlan(t *testing.T) {
	chain := bytes.Replace(demoChain, []byte("    rules:\n      - accept state established,related\n"),
		[]byte("    rules:\n      - drop src 203.0.113.0/24\n      - accept state established,related\n      - drop proto udp dport 1900\n"), 1)
	if bytes.Equal(chain, demoChain) {
		t.Fatal("test bug: the demo chain's rules moved")
	}
	p := filepath.Join(t.TempDir(), "chain.yaml")
	os.WriteFile(p, chain, 0o644)
	var out bytes.Buffer
	cmd := Root()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"run", "--check", "-c", p})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want := `chain[0] firewall: offload auto: 1 of 8 rules are dropped in XDP, before the stage
  rule 0 "drop src 203.0.113.0/24": offloaded
  rule 1 "accept state established,related": accept stays in Go (XDP only drops)
  rule 2 "drop proto udp dport 1900": shadowed by rule 1 "accept state established,related"
  rule 3 "accept in in proto icmp type 8 state new": accept stays in Go (XDP only drops)
  rule 4 "accept in in proto tcp dport 8080 state new": accept stays in Go (XDP only drops)
  rule 5 "accept in in proto udp dport 5353 state new": accept stays in Go (XDP only drops)
  rule 6 "accept in in proto udp dport 7777 state new": accept stays in Go (XDP only drops)
  rule 7 "reject in in proto tcp dport 8081": reject needs an answer
`
	if got := out.String(); !strings.HasSuffix(got, want) {
		t.Errorf("output\n%s\nwant it to end with\n%s", got, want)
	}

	off := bytes.Replace(chain, []byte("    default: drop\n"), []byte("    default: drop\n    offload: off\n"), 1)
	os.WriteFile(p, off, 0o644)
	out.Reset()
	cmd = Root()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"run", "--check", "-c", p})
	if err := cmd.Execute(); err != nil || !strings.HasSuffix(out.String(), "chain[0] firewall: offload off\n") {
		t.Errorf("offload: off: %v, output %q", err, out.String())
	}
}

func TestStatsTableFromMetricsText(t *testing.T) {
	in := `# HELP xnf_port_rx_packets_total Packets received.
xnf_port_rx_packets_total{port="in",queue="0",worker="0"} 42
xnf_port_tx_packets_total{port="out",queue="0",worker="0"} 0
go_goroutines 12
`
	var out bytes.Buffer
	if err := PrintStats(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.Contains(s, "port_rx_packets_total") || !strings.Contains(s, "port=in,queue=0,worker=0") || strings.Contains(s, "goroutines") || strings.Contains(s, "tx_packets") {
		t.Errorf("table:\n%s", s)
	}
}

func TestExampleChainsAreValid(t *testing.T) {
	files, _ := filepath.Glob("../examples/chains/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example chains found")
	}
	for _, f := range files {
		cmd := Root()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"run", "--check", "-c", f})
		if err := cmd.Execute(); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
