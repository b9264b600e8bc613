package firewall

import (
	"encoding/binary"
	"math/bits"
)

// Cache remembers the verdicts of the keys a worker classified last, so
// that the packets of a flow after its first cost one hash lookup instead
// of a classification. A verdict is a function of the Ruleset and the
// whole Key (addresses, ports, protocol, ICMP type and code, ingress
// port and conntrack state), so a hit returns exactly what
// Ruleset.Classify would; a Ruleset other than the one cached (a reload)
// empties the cache first.
//
// It is direct-mapped: a key evicts the one whose hash shares its slot,
// which keeps the lookup to one cache line. A Cache belongs to one
// goroutine, like the worker's conntrack table.
type Cache struct {
	rs      *Ruleset
	entries []cacheEntry
	shift   uint
	hits    uint64
	misses  uint64
}

// cacheEntry is one cache line: the packed key, then the verdict.
type cacheEntry struct {
	key  [6]uint64
	rule int32 // -1: the default policy
	act  Action
	_    [11]byte
}

// DefaultCacheSize is the number of keys the firewall stage's cache holds
// (64 bytes each: 256 KB a worker).
const DefaultCacheSize = 4096

// NewCache returns an empty cache of size entries, rounded up to a power
// of two (at least 2).
func NewCache(size int) *Cache {
	n := 2
	for n < size {
		n *= 2
	}
	return &Cache{entries: make([]cacheEntry, n), shift: uint(64 - bits.TrailingZeros(uint(n)))}
}

// Classify returns what rs.Classify(k) returns, from the cache when it
// holds k's verdict under rs. It does not allocate and does not count
// rule hits.
func (c *Cache) Classify(rs *Ruleset, k *Key) (Action, int) {
	if rs != c.rs {
		clear(c.entries)
		c.rs = rs
	}
	w := packKey(k)
	// A multiply-add of the words: reversed flows land elsewhere.
	h := w[0]*0x9e3779b97f4a7c15 + w[1]*0xc2b2ae3d27d4eb4f + w[2]*0x165667b19e3779f9 +
		w[3]*0xd6e8feb86659fd93 + w[4]*0xff51afd7ed558ccd + w[5]
	h ^= h >> 29
	e := &c.entries[(h*0xc4ceb9fe1a85ec53)>>c.shift]
	if (e.key[0]^w[0])|(e.key[1]^w[1])|(e.key[2]^w[2])|(e.key[3]^w[3])|(e.key[4]^w[4])|(e.key[5]^w[5]) == 0 {
		c.hits++
		return e.act, int(e.rule)
	}
	c.misses++
	a, r := rs.Classify(k)
	e.key, e.act, e.rule = w, a, int32(r)
	return a, r
}

// Stats returns the lookups the cache answered and those it passed on to
// the classifier.
func (c *Cache) Stats() (hits, misses uint64) { return c.hits, c.misses }

// packKey packs every field of k into six words. The last always has bit
// 24 set, so no key equals an empty entry.
func packKey(k *Key) [6]uint64 {
	var ip6 uint64
	if k.IPv6 {
		ip6 = 1
	}
	return [6]uint64{
		binary.LittleEndian.Uint64(k.Src[0:8]), binary.LittleEndian.Uint64(k.Src[8:16]),
		binary.LittleEndian.Uint64(k.Dst[0:8]), binary.LittleEndian.Uint64(k.Dst[8:16]),
		uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.InPort)<<32 | uint64(k.Proto)<<48 | uint64(k.ICMPType)<<56,
		uint64(k.ICMPCode) | uint64(k.State)<<8 | ip6<<16 | 1<<24,
	}
}
