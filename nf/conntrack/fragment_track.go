package conntrack

import "github.com/xnfdev/xnf/packet"

// How a Table follows fragments with its tracker (fragment.go).

// observeLater shows the tracker the later fragments of a batch (kinds
// kindLater), after pass 1 showed it every first fragment, and sorts them:
// followed (kindFollow, with the first fragment's key, hashed and its chain
// head loaded), condemned (kindFragDrop), or left to classify.
func (t *Table) observeLater(pk []packet.Packet, now int64) uint32 {
	sink := uint32(0)
	for i := range pk {
		if t.kinds[i] != kindLater {
			continue
		}
		p := &pk[i]
		v, info := t.frags.Observe(p, now)
		t.fragv[i] = v
		switch {
		case v == FragmentFollowed:
			t.finfo[i] = info
			t.keys[i] = info.Key(p)
			h := t.h.sum(&t.keys[i])
			t.hashes[i] = h
			t.kinds[i] = kindFollow
			sink += t.buckets[h&t.mask]
		case v.Drop():
			t.kinds[i] = kindFragDrop
		default:
			t.kinds[i] = classify(p, &t.keys[i]) // untracked, or invalid if unsound
		}
	}
	return sink
}

// fragDrop is the result of a fragment the tracker condemned.
func (t *Table) fragDrop(v FragmentVerdict) Result {
	t.ctr.Invalid++
	return Result{State: StateInvalid, Fragment: v}
}

// follow finds the flow of a later fragment by its first fragment's key
// k (hash h): the state is the flow's as LookupPacket gives it, and
// nothing moves (the datagram moved the flow once, with its first
// fragment). A datagram whose first fragment made no flow (it was
// invalid or untracked, or the stage dropped it and deleted its new flow)
// has none: its later fragments are untracked.
func (t *Table) follow(k *packet.FlowKey, h uint32, now int64) Result {
	i, d, ok := t.find(k, h, now)
	if !ok {
		t.ctr.Untracked++
		return Result{Fragment: FragmentFollowed}
	}
	e := &t.slab[i]
	e.gen = t.gen
	return Result{Flow: e, State: flowState(e, d), Dir: d, Fragment: FragmentFollowed}
}

// FragmentInfo returns what packet i of the batch last given to
// TrackBatch or LookupBatch (or Batch) inherited from its datagram's
// first fragment, when its Result.Fragment is FragmentFollowed: its
// protocol, ports or ICMP type, for a stage to match rules on. It is
// valid until the next call on the table.
func (t *Table) FragmentInfo(i int) FragmentInfo { return t.finfo[i] }

// lookupLater is LookupPacket for a later fragment.
func (t *Table) lookupLater(p *packet.Packet, now int64) (Result, FragmentInfo) {
	info, ok := t.frags.Lookup(p, now)
	if !ok {
		return Result{Fragment: FragmentOutOfOrder}, FragmentInfo{}
	}
	k := info.Key(p)
	r := t.lookupOnly(&k, now)
	r.Fragment = FragmentFollowed
	return r, info
}

// lookupOnly is follow without side effects, for LookupPacket.
func (t *Table) lookupOnly(k *packet.FlowKey, now int64) Result {
	i, d, ok := t.lookup(k, t.h.sum(k))
	if !ok || t.slab[i].expires <= now {
		return Result{}
	}
	e := &t.slab[i]
	return Result{Flow: e, State: flowState(e, d), Dir: d}
}

// flowState is the state of a packet in direction d of e that does not move
// e: new until a reply was seen, then established.
func flowState(e *Flow, d Dir) State {
	if d == Original && e.status&stReplied == 0 {
		return StateNew
	}
	return StateEstablished
}
