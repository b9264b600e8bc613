// Package config reads an xnf service chain from YAML: the ports (their
// type; for AF_XDP which interfaces and queues, XDP mode, zero-copy
// policy, ring and UMEM sizes), the workers, the chain of stages with
// their parameters, metrics and logging. Unknown fields are errors, and
// every error names the file, the line and the field and says what was
// expected:
//
//	chain.yaml:14: chain[1].rules[2]: dport: 70000 is not a port (expected 0-65535 or lo-hi)
//
// Values with a fixed vocabulary (XDP modes, zero-copy policies, filter
// ethertypes and protocols) are typed and parsed once, here, through
// their UnmarshalText.
//
// Config is one front end of the service: it turns a file into Go values
// (port.Config per port, pipeline.Stage per worker) that service.Spec
// runs, exactly as a Go program would build them. Stage types (Register)
// and port types (RegisterPort) are registered by name, so a program that
// adds its own makes it usable from YAML with one call.
package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"github.com/xnfdev/xnf/afxdp"

	"go.yaml.in/yaml/v3"
)

// File is a parsed chain file.
type File struct {
	Ports   []Port    `yaml:"ports"`
	UMEM    UMEM      `yaml:"umem"`
	Workers Workers   `yaml:"workers"`
	Chain   []Stage   `yaml:"chain"`
	Forward []Forward `yaml:"forward"`
	Metrics Metrics   `yaml:"metrics"`
	Log     Log       `yaml:"log"`

	// Path is where the file was read from ("" for a string).
	Path string `yaml:"-"`
	root *yaml.Node
}

// Port is one port of the chain. The fields after Type belong to the
// default type, afxdp; other types read their own fields (RegisterPort).
type Port struct {
	// Name is how stages and forward rules refer to the port.
	Name string `yaml:"name"`
	// Type is the port type (default afxdp; see PortTypes).
	Type      string `yaml:"type"`
	Interface string `yaml:"interface"`
	// Queues lists the RX queues to serve (default: [0]). Every port must
	// list as many queues as the others: worker i serves queue Queues[i]
	// of every port.
	Queues []int `yaml:"queues"`
	// Mode is auto (default), native, generic or offload.
	Mode afxdp.AttachMode `yaml:"mode"`
	// ZeroCopy is auto (default), require or off.
	ZeroCopy afxdp.ZeroCopy `yaml:"zero_copy"`
	// RingSize sizes all four rings (default 2048, a power of two).
	RingSize int `yaml:"ring_size"`
	// PreferBusyPoll makes the worker drive the queue's receive work
	// (its NAPI context) from its own loop, so the kernel delivers only
	// what the worker asks for, on the worker's CPU (preferred busy
	// polling: SO_PREFER_BUSY_POLL with the device's NAPI deferred).
	// Unset: on where the kernel can busy-poll the socket, which since
	// Linux 6.13 means zero-copy sockets in native mode only; true where
	// it cannot is an error at start.
	PreferBusyPoll *bool `yaml:"prefer_busy_poll"`
	// BusyPollBudget is the most frames one busy poll receives (default 64).
	BusyPollBudget int `yaml:"busy_poll_budget"`
	// Frags loads the multi-buffer program (jumbo frames).
	Frags  bool   `yaml:"frags"`
	Filter Filter `yaml:"filter"`
	// VLAN makes an afxdp port an access port of that 802.1Q VLAN
	// (1-4094): the wire carries the VLAN's frames tagged, the chain sees
	// them untagged. 0 (the default): untagged.
	VLAN int `yaml:"vlan"`

	node *yaml.Node
}

// PortType is the port's type, afxdp when none is given.
func (p *Port) PortType() string {
	if p.Type == "" {
		return "afxdp"
	}
	return p.Type
}

// UnmarshalYAML decodes the port and keeps its node for its type's builder.
func (p *Port) UnmarshalYAML(n *yaml.Node) error {
	type plain Port // without this method
	if err := n.Decode((*plain)(p)); err != nil {
		return err
	}
	p.node = n
	return nil
}

// Filter chooses what the XDP program claims; the rest goes to the kernel.
type Filter struct {
	EtherType EtherType `yaml:"ethertype"` // "ipv4", "ipv6", "arp" or a number like 0x88b5
	Proto     IPProto   `yaml:"proto"`     // "tcp", "udp", "icmp", "icmpv6" or a number
	DstPorts  []uint16  `yaml:"dst_ports"`
}

