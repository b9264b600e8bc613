package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DPDKCommand is the testpmd command line, run inside the DUT namespace:
// io forwarding (frames unchanged) between net_af_xdp ports on in0 and
// out0, main lcore on CPU 0 (idle, waiting for Enter), the forwarding
// lcore on CPU 1; no PCI, no huge pages (-m 512 is too small for its mbuf
// pool).
var DPDKCommand = []string{"dpdk-testpmd", "-l", "0,1", "--main-lcore", "0", "--no-pci", "--no-huge", "-m", "1024",
	"--vdev", "net_af_xdp0,iface=in0", "--vdev", "net_af_xdp1,iface=out0",
	"--", "--nb-cores=1", "--forward-mode=io", "--auto-start"}

// DPDK is DPDK's testpmd in io forward mode on the net_af_xdp driver, when
// dpdk-testpmd is installed (Debian: dpdk-dev), skipped otherwise. Its XDP
// program's mode is read back from in0.
func DPDK() Contender {
	return Contender{Name: "dpdk-testpmd", Chain: "io", Frames: L2, Setup: dpdkSetup}
}

// lockedBuffer is a bytes.Buffer safe for the process's writer and us.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func dpdkSetup(env *Env) (func() error, error) {
	path, err := exec.LookPath(DPDKCommand[0])
	if err != nil {
		return nil, Skipf("skipped: dpdk-testpmd not found")
	}
	args := append([]string{"netns", "exec", env.Topo.DUT.Name}, path)
	if sb, err := exec.LookPath("stdbuf"); err == nil {
		// testpmd's stdout is a pipe here: line-buffer it, or "Press
		// enter to exit" (the sign it forwards) stays in its buffer.
		args = append([]string{"netns", "exec", env.Topo.DUT.Name, sb, "-oL"}, path)
	}
	args = append(args, DPDKCommand[1:]...)
	cmd := exec.Command("ip", args...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: a terminal's Ctrl-C reaches us, and we stop
	// it in order (Enter, then SIGKILL by PID).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting dpdk-testpmd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		// testpmd quits (stops its ports, detaches its XDP programs) on
		// Enter; the PID is killed if it does not.
		io.WriteString(stdin, "\n")
		stdin.Close()
		select {
		case <-exited:
			return nil
		case <-time.After(5 * time.Second):
		}
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("dpdk-testpmd (pid %d) did not exit", cmd.Process.Pid)
		}
		return nil
	}
	deadline := time.After(30 * time.Second)
	for {
		if strings.Contains(out.String(), "Press enter to exit") {
			// The forwarding lcore is up; give the AF_XDP sockets a moment.
			time.Sleep(100 * time.Millisecond)
			return stop, nil
		}
		select {
		case err := <-exited:
			exited <- err
			return nil, fmt.Errorf("dpdk-testpmd exited (%v): %s", err, tail(out.String(), 4))
		case <-deadline:
			return nil, errors.Join(fmt.Errorf("dpdk-testpmd not ready after 30 s: %s", tail(out.String(), 4)), stop())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
