package cli

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/xnftest"
)

// TestMain lets the test binary act as the xnf command for end-to-end tests
// of `xnf run` (run inside a namespace with `ip netns exec`).
func TestMain(m *testing.M) { xnftest.Main(m, func() { Main() }) }

const metricsAddr = "127.0.0.1:19464"

func metricsIn(t *testing.T, ns *lab.NS) string { return xnftest.Metrics(t, ns, metricsAddr) }

func metricValue(t *testing.T, text, re string) uint64 {
	t.Helper()
	if !regexp.MustCompile(re + ` \d+`).MatchString(text) {
		t.Fatalf("no metric matching %s in:\n%s", re, text)
	}
	return xnftest.Value(text, re)
}

const runChain = `ports:
  - name: in
    interface: in0
  - name: out
    interface: out0
chain:
  - type: router
    interfaces:
      - port: in
        addrs: [198.18.0.2/24]
      - port: out
        addrs: [198.18.1.1/24]
    neighbors:
      - {port: out, addr: 198.18.1.2, mac: "02:00:00:00:01:02"}
      - {port: in, addr: 198.18.0.1, mac: "02:00:00:00:00:01"}
metrics:
  listen: 127.0.0.1:19464
`

// runLab builds the lab of an `xnf run` test (gen knows the DUT's MAC,
// so no ARP moves) and writes chain to a file whose path it returns.
func runLab(t *testing.T, name, chain string) (*lab.Topology, string) {
	t.Helper()
	topo := lab.TopologyForTest(t, name, lab.TopologyOptions{})
	if err := topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "chain.yaml")
	if err := os.WriteFile(path, []byte(chain), 0o644); err != nil {
		t.Fatal(err)
	}
	return topo, path
}

// startRun runs `xnf run -c path` in the DUT namespace until it serves metrics.
func startRun(t *testing.T, topo *lab.Topology, path string) *xnftest.Process {
	t.Helper()
	x := xnftest.Start(t, topo.DUT, "run", "-c", path)
	x.WaitFor(t, "metrics: http://"+metricsAddr+"/metrics", 10*time.Second)
	return x
}

