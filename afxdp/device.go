package afxdp

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/bpf"
)

// AttachMode is how the XDP program is attached to a device.
type AttachMode int

const (
	// ModeAuto tries native (driver) mode, then generic.
	ModeAuto AttachMode = iota
	// ModeNative runs the program in the driver (XDP_FLAGS_DRV_MODE).
	ModeNative
	// ModeGeneric runs it in the kernel's generic path after the skb is
	// built (XDP_FLAGS_SKB_MODE): works on any device, slower.
	ModeGeneric
	// ModeOffload runs it on the NIC (XDP_FLAGS_HW_MODE). Offloaded
	// programs cannot redirect into an XSKMAP, so this mode only serves
	// pre-filters on NICs that have it; elsewhere it fails clearly.
	ModeOffload
)

func (m AttachMode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeNative:
		return "native"
	case ModeGeneric:
		return "generic"
	case ModeOffload:
		return "offload"
	}
	return fmt.Sprintf("AttachMode(%d)", int(m))
}

// ParseAttachMode parses "auto", "native" (or "driver"), "generic" (or "skb")
// and "offload" (or "hw").
func ParseAttachMode(s string) (AttachMode, error) {
	switch strings.ToLower(s) {
	case "auto", "":
		return ModeAuto, nil
	case "native", "driver", "drv":
		return ModeNative, nil
	case "generic", "skb":
		return ModeGeneric, nil
	case "offload", "hw":
		return ModeOffload, nil
	}
	return 0, fmt.Errorf("unknown XDP mode %q (expected auto, native, generic or offload)", s)
}

func (m AttachMode) flags() link.XDPAttachFlags {
	switch m {
	case ModeNative:
		return link.XDPDriverMode
	case ModeGeneric:
		return link.XDPGenericMode
	case ModeOffload:
		return link.XDPOffloadMode
	}
	return 0
}

// DeviceConfig configures Attach.
type DeviceConfig struct {
	Mode   AttachMode
	Filter bpf.Filter
	// Frags loads the multi-buffer (xdp.frags) program: needed for native
	// XDP on veth with MTU above 3506, and for jumbo frames with XDP_USE_SG.
	Frags bool
	// Force detaches an XDP program another tool left on the interface
	// (attached through netlink, as ip, xdp-loader and older libraries
	// do). A program held by another process's bpf_link cannot be
	// forced off: that process must stop.
	Force bool
	// Offload, when set, is the firewall pre-filter the program runs
	// before redirecting (bpf.RedirectOptions.Offload), shared with the
	// other interfaces of the service; Port is the interface's port index.
	Offload *bpf.Offload
	Port    int
}

// Device is an interface with xnf's redirect program attached. Sockets for
// its queues are opened with OpenQueue; each is registered in the program's
// XSKMAP so its queue's claimed frames reach it.
//
// The program is attached through a bpf_link, held only by this process: if
// the process dies, even by SIGKILL, the kernel detaches it.
type Device struct {
	Name    string
	Ifindex int
	Driver  string
	queues  int
	mode    AttachMode
	prog    *bpf.Redirect
	link    link.Link
	sockets map[int]*Socket
	// restoreNAPI holds the NAPI settings PreferBusyPoll replaced.
	restoreNAPI []NAPI
}

