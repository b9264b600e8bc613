package conntrack

import (
	"encoding/binary"

	"github.com/xnfdev/xnf/packet"
)

// kind is what classify makes of a packet before any lookup.
type kind uint8

const (
	kindSkip      kind = iota // dropped by an earlier stage: not looked at, not counted
	kindUntracked             // not for the table
	kindFragDrop              // a fragment the tracker condemned (fragv says why)
	kindLater                 // a later fragment, for TrackBatch to show the tracker after the first fragments
	kindInvalid               // unsound, or a TCP flag combination no stack sends
	// Kinds from here on are looked up.
	kindTCP
	kindUDP
	kindEchoRequest
	kindEchoReply
	kindGeneric
	kindError  // an ICMP error: the key is its quote's, reversed
	kindFollow // a later fragment with its first fragment's key: looked up, never created or moved
)

// classify sorts p and writes the tuple to look up into k.
func classify(p *packet.Packet, k *packet.FlowKey) kind {
	f := p.Flags
	if f&packet.FlagBad != 0 {
		return kindInvalid
	}
	if f&(packet.FlagIPv4|packet.FlagIPv6) == 0 || f&packet.FlagLaterFragment != 0 {
		return kindUntracked
	}
	var kd kind
	switch {
	case f&packet.FlagTCP != 0:
		if !validTCPFlags(p.Data[p.L4Off+13]) || zeroPort(p) {
			return kindInvalid
		}
		kd = kindTCP
	case f&packet.FlagUDP != 0:
		// RFC 8200 8.1: IPv6 UDP must carry a checksum (RFC 6935's
		// exception for tunnels is not taken here).
		if zeroPort(p) || f&packet.FlagIPv6 != 0 && p.Data[p.L4Off+6]|p.Data[p.L4Off+7] == 0 {
			return kindInvalid
		}
		kd = kindUDP
	case f&(packet.FlagICMP|packet.FlagICMPv6) != 0:
		switch icmpClass(p.Data[p.L4Off], f&packet.FlagICMPv6 != 0) {
		case icmpEchoRequest:
			kd = kindEchoRequest
		case icmpEchoReply:
			kd = kindEchoReply
		case icmpError:
			q, _, ok := QuotedKey(p)
			if !ok {
				return kindInvalid
			}
			*k = q.Reverse()
			return kindError
		default:
			return kindUntracked
		}
	default:
		switch p.L4Proto {
		case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMP, packet.ProtoICMPv6:
			// ICMP in IPv6 or ICMPv6 in IPv4, which Parse leaves alone.
			return kindUntracked
		}
		kd = kindGeneric
	}
	flowKey(p, k, kd)
	return kd
}

// zeroPort reports whether a TCP or UDP packet is to or from port 0,
// which is reserved (RFC 6335 6): no stack sends from it and nothing
// listens on it, so such a packet is a scan or a forgery.
func zeroPort(p *packet.Packet) bool {
	l4 := p.Data[p.L4Off : p.L4Off+4]
	return l4[0]|l4[1] == 0 || l4[2]|l4[3] == 0
}

// flowKey is p.FlowKey() written in place, for a packet classify has
// sorted: the same key, without the copies.
func flowKey(p *packet.Packet, k *packet.FlowKey, kd kind) {
	h := p.Data[p.L3Off:]
	if p.Flags&packet.FlagIPv4 != 0 {
		const mapped = 0xffff << 32
		binary.LittleEndian.PutUint64(k.Src[0:8], 0)
		binary.BigEndian.PutUint64(k.Src[8:16], mapped|uint64(binary.BigEndian.Uint32(h[12:16])))
		binary.LittleEndian.PutUint64(k.Dst[0:8], 0)
		binary.BigEndian.PutUint64(k.Dst[8:16], mapped|uint64(binary.BigEndian.Uint32(h[16:20])))
	} else {
		k.Src = [16]byte(h[8:24])
		k.Dst = [16]byte(h[24:40])
	}
	k.Proto = p.L4Proto
	switch kd {
	case kindTCP, kindUDP:
		l4 := p.Data[p.L4Off:]
		k.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		k.DstPort = binary.BigEndian.Uint16(l4[2:4])
	case kindEchoRequest:
		// A request is (id, 0) and a reply (0, id): a reply's key is its
		// request's reversed, while a request from the other side is a
		// flow of its own, as Linux's tuples (which carry the type) make
		// it. With the same key for both, a ping from the far side would
		// pass as the reply of one the near side sent.
		k.SrcPort, k.DstPort = binary.BigEndian.Uint16(p.Data[p.L4Off+4:]), 0
	case kindEchoReply:
		k.SrcPort, k.DstPort = 0, binary.BigEndian.Uint16(p.Data[p.L4Off+4:])
	default:
		k.SrcPort, k.DstPort = 0, 0
	}
}

