package lb

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
)

const (
	// DefaultSize is the table size of the Maglev paper's evaluation and
	// of Katran: a prime, 128 KiB of entries.
	DefaultSize = 65537

	// MaxSize bounds a table at 32 MiB of entries: the largest prime below
	// it, 16777213, is the largest size Build accepts.
	MaxSize = 1 << 24

	// MaxBackends is the most backends a table can index, drained ones
	// included: entries are 16 bits, so that the default table is 128 KiB,
	// and one value marks an empty entry while the table fills.
	MaxBackends = 1<<16 - 1

	// EntriesPerBackend is the fewest entries Build lets a backend of
	// weight above 0 hold: the paper's rule M > 100·N (its choice for
	// shares within about 1%), for weights: M·w >= 100·W for the least
	// weight w of W in all, so that one entry is at most 1% of a share.
	EntriesPerBackend = 100
)

// ErrNoBackends is the error (wrapped) of Build when no backend has a
// weight above 0: no backends at all, or all of them drained. A caller
// that takes every backend out on purpose (all unhealthy) can tell this
// from a configuration mistake and keep no table.
var ErrNoBackends = errors.New("no backend with a weight above 0")

// Backend is a member of a pool.
type Backend struct {
	// ID names the backend for good: its place in the table derives from
	// it alone, so the same ID keeps its entries across rebuilds, restarts
	// and machines. An address with its port ("10.0.0.1:80") or a host
	// name; never empty, never shared by two backends of a pool.
	ID string
	// Weight is the backend's relative share of new flows; 0 drains it
	// (it keeps its index but holds no entries).
	Weight uint32
}

// Table is a Maglev lookup table: Size entries, each naming a backend.
// It is immutable once built, so any number of goroutines may call
// Lookup without a lock; a change of pool builds a new Table, which
// callers publish with an atomic.Pointer swap.
type Table struct {
	m, c     uint64   // the size M, and ^0/M+1 for Lookup's modulo
	entries  []uint16 // backend indices, len M
	backends []Backend
	counts   []int // entries per backend
}

// Lookup returns the index, in the slice given to Build, of the backend
// for a flow whose hash is hash. The hash must be well mixed and the
// same for every packet of the flow on every instance (see the package
// doc); its two 32-bit halves are folded together, so a 32-bit hash may
// be passed as is.
//
// The entry is hash mod M, computed with two multiplications instead of
// a division (Lemire, Kaser and Kurz, "Faster remainder by direct
// computation", 2019: exact for any 32-bit value and divisor). A 64-bit
// DIV takes 35-88 cycles on Intel's Skylake (Agner Fog's tables), more than a lookup's whole
// budget, and still adds 1-2 ns to a dependent lookup on the AMD EPYC of
// docs/benchmarks.md. Lookup is one load, does not allocate and inlines.
func (t *Table) Lookup(hash uint64) int {
	h := uint64(uint32(hash) ^ uint32(hash>>32))
	i, _ := bits.Mul64(t.c*h, t.m)
	return int(t.entries[i])
}

// Size returns the number of entries, M.
func (t *Table) Size() int { return int(t.m) }

// Len returns the number of backends, drained ones included.
func (t *Table) Len() int { return len(t.backends) }

// Backend returns backend i as given to Build.
func (t *Table) Backend(i int) Backend { return t.backends[i] }

// Entries returns how many of the Size entries backend i holds: its
// share of new flows is Entries(i)/Size().
func (t *Table) Entries(i int) int { return t.counts[i] }

// Rebuild builds a table of the same size for another pool (Build).
func (t *Table) Rebuild(backends []Backend) (*Table, error) {
	return Build(t.Size(), backends)
}

// slot is a backend's state while the table fills: where it is in its
// permutation of the entries and how much of its next turn it has earned.
type slot struct {
	pos, skip uint32 // the entry it tries next; its stride (coprime to M)
	weight    uint64
	credit    uint64
	index     uint16 // in the caller's slice
}

