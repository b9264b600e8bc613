package config

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/xnfdev/xnf/bpf"
	"github.com/xnfdev/xnf/pipeline"
)

func (f *File) check() error {
	if len(f.Ports) == 0 {
		return f.errField("ports", "no ports (expected a list of ports, each with a name and an interface)")
	}
	names := map[string]int{}
	nq := -1
	for i := range f.Ports {
		p := &f.Ports[i]
		at := fmt.Sprintf("ports[%d]", i)
		if p.Name == "" {
			return f.errField(at, "missing name (expected a short name such as in or out)")
		}
		if j, dup := names[p.Name]; dup {
			return f.errField(at+".name", "port name %q is already used by ports[%d]", p.Name, j)
		}
		names[p.Name] = i
		if len(p.Queues) == 0 {
			p.Queues = []int{0}
		}
		if p.PortType() != "afxdp" {
			if _, ok := lookupPort(p.PortType()); !ok {
				return f.errField(at+".type", "unknown port type %q (expected one of %s)", p.Type, strings.Join(PortTypes(), ", "))
			}
			continue // its builder checks its fields
		}
		if p.Interface == "" {
			return f.errField(at, "port %q: missing interface (expected an interface name such as eth0)", p.Name)
		}
		if len(p.Interface) > 15 {
			return f.errField(at+".interface", "%q is longer than an interface name can be (15 characters)", p.Interface)
		}
		for k, q := range p.Queues {
			if q < 0 || q > 4095 {
				return f.errField(fmt.Sprintf("%s.queues[%d]", at, k), "%d is not a queue number (expected 0-4095)", q)
			}
		}
		if nq >= 0 && len(p.Queues) != nq {
			return f.errField(at+".queues", "port %q lists %d queues but ports[0] lists %d (every port needs one queue per worker)", p.Name, len(p.Queues), nq)
		}
		nq = len(p.Queues)
		if r := p.RingSize; r != 0 && (r < 64 || r > 1<<16 || r&(r-1) != 0) {
			return f.errField(at+".ring_size", "%d is not a power of two between 64 and 65536", r)
		}
		if b := p.BusyPollBudget; b != 0 && (b < 1 || b > 1024) {
			return f.errField(at+".busy_poll_budget", "%d: expected between 1 and 1024 frames", b)
		}
		if v := p.VLAN; v < 0 || v > 4094 {
			return f.errField(at+".vlan", "%d: expected a VLAN ID 1-4094 (or 0 for untagged)", v)
		}
	}
	// Build every port once: the builders check their own fields.
	if _, err := f.PortConfigs(); err != nil {
		return err
	}
	if s := f.UMEM.FrameSize; s != 0 && s != 2048 && s != 4096 {
		return f.errField("umem.frame_size", "%d: expected 2048 or 4096", s)
	}
	if n := f.UMEM.Frames; n != 0 && (n < 256 || n > 1<<20) {
		return f.errField("umem.frames", "%d: expected between 256 and 1048576", n)
	}
	for i, c := range f.Workers.CPUs {
		if c < 0 || c > 4095 {
			return f.errField(fmt.Sprintf("workers.cpus[%d]", i), "%d is not a CPU number", c)
		}
	}
	if n := f.Workers.WorkerRealTime(); n < 0 || n > 99 {
		return f.errField("workers.realtime", "%d: expected a SCHED_FIFO priority between 1 and 99, or 0 for none", n)
	}
	if f.Workers.BusyPoll && f.Workers.WorkerRealTime() > 0 {
		return f.errField("workers.busy_poll", "a realtime worker that never blocks starves the kernel's receive work on its core (nothing would arrive): set workers.realtime: 0 to busy-poll, or drop busy_poll")
	}
	if n := f.Workers.WorkerNice(); n < -20 || n > 19 {
		return f.errField("workers.nice", "%d: expected a nice value between -20 and 19", n)
	}
	if b := f.Workers.Burst; b != 0 && (b < 1 || b > 256) {
		return f.errField("workers.burst", "%d: expected between 1 and 256", b)
	}
	for i, fw := range f.Forward {
		at := fmt.Sprintf("forward[%d]", i)
		if _, ok := names[fw.From]; !ok {
			return f.errField(at+".from", "unknown port %q (expected one of %s)", fw.From, portNames(names))
		}
		if _, ok := names[fw.To]; !ok {
			return f.errField(at+".to", "unknown port %q (expected one of %s)", fw.To, portNames(names))
		}
	}
	if l := f.Metrics.Listen; l != "" && l != "off" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			return f.errField("metrics.listen", "%q: expected host:port such as 127.0.0.1:9464, or off", l)
		}
	}
	switch f.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		return f.errField("log.level", "%q: expected debug, info, warn or error", f.Log.Level)
	}
	switch f.Log.Format {
	case "", "text", "json":
	default:
		return f.errField("log.format", "%q: expected text or json", f.Log.Format)
	}
	for i, s := range f.Chain {
		at := fmt.Sprintf("chain[%d]", i)
		if s.Type == "" {
			return f.errField(at, "missing type (expected one of %s)", strings.Join(Types(), ", "))
		}
		if _, ok := lookup(s.Type); !ok {
			return f.errField(at+".type", "unknown stage type %q (expected one of %s)", s.Type, strings.Join(Types(), ", "))
		}
	}
	// Build every stage once: the builders check their own fields.
	for i := range f.Chain {
		if _, err := f.buildStage(i, &BuildContext{File: f, Check: true}); err != nil {
			return err
		}
	}
	return nil
}

