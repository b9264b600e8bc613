package router

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Errors returned by FIB updates, wrapped with the prefix they concern.
// Callers branch on them with errors.Is.
var (
	ErrInvalidPrefix  = errors.New("invalid prefix")
	ErrHostBits       = errors.New("prefix has host bits set")
	ErrRouteExists    = errors.New("route exists")
	ErrRouteNotFound  = errors.New("route not found")
	ErrNoNextHop      = errors.New("no next hop")
	ErrInvalidNextHop = errors.New("invalid next hop")
	ErrTableFull      = errors.New("table full")
)

// NextHop is where a route sends a packet.
type NextHop struct {
	// Port is the egress port index.
	Port uint16
	// Gateway is the neighbor to hand the packet to. The zero Addr means the
	// destination is directly connected: resolve the packet's own
	// destination address instead.
	Gateway netip.Addr
}

// String formats the next hop as "port 2 via 192.0.2.1" or "port 2 direct".
func (nh NextHop) String() string {
	if !nh.Gateway.IsValid() {
		return "port " + strconv.Itoa(int(nh.Port)) + " direct"
	}
	return "port " + strconv.Itoa(int(nh.Port)) + " via " + nh.Gateway.String()
}

// NextHopID is the small integer a lookup returns. It names either one
// NextHop or, when IsGroup reports true, an ECMP group of next hops, which
// Pick (or the LookupFlow functions) resolve to one member by flow hash.
//
// IDs are stable for the life of the FIB: the same NextHop (or the same
// multiset of next hops) always gets the same ID, and an ID is never reused
// for something else, so a forwarding stage may cache per-ID state
// (neighbor entries, counters). The price: next hops and groups are never
// freed (a lock-free reader may still hold an old ID), so a control plane
// churning through many distinct ECMP sets grows these tables, by a few
// dozen bytes per set.
type NextHopID uint32

// groupBit marks an ECMP group ID. IDs fit in 24 bits (see entry encoding
// in fib4.go).
const groupBit NextHopID = 1 << 23

// NoRoute is what the batch lookups write for a destination no route
// covers. It is never a valid ID.
const NoRoute NextHopID = valMask

// maxIDs is the number of single next hops, and separately of groups (one
// less, keeping NoRoute free), a FIB can hold.
const maxIDs = 1 << 23

// IsGroup reports whether id names an ECMP group rather than one next hop.
func (id NextHopID) IsGroup() bool { return id&groupBit != 0 }

// Route is a prefix and its next hops, as shown by Routes.
type Route struct {
	Prefix   netip.Prefix
	NextHops []NextHop
	ID       NextHopID
}

// Table entries (tbl24 and tbl8 of IPv4, the IPv6 root) are 32-bit words:
//
//	bit 31     ext: bits 0-23 are a tbl8 group index (tbl24), or the
//	           entry refers to a node (IPv6 root: see fib6.go)
//	bit 30     valid: a route covers the address
//	bits 24-29 depth: the prefix length of that route (writer bookkeeping)
//	bits 0-23  NextHopID
const (
	extBit     = 1 << 31
	validBit   = 1 << 30
	depthShift = 24
	depthMask  = 0x3f << depthShift
	valMask    = 1<<24 - 1
)

func mkEntry(id NextHopID, depth int) uint32 {
	return validBit | uint32(depth)<<depthShift | uint32(id)
}

func entryDepth(e uint32) int { return int(e&depthMask) >> depthShift }

// nhTable is the published next-hop table. Writers append in place beyond
// the published lengths and then publish a new header, so readers holding
// an older header never see a slot change.
type nhTable struct {
	hops   []NextHop
	groups [][]NextHopID
}

