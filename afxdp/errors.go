package afxdp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Sentinel errors callers branch on; the errors returned wrap them with the
// interface, queue and what to do.
var (
	// ErrPermission: AF_XDP and XDP need root, or CAP_NET_RAW + CAP_BPF + CAP_NET_ADMIN.
	ErrPermission = errors.New("needs root, or CAP_NET_RAW, CAP_BPF and CAP_NET_ADMIN")
	// ErrBusy: another XDP program or socket holds the interface or queue.
	ErrBusy = errors.New("busy")
	// ErrZeroCopyUnsupported: the driver has no zero-copy AF_XDP.
	ErrZeroCopyUnsupported = errors.New("zero-copy not supported")
	// ErrOffloadUnsupported: the driver cannot run offloaded XDP programs.
	ErrOffloadUnsupported = errors.New("XDP offload not supported")
	// ErrQueueRange: the queue does not exist on the interface.
	ErrQueueRange = errors.New("queue out of range")
	// ErrKernelTooOld: the running kernel lacks a feature xnf needs.
	ErrKernelTooOld = errors.New("kernel too old")
)

// MinKernel is the oldest kernel xnf supports: shared UMEM across devices
// (5.10), bpf_link XDP attach (5.9), need_wakeup (5.4).
var MinKernel = [2]int{5, 10}

// KernelVersion returns the running kernel's major and minor numbers.
func KernelVersion() (int, int, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return 0, 0, err
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, fmt.Errorf("afxdp: cannot parse kernel release %q", rel)
	}
	maj, err1 := strconv.Atoi(parts[0])
	min, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("afxdp: cannot parse kernel release %q", rel)
	}
	return maj, min, nil
}

func checkKernel() error {
	maj, min, err := KernelVersion()
	if err != nil {
		return nil // unknown: let the syscalls decide
	}
	if maj < MinKernel[0] || (maj == MinKernel[0] && min < MinKernel[1]) {
		return fmt.Errorf("afxdp: %w: running %d.%d, xnf needs Linux %d.%d or later (shared UMEM across devices, bpf_link XDP attach)",
			ErrKernelTooOld, maj, min, MinKernel[0], MinKernel[1])
	}
	return nil
}

func permission(what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("afxdp: %s: %w (%v)", what, ErrPermission, err)
	}
	return nil
}
