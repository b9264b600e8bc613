package lab

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtool commands (include/uapi/linux/ethtool.h).
const (
	ethtoolSTXCSUM = 0x17
	ethtoolSSG     = 0x19
	ethtoolSTSO    = 0x1f
	ethtoolSGSO    = 0x24
	ethtoolSGRO    = 0x2c
)

type ethtoolValue struct{ cmd, data uint32 }

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data uintptr
	_    [16]byte
}

// ethtoolSet sets the ethtool value cmd of a link to on or off, one ioctl
// on a socket opened inside the namespace.
func (n *NS) ethtoolSet(link string, on bool, cmds ...uint32) error {
	return n.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, cmd := range cmds {
			v := ethtoolValue{cmd: cmd}
			if on {
				v.data = 1
			}
			var req ifreqData
			copy(req.name[:], link)
			req.data = uintptr(unsafe.Pointer(&v))
			if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req))); e != 0 {
				state := "off"
				if on {
					state = "on"
				}
				return fmt.Errorf("lab: %s: ethtool %#x %s on %s: %w", n.Name, cmd, state, link, e)
			}
		}
		return nil
	})
}

// DisableOffloads turns off TX checksum offload, scatter-gather, TSO and GSO
// on a link, as a real NIC's wire would show: a veth otherwise hands over
// frames whose checksums are left for a "hardware" that never runs (the
// kernel's CHECKSUM_PARTIAL), and GSO super-frames above the MTU. An AF_XDP
// forwarder copies such frames verbatim and the receiver drops them.
func (n *NS) DisableOffloads(link string) error {
	return n.ethtoolSet(link, false, ethtoolSTSO, ethtoolSGSO, ethtoolSSG, ethtoolSTXCSUM)
}

// SetGRO turns GRO on or off on a link. A veth end without an XDP program
// in native mode receives its peer's XDP_TX frames only with GRO on.
func (n *NS) SetGRO(link string, on bool) error {
	return n.ethtoolSet(link, on, ethtoolSGRO)
}
