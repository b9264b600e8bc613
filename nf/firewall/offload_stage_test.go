package firewall

import (
	"errors"
	"slices"
	"testing"
)

// fakeOffloader is an Offloader in memory: what it holds, and counts the
// test sets.
type fakeOffloader struct {
	entries []OffloadEntry
	hits    []uint64
	fail    bool
	calls   int
}

func (f *fakeOffloader) Offload(entries []OffloadEntry) ([]uint64, error) {
	f.calls++
	if f.fail {
		return nil, errors.New("no room")
	}
	old := f.hits
	f.entries, f.hits = slices.Clone(entries), make([]uint64, len(entries))
	return old, nil
}

func (f *fakeOffloader) Hits() ([]uint64, error) { return slices.Clone(f.hits), nil }

func mustRules(t *testing.T, text ...string) []Rule {
	t.Helper()
	rs, err := ParseRules(text)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// Drops made ahead of the stage count as the stage's: in rule_N_hits of
// the set in force, in dropped and xdp_dropped; a reload credits the old
// entries' final drops to the old set and counts the new ones from zero.
func TestOffloadedDropsCountAsTheStages(t *testing.T) {
	fw, err := New(1, mustRules(t, "drop src 203.0.113.0/24", "accept state established", "drop proto udp dport 9"), Drop)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStage(fw, nil, 0)
	if m := s.StageMetrics(); m["xdp_dropped"] != 0 || m["dropped"] != 0 {
		t.Fatalf("before offload: %v", m)
	}
	o := &fakeOffloader{}
	if err := fw.SetOffload(o); err != nil {
		t.Fatal(err)
	}
	if len(o.entries) != 1 || o.entries[0].Rule != 0 {
		t.Fatalf("offloaded %+v, want rule 0 only (rule 2 is shadowed by the accept)", o.entries)
	}
	o.hits[0] = 5
	m := s.StageMetrics()
	if m["rule_0_hits"] != 5 || m["dropped"] != 5 || m["xdp_dropped"] != 5 || m["rule_2_hits"] != 0 {
		t.Fatalf("with 5 drops ahead of the stage: %v", m)
	}
	if h := fw.Hits(); h[0] != 5 {
		t.Fatalf("Hits %v", h)
	}

	// A reload: the old entry's 7 final drops go to the old set.
	o.hits[0] = 7
	old, err := fw.Replace(mustRules(t, "drop proto udp dport 9", "drop src 203.0.113.0/24"), Drop)
	if err != nil {
		t.Fatal(err)
	}
	if h := old.Hits(); h[0] != 7 {
		t.Errorf("the old set's hits %v, want its rule 0 credited with 7", h)
	}
	if len(o.entries) != 2 || o.entries[0].Rule != 0 || o.entries[1].Rule != 1 {
		t.Fatalf("after reload offloaded %+v", o.entries)
	}
	o.hits[1] = 3
	m = s.StageMetrics()
	if m["rule_0_hits"] != 0 || m["rule_1_hits"] != 3 || m["xdp_dropped"] != 10 || m["dropped"] != 10 {
		t.Errorf("after reload, 3 new drops: %v", m)
	}

	// An offloader that fails: the reload changes nothing.
	o.fail = true
	if _, err := fw.Replace(mustRules(t, "drop"), Accept); err == nil {
		t.Fatal("a reload the offloader refused succeeded")
	}
	if got := fw.Load().rules; len(got) != 2 {
		t.Errorf("a failed reload left %d rules in force", len(got))
	}
	o.fail = false

	// Taking the rules back: the drops so far stay counted.
	if err := fw.SetOffload(nil); err != nil {
		t.Fatal(err)
	}
	if o.entries != nil {
		t.Errorf("after SetOffload(nil) the offloader holds %+v", o.entries)
	}
	m = s.StageMetrics()
	if m["xdp_dropped"] != 10 || m["rule_1_hits"] != 3 || fw.Offloaded() != nil {
		t.Errorf("after taking the rules back: %v", m)
	}
}
