package conntrack

import (
	"errors"
	"fmt"
	"iter"
	"time"
	"unsafe"

	"github.com/xnfdev/xnf/packet"
)

// maxFlows bounds Config.MaxFlows so that a slab index and a direction fit
// in the 31 bits of an index reference.
const maxFlows = 1 << 30

// Table is one worker's flow table. It is not safe for concurrent use:
// every method, Counters and Len included, must be called from the
// goroutine that owns the table (see the package doc on steering).
type Table struct {
	// slab holds every entry; it is allocated once and never moves, so a
	// *Flow stays a valid pointer (though not always the same flow).
	slab []Flow
	// buckets are the heads of the index chains: a reference (slab index
	// << 1 | direction) plus one, 0 for an empty chain. Each flow is
	// linked twice, by its original tuple and by its reply tuple, through
	// the next field of the flow's tuples.
	buckets []uint32
	mask    uint32
	free    uint32 // head of the free list (slab index + 1), linked through next[0]
	used    uint32 // entries slab[used:] have never held a flow
	live    int    // entries holding a flow, expired ones not yet freed included
	hand    uint32 // clock hand: next slab index the expiry scan visits
	gen     uint16 // counts Track and TrackBatch calls; see Flow.gen
	h       hasher

	full       FullPolicy
	evictScan  int
	expireScan int
	pickup     bool
	tcpTO      [numTCPStates]int64
	udpTO      int64
	streamTO   int64
	icmpTO     int64
	genericTO  int64

	ctr Counters

	onRelease func(*Flow) // see OnRelease

	frags *Fragments // nil: fragments are not followed

	// Scratch of TrackBatch, so a batch is tracked without allocating.
	keys   [packet.MaxBurst]packet.FlowKey
	hashes [packet.MaxBurst]uint32
	kinds  [packet.MaxBurst]kind
	fragv  [packet.MaxBurst]FragmentVerdict // valid in batches with fragments
	finfo  [packet.MaxBurst]FragmentInfo    // of followed fragments, for FragmentInfo
	sink   uint32
}

// New returns an empty table sized by cfg. The slab of cfg.MaxFlows entries
// and the index are allocated here, once; pages are touched as flows arrive.
func New(cfg Config) (*Table, error) {
	if cfg.MaxFlows < 0 || cfg.MaxFlows > maxFlows {
		return nil, fmt.Errorf("conntrack: MaxFlows %d out of range [1, %d]", cfg.MaxFlows, maxFlows)
	}
	if cfg.MaxFlows == 0 {
		cfg.MaxFlows = 65536
	}
	if cfg.Full > EvictOldest {
		return nil, fmt.Errorf("conntrack: unknown FullPolicy %d", cfg.Full)
	}
	if cfg.EvictScan < 0 || cfg.ExpireScan < 0 {
		return nil, fmt.Errorf("conntrack: negative EvictScan (%d) or ExpireScan (%d)", cfg.EvictScan, cfg.ExpireScan)
	}
	if cfg.EvictScan == 0 {
		cfg.EvictScan = 8
	}
	if cfg.ExpireScan == 0 {
		cfg.ExpireScan = 2
	}
	to, err := cfg.Timeouts.withDefaults()
	if err != nil {
		return nil, err
	}
	frags, err := NewFragments(cfg.Fragments)
	if err != nil {
		return nil, err
	}
	nb := uint32(16)
	for int(nb) < 2*cfg.MaxFlows {
		nb <<= 1
	}
	t := &Table{
		slab:       make([]Flow, cfg.MaxFlows),
		buckets:    make([]uint32, nb),
		mask:       nb - 1,
		h:          newHasher(),
		full:       cfg.Full,
		evictScan:  cfg.EvictScan,
		expireScan: cfg.ExpireScan,
		pickup:     cfg.TCPPickup,
		udpTO:      int64(to.UDP),
		streamTO:   int64(to.UDPStream),
		icmpTO:     int64(to.ICMP),
		genericTO:  int64(to.Generic),
		frags:      frags,
	}
	adviseHuge(unsafe.Pointer(&t.slab[0]), uintptr(len(t.slab))*unsafe.Sizeof(Flow{}))
	adviseHuge(unsafe.Pointer(&t.buckets[0]), uintptr(len(t.buckets))*4)
	t.tcpTO = [numTCPStates]int64{
		TCPNone:        int64(to.Generic),
		TCPSynSent:     int64(to.TCPSynSent),
		TCPSynRecv:     int64(to.TCPSynRecv),
		TCPEstablished: int64(to.TCPEstablished),
		TCPFinWait:     int64(to.TCPFinWait),
		TCPCloseWait:   int64(to.TCPCloseWait),
		TCPLastAck:     int64(to.TCPLastAck),
		TCPTimeWait:    int64(to.TCPTimeWait),
		TCPClose:       int64(to.TCPClose),
	}
	return t, nil
}

