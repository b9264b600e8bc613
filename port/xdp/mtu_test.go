package xdp_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/port"
	"github.com/xnfdev/xnf/port/xdp"
)

// An interface whose MTU allows frames larger than a UMEM frame is refused
// with what to do, instead of every large frame vanishing in the kernel.
func TestAnMTUTooLargeForTheFramesIsRefused(t *testing.T) {
	topo := lab.TopologyForTest(t, "mtu", lab.TopologyOptions{})
	u, err := afxdp.NewUMEM(afxdp.UMEMConfig{FrameSize: 2048, FrameCount: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	err = topo.DUT.Do(func() error {
		l, err := topo.DUT.Link("in0")
		if err != nil {
			return err
		}
		open := func() error {
			d, err := xdp.Interface{Interface: "in0", Mode: afxdp.ModeGeneric}.Open(port.Env{Name: "in", Workers: 1, Ports: 1})
			if err != nil {
				return err
			}
			defer d.Close()
			p, err := d.Port(0, u)
			if err == nil {
				p.Close()
			}
			return err
		}
		// 2048-byte frames hold 1792 bytes after the kernel's headroom.
		if err := topo.DUT.Netlink().LinkSetMTU(l, 1778); err != nil {
			return err
		}
		if err := open(); err != nil {
			return fmt.Errorf("MTU 1778 (1792-byte frames): %v", err)
		}
		if err := topo.DUT.Netlink().LinkSetMTU(l, 1779); err != nil {
			return err
		}
		err = open()
		want := "port in: interface in0 has MTU 1779: its frames of up to 1793 bytes do not fit the UMEM's 2048-byte frames (1792 bytes after the headroom), " +
			"and xnf does not receive multi-buffer frames (XDP_USE_SG) yet: set the MTU to at most 1778"
		if err == nil || !strings.Contains(err.Error(), want) {
			return fmt.Errorf("MTU 1779: got %v, want %q", err, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
