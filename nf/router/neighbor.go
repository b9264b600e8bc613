package router

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
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

// neighEntry is one neighbor. Its key, MAC and state never change once the
// entry is published: a new MAC or state is a new entry put in its place.
// Only the expiry moves in place, so refreshing a known neighbor allocates
// nothing and takes no lock.
type neighEntry struct {
	next    atomic.Pointer[neighEntry] // the bucket's chain
	key     neighKey
	mac     [6]byte
	state   uint8
	expires atomic.Int64 // learned: when it ages out; incomplete: when another request may go
}

// Neighbors is the neighbor table: static entries from config, entries
// learned from ARP replies and requests (and NDP messages), and incomplete
// entries that rate-limit resolution requests.
//
// One table may serve the routers of every worker (Tables), while the
// control plane (kernelsync) updates it. Lookups take no lock: the table
// is a fixed array of buckets, each a chain of entries linked by atomic
// pointers, and a lookup is a hash, atomic loads along the chain (usually
// one entry) and one of the entry's expiry. Changes (learning a new
// neighbor or a new MAC, SetStatic, Delete, resolution requests, eviction)
// are serialized by a mutex; a change links a new entry in, or unlinks one,
// with one atomic store, so a concurrent lookup finds the old entry or the
// new one and never a half-written one. Refreshing a neighbor already known
// with the same MAC, and the check that a resolution request went out
// recently, need no lock either.
type Neighbors struct {
	buckets []atomic.Pointer[neighEntry]
	mask    uint64
	k0, k1  uint64 // hash keys, random per table: chains cannot be lengthened by choice of address
	// gen is bumped after every change a lookup could see (never for a
	// moved expiry), so a router may cache its last answer while gen is
	// unchanged. Read gen before the lookup whose answer you cache.
	gen atomic.Uint64

	mu      sync.Mutex // serializes changes; lookups never take it
	n       int        // entries
	max     int
	reach   int64 // lifetime of a learned entry, ns
	retry   int64 // minimum interval between resolution requests, ns
	evicted uint64
	sweep   int // where eviction looks next
}

func newNeighbors(max int, reachable, retry int64) *Neighbors {
	nb := 64
	for nb < max {
		nb <<= 1
	}
	return &Neighbors{buckets: make([]atomic.Pointer[neighEntry], nb), mask: uint64(nb - 1),
		k0: rand.Uint64() | 1, k1: rand.Uint64() | 1, max: max, reach: reachable, retry: retry}
}

func key(port uint16, a netip.Addr) neighKey {
	return neighKey{port, a.As16()}
}

// bucket is the chain head for k: a keyed multiply-fold hash of the
// address and port (wyhash's mixing step).
func (n *Neighbors) bucket(k neighKey) *atomic.Pointer[neighEntry] {
	lo := binary.LittleEndian.Uint64(k.addr[0:8])
	hi := binary.LittleEndian.Uint64(k.addr[8:16]) ^ uint64(k.port)<<48
	h1, l1 := bits.Mul64(lo^n.k0, hi^n.k1)
	h2, l2 := bits.Mul64(h1^l1, n.k0)
	return &n.buckets[(h2^l2)&n.mask]
}

// find returns the entry for k, or nil. Safe without the lock.
func (n *Neighbors) find(k neighKey) *neighEntry {
	for e := n.bucket(k).Load(); e != nil; e = e.next.Load() {
		if e.key == k {
			return e
		}
	}
	return nil
}

// put links e in place of old (nil: a new key, linked at the head of its
// chain) and bumps gen. Caller holds mu.
func (n *Neighbors) put(old, e *neighEntry) {
	b := n.bucket(e.key)
	if old == nil {
		e.next.Store(b.Load())
		b.Store(e)
		n.n++
		n.gen.Add(1)
		return
	}
	e.next.Store(old.next.Load())
	n.relink(b, old, e)
}

// remove unlinks e and bumps gen. Caller holds mu.
func (n *Neighbors) remove(e *neighEntry) {
	n.relink(n.bucket(e.key), e, e.next.Load())
	n.n--
}

// relink makes whatever pointed to old in chain b point to to. A lookup
// standing on old still finds its way along old's own next pointer, which
// is left as it is. Caller holds mu.
func (n *Neighbors) relink(b *atomic.Pointer[neighEntry], old, to *neighEntry) {
	if b.Load() == old {
		b.Store(to)
	} else {
		for p := b.Load(); p != nil; p = p.next.Load() {
			if p.next.Load() == old {
				p.next.Store(to)
				break
			}
		}
	}
	n.gen.Add(1)
}

