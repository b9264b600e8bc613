package lab

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// Veth describes one veth pair between two namespaces of a lab.
type Veth struct {
	A, B         *NS
	AName, BName string
	// Queues is the number of RX and TX queues on each end (default 1).
	// Single-queue pairs keep native-mode veth from spreading frames over
	// queues by the sender's TX queue (see ../shared/afxdp-facts.md).
	Queues int
	// MTU of both ends (default 1500).
	MTU int
	// AMAC and BMAC fix the MACs (default: the kernel's random ones).
	AMAC, BMAC string
	// AAddrs and BAddrs are CIDRs added to each end.
	AAddrs, BAddrs []string
	// KeepOffloads leaves veth's checksum and segmentation offloads on.
	// By default they are off (see NS.DisableOffloads).
	KeepOffloads bool
}

// AddVeth creates the pair inside A with the peer moved into B, sets
// addresses and MACs, and brings both ends up.
func (l *Lab) AddVeth(v Veth) error {
	q := v.Queues
	if q <= 0 {
		q = 1
	}
	mtu := v.MTU
	if mtu == 0 {
		mtu = 1500
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = v.AName
	attrs.MTU = mtu
	attrs.NumRxQueues = q
	attrs.NumTxQueues = q
	if v.AMAC != "" {
		hw, err := net.ParseMAC(v.AMAC)
		if err != nil {
			return fmt.Errorf("lab: veth %s MAC %q: %w", v.AName, v.AMAC, err)
		}
		attrs.HardwareAddr = hw
	}
	veth := &netlink.Veth{
		LinkAttrs:       attrs,
		PeerName:        v.BName,
		PeerNamespace:   netlink.NsFd(int(v.B.handle)),
		PeerNumRxQueues: uint32(q),
		PeerNumTxQueues: uint32(q),
		PeerMTU:         uint32(mtu),
	}
	if v.BMAC != "" {
		hw, err := net.ParseMAC(v.BMAC)
		if err != nil {
			return fmt.Errorf("lab: veth %s MAC %q: %w", v.BName, v.BMAC, err)
		}
		veth.PeerHardwareAddr = hw
	}
	if err := v.A.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("lab: veth %s/%s <-> %s/%s: %w", v.A.Name, v.AName, v.B.Name, v.BName, err)
	}
	for _, c := range v.AAddrs {
		if err := v.A.AddAddr(v.AName, c); err != nil {
			return err
		}
	}
	for _, c := range v.BAddrs {
		if err := v.B.AddAddr(v.BName, c); err != nil {
			return err
		}
	}
	if !v.KeepOffloads {
		if err := v.A.DisableOffloads(v.AName); err != nil {
			return err
		}
		if err := v.B.DisableOffloads(v.BName); err != nil {
			return err
		}
	}
	if err := v.A.LinkUp(v.AName); err != nil {
		return err
	}
	return v.B.LinkUp(v.BName)
}

// MAC returns a link's hardware address as a string.
func (n *NS) MAC(link string) (string, error) {
	l, err := n.Link(link)
	if err != nil {
		return "", err
	}
	return l.Attrs().HardwareAddr.String(), nil
}