// FIB is a forwarding information base: longest-prefix match from IPv4 and
// IPv6 destinations to next hops. See the package documentation for the
// structure and the concurrency contract: any number of goroutines may look
// up while one update runs; updates are serialized internally.
type FIB struct {
	// Read by every lookup, written rarely: kept on their own cache line,
	// away from the writer's lock and bookkeeping.
	tbl24 *[1 << 24]uint32          // IPv4 (fib4.go)
	tbl8  atomic.Pointer[tbl8Table] // IPv4
	v6    atomic.Pointer[table6]    // IPv6 (fib6.go)
	nh    atomic.Pointer[nhTable]
	_     [64]byte

	mu sync.Mutex // serializes writers; readers never take it

	// Control plane: the source of truth, touched only under mu.
	pfx4       [33]map[uint32]NextHopID
	pfx6       [129]map[[16]byte]NextHopID
	hops       []NextHop
	groups     [][]NextHopID
	hopIndex   map[NextHop]NextHopID
	groupIndex map[string]NextHopID
	free8      []uint32 // free tbl8 group indexes
	n4, n6     int

	// IPv6 writer state (fib6.go): the table being written (the published
	// one, except while compacting), the nodes under each root entry, and
	// the arena's words in use and among them garbage.
	w6              *table6
	nodes6          map[uint16]*node6
	used6, garbage6 int
	compactions6    int
	runs6           []run6   // scratch for encoding
	stack6          []local6 // scratch for encoding
}

// NewFIB returns an empty FIB. It reserves 64 MiB of address space for the
// IPv4 tbl24 (pages become resident as routes touch them) and 256 KiB for
// the IPv6 root.
func NewFIB() *FIB {
	f := &FIB{
		tbl24:      new([1 << 24]uint32),
		hopIndex:   make(map[NextHop]NextHopID),
		groupIndex: make(map[string]NextHopID),
		w6:         &table6{arena: newArena6(0)},
		nodes6:     make(map[uint16]*node6),
	}
	f.v6.Store(f.w6)
	for i := range f.pfx4 {
		f.pfx4[i] = make(map[uint32]NextHopID)
	}
	for i := range f.pfx6 {
		f.pfx6[i] = make(map[[16]byte]NextHopID)
	}
	f.tbl8.Store(&tbl8Table{})
	f.nh.Store(&nhTable{})
	return f
}

// Add installs a route to prefix through nh. Several next hops make an ECMP
// route; repeating a next hop weights it. It fails with ErrRouteExists if
// the prefix is already routed (use Replace).
//
// The prefix must be canonical: 10.0.0.1/8 is rejected with ErrHostBits
// rather than silently masked, since it is usually a typo for a host route
// or a different network. IPv4-mapped IPv6 prefixes are IPv6 prefixes.
func (f *FIB) Add(prefix netip.Prefix, nh ...NextHop) error {
	return f.set(prefix, nh, false)
}

// Replace installs a route to prefix through nh, replacing any route to the
// same prefix. Lookups see either the old or the new next hops.
func (f *FIB) Replace(prefix netip.Prefix, nh ...NextHop) error {
	return f.set(prefix, nh, true)
}

// Delete removes the route to prefix. Addresses it covered fall back to the
// next longest covering prefix, if any.
func (f *FIB) Delete(prefix netip.Prefix) error {
	if err := checkPrefix(prefix); err != nil {
		return fmt.Errorf("router: delete %s: %w", prefix, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	bitsLen := prefix.Bits()
	if prefix.Addr().Is4() {
		a := binary.BigEndian.Uint32(prefix.Addr().AsSlice())
		if _, ok := f.pfx4[bitsLen][a]; !ok {
			return fmt.Errorf("router: delete %s: %w", prefix, ErrRouteNotFound)
		}
		delete(f.pfx4[bitsLen], a)
		f.n4--
		f.delete4(a, bitsLen)
		return nil
	}
	a := prefix.Addr().As16()
	if _, ok := f.pfx6[bitsLen][a]; !ok {
		return fmt.Errorf("router: delete %s: %w", prefix, ErrRouteNotFound)
	}
	delete(f.pfx6[bitsLen], a)
	f.n6--
	f.delete6(a, bitsLen)
	return nil
}

func checkPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return ErrInvalidPrefix
	}
	if p.Masked() != p {
		return ErrHostBits
	}
	return nil
}