// UMEM sizes each worker's packet memory.
type UMEM struct {
	FrameSize int  `yaml:"frame_size"` // 2048 or 4096 (default 4096)
	Frames    int  `yaml:"frames"`     // default 4096 per port
	HugePages bool `yaml:"huge_pages"` // try huge pages, fall back to pages
}

// Workers says where workers run and how they behave.
type Workers struct {
	// CPUs pins worker i to CPUs[i]; missing entries leave it unpinned.
	CPUs  []int `yaml:"cpus"`
	Burst int   `yaml:"burst"` // default 64
	// Spin is the number of empty loops before blocking in poll(2)
	// (default 1 with realtime, 256 without).
	Spin int `yaml:"spin"`
	// BusyPoll never blocks (a core at 100%); not with realtime.
	BusyPoll bool `yaml:"busy_poll"`
	// Nice is the workers' nice value when not realtime (default -10;
	// "nice: 0" keeps the scheduler's default). See pipeline.Config.Nice.
	Nice *int `yaml:"nice"`
	// RealTime runs the workers under SCHED_FIFO at this priority (1-99;
	// default 1; 0 keeps them in the normal class at Nice). See
	// pipeline.Config.RealTime.
	RealTime *int `yaml:"realtime"`
}

// WorkerRealTime is the SCHED_FIFO priority workers run at (0: none).
func (w Workers) WorkerRealTime() int {
	if w.RealTime == nil {
		return 1
	}
	return *w.RealTime
}

// WorkerSpin is the number of empty loops before a worker blocks.
func (w Workers) WorkerSpin() int {
	switch {
	case w.Spin != 0:
		return w.Spin
	case w.WorkerRealTime() > 0:
		return 1
	}
	return 256
}

// WorkerNice is the nice value workers run at.
func (w Workers) WorkerNice() int {
	if w.Nice == nil {
		return -10
	}
	return *w.Nice
}

// Stage is one chain entry: a type and that type's own fields.
type Stage struct {
	Type string `yaml:"type"`
	// Name overrides the stage's name in counters (default: its type).
	Name string `yaml:"name"`
	node *yaml.Node
}