// sinkListener listens on a UDP port of the sink, so its kernel answers
// no datagram with ICMP.
func sinkListener(t *testing.T, topo *lab.Topology, port int) *net.UDPConn {
	t.Helper()
	c, err := topo.Sink.ListenUDP(lab.SinkAddr, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRunServesMetricsAndDetachesOnSIGTERM(t *testing.T) {
	topo, path := runLab(t, "run", runChain)
	x := startRun(t, topo, path)
	if !strings.Contains(x.Output(), "in: XDP attached to in0 in native mode") {
		t.Errorf("mode not reported:\n%s", x.Output())
	}
	// Once running, xnf holds no capability (when built without cgo; a cgo
	// build says it kept them). The checks below then prove the data path
	// and the metrics (BPF map reads) need none.
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", x.Pid()))
	switch {
	case strings.Contains(x.Output(), "capabilities: all dropped"):
		if !strings.Contains(string(status), "CapEff:\t0000000000000000") {
			t.Errorf("xnf says it dropped its capabilities, but:\n%s", status)
		}
	case !strings.Contains(x.Output(), "capabilities kept"):
		t.Errorf("xnf says nothing about its capabilities:\n%s", x.Output())
	}

	sinkListener(t, topo, 9) // so the sink's kernel sends no ICMP back to count
	const n = 500
	if err := topo.Gen.Do(func() error {
		c, err := net.Dial("udp4", lab.SinkAddr+":9")
		if err != nil {
			return err
		}
		defer c.Close()
		for i := 0; i < n; i++ {
			fmt.Fprintf(c, "datagram %d", i)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var text string
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		text = metricsIn(t, topo.DUT)
		if metricValue(t, text, `xnf_port_tx_packets_total\{port="out",queue="0",worker="0"\}`) >= n {
			break
		}
	}
	if v := metricValue(t, text, `xnf_stage_events_total\{event="forwarded",index="0",stage="router",worker="0"\}`); v != n {
		t.Errorf("router forwarded %d, sent %d", v, n)
	}
	if v := metricValue(t, text, `xnf_port_rx_packets_total\{port="in",queue="0",worker="0"\}`); v != n {
		t.Errorf("in rx %d, sent %d", v, n)
	}
	if v := metricValue(t, text, `xnf_port_tx_packets_total\{port="out",queue="0",worker="0"\}`); v != n {
		t.Errorf("out tx %d, sent %d", v, n)
	}
	if v := metricValue(t, text, `xnf_xdp_packets_total\{action="redirected",interface="in0",port="in"\}`); v != n {
		t.Errorf("XDP redirected %d on in0, sent %d", v, n)
	}

	x.Stop(t)
	if !strings.Contains(x.Output(), "stage") || !strings.Contains(x.Output(), "router") {
		t.Errorf("no final counters printed:\n%s", x.Output())
	}
	for _, ifname := range []string{"in0", "out0"} {
		l, err := topo.DUT.Link(ifname)
		if err != nil {
			t.Fatal(err)
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			t.Errorf("%s still has an XDP program after SIGTERM", ifname)
		}
	}
}

const reloadChain = `ports:
  - name: in
    interface: in0
  - name: out
    interface: out0
chain:
  - type: firewall
    rules:
      - accept in in proto udp dport PORT
  - type: router
    interfaces:
      - port: in
        addrs: [198.18.0.2/24]
      - port: out
        addrs: [198.18.1.1/24]
    neighbors:
      - {port: out, addr: 198.18.1.2, mac: "02:00:00:00:01:02"}
metrics:
  listen: 127.0.0.1:19464
`

func TestRunReloadsRulesOnSIGHUP(t *testing.T) {
	topo, path := runLab(t, "hup", strings.Replace(reloadChain, "PORT", "9", 1))
	write := func(s string) { os.WriteFile(path, []byte(s), 0o644) }
	sinkListener(t, topo, 9)
	sinkListener(t, topo, 10)
	x := startRun(t, topo, path)
	send := func(port, n int) {
		topo.Gen.Do(func() error {
			c, err := net.Dial("udp4", net.JoinHostPort(lab.SinkAddr, strconv.Itoa(port)))
			if err != nil {
				return err
			}
			defer c.Close()
			for i := 0; i < n; i++ {
				c.Write([]byte("x"))
			}
			return nil
		})
	}
	accepted := `xnf_stage_events_total\{event="accepted",index="0",stage="firewall",worker="0"\}`
	dropped := `xnf_stage_events_total\{event="dropped",index="0",stage="firewall",worker="0"\}`
	settle := func(re string, want uint64) uint64 {
		var v uint64
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(30 * time.Millisecond) {
			if v = metricValue(t, metricsIn(t, topo.DUT), re); v >= want {
				break
			}
		}
		return v
	}
	send(9, 10)
	send(10, 10)
	if a, d := settle(accepted, 10), settle(dropped, 10); a != 10 || d != 10 {
		t.Fatalf("before reload: accepted %d dropped %d, want 10 and 10", a, d)
	}
	write(strings.Replace(reloadChain, "PORT", "10", 1))
	x.Signal(syscall.SIGHUP)
	x.WaitFor(t, "reloaded", 5*time.Second)
	send(9, 10)
	send(10, 10)
	if a, d := settle(accepted, 20), settle(dropped, 20); a != 20 || d != 20 {
		t.Fatalf("after reload: accepted %d dropped %d, want 20 and 20 (port 10 now allowed, 9 not)", a, d)
	}
	write(strings.Replace(reloadChain, "PORT", "99999", 1))
	x.Signal(syscall.SIGHUP)
	x.WaitFor(t, "reload failed", 5*time.Second)
	if !strings.Contains(x.Output(), "chain.yaml:9: chain[0].rules[0]") {
		t.Errorf("the reload error does not name the line and rule:\n%s", x.Output())
	}
	send(10, 10)
	if a := settle(accepted, 30); a != 30 {
		t.Errorf("after a broken reload: accepted %d, want 30 (old rules kept)", a)
	}
	x.Signal(syscall.SIGTERM)
	x.Wait()
}

func TestSIGKILLUnderTrafficThenRestartTakesOver(t *testing.T) {
	topo, path := runLab(t, "kill", runChain)
	sinkListener(t, topo, 9)
	stop := make(chan struct{})
	sent := make(chan int, 1)
	go func() { // bounded traffic: until stop, at most 10 s
		n := 0
		topo.Gen.Do(func() error {
			c, err := net.Dial("udp4", lab.SinkAddr+":9")
			if err != nil {
				return err
			}
			defer c.Close()
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); n++ {
				select {
				case <-stop:
					return nil
				default:
				}
				c.Write([]byte("under traffic"))
				time.Sleep(100 * time.Microsecond)
			}
			return nil
		})
		sent <- n
	}()
	x := startRun(t, topo, path)
	time.Sleep(300 * time.Millisecond)
	x.Signal(syscall.SIGKILL)
	x.Wait()
	for end := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		l, _ := topo.DUT.Link("in0")
		if xd := l.Attrs().Xdp; xd == nil || !xd.Attached {
			break
		}
		if time.Now().After(end) {
			t.Fatal("an XDP program is still attached to in0 after SIGKILL")
		}
	}
	// A restart takes the interfaces over and forwards again.
	y := startRun(t, topo, path)
	tx := `xnf_port_tx_packets_total\{port="out",queue="0",worker="0"\}`
	var v uint64
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && v < 100; time.Sleep(50 * time.Millisecond) {
		v = metricValue(t, metricsIn(t, topo.DUT), tx)
	}
	close(stop)
	<-sent
	if v < 100 {
		t.Errorf("the restarted xnf forwarded %d packets, want traffic flowing again", v)
	}
	y.Stop(t)
}

func TestDemoCleansUpOnCtrlC(t *testing.T) {
	lab.RequireRoot(t)
	if lab.Exists(demoNames[0]) {
		t.Skipf("skipped: a demo lab is up on this machine (%s)", demoNames[0])
	}
	cmd := xnftest.Command("demo")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt once the lab is up and traffic runs.
	for end := time.Now().Add(10 * time.Second); !lab.Exists(demoNames[2]) && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the demo did not exit on SIGINT")
	}
	for _, n := range demoNames {
		if lab.Exists(n) {
			t.Errorf("namespace %s left after Ctrl-C:\n%s", n, out.String())
		}
	}
	if !strings.Contains(out.String(), "interrupted") {
		t.Errorf("no word of the interruption:\n%s", out.String())
	}
}

// dropCapabilities(keep) leaves exactly the kept capability, on every
// thread: run in a child process, since it cannot be undone.
func TestDropCapabilitiesKeepsWhatItIsAsked(t *testing.T) {
	if os.Getenv("XNF_TEST_DROP_CAPS") == "1" {
		if err := dropCapabilities(capNetAdmin); err != nil {
			fmt.Println("error:", err)
		}
		status, _ := os.ReadFile("/proc/self/status")
		fmt.Print(string(status))
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root (capabilities to keep)")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestDropCapabilitiesKeepsWhatItIsAsked$")
	cmd.Env = append(os.Environ(), "XNF_TEST_DROP_CAPS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if strings.Contains(string(out), "error: "+errCapsWithCgo.Error()) {
		t.Skip("skipped: a cgo build keeps its capabilities")
	}
	for _, want := range []string{"CapEff:\t0000000000001000", "CapPrm:\t0000000000001000", "CapInh:\t0000000000000000"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("want %q after keeping CAP_NET_ADMIN:\n%s", want, out)
		}
	}
}
