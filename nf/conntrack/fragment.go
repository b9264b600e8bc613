package conntrack

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"github.com/xnfdev/xnf/packet"
)

// Fragment tracking: virtual reassembly, as VPP's shallow reassembly does
// it. Nothing is reassembled and no frame is copied or kept: the tracker
// remembers, per datagram, what its first fragment said (protocol, ports)
// and which bytes its fragments have covered, so that the later fragments,
// which carry no ports, inherit the first fragment's flow key and overlaps
// are caught. See the package doc, "Fragments".

const (
	// DefaultFragmentDatagrams is how many datagrams a tracker follows at
	// once unless FragmentConfig says otherwise.
	DefaultFragmentDatagrams = 1024
	// DefaultFragmentTimeout is how long a tracker waits for the rest of
	// a datagram after its first fragment (see FragmentConfig.Timeout
	// for why it is shorter than Linux's 30 s).
	DefaultFragmentTimeout = 2 * time.Second
	// MaxFragmentHoles is how many disjoint byte ranges a datagram's
	// fragments may cover at once before the tracker can no longer check
	// the next one for overlaps: so many fragments missing in the middle.
	MaxFragmentHoles = 6

	fragWays    = 8       // entries per bucket
	maxFragDgms = 1 << 24 // bound of FragmentConfig.Datagrams
)

// FragmentConfig sizes a fragment tracker. The zero value takes the
// defaults.
type FragmentConfig struct {
	// Datagrams is how many datagrams are followed at once (default
	// DefaultFragmentDatagrams, rounded up to a power of two, at least 8;
	// -1 turns fragment tracking off). Memory is FragmentEntrySize bytes a
	// datagram, reserved up front. A datagram leaves the table as soon as
	// all its bytes were seen; when a new first fragment finds no room,
	// the unfinished datagram seen first among the few it could go in is
	// forgotten (FragmentCounters.Overflow).
	Datagrams int
	// Timeout is how long after its first fragment a datagram's other
	// fragments are followed (default DefaultFragmentTimeout, 2 s). Linux
	// waits 30 s (ipfrag_time) because it buffers the bytes to reassemble
	// them; here nothing waits: the fragments of a datagram leave their
	// sender back to back and arrive within milliseconds (VPP's virtual
	// reassembly allows 100 ms). A longer timeout only keeps the entry of
	// a datagram that lost a fragment, and with it the risk that the
	// sender reuses its 16-bit IPv4 identification meanwhile (a host
	// sending 30000 fragmented datagrams a second to one destination
	// does within 2 s): the new datagram's first fragment then overlaps
	// the stale entry's and is dropped, as Linux drops it.
	Timeout time.Duration
}

// FragmentVerdict is what the tracker made of one packet.
type FragmentVerdict uint8

const (
	// FragmentNone: not a fragment (or tracking is off, or the packet
	// is malformed, which stages drop as such). IPv6 atomic fragments
	// (offset 0, no more fragments) are datagrams of one piece: none.
	FragmentNone FragmentVerdict = iota
	// FragmentFirst: a first fragment, remembered: its datagram's other
	// fragments will follow it.
	FragmentFirst
	// FragmentFollowed: a later fragment of a datagram whose first
	// fragment was seen; it inherits that fragment's FragmentInfo.
	FragmentFollowed
	// FragmentOutOfOrder: a later fragment whose first fragment the
	// tracker does not know: it has not arrived yet, or was forgotten
	// (timed out, or its entry was taken by another datagram). Dropped:
	// nothing holds a frame for a first fragment to come.
	FragmentOutOfOrder
	// FragmentOverlap: a fragment that overlaps bytes the datagram's
	// fragments already covered, or contradicts its end (data past the
	// last fragment, a second last fragment), or an IPv4 TCP fragment at
	// offset 8, which can only rewrite the TCP flags (RFC 1858). Dropped,
	// and so is every later fragment of that datagram (RFC 5722; Linux
	// does the same for IPv4).
	FragmentOverlap
	// FragmentHoles: a fragment that would leave the datagram with more
	// than MaxFragmentHoles disjoint ranges, too many to check the next
	// ones for overlaps. Dropped.
	FragmentHoles
	// FragmentIncomplete: the first fragment of an IPv6 datagram without
	// the whole header chain (RFC 7112; packet.Fragment's ChainCut).
	// Dropped.
	FragmentIncomplete
)