// sameKey is a == b, spelled out so that it compiles to five compares.
func sameKey(a, b *packet.FlowKey) bool {
	le := binary.LittleEndian
	return le.Uint64(a.Src[8:16]) == le.Uint64(b.Src[8:16]) &&
		le.Uint64(a.Dst[8:16]) == le.Uint64(b.Dst[8:16]) &&
		le.Uint64(a.Src[0:8]) == le.Uint64(b.Src[0:8]) &&
		le.Uint64(a.Dst[0:8]) == le.Uint64(b.Dst[0:8]) &&
		a.SrcPort == b.SrcPort && a.DstPort == b.DstPort && a.Proto == b.Proto
}

// Track looks p up (Parse must have run), creates its flow if p may start
// one, moves the flow's state and timer, and says what p is. now is the
// caller's clock in nanoseconds (any origin, never going back); timeouts
// are measured on it, so tests choose the time and the data path reads the
// real clock once per batch. Track also advances the clock hand over
// Config.ExpireScan entries. The Result's Flow is valid until the next call
// on the table that can free an entry. It does not allocate.
func (t *Table) Track(p *packet.Packet, now int64) Result {
	t.gen++
	t.expire(now, t.expireScan)
	var k packet.FlowKey
	var v FragmentVerdict
	if p.Flags&packet.FlagFragment != 0 && t.frags != nil {
		var info FragmentInfo
		v, info = t.frags.Observe(p, now)
		switch {
		case v.Drop():
			return t.fragDrop(v)
		case v == FragmentFollowed:
			k = info.Key(p)
			r := t.follow(&k, t.h.sum(&k), now)
			r.Fragment = v
			return r
		}
	}
	kd := classify(p, &k)
	var r Result
	if kd <= kindInvalid {
		r = t.untracked(kd)
	} else {
		r = t.track(p, &k, t.h.sum(&k), kd, now)
	}
	r.Fragment = v
	return r
}

// TrackBatch tracks every packet of b, as Track would one after the other
// with the same now, and returns out[:b.Len] with the result of b.Packets[i]
// in out[i]; cap(out) must be at least b.Len (out[:0] of a slice of
// packet.MaxBurst results will do). Packets an earlier stage dropped or
// bounced (an answer it wrote, such as a router's ICMP error) are skipped
// (StateUntracked, not counted). Every result stays valid until the
// next call on the table: an entry in one result is never evicted for a
// later packet of the batch. In a large table the lookups of the whole batch
// are started before any is finished, so their cache misses overlap.
func (t *Table) TrackBatch(b *packet.Batch, now int64, out []Result) []Result {
	n := b.Len
	out = out[:n]
	pk := b.Packets[:n]
	t.gen++
	t.expire(now, n*t.expireScan)
	// Pass 1: classify, hash, and load each chain head; the loads do not
	// depend on one another, so their misses are served in parallel.
	sink := uint32(0)
	frags := false
	for i := range pk {
		p := &pk[i]
		if p.Verdict != packet.Forward {
			t.kinds[i] = kindSkip
			continue
		}
		if p.Flags&packet.FlagFragment != 0 && t.frags != nil {
			if !frags {
				clear(t.fragv[:n])
				frags = true
			}
			if p.Flags&packet.FlagLaterFragment != 0 {
				t.kinds[i] = kindLater
				continue
			}
			v, _ := t.frags.Observe(p, now)
			t.fragv[i] = v
			if v.Drop() {
				t.kinds[i] = kindFragDrop
				continue
			}
		}
		kd := classify(p, &t.keys[i])
		t.kinds[i] = kd
		if kd > kindInvalid {
			h := t.h.sum(&t.keys[i])
			t.hashes[i] = h
			sink += t.buckets[h&t.mask]
		}
	}
	if frags {
		// Later fragments meet the tracker after every first fragment of
		// the batch, so a datagram whose fragments the batch holds out
		// of order is followed all the same.
		sink += t.observeLater(pk, now)
	}
	// Passes 2 and 3 only pay where entries miss the caches: in a table of
	// more than prefetchMin entries (4 MiB of slab).
	if t.used > prefetchMin {
		t.prefetch(pk, sink)
	}
	// Pass 4: track, with the lines now (mostly) in cache.
	for i := range pk {
		kd := t.kinds[i]
		switch {
		case kd == kindSkip:
			out[i] = Result{}
		case kd == kindFragDrop:
			out[i] = t.fragDrop(t.fragv[i])
		case kd <= kindInvalid:
			out[i] = t.untracked(kd)
		case kd == kindFollow:
			// Below, once the flows of the batch's first fragments exist.
		default:
			out[i] = t.track(&pk[i], &t.keys[i], t.hashes[i], kd, now)
		}
	}
	if frags {
		for i := range pk {
			if t.kinds[i] == kindFollow {
				out[i] = t.follow(&t.keys[i], t.hashes[i], now)
			}
			if t.kinds[i] != kindSkip {
				out[i].Fragment = t.fragv[i]
			}
		}
	}
	return out
}

