package config

import (
	"errors"
	"fmt"
	"iter"
	"net"
	"sort"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/pipeline"
)

// BuildContext is what a stage builder knows about the chain it joins.
type BuildContext struct {
	File *File
	// Worker is the index of the worker the stage instance is for: stages
	// are built once per worker, so per-worker state needs no locks.
	Worker int
	// Check is set by `xnf run --check`: validate, touch no system state,
	// reserve small tables.
	Check bool
	// Offline is set by `xnf replay`: touch no system state (interface
	// MACs come from the file, no kernel route sync) but size every table
	// as `xnf run` does, so a capture replays as it would run live.
	Offline bool
	// Shared is what the workers of one service share (see SharedValue):
	// set it to one Shared for every worker's build, and close it once
	// the workers have stopped. Nil shares nothing.
	Shared *Shared

	conntrack *conntrack.Table
}

// SharedConntrack is the worker's connection-tracking table, if an earlier
// stage of the chain made one. Stages that track connections share it, so
// a firewall in front of a NAT sees the NAT's translations: the first
// stage that needs a table creates it (its conntrack settings win) and
// tracks each packet; later ones look packets up.
func (c *BuildContext) SharedConntrack() *conntrack.Table { return c.conntrack }

// SetSharedConntrack offers t to the stages after this one.
func (c *BuildContext) SetSharedConntrack(t *conntrack.Table) { c.conntrack = t }

// conntrackFor returns the worker's shared table and true when an earlier
// stage made one; otherwise a new table of cc (a small one in check mode,
// which reserves no full table), offered to the stages after this one.
//
// A table belongs to one worker. With more than one worker the service
// hands every packet to the worker that owns its flow (File.Steering), so
// each table sees both directions of its flows; a chain that hand-off
// cannot make correct is refused here, with File.Steering's error.
func (c *BuildContext) conntrackFor(sc *StageConfig, cc conntrack.Config) (*conntrack.Table, bool, error) {
	if ct := c.SharedConntrack(); ct != nil {
		return ct, true, nil
	}
	if _, err := c.File.steeringConfig(); err != nil {
		return nil, false, err
	}
	if c.Check {
		cc.MaxFlows = 1024 // validated by the caller
	}
	ct, err := conntrack.New(cc)
	if err != nil {
		return nil, false, sc.Errorf("conntrack", "%v", err)
	}
	c.SetSharedConntrack(ct)
	return ct, false, nil
}

// Port returns the index of a named port, or an error listing the names.
func (c *BuildContext) Port(name string) (uint16, error) {
	idx := c.File.PortIndex()
	if i, ok := idx[name]; ok {
		return i, nil
	}
	var names []string
	for n := range idx {
		names = append(names, n)
	}
	sort.Strings(names)
	return 0, fmt.Errorf("unknown port %q (expected one of %s)", name, strings.Join(names, ", "))
}

// MTU returns the MTU of a named port's interface, or 0 (no limit) when
// the interface is missing here (check and offline mode, tests; a service
// fails earlier, opening the port).
func (c *BuildContext) MTU(port string) (int, error) {
	i, err := c.Port(port)
	if err != nil {
		return 0, err
	}
	ifi, err := net.InterfaceByName(c.File.PortInterface(int(i)))
	if err != nil {
		return 0, nil
	}
	return ifi.MTU, nil
}

// MAC returns the hardware address of a named port's interface (zero in
// check or offline mode when the interface is missing there).
func (c *BuildContext) MAC(port string) ([6]byte, error) {
	i, err := c.Port(port)
	if err != nil {
		return [6]byte{}, err
	}
	ifname := c.File.PortInterface(int(i))
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		if c.Check || c.Offline {
			return [6]byte{}, nil
		}
		return [6]byte{}, fmt.Errorf("port %q: interface %s: %w", port, ifname, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return [6]byte{}, fmt.Errorf("port %q: interface %s has no Ethernet address", port, ifname)
	}
	return [6]byte(ifi.HardwareAddr), nil
}