func (f *FIB) set(prefix netip.Prefix, nh []NextHop, replace bool) error {
	op := "add"
	if replace {
		op = "replace"
	}
	if err := checkPrefix(prefix); err != nil {
		return fmt.Errorf("router: %s %s: %w", op, prefix, err)
	}
	if len(nh) == 0 {
		return fmt.Errorf("router: %s %s: %w", op, prefix, ErrNoNextHop)
	}
	for _, h := range nh {
		if h.Gateway.IsValid() && h.Gateway.IsUnspecified() {
			return fmt.Errorf("router: %s %s: %w: gateway %s is unspecified (leave Gateway zero for a directly connected route)", op, prefix, ErrInvalidNextHop, h.Gateway)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	bitsLen := prefix.Bits()
	var exists bool
	var a4 uint32
	var a6 [16]byte
	if prefix.Addr().Is4() {
		a4 = binary.BigEndian.Uint32(prefix.Addr().AsSlice())
		_, exists = f.pfx4[bitsLen][a4]
	} else {
		a6 = prefix.Addr().As16()
		_, exists = f.pfx6[bitsLen][a6]
	}
	if exists && !replace {
		return fmt.Errorf("router: %s %s: %w", op, prefix, ErrRouteExists)
	}
	id, err := f.intern(nh)
	if err != nil {
		return fmt.Errorf("router: %s %s: %w", op, prefix, err)
	}
	if prefix.Addr().Is4() {
		if err := f.add4(a4, bitsLen, id); err != nil {
			return fmt.Errorf("router: %s %s: %w", op, prefix, err)
		}
		if !exists {
			f.n4++
		}
		f.pfx4[bitsLen][a4] = id
		return nil
	}
	if err := f.add6(a6, bitsLen, id); err != nil {
		return fmt.Errorf("router: %s %s: %w", op, prefix, err)
	}
	if !exists {
		f.n6++
	}
	f.pfx6[bitsLen][a6] = id
	return nil
}

// intern returns the ID of a next hop or of the group of next hops,
// creating it if needed. Called with mu held.
func (f *FIB) intern(nh []NextHop) (NextHopID, error) {
	members := make([]NextHopID, len(nh))
	for i, h := range nh {
		id, ok := f.hopIndex[h]
		if !ok {
			if len(f.hops) >= maxIDs {
				return 0, fmt.Errorf("%w: more than %d next hops", ErrTableFull, maxIDs)
			}
			id = NextHopID(len(f.hops))
			f.hops = append(f.hops, h)
			f.hopIndex[h] = id
			f.publishNH()
		}
		members[i] = id
	}
	slices.Sort(members)
	if members[0] == members[len(members)-1] {
		return members[0], nil // one next hop, however often repeated
	}
	key := make([]byte, 0, 4*len(members))
	for _, m := range members {
		key = binary.LittleEndian.AppendUint32(key, uint32(m))
	}
	if id, ok := f.groupIndex[string(key)]; ok {
		return id, nil
	}
	if len(f.groups) >= maxIDs-1 {
		return 0, fmt.Errorf("%w: more than %d ECMP groups", ErrTableFull, maxIDs-1)
	}
	id := NextHopID(len(f.groups)) | groupBit
	f.groups = append(f.groups, members)
	f.groupIndex[string(key)] = id
	f.publishNH()
	return id, nil
}

// publishNH makes new next hops visible. It must happen before any table
// entry referring to them is stored, so a reader that loads an entry and
// then the next-hop table always finds the ID.
func (f *FIB) publishNH() {
	f.nh.Store(&nhTable{hops: f.hops, groups: f.groups})
}

// Pick resolves id to a single next hop: an ECMP group's member is chosen
// by flowHash (the same hash always picks the same member while the group
// exists); a single next hop's ID is returned unchanged. The choice uses
// the high bits of flowHash, so it must be a well-mixed hash (such as the
// packet's flow hash), not a small counter.
func (f *FIB) Pick(id NextHopID, flowHash uint32) NextHopID {
	if id&groupBit == 0 {
		return id
	}
	g := f.nh.Load().groups[id&^groupBit]
	return g[uint64(flowHash)*uint64(len(g))>>32]
}

// NextHop returns the next hop with the given ID. For a group it returns the
// first member; use Pick to choose by flow. An unknown ID gives the zero
// NextHop.
func (f *FIB) NextHop(id NextHopID) NextHop {
	t := f.nh.Load()
	if id&groupBit != 0 {
		g := id &^ groupBit
		if int(g) >= len(t.groups) {
			return NextHop{}
		}
		id = t.groups[g][0]
	}
	if int(id) >= len(t.hops) {
		return NextHop{}
	}
	return t.hops[id]
}

// Lookup returns the next hop for addr (the first member for an ECMP
// route). IPv4-mapped IPv6 addresses are looked up as IPv6.
func (f *FIB) Lookup(addr netip.Addr) (NextHop, bool) {
	return f.LookupFlow(addr, 0)
}

// LookupFlow returns the next hop for addr, choosing among ECMP next hops by
// flowHash.
func (f *FIB) LookupFlow(addr netip.Addr, flowHash uint32) (NextHop, bool) {
	var id NextHopID
	var ok bool
	switch {
	case addr.Is4():
		id, ok = f.LookupFlow4(addr.As4(), flowHash)
	case addr.Is6():
		id, ok = f.LookupFlow6(addr.As16(), flowHash)
	}
	if !ok {
		return NextHop{}, false
	}
	return f.NextHop(id), true
}

// LookupFlow4 is Lookup4 followed by Pick: it always returns a single next
// hop's ID.
func (f *FIB) LookupFlow4(dst [4]byte, flowHash uint32) (NextHopID, bool) {
	id, ok := f.Lookup4(dst)
	if id&groupBit != 0 {
		id = f.Pick(id, flowHash)
	}
	return id, ok
}

// LookupFlow6 is Lookup6 followed by Pick: it always returns a single next
// hop's ID.
func (f *FIB) LookupFlow6(dst [16]byte, flowHash uint32) (NextHopID, bool) {
	id, ok := f.Lookup6(dst)
	if id&groupBit != 0 {
		id = f.Pick(id, flowHash)
	}
	return id, ok
}

// Len returns the number of routes (IPv4 and IPv6).
func (f *FIB) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n4 + f.n6
}

// Routes returns every route, IPv4 before IPv6, ordered by address then
// prefix length. It is meant for display and takes the writer lock.
func (f *FIB) Routes() []Route {
	f.mu.Lock()
	defer f.mu.Unlock()
	rs := make([]Route, 0, f.n4+f.n6)
	for l := range f.pfx4 {
		for a, id := range f.pfx4[l] {
			addr := netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, a)))
			rs = append(rs, f.route(netip.PrefixFrom(addr, l), id))
		}
	}
	for l := range f.pfx6 {
		for a, id := range f.pfx6[l] {
			rs = append(rs, f.route(netip.PrefixFrom(netip.AddrFrom16(a), l), id))
		}
	}
	slices.SortFunc(rs, func(x, y Route) int {
		if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(x.Prefix.Bits(), y.Prefix.Bits())
	})
	return rs
}

func (f *FIB) route(p netip.Prefix, id NextHopID) Route {
	r := Route{Prefix: p, ID: id}
	if id&groupBit == 0 {
		r.NextHops = []NextHop{f.hops[id]}
		return r
	}
	for _, m := range f.groups[id&^groupBit] {
		r.NextHops = append(r.NextHops, f.hops[m])
	}
	return r
}

// MemoryBytes returns the memory held by the lookup structures: the IPv4
// tbl24 (64 MiB, counted whole although untouched pages are not resident)
// and tbl8 groups, the IPv6 root and node arena (counted whole, garbage
// and free space included) and the next-hop tables. The control plane
// comes on top: the prefix maps (roughly 40-60 bytes per route) and the
// writer's view of the IPv6 nodes (about as much again per IPv6 route).
func (f *FIB) MemoryBytes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := int(unsafe.Sizeof(*f.tbl24))
	t8 := f.tbl8.Load()
	n += 4*cap(t8.entries) + 4*cap(t8.owner)
	n += f.memory6()
	n += int(unsafe.Sizeof(NextHop{})) * cap(f.hops)
	for _, g := range f.groups {
		n += 4*cap(g) + int(unsafe.Sizeof(g))
	}
	return n
}
