package rig

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/internal/lab"
)

// NAPIs lists the NAPI contexts of ns's device ifname. A veth has them
// only while XDP is attached or GRO is on.
func NAPIs(ns *lab.NS, ifname string) ([]afxdp.NAPI, error) {
	l, err := ns.Link(ifname)
	if err != nil {
		return nil, err
	}
	var out []afxdp.NAPI
	err = ns.Do(func() (err error) {
		out, err = afxdp.NAPIs(l.Attrs().Index)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("rig: NAPI contexts of %s in %s: %w", ifname, ns.Name, err)
	}
	return out, nil
}

// ThreadNAPI makes every NAPI context of ns's device ifname threaded and
// pins each kernel thread to cpu, so the device's receive work (for a veth
// end with XDP: the XDP program, and for XDP_PASS the stack, forwarding
// included) runs on that CPU instead of as a softirq on the sender's CPU.
// cpu < 0 only makes them threaded. Needs XDP or GRO on the veth end
// first (otherwise it has no NAPI context). Unthread undoes it.
func ThreadNAPI(ns *lab.NS, ifname string, cpu int) ([]afxdp.NAPI, error) {
	napis, err := NAPIs(ns, ifname)
	if err != nil {
		return nil, err
	}
	if len(napis) == 0 {
		return nil, fmt.Errorf("rig: %s in %s has no NAPI context (attach XDP or turn GRO on first)", ifname, ns.Name)
	}
	if err := setThreaded(ns, napis, true); err != nil {
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
	return setThreaded(ns, napis, false)
}

func setThreaded(ns *lab.NS, napis []afxdp.NAPI, on bool) error {
	return ns.Do(func() error {
		for _, n := range napis {
			if err := afxdp.SetNAPI(n.ID, afxdp.NAPISettings{Threaded: &on}); err != nil {
				return err
			}
		}
		return nil
	})
}
