package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/xnfdev/xnf/port"
	"github.com/xnfdev/xnf/port/pcap"
	"github.com/xnfdev/xnf/port/xdp"
)

// PortConfig is one port's YAML, for its type's builder.
type PortConfig struct {
	file  *File
	index int
}

// Port is the port's common fields (name, type and, for afxdp, the rest).
func (c *PortConfig) Port() *Port { return &c.file.Ports[c.index] }

// Path is the port's field path, such as ports[1].
func (c *PortConfig) Path() string { return fmt.Sprintf("ports[%d]", c.index) }

// Decode decodes the port's fields (all but name and type) into out, a
// pointer to a struct with yaml tags. Unknown fields are errors.
func (c *PortConfig) Decode(out any) error {
	n := c.Port().node
	if n == nil {
		return nil // built in Go, not read from a file
	}
	stripped := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; k != "type" && k != "name" {
			stripped.Content = append(stripped.Content, n.Content[i], n.Content[i+1])
		}
	}
	return decodeStrict(c.file.Path, c.Path(), stripped, out)
}

// Errorf makes an error at a field of the port ("read" or ""), with the
// line of that field.
func (c *PortConfig) Errorf(field, format string, args ...any) error {
	p := c.Path()
	if field != "" {
		p += "." + field
	}
	return c.file.errField(p, format, args...)
}

// PortBuilder turns one port's configuration into its Go value. It must
// not touch the system (the value's Open does that): it also runs for
// `xnf run --check`.
type PortBuilder func(cfg *PortConfig) (port.Config, error)

var portRegistry = map[string]PortBuilder{
	"afxdp": buildXDPPort,
	"pcap":  buildPcapPort,
	"vlan":  buildVLANPort,
}

// RegisterPort makes a port type usable from YAML as `type: name`, as
// Register does for stages; names with a slash (mycompany/tap) keep them
// apart from xnf's own.
func RegisterPort(name string, b PortBuilder) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := portRegistry[name]; dup {
		panic("config: port type " + name + " registered twice")
	}
	portRegistry[name] = b
}

func lookupPort(name string) (PortBuilder, bool) {
	regMu.Lock()
	defer regMu.Unlock()
	b, ok := portRegistry[name]
	return b, ok
}

// PortTypes lists the registered port types.
func PortTypes() []string {
	regMu.Lock()
	defer regMu.Unlock()
	var out []string
	for k := range portRegistry {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// PortConfigs builds every port's Go value, in order.
func (f *File) PortConfigs() ([]port.Config, error) {
	var out []port.Config
	for i := range f.Ports {
		p := &f.Ports[i]
		b, ok := lookupPort(p.PortType())
		if !ok {
			return nil, f.errField(fmt.Sprintf("ports[%d].type", i), "unknown port type %q (expected one of %s)", p.Type, strings.Join(PortTypes(), ", "))
		}
		pc := &PortConfig{file: f, index: i}
		c, err := b(pc)
		if err != nil {
			var ce *Error
			if errors.As(err, &ce) {
				return nil, err
			}
			return nil, pc.Errorf("", "%v", err)
		}
		out = append(out, c)
	}
	return out, nil
}

// WorkerCount is the number of workers the file runs: one per queue listed
// by its AF_XDP ports (1 without any).
func (f *File) WorkerCount() int {
	for i := range f.Ports {
		if f.Ports[i].PortType() == "afxdp" {
			return max(len(f.Ports[i].Queues), 1)
		}
	}
	return 1
}

func buildXDPPort(c *PortConfig) (port.Config, error) {
	p := c.Port()
	return xdp.Interface{Interface: p.Interface, Queues: p.Queues, Mode: p.Mode, ZeroCopy: p.ZeroCopy,
		RingSize: p.RingSize, Frags: p.Frags, Filter: p.Filter.BPF(),
		PreferBusyPoll: p.PreferBusyPoll, BusyPollBudget: p.BusyPollBudget, VLAN: uint16(p.VLAN)}, nil
}

// vlanFields are a vlan port's own fields.
type vlanFields struct {
	Parent string `yaml:"parent"`
	VID    int    `yaml:"vid"`
}

// vlanOf returns the fields of port i when it is a vlan port.
func (f *File) vlanOf(i int) (vlanFields, bool) {
	var y vlanFields
	if f.Ports[i].PortType() != "vlan" {
		return y, false
	}
	err := (&PortConfig{file: f, index: i}).Decode(&y)
	return y, err == nil
}

// PortInterface is the kernel's interface under port i: an afxdp port's
// own, a vlan port's parent's; "" for other types.
func (f *File) PortInterface(i int) string {
	if v, ok := f.vlanOf(i); ok {
		for j := range f.Ports {
			if f.Ports[j].Name == v.Parent && f.Ports[j].PortType() == "afxdp" {
				return f.Ports[j].Interface
			}
		}
		return ""
	}
	return f.Ports[i].Interface
}

// buildVLANPort checks a vlan port against its parent and the parent's
// other VLANs. A parent stays a port of its own: it keeps the frames of
// its own VLAN (untagged ones, or those of its vlan:), so a parent and
// its VLANs can all be used; what matters is that no VLAN ID is claimed
// twice on one wire.
func buildVLANPort(c *PortConfig) (port.Config, error) {
	var y vlanFields
	if err := c.Decode(&y); err != nil {
		return nil, err
	}
	f := c.file
	if y.Parent == "" {
		return nil, c.Errorf("", "a vlan port needs parent: (the afxdp port whose wire carries the VLAN) and vid: (its VLAN ID, 1-4094)")
	}
	j := -1
	for k := range f.Ports {
		if f.Ports[k].Name == y.Parent {
			j = k
		}
	}
	switch {
	case j < 0:
		var names []string
		for k := range f.Ports {
			if f.Ports[k].PortType() == "afxdp" {
				names = append(names, f.Ports[k].Name)
			}
		}
		return nil, c.Errorf("parent", "unknown port %q (expected an afxdp port: one of %s)", y.Parent, strings.Join(names, ", "))
	case f.Ports[j].PortType() != "afxdp":
		return nil, c.Errorf("parent", "port %q is a %s port: VLANs ride on afxdp ports", y.Parent, f.Ports[j].PortType())
	case j > c.index:
		return nil, c.Errorf("parent", "port %q comes after its VLAN port (ports[%d]): list the parent first", y.Parent, j)
	}
	if y.VID < 1 || y.VID > 4094 {
		return nil, c.Errorf("vid", "%d: expected a VLAN ID 1-4094", y.VID)
	}
	if f.Ports[j].VLAN == y.VID {
		return nil, c.Errorf("vid", "VLAN %d is port %q's own (its vlan: %d): a VLAN is one port", y.VID, y.Parent, y.VID)
	}
	for k := range c.index {
		if o, ok := f.vlanOf(k); ok && o.Parent == y.Parent && o.VID == y.VID {
			return nil, c.Errorf("vid", "VLAN %d of %q is port %q already (ports[%d])", y.VID, y.Parent, f.Ports[k].Name, k)
		}
	}
	return xdp.VLAN{Parent: y.Parent, VID: uint16(y.VID)}, nil
}

func buildPcapPort(c *PortConfig) (port.Config, error) {
	var y struct {
		Read  string `yaml:"read"`
		Write string `yaml:"write"`
	}
	if err := c.Decode(&y); err != nil {
		return nil, err
	}
	if (y.Read == "") == (y.Write == "") {
		return nil, c.Errorf("", "a pcap port needs one of read: (a capture to receive) or write: (a capture to create)")
	}
	return pcap.File{Read: y.Read, Write: y.Write}, nil
}
