package afxdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The kernel's netdev generic netlink family (include/uapi/linux/netdev.h):
// per-NAPI settings since Linux 6.13, threaded NAPI per context since 6.17.
const (
	netdevCmdNAPIGet            = 11
	netdevCmdNAPISet            = 14
	netdevANAPIIfindex          = 1
	netdevANAPIID               = 2
	netdevANAPIPID              = 4
	netdevANAPIDeferHardIRQs    = 5
	netdevANAPIGROFlushTimeout  = 6
	netdevANAPIIRQSuspendTimout = 7
	netdevANAPIThreaded         = 8
)

// genlHeader is a generic netlink header. nl.Genlmsg serializes 4 bytes
// from a 2-byte struct, so its reserved half carries whatever follows it
// in memory, and the kernel rejects a non-zero one (EINVAL).
type genlHeader struct{ cmd uint8 }

func (h genlHeader) Len() int          { return 4 }
func (h genlHeader) Serialize() []byte { return []byte{h.cmd, 1, 0, 0} } // version 1

// NAPI is one NAPI context of a device: the kernel's receive loop for a
// queue, which a veth has only while XDP is attached or GRO is on.
type NAPI struct {
	ID      uint32
	Ifindex int
	// PID is the kernel thread polling it when threaded (0 otherwise).
	PID int
	// DeferHardIRQs and GROFlushTimeout are the settings preferred busy
	// polling needs (see Device.PreferBusyPoll).
	DeferHardIRQs   uint32
	GROFlushTimeout time.Duration
}

// NAPIs lists the NAPI contexts of the interface ifindex in the calling
// thread's network namespace.
func NAPIs(ifindex int) ([]NAPI, error) {
	fam, err := netlink.GenlFamilyGet("netdev")
	if err != nil {
		return nil, fmt.Errorf("afxdp: netdev netlink family: %w", err)
	}
	req := nl.NewNetlinkRequest(int(fam.ID), unix.NLM_F_DUMP)
	req.AddData(genlHeader{netdevCmdNAPIGet})
	req.AddData(nl.NewRtAttr(netdevANAPIIfindex, nl.Uint32Attr(uint32(ifindex))))
	msgs, err := req.Execute(unix.NETLINK_GENERIC, 0)
	if err != nil {
		return nil, fmt.Errorf("afxdp: listing NAPI contexts of ifindex %d: %w", ifindex, err)
	}
	var out []NAPI
	for _, m := range msgs {
		if len(m) < nl.SizeofGenlmsg {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[nl.SizeofGenlmsg:])
		if err != nil {
			return nil, err
		}
		var n NAPI
		for _, a := range attrs {
			var v uint64
			switch len(a.Value) {
			case 4:
				v = uint64(binary.NativeEndian.Uint32(a.Value))
			case 8:
				v = binary.NativeEndian.Uint64(a.Value)
			default:
				continue
			}
			switch a.Attr.Type {
			case netdevANAPIIfindex:
				n.Ifindex = int(v)
			case netdevANAPIID:
				n.ID = uint32(v)
			case netdevANAPIPID:
				n.PID = int(v)
			case netdevANAPIDeferHardIRQs:
				n.DeferHardIRQs = uint32(v)
			case netdevANAPIGROFlushTimeout:
				n.GROFlushTimeout = time.Duration(v)
			}
		}
		if n.Ifindex == ifindex {
			out = append(out, n)
		}
	}
	return out, nil
}

// NAPISettings are the settings SetNAPI changes; nil fields stay.
type NAPISettings struct {
	DeferHardIRQs   *uint32
	GROFlushTimeout *time.Duration
	// Threaded runs the context in a kernel thread of its own (napi/IF-ID)
	// instead of as a softirq of whichever CPU scheduled it.
	Threaded *bool
}

