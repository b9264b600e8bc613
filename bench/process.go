package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/xnfdev/xnf/internal/lab"
)

// process is a contender (or a traffic peer) running as its own process
// in a namespace, started the way a user starts it: `ip netns exec NS
// argv...`. ip execs the command, so the PID is the command's own.
type process struct {
	name   string
	cmd    *exec.Cmd
	out    *lockedBuffer
	stdin  io.WriteCloser
	exited chan error
}

// startProcess runs argv in ns with env added to the environment and waits
// until ready says the output shows it is up (nil: do not wait), the
// process exits (an error with its last lines) or timeout passes (it is
// killed). It runs in a process group of its own, so a terminal's Ctrl-C
// reaches only us and we stop it in order.
func startProcess(ns *lab.NS, name string, argv, env []string, ready func(out string) bool, timeout time.Duration) (*process, error) {
	args := append([]string{"netns", "exec", ns.Name}, argv...)
	cmd := exec.Command("ip", args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	p := &process{name: name, cmd: cmd, out: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { p.exited <- cmd.Wait() }()
	if ready == nil {
		return p, nil
	}
	deadline := time.After(timeout)
	for {
		if ready(p.out.String()) {
			return p, nil
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			return nil, fmt.Errorf("%s exited (%v): %s", name, err, tail(p.out.String(), 4))
		case <-deadline:
			return nil, errors.Join(fmt.Errorf("%s not ready after %v: %s", name, timeout, tail(p.out.String(), 4)), p.kill())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Output is what the process printed so far (the first MiB).
func (p *process) Output() string { return p.out.String() }

// signal stops the process with sig and waits up to grace for it to exit
// (then kills it by PID). A non-zero exit after sig is an error that
// quotes its last lines.
func (p *process) signal(sig os.Signal, grace time.Duration) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return errors.Join(fmt.Errorf("%s: %w", p.name, err), p.kill())
	}
	return p.wait(grace)
}

// enter writes a newline on the process's stdin (testpmd quits on Enter)
// and waits like signal.
func (p *process) enter(grace time.Duration) error {
	io.WriteString(p.stdin, "\n")
	p.stdin.Close()
	return p.wait(grace)
}

func (p *process) wait(grace time.Duration) error {
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			return fmt.Errorf("%s: %w: %s", p.name, err, tail(p.out.String(), 4))
		}
		return nil
	case <-time.After(grace):
	}
	return errors.Join(fmt.Errorf("%s (pid %d) did not stop within %v: killed", p.name, p.cmd.Process.Pid, grace), p.kill())
}

// kill ends the process by PID and waits for it.
func (p *process) kill() error {
	p.cmd.Process.Kill()
	select {
	case err := <-p.exited:
		p.exited <- err
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}
