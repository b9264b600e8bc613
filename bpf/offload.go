package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
)

// Offload is the firewall pre-filter: the maps that the redirect programs
// of a service's interfaces read to drop claimed frames that an offloaded
// firewall rule drops (xdp_offload.h has the layout), and the per-CPU hit
// counter of every rule. One Offload serves every interface: load each
// interface's program with it (RedirectOptions.Offload), and give its
// rules with Install.
//
// Reloads swap atomically. Every table exists twice, as two generations:
// Install fills the one not in force, then names it in offload_state, a
// one-element array that each packet reads once, so every packet is
// judged by the old rules or by the new ones, never by a mix. (Map-in-map
// swaps per table would need one more lookup per table per packet, and
// swapping seven tables one by one would not be atomic across them.)
// Then Install waits until no program still runs with the old generation:
// an update of a map-in-map returns only after the kernel's
// synchronize_rcu (kernel/bpf/syscall.c, maybe_wait_bpf_programs; the
// kernel's selftests rely on it the same way), and XDP programs run under
// RCU. So the old rules' counters are final when Install reads them.
//
// The zero cost of a service without offload: programs loaded without an
// Offload have the code removed by the verifier. With one, a packet costs
// one array lookup while no rule is installed.
//
// The maps are created on first use (a program loaded with the Offload,
// or Install), so an Offload can be made where nothing may touch the
// system yet. Methods are safe for concurrent use.
type Offload struct {
	mu     sync.Mutex
	maps   *offloadMaps
	closed bool
	// active is the generation in force (0 or 1), -1 when none.
	active int
	// n[g] is the number of rules generation g holds.
	n [2]int
	// stored[g][t] are the keys generation g wrote into trie t, deleted
	// before the generation is filled again.
	stored [2][4][]lpmKey
}

// offloadMaps are the maps of xdp_offload.h, by their names there.
type offloadMaps struct {
	State     *ebpf.Map `ebpf:"offload_state"`
	InPort    *ebpf.Map `ebpf:"offload_in_port"`
	Proto     *ebpf.Map `ebpf:"offload_proto"`
	Src4      *ebpf.Map `ebpf:"offload_src4"`
	Dst4      *ebpf.Map `ebpf:"offload_dst4"`
	Src6      *ebpf.Map `ebpf:"offload_src6"`
	Dst6      *ebpf.Map `ebpf:"offload_dst6"`
	Sport     *ebpf.Map `ebpf:"offload_sport"`
	Dport     *ebpf.Map `ebpf:"offload_dport"`
	Sclass    *ebpf.Map `ebpf:"offload_sclass"`
	Dclass    *ebpf.Map `ebpf:"offload_dclass"`
	Hits      *ebpf.Map `ebpf:"offload_hits"`
	syncOuter *ebpf.Map // an ARRAY_OF_MAPS whose updates wait for running programs
	syncInner *ebpf.Map
}

func (m *offloadMaps) all() []*ebpf.Map {
	return []*ebpf.Map{m.State, m.InPort, m.Proto, m.Src4, m.Dst4, m.Src6, m.Dst6, m.Sport, m.Dport, m.Sclass, m.Dclass, m.Hits}
}

func (m *offloadMaps) close() error {
	var errs []error
	for _, x := range append(m.all(), m.syncOuter, m.syncInner) {
		errs = append(errs, x.Close()) // Close accepts nil
	}
	return errors.Join(errs...)
}

// NewOffload returns an Offload with no rules and no maps yet.
func NewOffload() *Offload { return &Offload{active: -1} }

