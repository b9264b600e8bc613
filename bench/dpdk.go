package bench

import (
	"bytes"
	"os/exec"
	"strings"
	"sync"
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
	argv := []string{path}
	if sb, err := exec.LookPath("stdbuf"); err == nil {
		// testpmd's stdout is a pipe here: line-buffer it, or "Press
		// enter to exit" (the sign it forwards) stays in its buffer.
		argv = []string{sb, "-oL", path}
	}
	argv = append(argv, DPDKCommand[1:]...)
	p, err := startProcess(env.Topo.DUT, "dpdk-testpmd", argv, nil,
		func(out string) bool { return strings.Contains(out, "Press enter to exit") }, 30*time.Second)
	if err != nil {
		return nil, err
	}
	// The forwarding lcore is up; give the AF_XDP sockets a moment.
	time.Sleep(100 * time.Millisecond)
	// testpmd quits (stops its ports, detaches its XDP programs) on
	// Enter; the PID is killed if it does not.
	return func() error { return p.enter(5 * time.Second) }, nil
}