// Drop reports whether a stage must drop a packet with this verdict
// (packet.DropFragment).
func (v FragmentVerdict) Drop() bool { return v >= FragmentOutOfOrder }

var fragmentVerdictNames = [...]string{"none", "first", "followed", "out-of-order", "overlap", "holes", "incomplete"}

func (v FragmentVerdict) String() string {
	if int(v) < len(fragmentVerdictNames) {
		return fragmentVerdictNames[v]
	}
	return "fragment(" + strconv.Itoa(int(v)) + ")"
}

// FragmentInfo is what the later fragments of a datagram inherit from its
// first fragment.
type FragmentInfo struct {
	// Proto is the first fragment's upper-layer protocol (its L4Proto:
	// for IPv6 the header after the fragmentable part's extension
	// headers).
	Proto uint8
	// HasL4 says L4 holds the first 4 bytes of the first fragment's
	// upper-layer header: the ports of TCP, UDP, SCTP and UDP-Lite, the
	// type and code of ICMP and ICMPv6.
	HasL4 bool
	L4    [4]byte
	// SrcPort and DstPort are the first fragment's flow key ports, as
	// packet.FlowKey has them: TCP and UDP ports, ICMP echo identifiers,
	// 0 otherwise.
	SrcPort, DstPort uint16
}

// Key returns the flow key a later fragment p inherits: p's addresses
// with the first fragment's protocol and ports.
func (i *FragmentInfo) Key(p *packet.Packet) (k packet.FlowKey) {
	addrKey(p, &k)
	k.Proto, k.SrcPort, k.DstPort = i.Proto, i.SrcPort, i.DstPort
	return k
}

// FragmentCounters are a tracker's totals since it was made.
type FragmentCounters struct {
	Tracked    uint64 // first fragments remembered: datagrams followed
	Followed   uint64 // later fragments that inherited their first fragment's flow
	Complete   uint64 // datagrams whose every byte was seen (their entry is free again)
	OutOfOrder uint64 // later fragments dropped: first fragment unknown (not yet seen, or forgotten)
	Overlap    uint64 // fragments dropped for overlapping or contradicting their datagram (RFC 1858, 5722), the rest of such datagrams included
	Holes      uint64 // fragments dropped: their datagram had MaxFragmentHoles gaps already
	Incomplete uint64 // first IPv6 fragments dropped without the whole header chain (RFC 7112)
	Expired    uint64 // datagrams given up with fragments missing, after the timeout (counted when their entry is reused)
	Overflow   uint64 // unfinished datagrams forgotten to make room for a new one
}

// Fragments is a fragment tracker: a fixed table of datagrams in
// progress, keyed by source, destination, identification, protocol (of
// the fragmentable part) and ingress port, in buckets of 8 entries whose
// 8 hash tags share one half cache line, so a lookup reads the tags and
// then only the entry they point at. Like a Table it belongs to one
// worker and takes no locks.
type Fragments struct {
	e       []fragEntry
	tags    []uint32 // per entry: its hash | 1, or 0 when free
	mask    uint32   // buckets - 1
	timeout int64
	h       hasher
	live    int
	ctr     FragmentCounters
}

// fragEntry is one datagram in progress.
type fragEntry struct {
	src, dst [16]byte
	id       uint32
	hash     uint32
	expires  int64
	inPort   uint16
	next     uint8 // protocol of the fragmentable part (key)
	state    uint8
	end      uint16 // length of the fragmentable part, once the last fragment was seen
	n        uint8  // spans in use
	info     FragmentInfo
	spans    [MaxFragmentHoles]fragSpan // byte ranges seen: sorted, disjoint, never adjacent
}

type fragSpan struct{ lo, hi uint16 }

// fragEntry.state bits; 0 is a free entry.
const (
	fsLive     = 1 << iota // holds a datagram
	fsLast                 // its last fragment was seen: end is known
	fsComplete             // every byte seen: the entry may be reused at once
	fsDead                 // an overlap: its remaining fragments are dropped
)

