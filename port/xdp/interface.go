package xdp

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/bpf"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/port"
)

// Interface is an interface served through AF_XDP: the port type `afxdp`
// of chain files, as a Go value.
type Interface struct {
	// Interface is the kernel's name for it (eth0).
	Interface string
	// Queues lists the RX queue each worker serves: worker i serves
	// Queues[i]. Empty means queue i for worker i.
	Queues []int
	// Mode is how the XDP program attaches (default afxdp.ModeAuto).
	Mode     afxdp.AttachMode
	ZeroCopy afxdp.ZeroCopy
	// RingSize sizes all four rings of each socket (0: 2048).
	RingSize int
	// Frags loads the multi-buffer program (jumbo frames).
	Frags bool
	// Filter chooses what the program claims; the rest goes to the kernel.
	Filter bpf.Filter
	// Offload, when set, is the firewall pre-filter the program runs on
	// what it claims, before redirecting it: one bpf.Offload for every
	// AF_XDP port of the service, whose rules the first stage's firewall
	// installs (config does both when chain[0] is a firewall with
	// offload: auto).
	Offload *bpf.Offload
	// PreferBusyPoll makes the worker drive each queue's receive work (its
	// NAPI context) from its own loop, so the kernel receives only what
	// the worker asks for (preferred busy polling: SO_PREFER_BUSY_POLL,
	// with the device's NAPI deferred). Nil: on where the kernel can
	// busy-poll the socket, which since Linux 6.13 means zero-copy sockets
	// in native mode only; true where it cannot is an error.
	PreferBusyPoll *bool
	// BusyPollBudget is the most frames one busy poll receives (0: 64).
	BusyPollBudget int
	// VLAN, when not 0, makes the port an access port of that 802.1Q
	// VLAN (1-4094) on a tagged wire: it receives the frames tagged VLAN,
	// without their tag, drops the others (untagged ones too) and tags
	// what it transmits. 0: the port is untagged; with VLAN ports over it
	// it keeps the untagged frames and they the tagged ones (see VLAN).
	// Without either, tags are left alone: frames reach the chain as they
	// came.
	VLAN uint16
}

// Open attaches the XDP program to the interface.
func (c Interface) Open(env port.Env) (port.Device, error) {
	if c.Interface == "" {
		return nil, fmt.Errorf("port %s: no interface", env.Name)
	}
	if c.VLAN > 4094 {
		return nil, fmt.Errorf("port %s: VLAN ID %d: expected 1-4094", env.Name, c.VLAN)
	}
	queues := c.Queues
	if len(queues) == 0 {
		for w := range max(env.Workers, 1) {
			queues = append(queues, w)
		}
	}
	if len(queues) != max(env.Workers, 1) {
		return nil, fmt.Errorf("port %s: %d queues for %d workers (worker i serves queue i of the list)", env.Name, len(queues), env.Workers)
	}
	log := env.Log
	if log == nil {
		log = slog.Default()
	}
	d, err := afxdp.Attach(c.Interface, afxdp.DeviceConfig{Mode: c.Mode, Filter: c.Filter, Frags: c.Frags, Force: env.Force,
		Offload: c.Offload, Port: env.Index})
	if err != nil {
		return nil, fmt.Errorf("port %s: %w", env.Name, err)
	}
	log.Info("attached XDP program", "port", env.Name, "interface", c.Interface, "mode", d.Mode().String(), "asked", c.Mode.String(),
		"filter", c.Filter.String(), "queues", d.Queues(), "firewall_offload", c.Offload != nil)
	dev := &Device{Device: d, cfg: c, queues: queues, name: env.Name, index: env.Index, ports: max(env.Ports, 1), log: log}
	if err := dev.offloadVLANs(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("port %s: %w", env.Name, err)
	}
	return dev, nil
}

// offloadVLANs tells the firewall pre-filter which port each VLAN's frames
// reach, when the port demultiplexes VLANs (see vlan.go), so offloaded
// rules judge them as the stage does: on that port, untagged.
func (d *Device) offloadVLANs() error {
	if d.cfg.Offload == nil || d.cfg.VLAN == 0 && len(d.vlans) == 0 {
		return nil
	}
	var byVID [4096]int
	for i := range byVID {
		byVID[i] = -1
	}
	byVID[d.cfg.VLAN] = d.index // 0: the untagged frames are this port's
	for i, v := range d.vlans {
		byVID[v.vid] = d.vlanIndex[i]
	}
	return d.Program().SetVLANPorts(&byVID)
}

// Device is an interface with the XDP program attached. Close detaches it
// and closes every socket still open.
type Device struct {
	*afxdp.Device
	cfg    Interface
	queues []int
	name   string
	index  int // the port's index in the service
	ports  int
	log    *slog.Logger
	// vlans are the VLAN ports over this one, in the order they opened;
	// trunks each worker's socket with them (nil without VLANs).
	vlans  []vlanMember
	trunks []*trunk
	// vlanIndex is each VLAN port's index in the service.
	vlanIndex []int
}

