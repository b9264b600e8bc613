package firewall

import (
	"sync/atomic"
)

// Firewall holds the rule set in force and swaps it atomically. The data
// path calls Classify; the control plane calls Replace. A packet is
// classified against exactly one Ruleset: Classify loads the pointer
// once, so a concurrent Replace never shows it half of another set.
type Firewall struct {
	cur    atomic.Pointer[Ruleset]
	shards int
}

// New compiles rules with default policy def for a data path of up to
// workers concurrent callers of Classify (each passing its own worker
// number, 0 to workers-1).
func New(workers int, rules []Rule, def Action) (*Firewall, error) {
	f := &Firewall{shards: 1}
	for f.shards < workers {
		f.shards *= 2
	}
	if _, err := f.Replace(rules, def); err != nil {
		return nil, err
	}
	return f, nil
}

// Load returns the Ruleset in force.
func (f *Firewall) Load() *Ruleset { return f.cur.Load() }

// Replace compiles rules and puts them in force at once. Packets already
// being classified finish against the old set; the next ones use the new
// set. Hit counters start from zero with the new set (rule indexes
// change meaning); the old set, returned, keeps its final counts. On
// error nothing changes.
func (f *Firewall) Replace(rules []Rule, def Action) (old *Ruleset, err error) {
	rs, err := Compile(rules, def)
	if err != nil {
		return nil, err
	}
	rs.hits = newHitCounters(f.shards, len(rules))
	return f.cur.Swap(rs), nil
}

// Classify classifies k against the Ruleset in force and counts the hit.
// worker is the caller's worker number: each worker counts in its own
// shard of counters, so workers never write the same cache line (two
// workers sharing a number stay correct, only slower). It does not
// allocate.
func (f *Firewall) Classify(worker int, k *Key) (Action, int) {
	rs := f.cur.Load()
	a, i := rs.Classify(k)
	rs.hits.add(worker, i)
	return a, i
}

// Hits returns the hit count of every rule of the Ruleset in force.
func (f *Firewall) Hits() []uint64 { return f.cur.Load().Hits() }

// DefaultHits is the number of packets the default policy of the Ruleset
// in force decided.
func (f *Firewall) DefaultHits() uint64 { return f.cur.Load().DefaultHits() }

// hitCounters are per-rule counters in one shard per worker. Each shard
// is its own allocation, padded so no two shards share a cache line; the
// count of rule i is at index i+1, the default policy at 0.
type hitCounters struct {
	mask   int
	shards [][]atomic.Uint64
}

const hitPad = 8 // words of padding each side of a shard (64 bytes)

func newHitCounters(shards, rules int) *hitCounters {
	h := &hitCounters{mask: shards - 1, shards: make([][]atomic.Uint64, shards)}
	for s := range h.shards {
		h.shards[s] = make([]atomic.Uint64, rules+1+2*hitPad)[hitPad : hitPad+rules+1]
	}
	return h
}

func (h *hitCounters) add(worker, rule int) {
	h.shards[worker&h.mask][rule+1].Add(1)
}

func (h *hitCounters) addN(worker, rule int, n uint64) {
	h.shards[worker&h.mask][rule+1].Add(n)
}

// AddHits counts n packets decided by rule (-1: the default policy) for
// worker: for callers of Classify that count a batch at a time.
func (rs *Ruleset) AddHits(worker, rule int, n uint64) {
	if rs.hits != nil && n > 0 {
		rs.hits.addN(worker, rule, n)
	}
}

func (h *hitCounters) sum(i int) uint64 {
	var n uint64
	for _, s := range h.shards {
		n += s[i].Load()
	}
	return n
}

// Hits returns the hit count of every rule, summed over the workers'
// shards; all zero for a Ruleset made by Compile rather than a Firewall.
// Counts of different rules are read one after another, not as one
// snapshot.
func (rs *Ruleset) Hits() []uint64 {
	out := make([]uint64, len(rs.rules))
	if rs.hits != nil {
		for i := range out {
			out[i] = rs.hits.sum(i + 1)
		}
	}
	return out
}

// DefaultHits is the number of packets the default policy decided.
func (rs *Ruleset) DefaultHits() uint64 {
	if rs.hits == nil {
		return 0
	}
	return rs.hits.sum(0)
}