func (to Timeouts) withDefaults() (Timeouts, error) {
	fields := [...]struct {
		v    *time.Duration
		def  time.Duration
		name string
	}{
		{&to.TCPSynSent, DefaultTimeouts.TCPSynSent, "TCPSynSent"},
		{&to.TCPSynRecv, DefaultTimeouts.TCPSynRecv, "TCPSynRecv"},
		{&to.TCPEstablished, DefaultTimeouts.TCPEstablished, "TCPEstablished"},
		{&to.TCPFinWait, DefaultTimeouts.TCPFinWait, "TCPFinWait"},
		{&to.TCPCloseWait, DefaultTimeouts.TCPCloseWait, "TCPCloseWait"},
		{&to.TCPLastAck, DefaultTimeouts.TCPLastAck, "TCPLastAck"},
		{&to.TCPTimeWait, DefaultTimeouts.TCPTimeWait, "TCPTimeWait"},
		{&to.TCPClose, DefaultTimeouts.TCPClose, "TCPClose"},
		{&to.UDP, DefaultTimeouts.UDP, "UDP"},
		{&to.UDPStream, DefaultTimeouts.UDPStream, "UDPStream"},
		{&to.ICMP, DefaultTimeouts.ICMP, "ICMP"},
		{&to.Generic, DefaultTimeouts.Generic, "Generic"},
	}
	for _, f := range fields {
		if *f.v < 0 {
			return to, fmt.Errorf("conntrack: negative timeout %s (%v)", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	return to, nil
}

// Fragments returns the table's fragment tracker, nil when it is off
// (Config.Fragments.Datagrams -1).
func (t *Table) Fragments() *Fragments { return t.frags }

// Len returns the number of entries holding a flow, including expired ones
// the clock hand has not freed yet.
func (t *Table) Len() int { return t.live }

// Cap returns MaxFlows.
func (t *Table) Cap() int { return len(t.slab) }

// Counters returns the totals since New.
func (t *Table) Counters() Counters { return t.ctr }

// EntrySize is the size of one slab entry in bytes. The index adds 8 to 16
// bytes per flow (two 4-byte chain heads per flow, rounded up to a power of
// two); Table.MemoryBytes gives the exact total.
const EntrySize = int(unsafe.Sizeof(Flow{}))

// MemoryBytes returns the memory reserved for the slab and the index: what
// the table costs once every entry has been used.
func (t *Table) MemoryBytes() int {
	n := len(t.slab)*EntrySize + len(t.buckets)*4
	if t.frags != nil {
		n += t.frags.MemoryBytes()
	}
	return n
}

// lookup finds the entry holding tuple k, whose hash is h, expired or not.
func (t *Table) lookup(k *packet.FlowKey, h uint32) (idx uint32, d Dir, ok bool) {
	r := t.buckets[h&t.mask]
	for r != 0 {
		r--
		i, dir := r>>1, Dir(r&1)
		tu := t.slab[i].tuple(dir)
		if tu.hash == h && sameKey(&tu.key, k) {
			return i, dir, true
		}
		r = tu.next
	}
	return 0, 0, false
}

// link inserts tuple d of entry i at the head of its chain.
func (t *Table) link(i uint32, d Dir) {
	tu := t.slab[i].tuple(d)
	b := &t.buckets[tu.hash&t.mask]
	tu.next = *b
	*b = i<<1 | uint32(d) + 1
}

// unlink removes tuple d of entry i from its chain.
func (t *Table) unlink(i uint32, d Dir) {
	tu := t.slab[i].tuple(d)
	want := i<<1 | uint32(d) + 1
	p := &t.buckets[tu.hash&t.mask]
	for *p != want {
		r := *p - 1
		p = &t.slab[r>>1].tuple(Dir(r & 1)).next
	}
	*p = tu.next
}

// release frees entry i: out of the index, onto the free list.
func (t *Table) release(i uint32) {
	if t.onRelease != nil && t.slab[i].User != 0 {
		t.onRelease(&t.slab[i])
	}
	t.unlink(i, Original)
	t.unlink(i, Reply)
	e := &t.slab[i]
	*e = Flow{}
	e.orig.next = t.free
	t.free = i + 1
	t.live--
}

// alloc takes an entry for a new flow, making room as the FullPolicy says
// when the table is full. ok is false when the flow is refused.
func (t *Table) alloc(now int64) (i uint32, ok bool) {
	if t.free == 0 && int(t.used) == len(t.slab) && !t.makeRoom(now) {
		t.ctr.Full++
		return 0, false
	}
	if t.free != 0 {
		i = t.free - 1
		t.free = t.slab[i].orig.next
		t.slab[i].orig.next = 0
	} else {
		i = t.used
		t.used++
	}
	t.live++
	return i, true
}

// makeRoom examines evictScan entries from the clock hand on (every entry is
// live: the table is full), frees the expired ones, and if there were none
// evicts under EvictOldest the one that expires first among those not
// handed out by the current Track or TrackBatch call. It reports whether an
// entry was freed. (An entry handed out 65536 calls ago looks current and
// is spared once: harmless.)
func (t *Table) makeRoom(now int64) bool {
	victim, found := uint32(0), false
	freed := false
	n := min(t.evictScan, len(t.slab))
	for range n {
		if t.hand >= t.used {
			t.hand = 0
		}
		i := t.hand
		t.hand++
		e := &t.slab[i]
		if e.status&stLive == 0 {
			continue
		}
		if e.expires <= now {
			t.release(i)
			t.ctr.Expired++
			freed = true
			continue
		}
		if e.gen != t.gen && (!found || e.expires < t.slab[victim].expires) {
			victim, found = i, true
		}
	}
	if freed {
		return true
	}
	if t.full == EvictOldest && found {
		t.release(victim)
		t.ctr.Evicted++
		return true
	}
	return false
}

// Expire advances the clock hand over up to n entries (the whole table when
// n <= 0), freeing those expired at now, and returns how many it freed.
// Track does this a few entries at a time; an idle worker may call Expire
// to catch up.
func (t *Table) Expire(now int64, n int) int {
	if n <= 0 {
		n = int(t.used)
	}
	return t.expire(now, n)
}

func (t *Table) expire(now int64, n int) int {
	used := t.used
	if used == 0 {
		return 0
	}
	n = min(n, int(used))
	freed := 0
	h := t.hand
	for range n {
		if h >= used {
			h = 0
		}
		e := &t.slab[h]
		if e.status&stLive != 0 && e.expires <= now {
			t.release(h)
			freed++
		}
		h++
	}
	t.hand = h
	t.ctr.Expired += uint64(freed)
	return freed
}

// Lookup returns the flow holding tuple k (as its original or reply tuple)
// and k's direction in it, if the flow exists and has not expired at now. It
// changes nothing: no timer, no counter, no expiry.
func (t *Table) Lookup(k packet.FlowKey, now int64) (f *Flow, d Dir, ok bool) {
	i, d, ok := t.lookup(&k, t.h.sum(&k))
	if !ok || t.slab[i].expires <= now {
		return nil, 0, false
	}
	return &t.slab[i], d, true
}

// find is lookup that frees an entry found expired at now.
func (t *Table) find(k *packet.FlowKey, h uint32, now int64) (idx uint32, d Dir, ok bool) {
	i, d, ok := t.lookup(k, h)
	if ok && t.slab[i].expires <= now {
		t.release(i)
		t.ctr.Expired++
		return 0, 0, false
	}
	return i, d, ok
}

// Create adds a flow whose original-direction packets have tuple orig and
// whose reply-direction packets have tuple reply, in the state its first
// original packet would give it (TCP SYN sent, UDP and ICMP unreplied), with
// that state's timeout from now. It is how a NAT or a control plane makes a
// flow whose reply tuple is not orig.Reverse(). Errors: ErrMismatch when the
// protocols differ, ErrExists when either tuple belongs to a live flow (or
// orig == reply), ErrFull when the table is full and may not evict.
func (t *Table) Create(orig, reply packet.FlowKey, now int64) (*Flow, error) {
	if orig.Proto != reply.Proto {
		return nil, ErrMismatch
	}
	if orig == reply {
		return nil, ErrExists
	}
	ho, hr := t.h.sum(&orig), t.h.sum(&reply)
	if _, _, ok := t.find(&orig, ho, now); ok {
		return nil, ErrExists
	}
	if _, _, ok := t.find(&reply, hr, now); ok {
		return nil, ErrExists
	}
	i, ok := t.alloc(now)
	if !ok {
		return nil, ErrFull
	}
	e := t.insert(i, &orig, ho, &reply, hr, now)
	t.ctr.Created++
	return e, nil
}

// insert fills entry i with a fresh flow and links both tuples.
func (t *Table) insert(i uint32, orig *packet.FlowKey, ho uint32, reply *packet.FlowKey, hr uint32, now int64) *Flow {
	e := &t.slab[i]
	e.orig.key, e.orig.hash = *orig, ho
	e.reply.key, e.reply.hash = *reply, hr
	e.status = stLive
	if orig.Proto == packet.ProtoTCP {
		e.tcp = TCPSynSent
	}
	e.expires = now + t.timeout(e)
	t.link(i, Original)
	t.link(i, Reply)
	return e
}

// ErrNotFound is returned by SetReply for a *Flow that is not a live entry
// of the table.
var ErrNotFound = errors.New("conntrack: no such flow")

// SetReply changes the reply tuple of f, as NAT does once it has chosen a
// translation for a new flow (Linux's nf_conntrack_alter_reply): afterwards
// packets with tuple reply are found as f's reply direction and the old
// reply tuple finds nothing. A flow holding reply that has expired at now
// is freed first. Errors: ErrNotFound, ErrMismatch (another protocol),
// ErrExists (reply belongs to a live flow, f's original tuple included).
func (t *Table) SetReply(f *Flow, reply packet.FlowKey, now int64) error {
	i, ok := t.index(f)
	if !ok {
		return ErrNotFound
	}
	if reply.Proto != f.orig.key.Proto {
		return ErrMismatch
	}
	if reply == f.reply.key {
		return nil
	}
	h := t.h.sum(&reply)
	// Only an expired other flow may be freed here: f stays put.
	if j, _, ok := t.lookup(&reply, h); ok {
		if j == i || t.slab[j].expires > now {
			return ErrExists
		}
		t.release(j)
		t.ctr.Expired++
	}
	t.unlink(i, Reply)
	f.reply.key, f.reply.hash = reply, h
	t.link(i, Reply)
	return nil
}

// index returns the slab index of f, if f is a live entry of t.
func (t *Table) index(f *Flow) (uint32, bool) {
	if f == nil || len(t.slab) == 0 {
		return 0, false
	}
	off := uintptr(unsafe.Pointer(f)) - uintptr(unsafe.Pointer(&t.slab[0]))
	i := off / unsafe.Sizeof(Flow{})
	if off%unsafe.Sizeof(Flow{}) != 0 || i >= uintptr(t.used) || f.status&stLive == 0 {
		return 0, false
	}
	return uint32(i), true
}

// Delete removes the flow holding tuple k (as its original or reply
// tuple), expired or not, and reports whether there was one.
func (t *Table) Delete(k packet.FlowKey) bool {
	i, _, ok := t.lookup(&k, t.h.sum(&k))
	if !ok {
		return false
	}
	t.release(i)
	t.ctr.Deleted++
	return true
}

// Flows yields every flow not expired at now, in slab order. The table
// must not be changed during the iteration.
func (t *Table) Flows(now int64) iter.Seq[*Flow] {
	return func(yield func(*Flow) bool) {
		for i := range t.slab[:t.used] {
			e := &t.slab[i]
			if e.status&stLive != 0 && e.expires > now && !yield(e) {
				return
			}
		}
	}
}

// timeout returns the idle timeout of e's current state.
func (t *Table) timeout(e *Flow) int64 {
	switch e.orig.key.Proto {
	case packet.ProtoTCP:
		return t.tcpTO[e.tcp]
	case packet.ProtoUDP:
		if e.status&stReplied != 0 {
			return t.streamTO
		}
		return t.udpTO
	case packet.ProtoICMP, packet.ProtoICMPv6:
		return t.icmpTO
	}
	return t.genericTO
}
