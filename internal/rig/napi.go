package rig

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/internal/lab"
)

// netdev generic netlink (include/uapi/linux/netdev.h).
const (
	netdevCmdNAPIGet       = 11
	netdevCmdNAPISet       = 14
	netdevANAPIIfindex     = 1
	netdevANAPIID          = 2
	netdevANAPIPID         = 4
	netdevANAPIThreaded    = 8
	netdevNAPIThreadedOn   = 1
	netdevNAPIThreadedNone = 0
)

// NAPI is one NAPI context of a device.
type NAPI struct {
	ID uint32
	// PID is the kernel thread polling it when threaded (0 otherwise).
	PID int
}

// NAPIs lists the NAPI contexts of ns's device ifname. A veth has them
// only while XDP is attached or GRO is on.
func NAPIs(ns *lab.NS, ifname string) ([]NAPI, error) {
	l, err := ns.Link(ifname)
	if err != nil {
		return nil, err
	}
	fam, err := netlink.GenlFamilyGet("netdev")
	if err != nil {
		return nil, fmt.Errorf("rig: netdev netlink family: %w", err)
	}
	var out []NAPI
	err = ns.Do(func() error {
		req := nl.NewNetlinkRequest(int(fam.ID), unix.NLM_F_DUMP)
		req.AddData(&nl.Genlmsg{Command: netdevCmdNAPIGet, Version: 1})
		req.AddData(nl.NewRtAttr(netdevANAPIIfindex, nl.Uint32Attr(uint32(l.Attrs().Index))))
		msgs, err := req.Execute(unix.NETLINK_GENERIC, 0)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if len(m) < nl.SizeofGenlmsg {
				continue
			}
			attrs, err := nl.ParseRouteAttr(m[nl.SizeofGenlmsg:])
			if err != nil {
				return err
			}
			var n NAPI
			ours := false
			for _, a := range attrs {
				if len(a.Value) < 4 {
					continue
				}
				v := binary.NativeEndian.Uint32(a.Value)
				switch a.Attr.Type {
				case netdevANAPIIfindex:
					ours = v == uint32(l.Attrs().Index)
				case netdevANAPIID:
					n.ID = v
				case netdevANAPIPID:
					n.PID = int(v)
				}
			}
			if ours {
				out = append(out, n)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rig: listing NAPI contexts of %s in %s: %w", ifname, ns.Name, err)
	}
	return out, nil
}

// ThreadNAPI makes every NAPI context of ns's device ifname threaded and
// pins each kernel thread to cpu, so the device's receive work (for a veth
// end with XDP: the XDP program, and for XDP_PASS the stack, forwarding
// included) runs on that CPU instead of as a softirq on the sender's CPU.
// cpu < 0 only makes them threaded. Needs XDP or GRO on the veth end
// first (otherwise it has no NAPI context). Unthread undoes it.
func ThreadNAPI(ns *lab.NS, ifname string, cpu int) ([]NAPI, error) {
	napis, err := NAPIs(ns, ifname)
	if err != nil {
		return nil, err
	}
	if len(napis) == 0 {
		return nil, fmt.Errorf("rig: %s in %s has no NAPI context (attach XDP or turn GRO on first)", ifname, ns.Name)
	}
	if err := setThreaded(ns, napis, netdevNAPIThreadedOn); err != nil {
		return nil, fmt.Errorf("rig: threading NAPI of %s: %w", ifname, err)
	}
	if napis, err = NAPIs(ns, ifname); err != nil {
		return nil, err
	}
	var errs []error
	for _, n := range napis {
		if n.PID == 0 {
			errs = append(errs, fmt.Errorf("rig: NAPI %d of %s has no thread after threading", n.ID, ifname))
			continue
		}
		if cpu >= 0 {
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(n.PID, &set); err != nil {
				errs = append(errs, fmt.Errorf("rig: pinning NAPI thread %d to CPU %d: %w", n.PID, cpu, err))
			}
		}
	}
	return napis, errors.Join(errs...)
}

// Unthread turns threaded NAPI off again on ns's device ifname.
func Unthread(ns *lab.NS, ifname string) error {
	napis, err := NAPIs(ns, ifname)
	if err != nil {
		return err
	}
	return setThreaded(ns, napis, netdevNAPIThreadedNone)
}

func setThreaded(ns *lab.NS, napis []NAPI, mode uint32) error {
	fam, err := netlink.GenlFamilyGet("netdev")
	if err != nil {
		return fmt.Errorf("rig: netdev netlink family: %w", err)
	}
	return ns.Do(func() error {
		for _, n := range napis {
			req := nl.NewNetlinkRequest(int(fam.ID), unix.NLM_F_ACK)
			req.AddData(&nl.Genlmsg{Command: netdevCmdNAPISet, Version: 1})
			req.AddData(nl.NewRtAttr(netdevANAPIID, nl.Uint32Attr(n.ID)))
			req.AddData(nl.NewRtAttr(netdevANAPIThreaded, nl.Uint32Attr(mode)))
			if _, err := req.Execute(unix.NETLINK_GENERIC, 0); err != nil {
				return fmt.Errorf("NAPI %d: %w", n.ID, err)
			}
		}
		return nil
	})
}
