package router

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentLookups runs lock-free readers against a writer and checks
// that lookups are linearizable: each answer is one the FIB actually had at
// some moment during the lookup.
//
// The writer numbers its states. Before an update that changes the answer
// for a probe address it records the answer of the next state, then bumps
// seq to odd ("update k running"); after it, to even ("state k+1"). A
// reader loads seq before (s1) and after (s2) a lookup: the answer must be
// the recorded answer of one of the states s1/2 .. (s2+1)/2; when nothing
// ran (s1 == s2, even) it must be exactly the answer of state s1/2.
//
// Between those updates the writer churns routes that never cover a probe:
// tbl8 groups are allocated, freed and reused by other /24s, the tbl8 array
// grows, IPv6 nodes on the probes' paths are re-encoded, and the IPv6
// arena grows and is compacted into new tables. Those must never change a
// probe's answer, so a reader that followed a stale tbl24 entry into a
// group reused by another /24, a half-built node or a node of a table it
// did not load, fails.
func TestConcurrentLookups(t *testing.T) {
	f := NewFIB()
	mustAdd := func(p string, port uint16) {
		if err := f.Replace(pfx(p), NextHop{Port: port}); err != nil {
			t.Fatal(err)
		}
	}
	mustAdd("10.0.0.0/8", 1)
	mustAdd("2001:db8::/32", 1)

	type probe struct {
		addr netip.Addr
		flap []string // prefixes covering addr, toggled by the writer
	}
	probes := []probe{
		{addr("10.1.2.3"), []string{"10.1.0.0/16", "10.1.2.0/24", "10.1.2.0/28", "10.1.2.3/32", "10.0.0.0/12"}},
		{addr("10.5.5.77"), nil}, // its /24 gets a tbl8 group that is freed and reused
		{addr("2001:db8:1:2::5"), []string{"2001:db8:1::/48", "2001:db8:1:2::/64", "2001:db8:1:2::4/126", "2001::/16", "2000::/7"}},
		{addr("2001:db8:1:3::1"), nil}, // shares trie nodes with the one above
	}
	const maxStates = 1 << 16
	// answers[k][i] is probe i's port in state k, or -1 for no route,
	// computed from a model of the installed routes, not from the FIB.
	answers := make([][]int32, maxStates)
	model := map[netip.Prefix]uint16{pfx("10.0.0.0/8"): 1, pfx("2001:db8::/32"): 1}
	record := func(k int) {
		answers[k] = make([]int32, len(probes))
		for i, p := range probes {
			best, port := -1, int32(-1)
			for q, pt := range model {
				if q.Contains(p.addr) && q.Bits() > best {
					best, port = q.Bits(), int32(pt)
				}
			}
			answers[k][i] = port
		}
	}
	record(0)
	var seq atomic.Uint64
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	var checks atomic.Int64
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !done.Load(); i++ {
				pi := (i + r) % len(probes)
				p := probes[pi]
				s1 := seq.Load()
				var got int32 = -1
				var id NextHopID
				var ok bool
				if p.addr.Is4() {
					id, ok = f.LookupFlow4(p.addr.As4(), uint32(i))
				} else {
					id, ok = f.LookupFlow6(p.addr.As16(), uint32(i))
				}
				if ok {
					got = int32(f.NextHop(id).Port)
				}
				s2 := seq.Load()
				good := false
				for k := s1 / 2; k <= (s2+1)/2; k++ {
					if answers[k][pi] == got {
						good = true
						break
					}
				}
				if !good {
					errs <- fmt.Errorf("lookup %s = %d during seq %d..%d; allowed %v..%v", p.addr, got, s1, s2, answers[s1/2], answers[(s2+1)/2])
					done.Store(true)
					return
				}
				checks.Add(1)
			}
		}()
	}

	rng := rand.New(rand.NewPCG(1, 2))
	installed := map[string]bool{}
	toggle := func(p string, port uint16) {
		if installed[p] {
			if err := f.Delete(pfx(p)); err != nil {
				t.Error(err)
			}
		} else {
			mustAdd(p, port)
		}
		installed[p] = !installed[p]
		if installed[p] {
			model[pfx(p)] = port
		} else {
			delete(model, pfx(p))
		}
	}
	churn := func() {
		for range 4 {
			switch rng.IntN(7) {
			case 0: // a group in the probe's /24 that does not cover it
				toggle("10.5.5.0/28", 9)
			case 1: // groups in other /24s covering the probe's offset
				toggle(fmt.Sprintf("10.6.%d.64/26", rng.IntN(64)), 10)
			case 2: // enough groups to grow the tbl8 array
				toggle(fmt.Sprintf("20.%d.%d.0/25", rng.IntN(4), rng.IntN(256)), 11)
			case 3: // IPv6 siblings sharing the probes' path
				toggle(fmt.Sprintf("2001:db8:1:%x::/64", 4+rng.IntN(16)), 12)
			case 4:
				toggle(fmt.Sprintf("2001:db8:1:3:%x::/80", 1+rng.IntN(16)), 13)
			case 6: // IPv6 nodes elsewhere, enough of them to grow the arena
				toggle(fmt.Sprintf("2001:db8:%x:%x::/64", 0x100+rng.IntN(256), rng.IntN(4)), 16)
			case 5: // new next hops and groups: the next-hop table grows
				gw := netip.AddrFrom4([4]byte{192, 0, byte(2 + rng.IntN(200)), byte(rng.IntN(256))})
				if err := f.Replace(pfx("30.0.0.0/20"), NextHop{Port: 14, Gateway: gw}, NextHop{Port: 15}); err != nil {
					t.Error(err)
				}
			}
		}
	}
	updates := 2000
	if testing.Short() {
		updates = 300
	}
	state := 0
	for u := 0; u < updates && !done.Load(); u++ {
		churn()
		p := probes[0]
		if rng.IntN(2) == 0 {
			p = probes[2]
		}
		i := rng.IntN(len(p.flap))
		// Record the next state's answers, announce the update, run it.
		next := !installed[p.flap[i]]
		if next {
			model[pfx(p.flap[i])] = uint16(100 + i)
		} else {
			delete(model, pfx(p.flap[i]))
		}
		record(state + 1)
		seq.Store(uint64(2*state + 1))
		toggle(p.flap[i], uint16(100+i))
		state++
		seq.Store(uint64(2 * state))
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if f.tbl8.Load() == nil || cap(f.tbl8.Load().owner) <= initGroups8 {
		t.Errorf("the churn never grew the tbl8 array (%d groups)", cap(f.tbl8.Load().owner))
	}
	if f.compactions6 == 0 || len(f.w6.arena) <= minArena6 {
		t.Errorf("the churn never compacted (%d times) or grew (%d words) the IPv6 arena", f.compactions6, len(f.w6.arena))
	}
	t.Logf("%d updates, %d checked lookups, %d IPv6 compactions", state, checks.Load(), f.compactions6)
}

