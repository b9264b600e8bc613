// Package bpf holds the XDP program xnf's data path loads, written in C and
// compiled with bpf2go. The generated Go and the little-endian objects are
// committed, so `go build` needs no clang; `make generate` rebuilds them and
// CI (`make generate-check`) checks that the committed output matches the
// source. include/xnf_bpf.h holds the kernel definitions every xnf XDP
// program shares, the benchmark rig's too (internal/rig/rigbpf).
//
// Redirect is the program every xnf device runs: it steers the frames xnf
// claims into the AF_XDP socket of the receiving queue and passes all else
// to the kernel unchanged, so SSH, ARP for the host and anything unclaimed
// keep working while xnf is attached.
//
// Offload is the firewall pre-filter those programs can run before they
// redirect a claimed frame: the stateless drop rules the firewall stage
// offloads, in maps every interface's program shares, with per-CPU hit
// counters per rule.
//
// Loading needs CAP_BPF (or root); this package never attaches anything.
// Attaching is afxdp's job, which knows devices and modes.
package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Filter chooses which frames the program claims for xnf. The zero Filter
// claims everything. Set fields are ANDed: EtherType 0x0800 with IPProto 17
// and DstPorts {53} claims IPv4 UDP to port 53 only.
type Filter struct {
	// EtherType, after up to two VLAN tags (0 = any).
	EtherType uint16
	// IPProto is the IPv4 protocol or the IPv6 next header right after the
	// fixed header; extension headers are not walked (0 = any).
	IPProto uint8
	// DstPorts, when not empty, claims only TCP, UDP and SCTP frames to
	// these destination ports. Non-first IPv4 fragments carry no port and
	// are left to the kernel.
	DstPorts []uint16
}

// IsAll reports whether the filter claims every frame.
func (f Filter) IsAll() bool { return f.EtherType == 0 && f.IPProto == 0 && len(f.DstPorts) == 0 }

func (f Filter) String() string {
	if f.IsAll() {
		return "all"
	}
	s := ""
	if f.EtherType != 0 {
		s += fmt.Sprintf("ethertype 0x%04x ", f.EtherType)
	}
	if f.IPProto != 0 {
		s += fmt.Sprintf("proto %d ", f.IPProto)
	}
	if len(f.DstPorts) > 0 {
		s += fmt.Sprintf("dports %v ", f.DstPorts)
	}
	return s[:len(s)-1]
}

// Counters are the program's totals over all CPUs.
type Counters struct {
	// Redirected frames went to an AF_XDP socket.
	Redirected uint64
	// Passed frames were claimed but their queue had no socket: the kernel got them.
	Passed uint64
	// Filtered frames were not claimed by the Filter: the kernel got them.
	Filtered uint64
	// Dropped frames were claimed and dropped by an offloaded firewall
	// rule (Offload).
	Dropped uint64
}

// Total is every frame the program saw.
func (c Counters) Total() uint64 { return c.Redirected + c.Passed + c.Filtered + c.Dropped }

// Sub returns c - o, for counting over a window.
func (c Counters) Sub(o Counters) Counters {
	return Counters{c.Redirected - o.Redirected, c.Passed - o.Passed, c.Filtered - o.Filtered, c.Dropped - o.Dropped}
}

const (
	counterRedirected = 0
	counterPassed     = 1
	counterFiltered   = 2
	counterDropped    = 3
)

// RedirectOptions configure LoadRedirect.
type RedirectOptions struct {
	// Queues is the number of XSKMAP slots: the device's RX queue count.
	Queues int
	Filter Filter
	// Frags loads the multi-buffer variant (SEC "xdp.frags"), needed for
	// native XDP on MTUs above one page and for XDP_USE_SG sockets.
	Frags bool
	// Ifindex, when set, binds the program to one device (needed for
	// the offload attach mode, which has nothing to do with Offload).
	Ifindex int
	// Offload, when set, makes the program judge claimed frames against
	// the firewall rules installed in it before redirecting them, and
	// drop those a rule drops. Nil leaves that code out of the program.
	Offload *Offload
	// Port is the interface's port index in the service (the packets'
	// InPort), which offloaded rules on an ingress port match. The frames
	// of a port from MaxOffloadPorts up are not judged.
	Port int
}

// Redirect is a loaded (not attached) redirect program with its maps.
type Redirect struct {
	Program  *ebpf.Program
	xsks     *ebpf.Map
	counters *ebpf.Map
	ports    *ebpf.Map
	vlans    *ebpf.Map
	queues   int
}

// ErrPermission means the caller lacks the privilege to load BPF programs.
var ErrPermission = errors.New("loading BPF programs needs root or CAP_BPF (plus CAP_NET_ADMIN to attach)")

// loadError wraps an error loading the program what, as ErrPermission when
// the kernel refused for want of privilege.
func loadError(what string, err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("bpf: %w: %v", ErrPermission, err)
	}
	return fmt.Errorf("bpf: loading %s: %w", what, err)
}