func newEntry(k neighKey, mac [6]byte, state uint8, expires int64) *neighEntry {
	e := &neighEntry{key: k, mac: mac, state: state}
	e.expires.Store(expires)
	return e
}

// SetStatic installs a permanent entry. Setting one that exists with the
// same MAC changes nothing (the kernel sync repeats entries on every state
// change of the kernel's, a reload repeats them all), so routers keep their
// cached answers.
func (n *Neighbors) SetStatic(nb Neighbor) {
	k := key(nb.Port, nb.Addr.Unmap())
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.find(k)
	if e != nil && e.state == neighStatic && e.mac == nb.MAC {
		return
	}
	n.put(e, newEntry(k, nb.MAC, neighStatic, 0))
}

// Delete removes an entry.
func (n *Neighbors) Delete(port uint16, a netip.Addr) {
	k := key(port, a.Unmap())
	n.mu.Lock()
	defer n.mu.Unlock()
	if e := n.find(k); e != nil {
		n.remove(e)
	}
}

// List returns the resolved entries.
func (n *Neighbors) List() []Neighbor {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Neighbor
	for i := range n.buckets {
		for e := n.buckets[i].Load(); e != nil; e = e.next.Load() {
			if e.state != neighIncomplete {
				out = append(out, Neighbor{Port: e.key.port, Addr: netip.AddrFrom16(e.key.addr).Unmap(), MAC: e.mac})
			}
		}
	}
	return out
}

// lookup returns the entry for (port, addr) if resolved and fresh, else
// nil. It takes no lock and changes nothing: an expired entry stays until
// a resolution request or eviction replaces it.
func (n *Neighbors) lookup(port uint16, addr [16]byte, now int64) *neighEntry {
	e := n.find(neighKey{port, addr})
	if e == nil || e.state == neighIncomplete || e.state == neighLearned && now > e.expires.Load() {
		return nil
	}
	return e
}

// learn records a MAC seen in ARP/NDP. Static entries win.
func (n *Neighbors) learn(port uint16, addr [16]byte, mac [6]byte, now int64) {
	k := neighKey{port, addr}
	// A neighbor repeating what we know only moves its expiry: no lock.
	// Should a writer replace the entry meanwhile, the store lands on the
	// entry it unlinked and is lost with it, as if the ARP came first.
	if e := n.find(k); e != nil && e.state == neighLearned && e.mac == mac {
		e.expires.Store(now + n.reach)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.find(k)
	switch {
	case e != nil && e.state == neighStatic:
		return
	case e != nil && e.state == neighLearned && e.mac == mac:
		e.expires.Store(now + n.reach)
		return
	case e == nil && n.n >= n.max && !n.evictOne(now):
		return
	}
	n.put(e, newEntry(k, mac, neighLearned, now+n.reach))
}

// shouldResolve reports whether a resolution request may be sent now for
// (port, addr), which the caller found unresolved, and marks it pending:
// of the workers that miss one address at once, one sends a request per
// retry interval.
func (n *Neighbors) shouldResolve(port uint16, addr [16]byte, now int64) bool {
	k := neighKey{port, addr}
	// A request went out less than retry ago: no lock.
	if e := n.find(k); e != nil && e.state == neighIncomplete && now < e.expires.Load() {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.find(k)
	switch {
	case e == nil:
		if n.n >= n.max && !n.evictOne(now) {
			return false
		}
	case e.state == neighIncomplete:
		if now < e.expires.Load() {
			return false
		}
		e.expires.Store(now + n.retry)
		return true
	case e.state == neighStatic, now <= e.expires.Load():
		return false // resolved meanwhile, by another worker or the control plane
	}
	n.put(e, newEntry(k, [6]byte{}, neighIncomplete, now+n.retry))
	return true
}

// evictOne frees a slot: an expired learned or stale incomplete entry,
// looked for from where the last search stopped. Caller holds mu.
func (n *Neighbors) evictOne(now int64) bool {
	for range n.buckets {
		i := n.sweep
		n.sweep = (n.sweep + 1) & int(n.mask)
		for e := n.buckets[i].Load(); e != nil; e = e.next.Load() {
			if e.state != neighStatic && now > e.expires.Load() {
				n.remove(e)
				n.evicted++
				return true
			}
		}
	}
	return false
}
