package bench

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/internal/lab"
)

const ethtoolSGRO = 0x2c // ETHTOOL_SGRO (include/uapi/linux/ethtool.h)

type ethtoolValue struct{ cmd, data uint32 }

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data uintptr
	_    [16]byte
}

// setGRO turns GRO on or off on ns's device ifname. A veth end without an
// XDP program in native mode receives its peer's XDP_TX frames only with
// GRO on: generic-mode contenders need it on in0.
func setGRO(ns *lab.NS, ifname string, on bool) error {
	return ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		v := ethtoolValue{cmd: ethtoolSGRO}
		if on {
			v.data = 1
		}
		var req ifreqData
		copy(req.name[:], ifname)
		req.data = uintptr(unsafe.Pointer(&v))
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req))); e != 0 {
			return fmt.Errorf("bench: %s: GRO %v on %s: %w", ns.Name, on, ifname, e)
		}
		return nil
	})
}
