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
)

type ethtoolValue struct{ cmd, data uint32 }

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data uintptr
	_    [16]byte
}

// DisableOffloads turns off TX checksum offload, scatter-gather, TSO and GSO
// on a link, as a real NIC's wire would show: a veth otherwise hands over
// frames whose checksums are left for a "hardware" that never runs (the
// kernel's CHECKSUM_PARTIAL), and GSO super-frames above the MTU. An AF_XDP
// forwarder copies such frames verbatim and the receiver drops them.
func (n *NS) DisableOffloads(link string) error {
	return n.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, cmd := range []uint32{ethtoolSTSO, ethtoolSGSO, ethtoolSSG, ethtoolSTXCSUM} {
			v := ethtoolValue{cmd: cmd}
			var req ifreqData
			copy(req.name[:], link)
			req.data = uintptr(unsafe.Pointer(&v))
			if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req))); e != 0 {
				return fmt.Errorf("lab: %s: ethtool %#x off on %s: %w", n.Name, cmd, link, e)
			}
		}
		return nil
	})
}