// TestStaleTbl24EntryRetries plays the race the group owner guards against,
// deterministically: a reader loads a tbl24 entry pointing to a tbl8 group,
// the writer frees the group and hands it to another /24, and only then
// does the reader follow its stale entry.
func TestStaleTbl24EntryRetries(t *testing.T) {
	f := NewFIB()
	f.Add(pfx("10.0.0.0/8"), port(1))
	f.Add(pfx("10.5.5.0/28"), port(2)) // gives 10.5.5.0/24 a group
	y := uint32(10<<24 | 5<<16 | 5<<8 | 77)
	stale := f.tbl24[y>>8]
	if stale&extBit == 0 {
		t.Fatalf("tbl24 entry %#x should point to a tbl8 group", stale)
	}
	f.Delete(pfx("10.5.5.0/28"))        // frees the group
	f.Add(pfx("10.6.0.64/26"), port(3)) // reuses it; covers offset 77
	if reused := f.tbl24[10<<16|6<<8]; reused != stale {
		t.Fatalf("test premise: the group was not reused (%#x, then %#x)", stale, reused)
	}
	e := f.lookup8(stale, y)
	if e&validBit == 0 || NextHopID(e&valMask) != f.hopIndex[port(1)] {
		t.Errorf("following a stale tbl24 entry gave %#x (next hop %v), want the /8's answer", e, f.NextHop(NextHopID(e&valMask)))
	}
}

// TestOldIPv6TableStaysValid holds on to the IPv6 table a reader loaded
// while the writer grows the arena and compacts it into new tables (as a
// lookup preempted between loading the table and walking it would): the
// old table must still give the answers of when it was replaced, because
// nothing reuses its memory.
func TestOldIPv6TableStaysValid(t *testing.T) {
	f := NewFIB()
	f.Add(pfx("2001:db8::/32"), port(1))
	f.Add(pfx("2001:db8:1::/48"), port(2))
	f.Add(pfx("2001:db8:1:2::/64"), port(3))
	probes := map[netip.Addr]uint16{
		addr("2001:db8::1"):     1,
		addr("2001:db8:1::1"):   2,
		addr("2001:db8:1:2::1"): 3,
	}
	tables := []*table6{f.v6.Load()}
	lookupIn := func(tb *table6, a netip.Addr) (uint16, bool) {
		dst := a.As16()
		id, ok := tb.lookup(&dst)
		return f.NextHop(id).Port, ok
	}
	// Churn routes that do not cover the probes, in the probes' nodes and
	// elsewhere, until the table has been replaced several times.
	for i := 0; f.compactions6 < 3 || len(f.w6.arena) < 4*minArena6; i++ {
		p := pfx(fmt.Sprintf("2001:db8:%x:%x::/64", 2+i%500, i%7))
		f.Add(p, port(9))
		if i%2 == 0 {
			f.Delete(p)
		}
		q := pfx(fmt.Sprintf("2001:db8:1:%x::/64", 3+i%100))
		f.Replace(q, port(uint16(10+i%5)))
		if tb := f.v6.Load(); tb != tables[len(tables)-1] {
			tables = append(tables, tb)
		}
	}
	for a, want := range probes {
		for i, tb := range tables {
			if got, ok := lookupIn(tb, a); !ok || got != want {
				t.Errorf("table %d of %d: %s -> port %d %v, want %d", i, len(tables), a, got, ok, want)
			}
		}
		if nh, ok := f.Lookup(a); !ok || nh.Port != want {
			t.Errorf("current table: %s -> %v %v, want port %d", a, nh, ok, want)
		}
	}
}