// LookupPacket finds the flow of p (Parse must have run) the way Track
// would, and changes nothing: no state, timer, counter or expiry. It is for
// stages after the one that tracks (NAT after the firewall). The State is
// what Track gave the packet, provided the packet was valid for its flow:
// New or Established by direction and whether a reply has been seen, Related
// for an ICMP error quoting a live flow. A packet of no live flow has a nil
// Flow and StateUntracked (StateInvalid if it is unsound). It does not
// allocate.
func (t *Table) LookupPacket(p *packet.Packet, now int64) Result {
	if p.Flags&(packet.FlagLaterFragment|packet.FlagBad) == packet.FlagLaterFragment && t.frags != nil {
		r, _ := t.lookupLater(p, now)
		return r
	}
	var k packet.FlowKey
	kd := classify(p, &k)
	switch {
	case kd == kindInvalid:
		return Result{State: StateInvalid}
	case kd <= kindInvalid:
		return Result{}
	}
	i, d, ok := t.lookup(&k, t.h.sum(&k))
	if !ok || t.slab[i].expires <= now {
		return Result{}
	}
	e := &t.slab[i]
	switch {
	case kd == kindError:
		return Result{Flow: e, State: StateRelated, Dir: d}
	case d == Original && e.status&stReplied == 0:
		return Result{Flow: e, State: StateNew, Dir: d}
	}
	return Result{Flow: e, State: StateEstablished, Dir: d}
}

// LookupBatch is LookupPacket for every packet of b that is still
// forwarded, written to out[:b.Len] (which must have the capacity); the
// other packets get a zero Result, as in TrackBatch.
func (t *Table) LookupBatch(b *packet.Batch, now int64, out []Result) []Result {
	out = out[:b.Len]
	for i := range out {
		p := &b.Packets[i]
		switch {
		case p.Verdict != packet.Forward:
			out[i] = Result{}
		case p.Flags&(packet.FlagLaterFragment|packet.FlagBad) == packet.FlagLaterFragment && t.frags != nil:
			out[i], t.finfo[i] = t.lookupLater(p, now)
		default:
			out[i] = t.LookupPacket(p, now)
		}
	}
	return out
}

// Batch gives a stage its conntrack results for b: TrackBatch when the
// stage tracks the table, LookupBatch when shared, that is when an earlier
// stage of the same worker's chain tracks it (a NAT after a stateful
// firewall, or the reverse), so that each packet is tracked once.
func (t *Table) Batch(b *packet.Batch, now int64, shared bool, out []Result) []Result {
	if shared {
		return t.LookupBatch(b, now, out)
	}
	return t.TrackBatch(b, now, out)
}

// prefetchMin is the table size (in slab entries used) from which
// TrackBatch loads each batch's entries ahead of tracking.
const prefetchMin = 1 << 15