// Attach loads the redirect program and attaches it to the interface ifname
// (in the calling thread's network namespace) in the requested mode. The
// mode the kernel actually attached is read back (Device.Mode), never assumed.
func Attach(ifname string, cfg DeviceConfig) (*Device, error) {
	if err := checkKernel(); err != nil {
		return nil, err
	}
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("afxdp: interface %q: %w", ifname, err)
	}
	a := l.Attrs()
	d := &Device{Name: ifname, Ifindex: a.Index, Driver: driverName(ifname), queues: max(a.NumRxQueues, 1), sockets: map[int]*Socket{}}
	if x := a.Xdp; x != nil && x.Attached {
		if !cfg.Force {
			return nil, fmt.Errorf("afxdp: %s: %w: another XDP program (id %d, %s mode) is attached; detach it first (ip link set dev %s xdp off), stop the tool that owns it, or force",
				ifname, ErrBusy, x.ProgId, modeName(x.AttachMode), ifname)
		}
		if err := detachForeign(l, x); err != nil {
			return nil, err
		}
	}
	if cfg.Mode == ModeOffload {
		return nil, d.tryOffload(cfg)
	}
	d.prog, err = bpf.LoadRedirect(bpf.RedirectOptions{Queues: d.queues, Filter: cfg.Filter, Frags: cfg.Frags, Offload: cfg.Offload, Port: cfg.Port})
	if err != nil {
		if errors.Is(err, bpf.ErrPermission) {
			return nil, fmt.Errorf("afxdp: %s: %w (%v)", ifname, ErrPermission, err)
		}
		return nil, fmt.Errorf("afxdp: %s: %w", ifname, err)
	}
	modes := []AttachMode{cfg.Mode}
	if cfg.Mode == ModeAuto {
		modes = []AttachMode{ModeNative, ModeGeneric}
	}
	var errs []string
	for _, m := range modes {
		d.link, err = link.AttachXDP(link.XDPOptions{Program: d.prog.Program, Interface: d.Ifindex, Flags: m.flags()})
		if err == nil {
			break
		}
		errs = append(errs, fmt.Sprintf("%s: %s", m, explainAttach(err, ifname, cfg.Frags)))
	}
	if d.link == nil {
		d.prog.Close()
		if perr := permission("attaching XDP", err); perr != nil {
			return nil, fmt.Errorf("afxdp: %s: %w", ifname, perr)
		}
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("afxdp: attaching XDP to %s: %w: %s", ifname, ErrBusy, strings.Join(errs, "; "))
		}
		return nil, fmt.Errorf("afxdp: attaching XDP to %s: %s", ifname, strings.Join(errs, "; "))
	}
	d.mode, err = attachedMode(d.Ifindex)
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func explainAttach(err error, ifname string, frags bool) string {
	switch {
	case errors.Is(err, unix.ERANGE) && !frags:
		return fmt.Sprintf("%v (the MTU of %s or its peer is too large for single-buffer native XDP: lower it or enable frags)", err, ifname)
	case errors.Is(err, unix.ENOSPC):
		return fmt.Sprintf("%v (veth: %s has fewer RX queues than its peer has TX queues)", err, ifname)
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Sprintf("%v (driver %s does not support this mode)", err, driverName(ifname))
	}
	return err.Error()
}

// tryOffload attempts a device-bound load and offloaded attach. The
// redirect program can never run offloaded (no XSKMAP on NICs), so success
// here only proves the NIC offloads; the error explains the rest.
func (d *Device) tryOffload(cfg DeviceConfig) error {
	prog, err := bpf.LoadRedirect(bpf.RedirectOptions{Queues: d.queues, Filter: cfg.Filter, Ifindex: d.Ifindex})
	if err == nil {
		var l link.Link
		l, err = link.AttachXDP(link.XDPOptions{Program: prog.Program, Interface: d.Ifindex, Flags: link.XDPOffloadMode})
		if err == nil {
			l.Close()
			err = errors.New("offloaded programs cannot redirect to AF_XDP sockets; use offload only for pre-filters")
		}
		prog.Close()
	}
	return fmt.Errorf("afxdp: %s: %w by %s: %v", d.Name, ErrOffloadUnsupported, d.Driver, err)
}

// netlinkMode maps the attach mode netlink reports (IFLA_XDP_ATTACHED) to
// an AttachMode; false for none or several.
func netlinkMode(m uint32) (AttachMode, bool) {
	switch m {
	case nl.XDP_ATTACHED_DRV:
		return ModeNative, true
	case nl.XDP_ATTACHED_SKB:
		return ModeGeneric, true
	case nl.XDP_ATTACHED_HW:
		return ModeOffload, true
	}
	return 0, false
}

// xdpAttachedMulti is the kernel's XDP_ATTACHED_MULTI (programs in several
// modes), which netlink/nl does not define.
const xdpAttachedMulti = 4

func modeName(m uint32) string {
	if mode, ok := netlinkMode(m); ok {
		return mode.String()
	}
	if m == xdpAttachedMulti {
		return "multiple"
	}
	return fmt.Sprintf("mode %d", m)
}

// attachedMode reads from netlink the mode the kernel attached with.
func attachedMode(ifindex int) (AttachMode, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return 0, fmt.Errorf("afxdp: reading back XDP mode: %w", err)
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return 0, fmt.Errorf("afxdp: %s: XDP program not attached after attach", l.Attrs().Name)
	}
	if mode, ok := netlinkMode(x.AttachMode); ok {
		return mode, nil
	}
	return 0, fmt.Errorf("afxdp: %s: unexpected XDP attach mode %d", l.Attrs().Name, x.AttachMode)
}