// NewFragments makes a tracker, or returns nil (no error) when
// cfg.Datagrams is -1.
func NewFragments(cfg FragmentConfig) (*Fragments, error) {
	n := cfg.Datagrams
	switch {
	case n == -1:
		return nil, nil
	case n == 0:
		n = DefaultFragmentDatagrams
	case n < 0 || n > maxFragDgms:
		return nil, fmt.Errorf("conntrack: fragment datagrams %d out of range [1, %d] (or -1 for none)", n, maxFragDgms)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("conntrack: negative fragment timeout %v", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultFragmentTimeout
	}
	size := fragWays
	for size < n {
		size <<= 1
	}
	return &Fragments{e: make([]fragEntry, size), tags: make([]uint32, size), mask: uint32(size/fragWays - 1),
		timeout: int64(cfg.Timeout), h: newHasher()}, nil
}

// Cap returns how many datagrams the tracker follows at once.
func (f *Fragments) Cap() int { return len(f.e) }

// Len returns the datagrams in progress: first fragment seen, not all
// bytes yet, timed out or not (an entry is reclaimed when a packet meets
// it).
func (f *Fragments) Len() int { return f.live }

// Timeout returns the configured timeout.
func (f *Fragments) Timeout() time.Duration { return time.Duration(f.timeout) }

// Counters returns the totals since NewFragments.
func (f *Fragments) Counters() FragmentCounters { return f.ctr }

// MemoryBytes returns the memory the tracker reserved.
func (f *Fragments) MemoryBytes() int { return len(f.e) * FragmentEntrySize }

// FragmentEntrySize is the memory a tracker reserves per datagram: its
// entry and its tag.
const FragmentEntrySize = int(unsafe.Sizeof(fragEntry{})) + 4

// Observe tells the tracker about p (Parse must have run) and says what p
// is: a first fragment is remembered, a later one matched against its
// datagram and, when it may pass, given the first fragment's
// FragmentInfo. Call it once per packet, in arrival order, from the stage
// that tracks (conntrack's Track and TrackBatch do). now is the caller's
// clock in nanoseconds, as for Track. It does not allocate. A nil
// tracker says FragmentNone.
func (f *Fragments) Observe(p *packet.Packet, now int64) (FragmentVerdict, FragmentInfo) {
	if f == nil || p.Flags&packet.FlagFragment == 0 {
		return FragmentNone, FragmentInfo{}
	}
	fr, ok := p.Fragment()
	if !ok || fr.Offset == 0 && !fr.More {
		return FragmentNone, FragmentInfo{}
	}
	if fr.Offset == 0 && fr.ChainCut {
		f.ctr.Incomplete++
		return FragmentIncomplete, FragmentInfo{}
	}
	if p.Flags&packet.FlagBad != 0 {
		return FragmentNone, FragmentInfo{}
	}
	if fr.Offset == 0 {
		return f.first(p, &fr, now), firstInfo(p)
	}
	return f.later(p, &fr, now)
}

// Lookup returns the FragmentInfo a later fragment p inherits, without
// recording anything: for stages after the one that tracks (a NAT after
// the firewall), which see only what that stage let through. It reports
// false for anything else: a first fragment, a datagram unknown, timed
// out or condemned by an overlap.
func (f *Fragments) Lookup(p *packet.Packet, now int64) (FragmentInfo, bool) {
	if f == nil || p.Flags&packet.FlagLaterFragment == 0 || p.Flags&packet.FlagBad != 0 {
		return FragmentInfo{}, false
	}
	fr, ok := p.Fragment()
	if !ok {
		return FragmentInfo{}, false
	}
	var k packet.FlowKey
	h := f.key(p, &fr, &k)
	i := f.find(&k, h, p.InPort)
	if i < 0 || f.e[i].expires <= now || f.e[i].state&fsDead != 0 {
		return FragmentInfo{}, false
	}
	return f.e[i].info, true
}

// firstInfo reads what later fragments inherit from a first fragment.
func firstInfo(p *packet.Packet) (i FragmentInfo) {
	i.Proto = p.L4Proto
	if p.L4Off != 0 && int(p.L3End)-int(p.L4Off) >= 4 {
		i.HasL4 = true
		i.L4 = [4]byte(p.Data[p.L4Off : p.L4Off+4])
	}
	if p.Flags&(packet.FlagTCP|packet.FlagUDP|packet.FlagICMP|packet.FlagICMPv6) != 0 {
		k := p.FlowKey()
		i.SrcPort, i.DstPort = k.SrcPort, k.DstPort
	}
	return i
}

// addrKey writes p's addresses into k as packet.FlowKey has them.
func addrKey(p *packet.Packet, k *packet.FlowKey) {
	h := p.Data[p.L3Off:]
	if p.Flags&packet.FlagIPv4 != 0 {
		const mapped = 0xffff << 32
		binary.LittleEndian.PutUint64(k.Src[0:8], 0)
		binary.BigEndian.PutUint64(k.Src[8:16], mapped|uint64(binary.BigEndian.Uint32(h[12:16])))
		binary.LittleEndian.PutUint64(k.Dst[0:8], 0)
		binary.BigEndian.PutUint64(k.Dst[8:16], mapped|uint64(binary.BigEndian.Uint32(h[16:20])))
		return
	}
	k.Src = [16]byte(h[8:24])
	k.Dst = [16]byte(h[24:40])
}

// key writes the datagram key of p into k (the identification in the port
// fields) and returns its hash.
func (f *Fragments) key(p *packet.Packet, fr *packet.Fragment, k *packet.FlowKey) uint32 {
	addrKey(p, k)
	k.SrcPort, k.DstPort, k.Proto = uint16(fr.ID>>16), uint16(fr.ID), fr.Next
	return f.h.sum(k) ^ uint32(p.InPort)*0x9e3779b1
}

func (e *fragEntry) is(k *packet.FlowKey, h uint32, inPort uint16) bool {
	return e.hash == h && e.state&fsLive != 0 && e.inPort == inPort && e.next == k.Proto &&
		e.id == uint32(k.SrcPort)<<16|uint32(k.DstPort) && e.src == k.Src && e.dst == k.Dst
}

// bucket returns the index of the first entry of h's bucket.
func (f *Fragments) bucket(h uint32) int { return int(h&f.mask) * fragWays }

// find returns the index of a datagram's entry, expired or not, or -1.
func (f *Fragments) find(k *packet.FlowKey, h uint32, inPort uint16) int {
	b := f.bucket(h)
	tags := f.tags[b : b+fragWays : b+fragWays]
	for i, tag := range tags {
		if tag == h|1 && f.e[b+i].is(k, h, inPort) {
			return b + i
		}
	}
	return -1
}

// reclaim frees entry i, whose time is up (gaveUp: an unfinished
// datagram that timed out counts as Expired) or which must make room.
func (f *Fragments) reclaim(i int, gaveUp bool) {
	e := &f.e[i]
	if e.state&fsLive != 0 && e.state&fsComplete == 0 {
		f.live--
		if gaveUp && e.state&fsDead == 0 {
			f.ctr.Expired++
		}
	}
	*e = fragEntry{}
	f.tags[i] = 0
}

// first remembers a first fragment.
func (f *Fragments) first(p *packet.Packet, fr *packet.Fragment, now int64) FragmentVerdict {
	var k packet.FlowKey
	h := f.key(p, fr, &k)
	slot := -1
	if i := f.find(&k, h, p.InPort); i >= 0 {
		e := &f.e[i]
		if e.expires > now && e.state&fsComplete == 0 {
			// A second first fragment of an unfinished datagram: it
			// overlaps the first one's bytes (or the sender reused the
			// identification meanwhile).
			e.state |= fsDead
			f.ctr.Overlap++
			return FragmentOverlap
		}
		// Timed out or complete: the identification starts a new
		// datagram.
		f.reclaim(i, true)
		slot = i
	}
	b := f.bucket(h)
	if slot < 0 {
		for i, tag := range f.tags[b : b+fragWays : b+fragWays] {
			if tag == 0 {
				slot = b + i
				break
			}
		}
	}
	if slot < 0 {
		// No free entry: an expired one, else a complete one, else the
		// unfinished datagram seen first.
		expired, complete, oldest := -1, -1, -1
		for i := b; i < b+fragWays; i++ {
			e := &f.e[i]
			switch {
			case e.expires <= now:
				if expired < 0 {
					expired = i
				}
			case e.state&fsComplete != 0:
				if complete < 0 {
					complete = i
				}
			case oldest < 0 || e.expires < f.e[oldest].expires:
				oldest = i
			}
		}
		switch {
		case expired >= 0:
			slot = expired
			f.reclaim(slot, true)
		case complete >= 0:
			slot = complete
			f.reclaim(slot, false)
		default:
			slot = oldest
			f.reclaim(slot, false)
			f.ctr.Overflow++
		}
	}
	e := &f.e[slot]
	*e = fragEntry{src: k.Src, dst: k.Dst, id: fr.ID, hash: h, expires: now + f.timeout,
		inPort: p.InPort, next: fr.Next, state: fsLive, info: firstInfo(p)}
	if fr.Len > 0 {
		e.spans[0] = fragSpan{0, uint16(fr.Len)}
		e.n = 1
	}
	f.tags[slot] = h | 1
	f.live++
	f.ctr.Tracked++
	return FragmentFirst
}

// later matches a later fragment against its datagram.
func (f *Fragments) later(p *packet.Packet, fr *packet.Fragment, now int64) (FragmentVerdict, FragmentInfo) {
	if fr.Offset == 8 && fr.Next == packet.ProtoTCP && p.Flags&packet.FlagIPv4 != 0 {
		// RFC 1858 3.4: no legitimate sender puts 8 bytes of TCP header
		// in a first fragment, so this one can only rewrite the flags.
		f.ctr.Overlap++
		return FragmentOverlap, FragmentInfo{}
	}
	var k packet.FlowKey
	h := f.key(p, fr, &k)
	i := f.find(&k, h, p.InPort)
	if i >= 0 && f.e[i].expires <= now {
		f.reclaim(i, true)
		i = -1
	}
	if i < 0 {
		f.ctr.OutOfOrder++
		return FragmentOutOfOrder, FragmentInfo{}
	}
	e := &f.e[i]
	if e.state&(fsDead|fsComplete) != 0 {
		// Condemned, or every byte seen already (a duplicate).
		f.ctr.Overlap++
		return FragmentOverlap, FragmentInfo{}
	}
	switch e.add(fr.Offset, fr.Offset+fr.Len, !fr.More) {
	case spanOverlap:
		e.state |= fsDead
		f.ctr.Overlap++
		return FragmentOverlap, FragmentInfo{}
	case spanHoles:
		f.ctr.Holes++
		return FragmentHoles, FragmentInfo{}
	case spanComplete:
		e.state |= fsComplete
		f.live--
		f.ctr.Complete++
	}
	f.ctr.Followed++
	return FragmentFollowed, e.info
}

type spanResult uint8

const (
	spanAdded spanResult = iota
	spanComplete
	spanOverlap
	spanHoles
)

// add records the bytes [lo, hi) of the fragmentable part, last if they
// end it.
func (e *fragEntry) add(lo, hi int, last bool) spanResult {
	s := e.spans[:e.n]
	if e.state&fsLast != 0 && (last || hi > int(e.end)) {
		return spanOverlap
	}
	at := len(s) // where [lo, hi) goes: before the first span that starts after it
	for i := range s {
		if int(s[i].lo) < hi && lo < int(s[i].hi) || last && int(s[i].hi) > hi {
			return spanOverlap
		}
		if at == len(s) && int(s[i].lo) >= hi {
			at = i
		}
	}
	if lo < hi {
		left := at > 0 && int(s[at-1].hi) == lo
		right := at < len(s) && int(s[at].lo) == hi
		switch {
		case left && right:
			s[at-1].hi = s[at].hi
			copy(e.spans[at:], e.spans[at+1:e.n])
			e.n--
		case left:
			s[at-1].hi = uint16(hi)
		case right:
			s[at].lo = uint16(lo)
		default:
			if int(e.n) == len(e.spans) {
				return spanHoles
			}
			copy(e.spans[at+1:e.n+1], e.spans[at:e.n])
			e.spans[at] = fragSpan{uint16(lo), uint16(hi)}
			e.n++
		}
	}
	if last {
		e.state |= fsLast
		e.end = uint16(hi)
	}
	if e.state&fsLast != 0 && e.n == 1 && e.spans[0].lo == 0 && e.spans[0].hi == e.end {
		return spanComplete
	}
	return spanAdded
}

// FragmentMetrics name a tracker's figures in a stage's metrics
// (pipeline.StageMetrics), in the order of Fragments.Metrics: the
// datagrams in progress, then the counters.
var FragmentMetrics = [...]string{"fragment_datagrams", "fragment_tracked", "fragment_followed", "fragment_complete",
	"fragment_out_of_order", "fragment_overlap", "fragment_holes", "fragment_incomplete_chain",
	"fragment_expired", "fragment_overflow"}

// Metrics returns Len and the counters in the order of FragmentMetrics.
func (f *Fragments) Metrics() [len(FragmentMetrics)]uint64 {
	c := &f.ctr
	return [...]uint64{uint64(f.live), c.Tracked, c.Followed, c.Complete, c.OutOfOrder, c.Overlap, c.Holes,
		c.Incomplete, c.Expired, c.Overflow}
}