// Port opens worker w's queue over pool, which must be an *afxdp.UMEM (the
// kernel writes into it), and fills the socket's fill ring.
func (d *Device) Port(w int, pool pipeline.FramePool) (pipeline.Port, error) {
	u, ok := pool.(*afxdp.UMEM)
	if !ok {
		return nil, fmt.Errorf("port %s: AF_XDP needs a UMEM as the worker's frame pool, not %T", d.name, pool)
	}
	if err := d.fits(u); err != nil {
		return nil, err
	}
	q := d.queues[w]
	ring := d.cfg.RingSize
	sock, err := d.OpenQueue(q, u, afxdp.SocketConfig{RXSize: ring, TXSize: ring, FillSize: ring, CompletionSize: ring, ZeroCopy: d.cfg.ZeroCopy})
	if err != nil {
		return nil, fmt.Errorf("port %s queue %d: %w", d.name, q, err)
	}
	// Half of this port's share of the UMEM waits on the fill ring; the
	// rest is in flight or held by the worker.
	fill := u.FrameCount() / d.ports / 2
	if ring != 0 {
		fill = min(fill, ring)
	} else {
		fill = min(fill, 2048)
	}
	if err := d.busyPoll(sock); err != nil {
		d.CloseQueue(sock)
		return nil, fmt.Errorf("port %s queue %d: %w", d.name, q, err)
	}
	d.log.Info("opened queue", "worker", w, "port", d.name, "queue", q, "zero_copy", sock.ZeroCopy(), "need_wakeup", sock.NeedWakeup(), "tx_budget", sock.TXBudget(), "busy_poll", sock.BusyPolling())
	p := NewPort(sock, fill)
	if d.cfg.VLAN != 0 || len(d.vlans) > 0 {
		for len(d.trunks) <= w {
			d.trunks = append(d.trunks, nil)
		}
		p.tr = newTrunk(sock, d.cfg.VLAN, d.vlans)
		d.trunks[w] = p.tr
	}
	return p, nil
}

// busyPoll turns preferred busy polling on for sock when the port asks
// for it or leaves it to us (Interface.PreferBusyPoll) and the kernel can
// busy-poll it: since Linux 6.13 an AF_XDP socket learns its NAPI context
// at bind, and only in zero-copy mode (net/xdp/xsk.c, "xsk: Bring back
// busy polling support"), so a copy-mode socket's busy polls would poll
// nothing while the deferred NAPI starved it. Asking for it there is an
// error that says so.
func (d *Device) busyPoll(sock *afxdp.Socket) error {
	want := d.cfg.PreferBusyPoll
	if want != nil && !*want {
		return nil
	}
	why := ""
	switch {
	case d.Mode() != afxdp.ModeNative:
		why = fmt.Sprintf("%s mode has no NAPI context to poll (native XDP has)", d.Mode())
	case !sock.ZeroCopy() && afxdp.CopyModeBusyPollBroken():
		why = fmt.Sprintf("the socket runs in copy mode (%s has no zero-copy) and since Linux 6.13 the kernel busy-polls zero-copy AF_XDP sockets only", d.Driver)
	}
	if why != "" {
		if want != nil {
			return fmt.Errorf("prefer_busy_poll: %s: set prefer_busy_poll: false or leave it unset", why)
		}
		return nil
	}
	if err := sock.SetBusyPoll(afxdp.BusyPoll{Budget: d.cfg.BusyPollBudget}); err != nil {
		return err
	}
	if len(d.BusyPolled()) == 0 {
		if err := d.PreferBusyPoll(afxdp.BusyPollDefer, afxdp.BusyPollTimeout); err != nil {
			return fmt.Errorf("prefer_busy_poll: %w", err)
		}
	}
	return nil
}

// fits refuses an interface whose MTU allows frames larger than a UMEM
// frame holds: the kernel would drop every such frame (an AF_XDP socket
// without XDP_USE_SG takes single-buffer frames only), silently but for
// a socket counter. Multi-buffer receive is not supported yet.
func (d *Device) fits(u *afxdp.UMEM) error {
	ifi, err := net.InterfaceByName(d.cfg.Interface)
	if err != nil {
		return fmt.Errorf("port %s: %w", d.name, err)
	}
	frame := ifi.MTU + 14
	if d.cfg.VLAN != 0 || len(d.vlans) > 0 {
		frame += 4 // tagged frames of a full MTU
	}
	if frame > u.MaxFrameLen() {
		return fmt.Errorf("port %s: interface %s has MTU %d: its frames of up to %d bytes do not fit the UMEM's %d-byte frames (%d bytes after the headroom), "+
			"and xnf does not receive multi-buffer frames (XDP_USE_SG) yet: set the MTU to at most %d (ip link set %s mtu %d) or umem.frame_size to 4096",
			d.name, d.cfg.Interface, ifi.MTU, frame, u.FrameSize(), u.MaxFrameLen(), u.MaxFrameLen()-(frame-ifi.MTU), d.cfg.Interface, u.MaxFrameLen()-(frame-ifi.MTU))
	}
	return nil
}

var _ port.Config = Interface{}