// Mode is the mode the kernel reports the program attached in.
func (d *Device) Mode() AttachMode { return d.mode }

// Queues is the interface's RX queue count.
func (d *Device) Queues() int { return d.queues }

// Program is the loaded redirect program (for counters).
func (d *Device) Program() *bpf.Redirect { return d.prog }

// Counters reads the program's counters.
func (d *Device) Counters() (bpf.Counters, error) { return d.prog.Counters() }

// OpenQueue opens a socket on queue q over u and registers it with the
// program. Frames must be put on its fill ring (FillFromFree) before any
// arrive; until then the kernel drops them (RXDropped).
func (d *Device) OpenQueue(q int, u *UMEM, cfg SocketConfig) (*Socket, error) {
	if q < 0 || q >= d.queues {
		return nil, fmt.Errorf("afxdp: %s queue %d: %w: %s has %d RX queues (0..%d)", d.Name, q, ErrQueueRange, d.Name, d.queues, d.queues-1)
	}
	if _, ok := d.sockets[q]; ok {
		return nil, fmt.Errorf("afxdp: %s queue %d: %w: already open in this process", d.Name, q, ErrBusy)
	}
	s, err := OpenSocket(u, d.Name, q, cfg)
	if err != nil {
		return nil, err
	}
	if err := d.prog.Register(q, s.FD()); err != nil {
		s.Close()
		return nil, fmt.Errorf("afxdp: %s: %w", d.Name, err)
	}
	d.sockets[q] = s
	return s, nil
}

// OpenAll opens every queue of the device over u.
func (d *Device) OpenAll(u *UMEM, cfg SocketConfig) ([]*Socket, error) {
	var out []*Socket
	for q := 0; q < d.queues; q++ {
		s, err := d.OpenQueue(q, u, cfg)
		if err != nil {
			for _, o := range out {
				d.CloseQueue(o)
			}
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// CloseQueue unregisters and closes one socket of the device.
func (d *Device) CloseQueue(s *Socket) error {
	err := d.prog.Unregister(s.Queue())
	delete(d.sockets, s.Queue())
	return errors.Join(err, s.Close())
}

// Close detaches the program and closes the device's sockets. The UMEMs
// stay (their frames are all back on their free stacks).
func (d *Device) Close() error {
	// Before the detach: a veth's NAPI contexts go with its XDP program.
	errs := []error{d.restoreBusyPoll()}
	if d.link != nil {
		errs = append(errs, d.link.Close())
		d.link = nil
	}
	for q, s := range d.sockets {
		errs = append(errs, s.Close())
		delete(d.sockets, q)
	}
	if d.prog != nil {
		errs = append(errs, d.prog.Close())
		d.prog = nil
	}
	return errors.Join(errs...)
}

func interfaceIndex(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("afxdp: interface %q: %w", name, err)
	}
	return ifi.Index, nil
}

func rxQueueCount(name string) (int, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0, err
	}
	return max(l.Attrs().NumRxQueues, 1), nil
}

// driverName names the interface's driver: from sysfs when visible, else
// the netlink link type (veth, ...), which is what a lab namespace shows.
func driverName(ifname string) string {
	if p, err := os.Readlink("/sys/class/net/" + ifname + "/device/driver"); err == nil {
		return p[strings.LastIndex(p, "/")+1:]
	}
	if l, err := netlink.LinkByName(ifname); err == nil {
		return l.Type()
	}
	return "unknown"
}

// detachForeign removes a program another tool attached through netlink.
func detachForeign(l netlink.Link, x *netlink.LinkXdp) error {
	// link's attach flags are the kernel's XDP_FLAGS_*_MODE; none when
	// netlink reports no single mode.
	mode, _ := netlinkMode(x.AttachMode)
	name := l.Attrs().Name
	if err := netlink.LinkSetXdpFdWithFlags(l, -1, int(mode.flags())); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("afxdp: %s: %w: XDP program %d is held by another process's bpf_link and cannot be forced off; stop that process", name, ErrBusy, x.ProgId)
		}
		return fmt.Errorf("afxdp: %s: detaching XDP program %d: %w", name, x.ProgId, err)
	}
	return nil
}