func portNames(m map[string]int) string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// EtherType is a filter's ethertype: ipv4 (or ip), ipv6, arp, a number
// of at least 0x600 such as 0x88b5, or any (0, the default).
type EtherType uint16

func (e *EtherType) UnmarshalText(b []byte) error {
	switch s := strings.ToLower(string(b)); s {
	case "", "any", "all":
		*e = 0
	case "ipv4", "ip":
		*e = 0x0800
	case "ipv6":
		*e = 0x86dd
	case "arp":
		*e = 0x0806
	default:
		v, err := strconv.ParseUint(s, 0, 16)
		if err != nil || v < 0x600 {
			return fmt.Errorf("ethertype %q: expected ipv4, ipv6, arp or a number such as 0x88b5", b)
		}
		*e = EtherType(v)
	}
	return nil
}

// IPProto is a filter's IP protocol: tcp, udp, icmp, icmpv6, sctp, a
// protocol number 1-255, or any (0, the default).
type IPProto uint8

func (p *IPProto) UnmarshalText(b []byte) error {
	switch s := strings.ToLower(string(b)); s {
	case "", "any", "all":
		*p = 0
	case "tcp":
		*p = 6
	case "udp":
		*p = 17
	case "icmp":
		*p = 1
	case "icmpv6":
		*p = 58
	case "sctp":
		*p = 132
	default:
		v, err := strconv.ParseUint(s, 0, 8)
		if err != nil || v == 0 {
			return fmt.Errorf("proto %q: expected tcp, udp, icmp, icmpv6, sctp or a protocol number 1-255", b)
		}
		*p = IPProto(v)
	}
	return nil
}

// BPF is the filter as the XDP program takes it.
func (fl Filter) BPF() bpf.Filter {
	return bpf.Filter{EtherType: uint16(fl.EtherType), IPProto: uint8(fl.Proto), DstPorts: fl.DstPorts}
}

// PortIndex maps port names to pipeline port indices.
func (f *File) PortIndex() map[string]uint16 {
	m := map[string]uint16{}
	for i, p := range f.Ports {
		m[p.Name] = uint16(i)
	}
	return m
}

// DefaultOut returns each port's default output from the forward rules:
// by default a pair of ports forward to each other.
func (f *File) DefaultOut() []uint16 {
	idx := f.PortIndex()
	out := pipeline.PairedOutputs(len(f.Ports))
	for _, fw := range f.Forward {
		out[idx[fw.From]] = idx[fw.To]
	}
	return out
}
