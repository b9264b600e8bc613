package bench

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asavie/xdp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Asavie is a minimal in0 -> out0 forwarder on github.com/asavie/xdp
// v0.3.3, written the way its l2fwd example is (the Go AF_XDP library a
// user would pick today): its own XDP program on in0 (a legacy netlink
// attach, native on veth), one socket and UMEM per interface, a copy of
// every frame from the RX UMEM into the TX UMEM, poll(2) each turn, the
// library's default socket options. Frames
// go out unchanged (the generator already addresses the sink).
func Asavie() Contender {
	return Contender{Name: "asavie/xdp", Chain: "l2fwd", Frames: L2, Setup: asavieSetup}
}

// AsavieReady is what the forwarder prints once it forwards.
const AsavieReady = "asavie/xdp: forwarding"

// asavieSetup starts the forwarder as a process of its own in the DUT
// namespace (`xnf bench asavie-l2fwd`, the way a user runs a forwarder
// binary), its loop pinned to the env's CPU.
func asavieSetup(env *Env) (func() error, error) {
	argv := append(slices.Clone(env.Binary), "bench", "asavie-l2fwd", "--in", "in0", "--out", "out0", "--cpu", fmt.Sprint(env.CPU))
	p, err := startProcess(env.Topo.DUT, "asavie/xdp l2fwd", argv, env.BinaryEnv,
		func(out string) bool { return strings.Contains(out, AsavieReady) }, 15*time.Second)
	if err != nil {
		return nil, err
	}
	return func() error { return p.signal(syscall.SIGTERM, 10*time.Second) }, nil
}

// AsavieForward runs the forwarder from inIf to outIf in the calling
// thread's network namespace, its loop pinned to cpu, until stop is
// closed; ready is called once it forwards.
func AsavieForward(inIf, outIf string, cpu int, ready func(), stop <-chan struct{}) (err error) {
	in, err := netlink.LinkByName(inIf)
	if err != nil {
		return err
	}
	out, err := netlink.LinkByName(outIf)
	if err != nil {
		return err
	}
	// The library's defaults (128 frames, rings of 64): larger rings
	// measured no better here, and GetDescs scans every frame.
	opts := xdp.DefaultSocketOptions
	var prog *xdp.Program
	var rx, tx *xdp.Socket
	defer func() {
		var errs []error
		// The library's attach is a legacy netlink one: it survives us
		// unless detached (LinkSetXdpFd(link, -1)).
		if prog != nil {
			errs = append(errs, prog.Detach(in.Attrs().Index), prog.Close())
		}
		for _, s := range []*xdp.Socket{rx, tx} {
			if s == nil {
				continue
			}
			ino, ierr := socketInode(s.FD())
			errs = append(errs, ierr, s.Close())
			if ierr == nil {
				errs = append(errs, unmapSocket(ino))
			}
		}
		if l, lerr := netlink.LinkByName(inIf); lerr == nil && l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached {
			errs = append(errs, netlink.LinkSetXdpFd(l, -1))
		}
		err = errors.Join(append([]error{err}, errs...)...)
	}()
	if prog, err = xdp.NewProgram(1); err != nil {
		return fmt.Errorf("asavie/xdp: %w", err)
	}
	if err = prog.Attach(in.Attrs().Index); err != nil {
		return fmt.Errorf("asavie/xdp: %w", err)
	}
	// A queue stays busy for a while after its last socket closed
	// (the kernel releases it from a work queue): retry briefly.
	for range 50 {
		if rx, err = xdp.NewSocket(in.Attrs().Index, 0, &opts); err == nil || !strings.Contains(err.Error(), "busy") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("asavie/xdp: %w", err)
	}
	if err = prog.Register(0, rx.FD()); err != nil {
		return fmt.Errorf("asavie/xdp: %w", err)
	}
	for range 50 {
		if tx, err = xdp.NewSocket(out.Attrs().Index, 0, &opts); err == nil || !strings.Contains(err.Error(), "busy") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("asavie/xdp: %w", err)
	}
	var halt atomic.Bool
	done := make(chan error, 1)
	go func() { done <- asavieLoop(rx, tx, cpu, &halt) }()
	ready()
	select {
	case <-stop:
		halt.Store(true)
		return <-done
	case err := <-done:
		return err
	}
}

// asavieLoop forwards in -> out the way the library's l2fwd example does
// (copy from the RX UMEM into a free TX frame, Transmit), with two
// changes a user would make too: completions are reaped on every turn
// (the example only does on POLLOUT, and stalls for good once the
// completion ring fills: the kernel stops consuming TX, so POLLOUT never
// comes), and poll has a timeout so the loop can stop.
func asavieLoop(rx, tx *xdp.Socket, cpu int, stop *atomic.Bool) (err error) {
	// Never unlocked: the pinned thread ends with the goroutine rather
	// than carry the pinning to other goroutines.
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return err
	}
	defer func() {
		// The library panics on unexpected sendto errors.
		if r := recover(); r != nil {
			err = fmt.Errorf("asavie/xdp: %v", r)
		}
	}()
	for !stop.Load() {
		rx.Fill(rx.GetDescs(rx.NumFreeFillSlots()))
		n, _, err := rx.Poll(100)
		if err != nil {
			return fmt.Errorf("asavie/xdp: poll: %w", err)
		}
		if c := tx.NumCompleted(); c > 0 {
			tx.Complete(c)
		}
		if n == 0 {
			continue
		}
		in := rx.Receive(n)
		outs := tx.GetDescs(tx.NumFreeTxSlots())
		k := min(len(in), len(outs))
		for i := 0; i < k; i++ {
			outs[i].Len = uint32(copy(tx.GetFrame(outs[i]), rx.GetFrame(in[i])))
		}
		tx.Transmit(outs[:k])
	}
	return nil
}

// socketInode is the inode of a socket fd (how /proc/self/maps names its
// mappings: "socket:[inode]").
func socketInode(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// unmapSocket unmaps every mapping of the socket with inode ino. The
// library's Close closes the fd but never unmaps the four rings, and the
// mappings keep the socket, and the queue it is bound to, alive until the
// process exits: no one could bind in0 or out0 again.
func unmapSocket(ino uint64) error {
	data, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return err
	}
	want := fmt.Sprintf("socket:[%d]", ino)
	var errs []error
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasSuffix(line, want) {
			continue
		}
		var lo, hi uint64
		if _, err := fmt.Sscanf(line, "%x-%x", &lo, &hi); err != nil {
			errs = append(errs, fmt.Errorf("parsing %q: %w", line, err))
			continue
		}
		if _, _, e := unix.Syscall(unix.SYS_MUNMAP, uintptr(lo), uintptr(hi-lo), 0); e != 0 {
			errs = append(errs, fmt.Errorf("munmap %s: %w", line, e))
		}
	}
	return errors.Join(errs...)
}
