// Package xnftest runs an xnf binary in a lab for end-to-end tests: the
// test binary re-executes itself under `ip netns exec` as the command (xnf
// itself, or an example built on cli.Main), so what is tested is exactly
// what ships, with the example's stage registered as in its binary.
package xnftest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xnfdev/xnf/internal/lab"
)

const env = "XNF_EXAMPLE_MAIN"

// Main lets the test binary act as the example's command when Start runs
// it; call it from TestMain with the example's main function.
func Main(m *testing.M, main func()) {
	if os.Getenv(env) == "1" {
		os.Args = append([]string{"xnf"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Command is the test binary as the command, outside any namespace (for
// commands that build their own, such as xnf demo).
func Command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), env+"=1")
	return cmd
}

// Process is the example's command running in a namespace.
type Process struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out strings.Builder
}

// Output is everything the command printed so far.
func (p *Process) Output() string { p.mu.Lock(); defer p.mu.Unlock(); return p.out.String() }

// Start runs the test binary as the example's command in ns; it is
// killed when the test ends if still running.
func Start(t *testing.T, ns *lab.NS, args ...string) *Process {
	t.Helper()
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("skipped: needs iproute2's ip for 'ip netns exec'")
	}
	cmd := exec.Command(ipBin, append([]string{"netns", "exec", ns.Name, os.Args[0]}, args...)...)
	cmd.Env = append(os.Environ(), env+"=1")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &Process{cmd: cmd}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		pw.Close()
	})
	return p
}

// WaitFor waits until the command has printed what.
func (p *Process) WaitFor(t *testing.T, what string, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(p.Output(), what) {
			return
		}
		if p.cmd.ProcessState != nil {
			break
		}
	}
	t.Fatalf("xnf did not print %q; output:\n%s", what, p.Output())
}

// Signal sends sig to the command.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits for the command to exit.
func (p *Process) Wait() error { return p.cmd.Wait() }

// Pid is the command's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM and waits for a clean exit (final counters printed,
// every frame back in the UMEM).
func (p *Process) Stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("xnf exited with %v:\n%s", err, p.Output())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("xnf did not stop on SIGTERM:\n%s", p.Output())
	}
}

// Metrics scrapes the Prometheus endpoint at addr inside ns.
func Metrics(t *testing.T, ns *lab.NS, addr string) string {
	t.Helper()
	var body []byte
	var conn net.Conn
	// Dial inside the namespace: net/http would dial from another thread.
	err := ns.Do(func() (err error) { conn, err = net.DialTimeout("tcp", addr, 3*time.Second); return err })
	if err == nil {
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
		var r *http.Response
		if r, err = http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
			body, err = io.ReadAll(r.Body)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// Value is the value of the metric matching the regular expression re
// (name and labels) in a scrape; 0 when absent.
func Value(text, re string) uint64 {
	m := regexp.MustCompile(re + ` (\d+)`).FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseUint(m[1], 10, 64)
	return v
}

// Settle scrapes until the metric reaches want or 3 seconds pass, and
// returns its last value.
func Settle(t *testing.T, ns *lab.NS, addr, re string, want uint64) uint64 {
	t.Helper()
	var v uint64
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(30 * time.Millisecond) {
		if v = Value(Metrics(t, ns, addr), re); v >= want {
			break
		}
	}
	return v
}

// StageEvent is the regular expression of a stage's event counter on
// worker 0.
func StageEvent(stage, event string) string {
	return fmt.Sprintf(`xnf_stage_events_total\{event="%s",index="\d+",stage="%s",worker="0"\}`, regexp.QuoteMeta(event), regexp.QuoteMeta(stage))
}