// LoadRedirect loads the redirect program with its filter fixed.
func LoadRedirect(o RedirectOptions) (*Redirect, error) {
	if o.Queues <= 0 {
		return nil, fmt.Errorf("bpf: redirect needs at least one queue, got %d", o.Queues)
	}
	spec, err := loadXdp()
	if err != nil {
		return nil, fmt.Errorf("bpf: reading embedded object: %w", err)
	}
	spec.Maps["xsks"].MaxEntries = uint32(o.Queues)
	set := func(name string, v uint32) error {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("bpf: setting %s: %w", name, err)
		}
		return nil
	}
	if err := errors.Join(
		set("filter_ethertype", uint32(o.Filter.EtherType)),
		set("filter_ipproto", uint32(o.Filter.IPProto)),
		set("filter_ports", b2u(len(o.Filter.DstPorts) > 0)),
		set("offload_on", b2u(o.Offload != nil)),
		set("offload_port", uint32(min(max(o.Port, 0), MaxOffloadPorts))),
	); err != nil {
		return nil, err
	}
	var opts ebpf.CollectionOptions
	if o.Offload != nil {
		if o.Port < 0 {
			return nil, fmt.Errorf("bpf: port index %d", o.Port)
		}
		if opts.MapReplacements, err = o.Offload.replacements(); err != nil {
			return nil, err
		}
	} else {
		// Without offload the verifier removes the code that reads the
		// offload maps, but the program still names them: make them as
		// small as the kernel allows.
		for name, m := range spec.Maps {
			if strings.HasPrefix(name, "offload_") {
				m.MaxEntries = 1
			}
		}
	}
	keep := "xnf_redirect"
	if o.Frags {
		keep = "xnf_redirect_frags"
	}
	for name, p := range spec.Programs {
		if name != keep {
			delete(spec.Programs, name)
		} else if o.Ifindex != 0 {
			p.Ifindex = uint32(o.Ifindex)
		}
	}
	var objs struct {
		Xsks     *ebpf.Map `ebpf:"xsks"`
		Counters *ebpf.Map `ebpf:"counters"`
		PortSet  *ebpf.Map `ebpf:"port_set"`
		Vlans    *ebpf.Map `ebpf:"vlan_ports"`
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		return nil, loadError("redirect program", err)
	}
	if err := coll.Assign(&objs); err != nil {
		coll.Close()
		return nil, err
	}
	r := &Redirect{Program: coll.DetachProgram(keep), xsks: objs.Xsks, counters: objs.Counters, ports: objs.PortSet, vlans: objs.Vlans, queues: o.Queues}
	coll.Close() // maps are still referenced by r and the program
	if len(o.Filter.DstPorts) > 0 {
		var set xdpPortSet
		for _, p := range o.Filter.DstPorts {
			set.Bits[p>>6] |= 1 << (p & 63)
		}
		if err := r.ports.Put(uint32(0), &set); err != nil {
			r.Close()
			return nil, fmt.Errorf("bpf: writing port set: %w", err)
		}
	}
	return r, nil
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// Queues is the number of XSKMAP slots.
func (r *Redirect) Queues() int { return r.queues }

// Register makes queue's frames go to the AF_XDP socket fd.
func (r *Redirect) Register(queue int, fd int) error {
	if queue < 0 || queue >= r.queues {
		return fmt.Errorf("bpf: queue %d out of range (the program was loaded for %d queues)", queue, r.queues)
	}
	if err := r.xsks.Put(uint32(queue), uint32(fd)); err != nil {
		return fmt.Errorf("bpf: registering socket for queue %d: %w", queue, err)
	}
	return nil
}

// Unregister stops redirecting queue; its frames go to the kernel again.
func (r *Redirect) Unregister(queue int) error {
	err := r.xsks.Delete(uint32(queue))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: unregistering queue %d: %w", queue, err)
	}
	return nil
}

// SetVLANPorts tells the pre-filter (RedirectOptions.Offload) how the
// port layer demultiplexes the interface's 802.1Q VLANs (port/xdp
// trunks): byVID[v] is the port index the frames of VLAN ID v reach, with
// their outer tag taken off (v 0: untagged and priority-tagged frames; -1:
// no port carries v, and those frames never reach the chain; 802.1ad and
// cut tags never do). Offloaded rules then judge each frame as the stage
// sees it, on that port. Until it is called, every frame is
// RedirectOptions.Port's, tags and all. Frames of ports from
// MaxOffloadPorts up are not judged.
func (r *Redirect) SetVLANPorts(byVID *[4096]int) error {
	v := xdpOffVlans{Trunk: 1}
	for vid, port := range byVID {
		if port >= 0 {
			v.Port[vid] = uint16(min(port, MaxOffloadPorts) + 1)
		}
	}
	if err := r.vlans.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("bpf: writing the VLAN ports: %w", err)
	}
	return nil
}

// Counters sums the per-CPU counters.
func (r *Redirect) Counters() (Counters, error) {
	var c Counters
	for slot, dst := range []*uint64{counterRedirected: &c.Redirected, counterPassed: &c.Passed, counterFiltered: &c.Filtered, counterDropped: &c.Dropped} {
		var per []uint64
		if err := r.counters.Lookup(uint32(slot), &per); err != nil {
			return c, fmt.Errorf("bpf: reading counters: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return c, nil
}

// Close unloads the program and its maps (an attached link keeps the
// program alive until the link closes too).
func (r *Redirect) Close() error {
	// Program.Close and Map.Close accept nil receivers.
	return errors.Join(r.Program.Close(), r.xsks.Close(), r.counters.Close(), r.ports.Close(), r.vlans.Close())
}