// Forward sets where packets received on a port go when no stage decides.
type Forward struct {
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is host:port (default 127.0.0.1:9464); "off" disables it.
	Listen string `yaml:"listen"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // text (default) or json
}

// Error is a configuration error with its place.
type Error struct {
	File  string
	Line  int
	Field string // path such as chain[1].rules[2]
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	} else {
		b.WriteString("<config>")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads and checks a chain file.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse reads and checks a chain from bytes; name is used in errors.
func Parse(name string, data []byte) (*File, error) {
	f := &File{Path: name}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Msg: "empty file (expected ports and a chain)"}
		}
		ye := yamlError(name, err).(*Error)
		if ye.Line == 0 {
			// yaml.v3 reports some errors (an unexpected end of stream)
			// without a line: they are at the end of the file.
			ye.Line = bytes.Count(data, []byte("\n")) + 1
		}
		return nil, ye
	}
	if len(doc.Content) == 0 {
		return nil, &Error{File: name, Msg: "empty file (expected ports and a chain)"}
	}
	f.root = doc.Content[0]
	if err := decodeStrict(name, "", f.root, f); err != nil {
		return nil, err
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	return f, nil
}

// yamlError turns a yaml.v3 error ("yaml: line 3: ...") into an Error.
func yamlError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
	}
	return &Error{File: file, Line: line, Msg: msg}
}

// errAt makes an Error at a node.
func (f *File) errAt(n *yaml.Node, field, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: f.Path, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// decodeStrict decodes node into out, refusing mapping keys that out has no
// field for (recursively), with the line of the offending key.
func decodeStrict(file, path string, node *yaml.Node, out any) error {
	if err := checkKeys(file, path, node, reflect.TypeOf(out)); err != nil {
		return err
	}
	if err := node.Decode(out); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			e := yamlError(file, errors.New(te.Errors[0])).(*Error)
			// yaml names the line, not the field: find the field there.
			e.Field = pathAtLine(node, path, e.Line)
			return e
		}
		return yamlError(file, err)
	}
	return nil
}

// pathAtLine returns the path (such as chain[0].rules[2]) of the deepest
// value that starts on line, or prefix when none does.
func pathAtLine(n *yaml.Node, prefix string, line int) string {
	best := prefix
	var walk func(n *yaml.Node, p string)
	walk = func(n *yaml.Node, p string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				kp := join(p, k.Value)
				if v.Line == line || k.Line == line {
					best = kp
				}
				walk(v, kp)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				cp := fmt.Sprintf("%s[%d]", p, i)
				if c.Line == line && c.Kind == yaml.ScalarNode {
					best = cp
				}
				walk(c, cp)
			}
		}
	}
	walk(n, prefix)
	return best
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	filterType      = reflect.TypeFor[Filter]()
	portType        = reflect.TypeFor[Port]()
)

func checkKeys(file, path string, n *yaml.Node, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		// Not followed: an alias bomb would make this walk exponential.
		// The decoder checks aliases' values, with its own limits.
		return nil
	}
	if n.Kind == yaml.ScalarNode && reflect.PointerTo(t).Implements(textUnmarshaler) {
		// Typed values (modes, policies) are parsed here, where the line
		// is known; the decoder parses them again, and cannot fail.
		v := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if err := v.UnmarshalText([]byte(n.Value)); err != nil {
			return &Error{File: file, Line: n.Line, Field: path, Msg: err.Error()}
		}
		return nil
	}
	if t == portType && n.Kind == yaml.MappingNode {
		if typ := mapValue(n, "type"); typ != nil && typ.Value != "" && typ.Value != "afxdp" {
			return nil // another type's fields: checked by its builder
		}
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return nil
			}
			return &Error{File: file, Line: n.Line, Field: path, Msg: fmt.Sprintf("expected a mapping of %s, got %s", fieldList(t), describe(n))}
		}
		if t == reflect.TypeOf(Stage{}) {
			return nil // stage fields belong to the stage type: checked by its builder
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			sf, ok := fieldByTag(t, k.Value)
			if !ok {
				return &Error{File: file, Line: k.Line, Field: join(path, k.Value), Msg: fmt.Sprintf("unknown field (expected one of %s)", fieldList(t))}
			}
			fp := join(path, k.Value)
			if t == filterType {
				fp = path // filter errors name the filter and, in the message, the key
			}
			if err := checkKeys(file, fp, v, sf.Type); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind == yaml.SequenceNode {
			for i, c := range n.Content {
				if err := checkKeys(file, fmt.Sprintf("%s[%d]", path, i), c, t.Elem()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return fmt.Sprintf("%q", n.Value)
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := strings.Split(f.Tag.Get("yaml"), ",")[0]; tag == key && tag != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func fieldList(t reflect.Type) string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
			names = append(names, tag)
		}
	}
	return strings.Join(names, ", ")
}

// UnmarshalYAML keeps the stage's node for its builder.
func (s *Stage) UnmarshalYAML(n *yaml.Node) error {
	s.node = n
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch n.Content[i].Value {
		case "type":
			s.Type = n.Content[i+1].Value
		case "name":
			s.Name = n.Content[i+1].Value
		}
	}
	return nil
}

// Node is the stage's YAML mapping (for builders).
func (s *Stage) Node() *yaml.Node { return s.node }

// node finds the value node at a path like "ports[1].mode" (nil if absent).
func (f *File) node(path string) *yaml.Node {
	n := f.root
	for _, part := range strings.Split(path, ".") {
		if n == nil {
			return nil
		}
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			fmt.Sscanf(part[i:], "[%d]", &idx)
		}
		if name != "" {
			n = mapValue(n, name)
		}
		if idx >= 0 {
			if n == nil || n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return nil
			}
			n = n.Content[idx]
		}
	}
	return n
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// errField makes an Error at the node of a field path (or its nearest
// existing parent).
func (f *File) errField(path, format string, args ...any) error {
	n := f.node(path)
	for p := path; n == nil && p != ""; {
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
		n = f.node(p)
	}
	if n == nil {
		n = f.root // a missing top-level field: point at the document
	}
	return f.errAt(n, path, format, args...)
}