// Build fills a table of size entries (0 for DefaultSize) for backends,
// by the permutation method of Eisenbud et al., "Maglev: A Fast and
// Reliable Software Network Load Balancer" (NSDI 2016), section 3.4 and
// Pseudocode 1, with weights as in Katran's MaglevHashV2
// (facebookincubator/katran, katran/lib/MaglevHashV2.cpp).
//
// Each backend walks its own permutation of the entries, offset,
// offset+skip, offset+2·skip, ... mod M, with offset = h1(ID) mod M and
// skip = h2(ID) mod (M-1) + 1 (M is prime, so every skip visits every
// entry). In turns, each backend takes the next entry of its permutation
// that is still empty, until none is. Weights decide who gets a turn:
// every round each backend earns its weight in credit and takes a turn
// when its credit reaches the largest weight, paying that much for it,
// so a backend of the largest weight takes a turn every round and one of
// half that weight every other round. (Katran's first MaglevHash gives a
// backend w turns in the first round and one in every later one, so at
// 65537 entries the weights barely show.)
//
// h1 and h2 are the first two 64-bit words of SHA-256 of the ID: fixed
// forever, the same on every machine, and independent of each other.
// Backends take turns in the order of their IDs, not of the slice, so
// the table depends on the set of (ID, weight) pairs and the size alone.
//
// Build refuses (with an error that says what it expected) a size that
// is not a prime or is larger than MaxSize, more than MaxBackends
// backends, an empty or repeated ID, no backend of weight above 0
// (ErrNoBackends), and a size that would leave a backend of weight above
// 0 fewer than EntriesPerBackend entries. It costs O(M log M) plus one
// step per backend and round.
func Build(size int, backends []Backend) (*Table, error) {
	if size == 0 {
		size = DefaultSize
	}
	if err := checkSize(size); err != nil {
		return nil, err
	}
	if len(backends) > MaxBackends {
		return nil, fmt.Errorf("lb: %d backends: expected at most %d", len(backends), MaxBackends)
	}
	seen := make(map[string]int, len(backends))
	var slots []slot
	var maxWeight, sum uint64
	least := -1 // the backend of the smallest weight above 0
	for i, b := range backends {
		if b.ID == "" {
			return nil, fmt.Errorf("lb: backend %d: empty ID: expected a stable name (an address and port, a host name)", i)
		}
		if j, dup := seen[b.ID]; dup {
			return nil, fmt.Errorf("lb: backend %d: ID %q is also backend %d's: expected each ID once", i, b.ID, j)
		}
		seen[b.ID] = i
		if b.Weight == 0 {
			continue
		}
		slots = append(slots, slot{weight: uint64(b.Weight), index: uint16(i)})
		maxWeight = max(maxWeight, uint64(b.Weight))
		sum += uint64(b.Weight)
		if least < 0 || b.Weight < backends[least].Weight {
			least = i
		}
	}
	switch {
	case len(backends) == 0:
		return nil, fmt.Errorf("lb: no backends: expected at least one: %w", ErrNoBackends)
	case len(slots) == 0:
		return nil, fmt.Errorf("lb: all %d backends have weight 0 (drained): expected at least one above 0: %w", len(backends), ErrNoBackends)
	}
	if err := checkShares(size, backends, least, sum); err != nil {
		return nil, err
	}

	m := uint32(size)
	slices.SortFunc(slots, func(a, b slot) int {
		return strings.Compare(backends[a.index].ID, backends[b.index].ID)
	})
	for i := range slots {
		d := sha256.Sum256([]byte(backends[slots[i].index].ID))
		h1 := binary.LittleEndian.Uint64(d[0:8])
		h2 := binary.LittleEndian.Uint64(d[8:16])
		slots[i].pos = uint32(h1 % uint64(m))
		slots[i].skip = uint32(h2%uint64(m-1)) + 1
	}

	const empty = 0xffff // no backend has this index (MaxBackends)
	entries := make([]uint16, m)
	for i := range entries {
		entries[i] = empty
	}
	counts := make([]int, len(backends))
	filled := uint32(0)
fill:
	for {
		for i := range slots {
			s := &slots[i]
			if s.credit += s.weight; s.credit < maxWeight {
				continue
			}
			s.credit -= maxWeight
			for entries[s.pos] != empty {
				s.advance(m)
			}
			entries[s.pos] = s.index
			counts[s.index]++
			s.advance(m)
			if filled++; filled == m {
				break fill
			}
		}
	}
	return &Table{
		m:        uint64(m),
		c:        ^uint64(0)/uint64(m) + 1,
		entries:  entries,
		backends: slices.Clone(backends),
		counts:   counts,
	}, nil
}

// advance moves s to the next entry of its permutation: pos + skip mod m
// without a division (pos and skip are below m <= MaxSize, so the sum
// cannot overflow).
func (s *slot) advance(m uint32) {
	if s.pos += s.skip; s.pos >= m {
		s.pos -= m
	}
}

// checkShares refuses a size that would give the backend of the least
// weight (least, of sum in all) fewer than EntriesPerBackend entries:
// the paper's M > 100·N, for weights. A share of fewer entries cannot
// be within 1% of its weight, as one entry is more than 1% of it.
func checkShares(size int, backends []Backend, least int, sum uint64) error {
	w := uint64(backends[least].Weight)
	need := (EntriesPerBackend*sum + w - 1) / w // sum < 2^48, no overflow
	if uint64(size) >= need {
		return nil
	}
	head := fmt.Sprintf("lb: table size %d is too small: backend %d (%q), of weight %d in %d, would hold %d entries: expected at least %d per backend",
		size, least, backends[least].ID, w, sum, uint64(size)*w/sum, EntriesPerBackend)
	if need > uint64(prevPrime(MaxSize)) {
		return fmt.Errorf("%s, which takes more than the largest size %d: expected weights closer together", head, prevPrime(MaxSize))
	}
	return fmt.Errorf("%s, so a size of at least %d (such as the prime %d)", head, need, nextPrime(int(need)))
}

func checkSize(size int) error {
	switch {
	case size < 2:
		return fmt.Errorf("lb: table size %d: expected a prime such as %d", size, DefaultSize)
	case size > MaxSize:
		return fmt.Errorf("lb: table size %d: expected a prime of at most %d such as %d", size, MaxSize, prevPrime(MaxSize))
	case !isPrime(size):
		return fmt.Errorf("lb: table size %d is not prime: expected a prime such as %d or %d (the default is %d)",
			size, prevPrime(size), nextPrime(size), DefaultSize)
	}
	return nil
}

// isPrime reports whether n is prime, by trial division (n <= MaxSize, so
// at most about 2000 divisions).
func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d := 3; d*d <= n; d += 2 {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// nextPrime returns the least prime >= n; prevPrime the greatest <= n, or
// 2 below that.
func nextPrime(n int) int {
	for !isPrime(n) {
		n++
	}
	return n
}

func prevPrime(n int) int {
	for n > 2 && !isPrime(n) {
		n--
	}
	return max(n, 2)
}