// SetNAPI changes the settings of NAPI context id (in the calling thread's
// network namespace).
func SetNAPI(id uint32, s NAPISettings) error {
	fam, err := netlink.GenlFamilyGet("netdev")
	if err != nil {
		return fmt.Errorf("afxdp: netdev netlink family: %w", err)
	}
	req := nl.NewNetlinkRequest(int(fam.ID), unix.NLM_F_ACK)
	req.AddData(genlHeader{netdevCmdNAPISet})
	req.AddData(nl.NewRtAttr(netdevANAPIID, nl.Uint32Attr(id)))
	if s.DeferHardIRQs != nil {
		req.AddData(nl.NewRtAttr(netdevANAPIDeferHardIRQs, nl.Uint32Attr(*s.DeferHardIRQs)))
	}
	if s.GROFlushTimeout != nil {
		req.AddData(nl.NewRtAttr(netdevANAPIGROFlushTimeout, nl.Uint64Attr(uint64(*s.GROFlushTimeout))))
	}
	if s.Threaded != nil {
		v := uint32(0)
		if *s.Threaded {
			v = 1
		}
		req.AddData(nl.NewRtAttr(netdevANAPIThreaded, nl.Uint32Attr(v)))
	}
	if _, err := req.Execute(unix.NETLINK_GENERIC, 0); err != nil {
		return fmt.Errorf("afxdp: setting NAPI %d: %w", id, err)
	}
	return nil
}

// BusyPollDefaults are the device settings PreferBusyPoll applies by
// default: the kernel keeps the queue's NAPI asleep for up to 2 polls
// deferred by 200 us each while the application busy-polls it, and takes
// over again (the safety net) when the application stops for longer.
const (
	BusyPollDefer   = 2
	BusyPollTimeout = 200 * time.Microsecond
)

// PreferBusyPoll sets every NAPI context of the device so that sockets
// bound with SocketConfig.BusyPoll drive its receive work from their own
// syscalls (preferred busy polling, the kernel's napi.rst): while the
// application polls at least every timeout, the kernel does not schedule
// the NAPI context itself, so its receive work runs when, and only as
// much as, the application asks for it. It needs native XDP (generic XDP
// has no NAPI context to poll). Close restores the previous settings.
func (d *Device) PreferBusyPoll(deferIRQs uint32, timeout time.Duration) error {
	if d.mode != ModeNative {
		return fmt.Errorf("afxdp: %s: preferred busy polling needs native XDP (attached in %s mode)", d.Name, d.mode)
	}
	napis, err := NAPIs(d.Ifindex)
	if err != nil {
		return err
	}
	if len(napis) == 0 {
		return fmt.Errorf("afxdp: %s has no NAPI context to busy-poll", d.Name)
	}
	var errs []error
	for _, n := range napis {
		if err := SetNAPI(n.ID, NAPISettings{DeferHardIRQs: &deferIRQs, GROFlushTimeout: &timeout}); err != nil {
			errs = append(errs, err)
			continue
		}
		d.restoreNAPI = append(d.restoreNAPI, n)
	}
	return errors.Join(errs...)
}

// BusyPolled lists the NAPI contexts PreferBusyPoll set (with the
// settings they had before).
func (d *Device) BusyPolled() []NAPI { return d.restoreNAPI }

// CopyModeBusyPollBroken reports whether this kernel cannot busy-poll
// copy-mode AF_XDP sockets: from Linux 6.13 on, a socket's NAPI context is
// resolved at bind time for zero-copy sockets only (net/xdp/xsk.c).
func CopyModeBusyPollBroken() bool {
	major, minor, err := KernelVersion()
	return err != nil || major > 6 || (major == 6 && minor >= 13)
}

// restoreBusyPoll puts back what PreferBusyPoll changed.
func (d *Device) restoreBusyPoll() error {
	var errs []error
	for _, n := range d.restoreNAPI {
		if err := SetNAPI(n.ID, NAPISettings{DeferHardIRQs: &n.DeferHardIRQs, GROFlushTimeout: &n.GROFlushTimeout}); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	d.restoreNAPI = nil
	return errors.Join(errs...)
}