// ensure creates the maps if they do not exist yet. o.mu is held.
func (o *Offload) ensure() (*offloadMaps, error) {
	if o.closed {
		return nil, errors.New("bpf: offload tables are closed")
	}
	if o.maps != nil {
		return o.maps, nil
	}
	spec, err := loadXdp()
	if err != nil {
		return nil, fmt.Errorf("bpf: reading embedded object: %w", err)
	}
	m := &offloadMaps{}
	ok := false
	defer func() {
		if !ok {
			m.close()
		}
	}()
	made := map[string]*ebpf.Map{}
	for name, ms := range spec.Maps {
		if len(name) < 8 || name[:8] != "offload_" {
			continue
		}
		x, err := ebpf.NewMap(ms)
		if err != nil {
			for _, y := range made {
				y.Close()
			}
			return nil, loadError("offload map "+name, err)
		}
		made[name] = x
	}
	for _, f := range []struct {
		dst  **ebpf.Map
		name string
	}{
		{&m.State, "offload_state"}, {&m.InPort, "offload_in_port"}, {&m.Proto, "offload_proto"},
		{&m.Src4, "offload_src4"}, {&m.Dst4, "offload_dst4"}, {&m.Src6, "offload_src6"}, {&m.Dst6, "offload_dst6"},
		{&m.Sport, "offload_sport"}, {&m.Dport, "offload_dport"}, {&m.Sclass, "offload_sclass"}, {&m.Dclass, "offload_dclass"},
		{&m.Hits, "offload_hits"},
	} {
		*f.dst = made[f.name]
		delete(made, f.name)
		if *f.dst == nil {
			return nil, fmt.Errorf("bpf: the embedded object has no map %s", f.name)
		}
	}
	for name, x := range made {
		x.Close()
		return nil, fmt.Errorf("bpf: unexpected offload map %s", name)
	}
	inner := &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	if m.syncInner, err = ebpf.NewMap(inner); err != nil {
		return nil, loadError("offload sync map", err)
	}
	if m.syncOuter, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 1, InnerMap: inner}); err != nil {
		return nil, loadError("offload sync map", err)
	}
	ok = true
	o.maps = m
	return m, nil
}

// replacements are the maps a program loaded with o uses instead of its own.
func (o *Offload) replacements() (map[string]*ebpf.Map, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m, err := o.ensure()
	if err != nil {
		return nil, err
	}
	names := []string{"offload_state", "offload_in_port", "offload_proto", "offload_src4", "offload_dst4", "offload_src6",
		"offload_dst6", "offload_sport", "offload_dport", "offload_sclass", "offload_dclass", "offload_hits"}
	out := map[string]*ebpf.Map{}
	for i, x := range m.all() {
		out[names[i]] = x
	}
	return out, nil
}

// Install puts rules in force in place of the rules before, atomically,
// and returns the final hit counts of the rules before (one per rule, in
// their order; nil when there were none). On error the rules before stay
// in force, unchanged. No rules leave the program passing every frame on,
// at the cost of one lookup.
func (o *Offload) Install(rules []OffloadRule) (old []uint64, err error) {
	t, err := compileOffload(rules)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	m, err := o.ensure()
	if err != nil {
		return nil, err
	}
	g := 0
	if o.active == 0 {
		g = 1
	}
	if len(rules) > 0 {
		if err := o.fill(m, g, t); err != nil {
			return nil, fmt.Errorf("bpf: writing offload tables: %w", err)
		}
	}
	state := uint32(0)
	if len(rules) > 0 {
		state = uint32(g) + 1
	}
	if err := m.State.Put(uint32(0), state); err != nil {
		return nil, fmt.Errorf("bpf: switching offload tables: %w", err)
	}
	prev := o.active
	o.active = -1
	if len(rules) > 0 {
		o.active = g
	}
	o.n[g] = len(rules)
	// Wait for programs still judging with the old generation: then its
	// counters are final.
	if err := m.syncOuter.Put(uint32(0), m.syncInner); err != nil {
		return nil, fmt.Errorf("bpf: waiting for running XDP programs: %w", err)
	}
	if prev < 0 {
		return nil, nil
	}
	return o.hits(m, prev)
}

// Hits returns the hit count of every rule in force, summed over the
// CPUs, in the order Install was given them; nil when none are.
func (o *Offload) Hits() ([]uint64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.active < 0 || o.maps == nil {
		return nil, nil
	}
	return o.hits(o.maps, o.active)
}

func (o *Offload) hits(m *offloadMaps, g int) ([]uint64, error) {
	out := make([]uint64, o.n[g])
	var per []uint64
	for i := range out {
		if err := m.Hits.Lookup(uint32(g*MaxOffloadRules+i), &per); err != nil {
			return nil, fmt.Errorf("bpf: reading offload hits: %w", err)
		}
		for _, v := range per {
			out[i] += v
		}
	}
	return out, nil
}

