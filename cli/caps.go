package cli

import (
	"errors"
	"syscall"
	"unsafe"
)

// xnf needs privileges only to set up: CAP_NET_RAW for the AF_XDP
// sockets, CAP_BPF to load the program, CAP_NET_ADMIN to attach it (root
// has all three). Once everything is open, the data path works on file
// descriptors it already holds (sockets, rings, maps, the bpf_link), so
// `xnf run` drops every capability: a compromised chain can no longer load
// programs, reconfigure interfaces or open raw sockets.

type capHeader struct {
	version uint32
	pid     int32
}

type capData struct{ effective, permitted, inheritable uint32 }

const linuxCapabilityVersion3 = 0x20080522

// capNetAdmin is CAP_NET_ADMIN's number (linux/capability.h).
const capNetAdmin = 12

// dropCapabilities empties the effective, permitted and inheritable sets
// of every thread of the process, but for the capabilities in keep (kept
// effective and permitted). Capabilities are per thread in Linux, so
// this needs AllThreadsSyscall, which Go supports only without cgo
// (CGO_ENABLED=0 builds, as the Makefile makes); elsewhere it reports
// errCapsWithCgo and the process keeps them.
func dropCapabilities(keep ...uint) error {
	hdr := capHeader{version: linuxCapabilityVersion3}
	var data [2]capData
	for _, c := range keep {
		data[c/32].effective |= 1 << (c % 32)
		data[c/32].permitted |= 1 << (c % 32)
	}
	_, _, e := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if e == syscall.ENOTSUP {
		return errCapsWithCgo
	}
	if e != 0 {
		return e
	}
	return nil
}

var errCapsWithCgo = errors.New("capabilities kept: this binary is built with cgo, which rules out changing them on every thread (build with CGO_ENABLED=0)")