// StageConfig is one stage's YAML, for its builder.
type StageConfig struct {
	file  *File
	index int
	node  *yaml.Node
}

// Path is the stage's field path, such as chain[2].
func (s *StageConfig) Path() string { return fmt.Sprintf("chain[%d]", s.index) }

// Decode decodes the stage's fields (all but type and name) into out, a
// pointer to a struct with yaml tags. Unknown fields are errors.
func (s *StageConfig) Decode(out any) error {
	stripped := &yaml.Node{Kind: yaml.MappingNode, Line: s.node.Line, Column: s.node.Column}
	for i := 0; i+1 < len(s.node.Content); i += 2 {
		if k := s.node.Content[i].Value; k != "type" && k != "name" {
			stripped.Content = append(stripped.Content, s.node.Content[i], s.node.Content[i+1])
		}
	}
	return decodeStrict(s.file.Path, s.Path(), stripped, out)
}

// Errorf makes an error at a field of the stage ("rules[2]" or ""), with
// the line of that field.
func (s *StageConfig) Errorf(field, format string, args ...any) error {
	p := s.Path()
	if field != "" {
		p += "." + field
	}
	return s.file.errField(p, format, args...)
}

// Builder makes one instance of a stage type from its configuration.
type Builder func(ctx *BuildContext, cfg *StageConfig) (pipeline.Stage, error)

var (
	regMu    sync.Mutex
	registry = map[string]Builder{}
)

// Register makes a stage type usable from YAML as `type: name`. Programs
// register their own stages before calling the CLI; names with a slash
// (mycompany/dnsblock) keep them apart from xnf's own.
func Register(name string, b Builder) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("config: stage type " + name + " registered twice")
	}
	registry[name] = b
}

func lookup(name string) (Builder, bool) {
	regMu.Lock()
	defer regMu.Unlock()
	b, ok := registry[name]
	return b, ok
}

// Types lists the registered stage types.
func Types() []string {
	regMu.Lock()
	defer regMu.Unlock()
	var out []string
	for k := range registry {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (f *File) buildStage(i int, ctx *BuildContext) (pipeline.Stage, error) {
	s := f.Chain[i]
	b, _ := lookup(s.Type)
	sc := &StageConfig{file: f, index: i, node: s.node}
	st, err := b(ctx, sc)
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, sc.Errorf("", "%v", err)
	}
	if s.Name != "" {
		st = pipeline.Named(st, s.Name)
	}
	return st, nil
}

// Stages builds the chain for one worker.
func (f *File) Stages(ctx *BuildContext) ([]pipeline.Stage, error) {
	var out []pipeline.Stage
	for i := range f.Chain {
		st, err := f.buildStage(i, ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// StageConfig returns the configuration of chain[i] (for reloads).
func (f *File) StageConfig(i int) *StageConfig {
	return &StageConfig{file: f, index: i, node: f.Chain[i].node}
}

// Unwrap returns the stage a builder made under any wrappers this package
// adds (a name, reload support): the *router.Router, *firewall.Stage or
// *nat.Stage itself.
func Unwrap(st pipeline.Stage) pipeline.Stage {
	for l := range stageLayers(st) {
		st = l
	}
	return st
}

// Find returns the first layer of st, from the outside in through the
// wrappers this package adds, that implements T (pipeline.StageMetrics,
// io.Closer, a reload interface).
func Find[T any](st pipeline.Stage) (T, bool) {
	for l := range stageLayers(st) {
		if t, ok := l.(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}

// stageLayers yields st and each stage it wraps, outside in: a wrapper
// has an Unwrap() pipeline.Stage method (pipeline.Named and this package's
// reload wrappers).
func stageLayers(st pipeline.Stage) iter.Seq[pipeline.Stage] {
	return func(yield func(pipeline.Stage) bool) {
		for {
			if !yield(st) {
				return
			}
			u, ok := st.(interface{ Unwrap() pipeline.Stage })
			if !ok {
				return
			}
			st = u.Unwrap()
		}
	}
}
