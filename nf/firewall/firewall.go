package firewall

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Firewall holds the rule set in force and swaps it atomically. The data
// path calls Classify; the control plane calls Replace. A packet is
// classified against exactly one Ruleset: Classify loads the pointer
// once, so a concurrent Replace never shows it half of another set.
type Firewall struct {
	cur    atomic.Pointer[Ruleset]
	shards int

	// The offload (SetOffload); mu serializes Replace, SetOffload and
	// the reads of the offloader's counters, never Classify.
	mu   sync.Mutex
	off  Offloader
	plan *OffloadPlan // the plan of the set in force, in force in off
	// offDropped counts what the plans before the one in force dropped.
	offDropped uint64
}

// Offloader runs the offloaded entries of a plan ahead of the stage: for
// xnf, the XDP pre-filter of the service's AF_XDP ports (config hands the
// firewall one over bpf.Offload). The firewall gives it plans and reads
// its counters, and knows nothing of sockets or programs.
type Offloader interface {
	// Offload puts entries in force in place of the entries before,
	// atomically (every packet is judged by the old entries or by the
	// new ones), and returns the final hit counts of the entries before,
	// one per entry in their order. On error the entries before stay in
	// force.
	Offload(entries []OffloadEntry) (old []uint64, err error)
	// Hits returns the hit count of each entry in force, in order.
	Hits() ([]uint64, error)
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
//
// With an Offloader (SetOffload), the new set's offloadable rules are put
// in force there first, then the set here: in between, a packet that the
// new entries do not drop is classified by the old set, so every packet
// gets the verdict of one set or the other. The old entries' final drops
// are added to the old set's counters. If the offloader fails, nothing
// changes.
func (f *Firewall) Replace(rules []Rule, def Action) (old *Ruleset, err error) {
	rs, err := Compile(rules, def)
	if err != nil {
		return nil, err
	}
	rs.hits = newHitCounters(f.shards, len(rules))
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off == nil {
		return f.cur.Swap(rs), nil
	}
	plan, err := PlanOffload(rules)
	if err != nil {
		return nil, err
	}
	dropped, err := f.off.Offload(plan.Entries)
	if err != nil {
		return nil, fmt.Errorf("firewall: offloading the new rules: %w", err)
	}
	old = f.cur.Swap(rs)
	f.credit(old, dropped)
	f.plan = plan
	return old, nil
}

// SetOffload makes o run the offloadable rules of the set in force, and
// of every set Replace puts in force later (PlanOffload decides which):
// o drops their packets before the stage sees them, and Hits and the
// stage's counters add those drops to the rules'. Nil takes the rules
// back: from then on the stage decides every packet again. Replace and
// SetOffload may be called while traffic flows. On error nothing changes.
func (f *Firewall) SetOffload(o Offloader) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o == nil {
		if f.off == nil {
			return nil
		}
		dropped, err := f.off.Offload(nil)
		if err != nil {
			return fmt.Errorf("firewall: taking back the offloaded rules: %w", err)
		}
		f.credit(f.cur.Load(), dropped)
		f.off, f.plan = nil, nil
		return nil
	}
	if f.off != nil && f.off != o {
		return fmt.Errorf("firewall: rules are offloaded already: SetOffload(nil) first")
	}
	rs := f.cur.Load()
	plan, err := PlanOffload(rs.rules)
	if err != nil {
		return err
	}
	dropped, err := o.Offload(plan.Entries)
	if err != nil {
		return fmt.Errorf("firewall: offloading rules: %w", err)
	}
	if f.off == o {
		f.credit(rs, dropped)
	}
	f.off, f.plan = o, plan
	return nil
}

// Offloaded returns the plan in force in the offloader, nil without one.
func (f *Firewall) Offloaded() *OffloadPlan {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.plan
}

// credit adds the final drops of the plan in force (f.plan) to rs, the
// set that plan was made for. f.mu is held.
func (f *Firewall) credit(rs *Ruleset, dropped []uint64) {
	for i, n := range dropped {
		if i < len(f.plan.Entries) {
			rs.AddHits(0, f.plan.Entries[i].Rule, n)
		}
		f.offDropped += n
	}
}

// counts returns the hit counts of the set in force, the drops of its
// offloaded rules included, and every packet offloaded rules dropped
// since SetOffload, reading the offloader's counters once.
func (f *Firewall) counts() (hits []uint64, offDropped uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	hits = f.cur.Load().Hits()
	offDropped = f.offDropped
	if f.off == nil {
		return hits, offDropped
	}
	x, err := f.off.Hits()
	if err != nil {
		return hits, offDropped // the stage's own counts, rather than none
	}
	for i, n := range x {
		if i < len(f.plan.Entries) {
			hits[f.plan.Entries[i].Rule] += n
		}
		offDropped += n
	}
	return hits, offDropped
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

// Hits returns the hit count of every rule of the Ruleset in force, the
// packets its offloaded rules dropped before the stage included.
func (f *Firewall) Hits() []uint64 {
	h, _ := f.counts()
	return h
}

// OffloadDropped is the number of packets offloaded rules dropped before
// the stage saw them, over every rule set since SetOffload.
func (f *Firewall) OffloadDropped() uint64 {
	_, d := f.counts()
	return d
}

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
