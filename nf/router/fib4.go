package router

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
)

// IPv4: DIR-24-8.
//
// tbl24 has one entry per /24. An entry either holds the answer for the
// whole /24 (the longest prefix of length <= 24 covering it) or, when
// prefixes longer than /24 exist inside it, points to a tbl8 group: 256
// entries, one per address of the /24, each holding the answer of the
// longest prefix covering that address. A lookup is one load, or two when
// the /24 has a group.
//
// Entries carry the depth (prefix length) of the route they came from, so
// an update rewrites exactly the entries it owns:
//   - add /L: every entry in its range whose depth is <= L gets the new
//     route (longer prefixes inside the range keep their answer);
//   - delete /L: every entry in its range whose depth is exactly L gets the
//     entry of the longest remaining prefix covering the range (found in the
//     control-plane maps), or "no route".
//
// Concurrency: each entry is written with one atomic 32-bit store and read
// with one atomic load, and every intermediate state of an update is, for
// every single address, either the old or the new answer: an entry changes
// at most once per update, directly from the old to the new value. A new
// tbl8 group is filled completely (copying the /24's answer, then the new
// route) before the tbl24 entry pointing to it is stored.
//
// Freed groups are reused, so a reader that loaded a tbl24 entry just before
// the group was freed could read a group that now belongs to another /24.
// Each group therefore records its owner (the /24 index + 1, 0 when free);
// the writer sets the owner before filling a group and clears it after
// unlinking, and a reader checks the owner after reading its entry. With
// sequentially consistent atomics, an owner read that matches means the
// entry was read while the group still served this /24, when it held this
// /24's answers; otherwise the reader starts again from tbl24.
//
// The tbl8 array grows by copying into a larger one published with an
// atomic pointer; readers load tbl24 first, then the array, so they always
// see an array that contains the group the entry points to.

// tbl8Table is the array of tbl8 groups.
type tbl8Table struct {
	entries []uint32 // group g is entries[g<<8 : g<<8+256]
	owner   []uint32 // /24 index + 1 of the group's owner; 0 when free
}

const (
	initGroups8 = 64
	// maxGroups8 caps tbl8 at 1 GiB: a million /24s holding longer
	// prefixes, far beyond any real table.
	maxGroups8 = 1 << 20
)

// Lookup4 returns the route's next-hop ID for dst (an ECMP group's ID for
// an ECMP route: see Pick and LookupFlow4) and whether a route matched.
// It never blocks and never allocates.
func (f *FIB) Lookup4(dst [4]byte) (NextHopID, bool) {
	a := binary.BigEndian.Uint32(dst[:])
	e := atomic.LoadUint32(&f.tbl24[a>>8])
	if e&extBit != 0 {
		e = f.lookup8(e, a)
	}
	return NextHopID(e & valMask), e&validBit != 0
}

// lookup8 reads the tbl8 entry for a, given the tbl24 entry e pointing to
// its group.
func (f *FIB) lookup8(e, a uint32) uint32 {
	for {
		t := f.tbl8.Load()
		g := e & valMask
		v := atomic.LoadUint32(&t.entries[g<<8|a&0xff])
		if atomic.LoadUint32(&t.owner[g]) == a>>8+1 {
			return v
		}
		// The group was freed (and maybe reused) under us: the tbl24 entry
		// has been rewritten since; read it again.
		e = atomic.LoadUint32(&f.tbl24[a>>8])
		if e&extBit == 0 {
			return e
		}
	}
}

func mask4(l int) uint32 { return ^uint32(0) << (32 - l) }

// parent4 returns the entry of the longest route strictly shorter than l
// covering a, or 0 (no route).
func (f *FIB) parent4(a uint32, l int) uint32 {
	for l--; l >= 0; l-- {
		if id, ok := f.pfx4[l][a&mask4(l)]; ok {
			return mkEntry(id, l)
		}
	}
	return 0
}

