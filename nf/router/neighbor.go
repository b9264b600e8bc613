package router

import (
	"net/netip"
	"sync"
)

// Neighbor is a link-layer address for an IP address on a port.
type Neighbor struct {
	Port uint16
	Addr netip.Addr
	MAC  [6]byte
}

type neighKey struct {
	port uint16
	addr [16]byte
}

const (
	neighStatic uint8 = iota + 1
	neighLearned
	neighIncomplete
)

type neighEntry struct {
	mac     [6]byte
	state   uint8
	expires int64 // learned: when it ages out; incomplete: when another request may go
}

// Neighbors is the neighbor table: static entries from config, entries
// learned from ARP replies and requests (and NDP advertisements), and
// incomplete entries that rate-limit resolution requests. The router's
// worker locks it once per batch; the control plane (kernel mode) may
// update it at any time.
type Neighbors struct {
	mu      sync.Mutex
	m       map[neighKey]*neighEntry
	max     int
	reach   int64 // lifetime of a learned entry, ns
	retry   int64 // minimum interval between resolution requests, ns
	evicted uint64
	gen     uint64 // bumped on every change, for the router's lookup cache
}

func newNeighbors(max int, reachable, retry int64) *Neighbors {
	return &Neighbors{m: make(map[neighKey]*neighEntry, 64), max: max, reach: reachable, retry: retry}
}

func key(port uint16, a netip.Addr) neighKey {
	return neighKey{port, a.As16()}
}

// SetStatic installs a permanent entry.
func (n *Neighbors) SetStatic(nb Neighbor) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.m[key(nb.Port, nb.Addr.Unmap())] = &neighEntry{mac: nb.MAC, state: neighStatic}
	n.gen++
}

// Delete removes an entry.
func (n *Neighbors) Delete(port uint16, a netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.m, key(port, a.Unmap()))
	n.gen++
}

// List returns the resolved entries.
func (n *Neighbors) List() []Neighbor {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Neighbor
	for k, e := range n.m {
		if e.state != neighIncomplete {
			out = append(out, Neighbor{Port: k.port, Addr: netip.AddrFrom16(k.addr).Unmap(), MAC: e.mac})
		}
	}
	return out
}

// lookup returns the entry for (port, addr) if resolved and fresh, else
// nil. Caller holds mu.
func (n *Neighbors) lookup(port uint16, addr [16]byte, now int64) *neighEntry {
	k := neighKey{port, addr}
	e := n.m[k]
	if e == nil || e.state == neighIncomplete {
		return nil
	}
	if e.state == neighLearned && now > e.expires {
		delete(n.m, k)
		n.gen++
		return nil
	}
	return e
}

// learn records a MAC seen in ARP/NDP. Caller holds mu. Static entries win.
func (n *Neighbors) learn(port uint16, addr [16]byte, mac [6]byte, now int64) {
	k := neighKey{port, addr}
	e := n.m[k]
	if e != nil && e.state == neighStatic {
		return
	}
	if e == nil {
		if len(n.m) >= n.max && !n.evictOne(now) {
			return
		}
		e = &neighEntry{}
		n.m[k] = e
	}
	e.mac, e.state, e.expires = mac, neighLearned, now+n.reach
	n.gen++
}

// shouldResolve reports whether a resolution request may be sent now for
// (port, addr), and marks it pending. Caller holds mu.
func (n *Neighbors) shouldResolve(port uint16, addr [16]byte, now int64) bool {
	k := neighKey{port, addr}
	e := n.m[k]
	if e == nil {
		if len(n.m) >= n.max && !n.evictOne(now) {
			return false
		}
		n.m[k] = &neighEntry{state: neighIncomplete, expires: now + n.retry}
		n.gen++
		return true
	}
	if e.state == neighIncomplete && now < e.expires {
		return false
	}
	e.state, e.expires = neighIncomplete, now+n.retry
	n.gen++
	return true
}

// evictOne frees a slot: an expired learned or stale incomplete entry.
func (n *Neighbors) evictOne(now int64) bool {
	for k, e := range n.m {
		if e.state != neighStatic && now > e.expires {
			delete(n.m, k)
			n.evicted++
			n.gen++
			return true
		}
	}
	return false
}
