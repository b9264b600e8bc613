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
// Loading needs CAP_BPF (or root); this package never attaches anything.
// Attaching is afxdp's job, which knows devices and modes.
package bpf

import (
	"errors"
	"fmt"

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
}

// Total is every frame the program saw.
func (c Counters) Total() uint64 { return c.Redirected + c.Passed + c.Filtered }

// Sub returns c - o, for counting over a window.
func (c Counters) Sub(o Counters) Counters {
	return Counters{c.Redirected - o.Redirected, c.Passed - o.Passed, c.Filtered - o.Filtered}
}

const (
	counterRedirected = 0
	counterPassed     = 1
	counterFiltered   = 2
)

// RedirectOptions configure LoadRedirect.
type RedirectOptions struct {
	// Queues is the number of XSKMAP slots: the device's RX queue count.
	Queues int
	Filter Filter
	// Frags loads the multi-buffer variant (SEC "xdp.frags"), needed for
	// native XDP on MTUs above one page and for XDP_USE_SG sockets.
	Frags bool
	// Ifindex, when set, binds the program to one device (needed for offload).
	Ifindex int
}

// Redirect is a loaded (not attached) redirect program with its maps.
type Redirect struct {
	Program  *ebpf.Program
	xsks     *ebpf.Map
	counters *ebpf.Map
	ports    *ebpf.Map
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
	); err != nil {
		return nil, err
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
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, loadError("redirect program", err)
	}
	if err := coll.Assign(&objs); err != nil {
		coll.Close()
		return nil, err
	}
	r := &Redirect{Program: coll.DetachProgram(keep), xsks: objs.Xsks, counters: objs.Counters, ports: objs.PortSet, queues: o.Queues}
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

// Counters sums the per-CPU counters.
func (r *Redirect) Counters() (Counters, error) {
	var c Counters
	for slot, dst := range []*uint64{counterRedirected: &c.Redirected, counterPassed: &c.Passed, counterFiltered: &c.Filtered} {
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
	return errors.Join(r.Program.Close(), r.xsks.Close(), r.counters.Close(), r.ports.Close())
}