// lpmKey is a trie key as the program builds it: struct off_lpm4 or
// off_lpm6, the prefix length (host order) counting the generation byte.
type lpmKey []byte

func makeLPMKey(g int, pb *prefixBits) lpmKey {
	a := pb.prefix.Addr().AsSlice()
	size := 12 // struct off_lpm4
	if len(a) == 16 {
		size = 24 // struct off_lpm6
	}
	k := make(lpmKey, size)
	binary.NativeEndian.PutUint32(k, uint32(8+pb.prefix.Bits()))
	k[4] = byte(g)
	copy(k[5:], a)
	return k
}

// fill writes t into generation g, which no program reads. o.mu is held.
func (o *Offload) fill(m *offloadMaps, g int, t *offloadTables) error {
	seq := func(base, n int) []uint32 {
		k := make([]uint32, n)
		for i := range k {
			k[i] = uint32(base + i)
		}
		return k
	}
	batch := func(x *ebpf.Map, keys []uint32, values any) error {
		if _, err := x.BatchUpdate(keys, values, nil); err != nil {
			return fmt.Errorf("%v: %w", x, err)
		}
		return nil
	}
	// Zero the generation's hit counters first: nothing counts into it.
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	if err := batch(m.Hits, seq(g*MaxOffloadRules, MaxOffloadRules), make([]uint64, MaxOffloadRules*cpus)); err != nil {
		return err
	}
	if err := batch(m.InPort, seq(g*MaxOffloadPorts, MaxOffloadPorts), t.inPort[:]); err != nil {
		return err
	}
	if err := batch(m.Proto, seq(g*256, 256), t.proto[:]); err != nil {
		return err
	}
	for _, f := range []struct {
		classes        *portClasses
		table, bitmaps *ebpf.Map
	}{{&t.sport, m.Sport, m.Sclass}, {&t.dport, m.Dport, m.Dclass}} {
		packed := make([][4]uint16, 65536/4)
		for p, c := range f.classes.class {
			packed[p/4][p%4] = c
		}
		if err := batch(f.table, seq(g*65536/4, 65536/4), packed); err != nil {
			return err
		}
		if err := batch(f.bitmaps, seq(g*offloadClasses, len(f.classes.rules)), f.classes.rules); err != nil {
			return err
		}
	}
	for i, f := range []struct {
		x      *ebpf.Map
		stored []prefixBits
	}{{m.Src4, t.src4}, {m.Dst4, t.dst4}, {m.Src6, t.src6}, {m.Dst6, t.dst6}} {
		keys := make([]lpmKey, len(f.stored))
		for k := range f.stored {
			keys[k] = makeLPMKey(g, &f.stored[k])
		}
		// Delete first what the new rules do not store, so the trie never
		// holds more than one generation's worth of prefixes each.
		var kept []lpmKey
		for j, k := range o.stored[g][i] {
			if slices.ContainsFunc(keys, func(n lpmKey) bool { return string(n) == string(k) }) {
				kept = append(kept, k)
				continue
			}
			if err := f.x.Delete([]byte(k)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				o.stored[g][i] = append(kept, o.stored[g][i][j:]...)
				return fmt.Errorf("%v: %w", f.x, err)
			}
		}
		o.stored[g][i] = kept
		for k := range f.stored {
			if !slices.ContainsFunc(kept, func(n lpmKey) bool { return string(n) == string(keys[k]) }) {
				// Remembered before it is written: a failed fill leaves
				// nothing behind that the next fill would not delete.
				o.stored[g][i] = append(o.stored[g][i], keys[k])
			}
			if err := f.x.Put([]byte(keys[k]), &f.stored[k].rules); err != nil {
				return fmt.Errorf("%v: %w", f.x, err)
			}
		}
	}
	return nil
}

// Close closes the maps. Programs loaded with them keep them until they
// are closed and detached too.
func (o *Offload) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	if o.maps == nil {
		return nil
	}
	err := o.maps.close()
	o.maps = nil
	return err
}