// add4 writes the route a/l -> id into the tables. Called with mu held.
func (f *FIB) add4(a uint32, l int, id NextHopID) error {
	e := mkEntry(id, l)
	if l <= 24 {
		first := a >> 8
		end := first + 1<<(24-l)
		var t *tbl8Table
		for i := first; i < end; i++ {
			old := f.tbl24[i]
			switch {
			case old&extBit != 0:
				if t == nil {
					t = f.tbl8.Load()
				}
				grp := t.entries[(old&valMask)<<8:][:256]
				for j, ge := range grp {
					if entryDepth(ge) <= l {
						atomic.StoreUint32(&grp[j], e)
					}
				}
			case entryDepth(old) <= l:
				atomic.StoreUint32(&f.tbl24[i], e)
			}
		}
		return nil
	}
	i := a >> 8
	old := f.tbl24[i]
	var grp []uint32
	if old&extBit != 0 {
		grp = f.tbl8.Load().entries[(old&valMask)<<8:][:256]
	} else {
		g, err := f.alloc8(i)
		if err != nil {
			return err
		}
		grp = f.tbl8.Load().entries[g<<8:][:256]
		for j := range grp {
			atomic.StoreUint32(&grp[j], old)
		}
		defer atomic.StoreUint32(&f.tbl24[i], extBit|g)
	}
	first := a & 0xff
	end := first + 1<<(32-l)
	for j := first; j < end; j++ {
		if entryDepth(grp[j]) <= l {
			atomic.StoreUint32(&grp[j], e)
		}
	}
	return nil
}

// delete4 removes the route a/l from the tables; the control-plane map no
// longer holds it. Called with mu held.
func (f *FIB) delete4(a uint32, l int) {
	parent := f.parent4(a, l)
	owned := func(e uint32) bool { return e&validBit != 0 && entryDepth(e) == l }
	if l <= 24 {
		first := a >> 8
		end := first + 1<<(24-l)
		var t *tbl8Table
		for i := first; i < end; i++ {
			old := f.tbl24[i]
			switch {
			case old&extBit != 0:
				if t == nil {
					t = f.tbl8.Load()
				}
				grp := t.entries[(old&valMask)<<8:][:256]
				for j, ge := range grp {
					if owned(ge) {
						atomic.StoreUint32(&grp[j], parent)
					}
				}
			case owned(old):
				atomic.StoreUint32(&f.tbl24[i], parent)
			}
		}
		return
	}
	i := a >> 8
	g := f.tbl24[i] & valMask
	t := f.tbl8.Load()
	grp := t.entries[g<<8:][:256]
	first := a & 0xff
	end := first + 1<<(32-l)
	for j := first; j < end; j++ {
		if owned(grp[j]) {
			atomic.StoreUint32(&grp[j], parent)
		}
	}
	for _, ge := range grp {
		if entryDepth(ge) > 24 {
			return
		}
	}
	// No prefix longer than /24 is left: every entry holds the same answer.
	// Put it back into tbl24, then free the group.
	atomic.StoreUint32(&f.tbl24[i], grp[0])
	atomic.StoreUint32(&t.owner[g], 0)
	f.free8 = append(f.free8, g)
}

// alloc8 returns a free tbl8 group owned by /24 index i. Called with mu
// held.
func (f *FIB) alloc8(i uint32) (uint32, error) {
	t := f.tbl8.Load()
	var g uint32
	if n := len(f.free8); n > 0 {
		g = f.free8[n-1]
		f.free8 = f.free8[:n-1]
	} else {
		g = uint32(len(t.owner))
		if g >= maxGroups8 {
			return 0, fmt.Errorf("%w: %d tbl8 groups in use", ErrTableFull, g)
		}
		if int(g) == cap(t.owner) {
			n := max(2*cap(t.owner), initGroups8)
			nt := &tbl8Table{
				entries: make([]uint32, len(t.entries), n<<8),
				owner:   make([]uint32, len(t.owner), n),
			}
			copy(nt.entries, t.entries)
			copy(nt.owner, t.owner)
			t = nt
		} else {
			t = &tbl8Table{entries: t.entries, owner: t.owner}
		}
		// Extend the lengths within capacity; the new slots are zero (free)
		// and no tbl24 entry points to them yet.
		t.entries = t.entries[:len(t.entries)+256]
		t.owner = t.owner[:len(t.owner)+1]
		f.tbl8.Store(t)
	}
	atomic.StoreUint32(&t.owner[g], i+1)
	return g, nil
}

// Lookup4Batch looks up every dst, writing the route's next-hop ID (as
// Lookup4 would) to out[i], or NoRoute. out must be at least as long as
// dst. It never blocks and never allocates.
func (f *FIB) Lookup4Batch(dst [][4]byte, out []NextHopID) {
	out = out[:len(dst)]
	for i, d := range dst {
		a := binary.BigEndian.Uint32(d[:])
		e := atomic.LoadUint32(&f.tbl24[a>>8])
		if e&extBit != 0 {
			e = f.lookup8(e, a)
		}
		out[i] = NoRoute
		if e&validBit != 0 {
			out[i] = NextHopID(e & valMask)
		}
	}
}