// prefetch loads, for every packet of pk that TrackBatch's first pass
// hashed, the first entry of its chain and, when that entry is another
// flow's, the second. The loads of one pass do not depend on one another,
// so their cache misses overlap.
func (t *Table) prefetch(pk []packet.Packet, sink uint32) {
	// Pass 2: load the first entry of each chain, likewise: the line of
	// the tuple and, for a reply tuple, the first line too (state, timer).
	for i := range pk {
		if t.kinds[i] > kindInvalid {
			if r := t.buckets[t.hashes[i]&t.mask]; r != 0 {
				r--
				e := &t.slab[r>>1]
				sink += e.tuple(Dir(r&1)).hash + uint32(e.status)
			}
		}
	}
	// Pass 3: where the first entry is another flow's (a chain of two or
	// more, a third of lookups in a full table), load the second.
	for i := range pk {
		if t.kinds[i] > kindInvalid {
			h := t.hashes[i]
			if r := t.buckets[h&t.mask]; r != 0 {
				r--
				if tu := t.slab[r>>1].tuple(Dir(r & 1)); tu.hash != h && tu.next != 0 {
					r = tu.next - 1
					e := &t.slab[r>>1]
					sink += e.tuple(Dir(r&1)).hash + uint32(e.status)
				}
			}
		}
	}
	t.sink = sink
}

func (t *Table) untracked(kd kind) Result {
	if kd == kindInvalid {
		t.ctr.Invalid++
		return Result{State: StateInvalid}
	}
	t.ctr.Untracked++
	return Result{}
}

func (t *Table) invalid(e *Flow, d Dir) Result {
	t.ctr.Invalid++
	if e != nil {
		e.gen = t.gen
	}
	return Result{Flow: e, State: StateInvalid, Dir: d}
}

// track does the work of Track for a packet that has a tuple k, hash h.
func (t *Table) track(p *packet.Packet, k *packet.FlowKey, h uint32, kd kind, now int64) Result {
	i, d, ok := t.find(k, h, now)
	if kd == kindError {
		if !ok {
			return t.invalid(nil, 0)
		}
		t.ctr.Related++
		e := &t.slab[i]
		e.gen = t.gen
		return Result{Flow: e, State: StateRelated, Dir: d}
	}
	if !ok {
		return t.start(p, k, h, kd, now)
	}
	e := &t.slab[i]
	if kd == kindTCP {
		switch tcpStep(e, d, p.Data[p.L4Off+13]) {
		case tcpInvalid:
			return t.invalid(e, d)
		case tcpReopen:
			// A SYN after the end: the old flow is gone and this segment
			// starts a new one (in either direction; on the reply side
			// the roles swap), with a fresh reply tuple.
			t.release(i)
			return t.start(p, k, h, kd, now)
		}
	}
	if d == Reply {
		e.status |= stReplied
	}
	e.tuple(d).pkts++
	e.expires = now + t.timeout(e)
	e.gen = t.gen
	t.ctr.Found++
	if e.status&stReplied == 0 {
		return Result{Flow: e, State: StateNew, Dir: d}
	}
	return Result{Flow: e, State: StateEstablished, Dir: d}
}

// start creates the flow of a packet that matched none, if it may start one.
func (t *Table) start(p *packet.Packet, k *packet.FlowKey, h uint32, kd kind, now int64) Result {
	tcp := TCPNone
	switch kd {
	case kindTCP:
		switch fl := p.Data[p.L4Off+13]; {
		case fl&(packet.TCPSyn|packet.TCPAck|packet.TCPRst|packet.TCPFin) == packet.TCPSyn:
			tcp = TCPSynSent
		case t.pickup && fl&(packet.TCPSyn|packet.TCPRst|packet.TCPFin) == 0:
			tcp = TCPEstablished // valid flags without SYN, RST, FIN carry ACK
		default:
			return t.invalid(nil, 0)
		}
	case kindEchoReply:
		return t.invalid(nil, 0)
	}
	r := k.Reverse()
	if sameKey(&r, k) {
		// Same address and port at both ends (the LAND attack): the
		// tuple would be its own reply.
		return t.invalid(nil, 0)
	}
	i, ok := t.alloc(now)
	if !ok {
		return t.invalid(nil, 0)
	}
	e := t.insert(i, k, h, &r, t.h.sum(&r), now)
	if tcp != TCPSynSent {
		e.tcp = tcp
		e.expires = now + t.timeout(e)
	}
	e.orig.pkts = 1
	e.gen = t.gen
	t.ctr.New++
	return Result{Flow: e, State: StateNew, Dir: Original}
}
