package firewall

import (
	"encoding/binary"
	"fmt"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/ratelimit"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

// Stage is the firewall as a pipeline stage: it tracks each IP packet in a
// conntrack table (when it has one), classifies it against the rule set in
// force, and drops what the rules drop or reject.
//
// What it does not filter: non-IP frames (ARP, LLDP...) pass untouched, so
// the router behind it can resolve neighbors; the firewall is about IP.
// IPv6's ARP passes too: neighbor solicitations and advertisements sent
// on the link (hop limit 255, RFC 4861 7.1; see neighborDiscovery) are
// not classified, whatever the rules say, and are counted as
// neighbor_discovery.
// IP packets whose headers failed to parse are dropped as malformed
// before any rule sees them. Ports are read from TCP, UDP, SCTP and
// UDP-Lite headers.
//
// Later fragments carry no ports. With conntrack, the table's fragment
// tracker gives a later fragment its datagram's first fragment's
// protocol, ports (or ICMP type and code) and flow, so the rules decide
// it as they decided the first fragment; fragments the tracker condemns
// (out of order across batches, overlapping, a first IPv6 fragment
// without its header chain) are dropped as packet.DropFragment before
// any rule sees them, and counted in the fragment_* metrics (conntrack's
// doc, "Fragments", has the rules). A stateless firewall has no tracker:
// rules with port conditions never match later fragments there, so the
// default policy or a rule without ports decides them, as in Linux
// without conntrack.
//
// A new flow that the rules drop or reject is removed from the conntrack
// table again, so denied traffic cannot fill it. A rejected packet is
// answered with a TCP RST or an ICMP/ICMPv6 port unreachable, written over
// its own frame and bounced out of its ingress port (see reject.go for
// what is never answered and the rate limit); later stages leave bounced
// packets alone.
//
// One Stage per worker: its conntrack table is the worker's own.
type Stage struct {
	fw      *Firewall
	ct      *conntrack.Table
	worker  int
	results []conntrack.Result
	forget  []packet.FlowKey
	shared  bool // another stage tracks: look up only
	hits    batchHits
	limit   ratelimit.Bucket
	ctrs    pipeline.Counters // the verdict counters by name, for StageMetrics
	ctr     struct {
		accepted, dropped, rejected, malformed *pipeline.Counter
		nd                                     *pipeline.Counter // neighbor discovery passed unclassified
		// rejected = rejectSent + rejectLimited + rejectUnanswerable
		rejectSent, rejectLimited, rejectUnanswerable *pipeline.Counter
	}
	// The conntrack table's counters, published by the worker once per
	// batch (the table itself is the worker's alone): each counter gets
	// what its value grew by since the last batch.
	ctPub struct {
		last [len(conntrackMetrics)]uint64
		ctrs [len(conntrackMetrics)]*pipeline.Counter
	}
	// The fragment tracker's, likewise, when the stage tracks.
	fragPub struct {
		last [len(conntrack.FragmentMetrics)]uint64
		ctrs [len(conntrack.FragmentMetrics)]*pipeline.Counter
	}
}

// NewStage makes a firewall stage for one worker; ct may be nil for a
// stateless firewall (packets then have State 0 and match only rules
// without a state condition).
func NewStage(fw *Firewall, ct *conntrack.Table, worker int) *Stage {
	return newStage(fw, ct, worker, false)
}

func newStage(fw *Firewall, ct *conntrack.Table, worker int, shared bool) *Stage {
	s := &Stage{fw: fw, ct: ct, worker: worker, shared: shared,
		limit:   ratelimit.New(DefaultRejectRate, DefaultRejectBurst),
		results: make([]conntrack.Result, 0, packet.MaxBurst), forget: make([]packet.FlowKey, 0, packet.MaxBurst)}
	c := &s.ctr
	c.accepted, c.dropped = s.ctrs.Counter("accepted"), s.ctrs.Counter("dropped")
	c.rejected, c.malformed = s.ctrs.Counter("rejected"), s.ctrs.Counter("malformed")
	c.rejectSent, c.rejectLimited = s.ctrs.Counter("reject_sent"), s.ctrs.Counter("reject_limited")
	c.rejectUnanswerable = s.ctrs.Counter("reject_unanswerable")
	c.nd = s.ctrs.Counter("neighbor_discovery")
	if ct != nil {
		for i, name := range conntrackMetrics {
			s.ctPub.ctrs[i] = s.ctrs.Counter(name)
		}
	}
	if ct != nil && ct.Fragments() != nil && !shared {
		for i, name := range conntrack.FragmentMetrics {
			s.fragPub.ctrs[i] = s.ctrs.Counter(name)
		}
	}
	return s
}

// NewStageShared makes a firewall stage that reads the states an earlier
// stage tracked in ct (the NAT, when it comes first): it looks packets up
// and changes nothing in the table. The stage that tracks publishes the
// fragment tracker's counters.
func NewStageShared(fw *Firewall, ct *conntrack.Table, worker int) *Stage {
	s := newStage(fw, ct, worker, true)
	return s
}

// SetRejectLimit sets how many rejected packets a second the stage
// answers (rate) and how many at once (burst, which must be at least 1
// for any to be answered); the rest are dropped unanswered and counted
// as reject_limited. A burst of 0 answers none. Call it before the stage
// runs.
func (s *Stage) SetRejectLimit(rate, burst int) {
	s.limit = ratelimit.New(rate, burst)
}

// RejectLimit returns the answers a second and at once SetRejectLimit
// set (DefaultRejectRate and DefaultRejectBurst unless changed).
func (s *Stage) RejectLimit() (rate, burst int) { return s.limit.Limits() }

// Name implements pipeline.Stage.
func (s *Stage) Name() string { return "firewall" }

// Firewall is the stage's rule holder (Replace swaps rules atomically).
func (s *Stage) Firewall() *Firewall { return s.fw }

// Conntrack is the stage's flow table, nil when stateless. Only the
// worker's goroutine may use it.
func (s *Stage) Conntrack() *conntrack.Table { return s.ct }

// Process implements pipeline.Stage.
func (s *Stage) Process(b *packet.Batch) {
	var res []conntrack.Result
	if s.ct != nil {
		res = s.ct.Batch(b, b.Time(), s.shared, s.results[:0])
	}
	var accepted, dropped, rejected, malformed, nd uint64
	var rejectSent, rejectLimited, rejectUnanswerable uint64
	refilled := false
	forget := s.forget[:0]
	var k Key
	// One rule set for the whole batch (a reload takes effect between
	// batches), and its hit counters added once per rule that decided
	// rather than once per packet (BenchmarkClassifyCounted: 0-20% at 10k
	// rules, more when many workers share a counter's cache line).
	rs := s.fw.Load()
	s.hits.reset()
	for i := range b.Slice() {
		p := &b.Packets[i]
		if p.Verdict != packet.Forward {
			continue // dropped, or an answer an earlier stage bounced
		}
		isIP := p.EtherType == packet.EtherTypeIPv4 || p.EtherType == packet.EtherTypeIPv6
		if !isIP {
			continue
		}
		if res != nil && res[i].Fragment.Drop() {
			// Out of order, overlapping, or a first IPv6 fragment
			// without its header chain: see conntrack's doc.
			p.SetDrop(packet.DropFragment)
			continue
		}
		if p.Flags&packet.FlagBad != 0 || p.Flags&(packet.FlagIPv4|packet.FlagIPv6) == 0 {
			p.SetDrop(packet.DropMalformed)
			malformed++
			continue
		}
		if neighborDiscovery(p) {
			nd++
			continue
		}
		fillKey(&k, p)
		followed := false
		if res != nil {
			k.State = State(res[i].State)
			if followed = res[i].Fragment == conntrack.FragmentFollowed; followed {
				followKey(&k, s.ct.FragmentInfo(i))
			}
		}
		act, rule := rs.Classify(&k)
		s.hits.add(rule)
		if act == Accept {
			accepted++
			continue
		}
		if act == Reject {
			rejected++
			switch s.reject(p, b, &refilled) {
			case answerSent:
				rejectSent++
			case answerLimited:
				rejectLimited++
				p.SetDrop(packet.DropPolicy)
			default:
				rejectUnanswerable++
				p.SetDrop(packet.DropPolicy)
			}
		} else {
			dropped++
			p.SetDrop(packet.DropPolicy)
		}
		if res != nil && !s.shared && res[i].State == conntrack.StateNew && res[i].Flow != nil && !followed {
			forget = append(forget, res[i].Flow.Orig())
		}
	}
	s.hits.flush(rs, s.worker)
	for _, fk := range forget {
		s.ct.Delete(fk)
	}
	s.forget = forget[:0]
	if s.ct != nil {
		s.publishConntrack()
		if !s.shared && s.ct.Fragments() != nil {
			s.publishFragments()
		}
	}
	if accepted != 0 {
		s.ctr.accepted.Add(accepted)
	}
	if dropped != 0 {
		s.ctr.dropped.Add(dropped)
	}
	if rejected != 0 {
		s.ctr.rejected.Add(rejected)
	}
	if malformed != 0 {
		s.ctr.malformed.Add(malformed)
	}
	if nd != 0 {
		s.ctr.nd.Add(nd)
	}
	if rejected != 0 {
		s.ctr.rejectSent.Add(rejectSent)
		s.ctr.rejectLimited.Add(rejectLimited)
		s.ctr.rejectUnanswerable.Add(rejectUnanswerable)
	}
}

// reject answers p when it may be answered, its frame has room for the
// answer and the rate limit has a token (refilled once per batch;
// refilled says whether this batch did).
func (s *Stage) reject(p *packet.Packet, b *packet.Batch, refilled *bool) answer {
	if !rejectAnswerable(p) || !rejectFits(p) {
		return answerNone
	}
	if !*refilled {
		s.limit.Refill(b.Time())
		*refilled = true
	}
	if !s.limit.Take() {
		return answerLimited
	}
	rejectAnswer(p)
	return answerSent
}

// conntrackMetrics name the table's counters in StageMetrics, in the
// order publishConntrack reads them.
var conntrackMetrics = [...]string{"conntrack_flows", "conntrack_new", "conntrack_invalid", "conntrack_related",
	"conntrack_expired", "conntrack_evicted", "conntrack_full"}

// publishConntrack adds to each conntrack counter what the table's value
// grew by since the last batch. The flow count also shrinks: its counter
// then adds the difference modulo 2^64, so the total it reads is still the
// table's length.
func (s *Stage) publishConntrack() {
	c := s.ct.Counters()
	now := [len(conntrackMetrics)]uint64{uint64(s.ct.Len()), c.New, c.Invalid, c.Related, c.Expired, c.Evicted, c.Full}
	p := &s.ctPub
	for i, v := range now {
		if v != p.last[i] {
			p.ctrs[i].Add(v - p.last[i])
			p.last[i] = v
		}
	}
}

// neighborDiscovery reports whether p is an IPv6 neighbor solicitation or
// advertisement sent on the link: ICMPv6 type 135 or 136, code 0, hop
// limit 255 (RFC 4861 7.1.1, 7.1.2: a router on the way would have
// lowered it). They are IPv6's ARP, and the stage passes them as it passes
// ARP. Rules could not sensibly decide them anyway: conntrack does not
// track them (nor does Linux's), so with state-only rules, such as
// "accept state established,related" and "accept in 0 state new", the
// default policy would drop every one, and the router behind could
// neither answer for its addresses nor resolve a neighbor: no IPv6 at
// all. A router never forwards them (it answers or absorbs each), so
// passing them opens no path through it. Anything else, router and
// multicast listener messages included, meets the rules.
func neighborDiscovery(p *packet.Packet) bool {
	if p.Flags&packet.FlagICMPv6 == 0 {
		return false
	}
	ic := p.ICMP()
	return (ic[0] == packet.ICMPv6NeighborSolicit || ic[0] == packet.ICMPv6NeighborAdvert) && ic[1] == 0 &&
		p.IPv6().HopLimit() == 255
}

// publishFragments is publishConntrack for the fragment tracker.
func (s *Stage) publishFragments() {
	p := &s.fragPub
	for i, v := range s.ct.Fragments().Metrics() {
		if v != p.last[i] {
			p.ctrs[i].Add(v - p.last[i])
			p.last[i] = v
		}
	}
}

// followKey completes the key of a later fragment that followed its
// datagram's first fragment with what that fragment carried: its
// upper-layer protocol, ports, or ICMP type and code. So rules see the
// datagram as they saw its first fragment and decide alike.
func followKey(k *Key, info conntrack.FragmentInfo) {
	k.Proto = info.Proto
	if !info.HasL4 {
		return
	}
	switch info.Proto {
	case packet.ProtoTCP, packet.ProtoUDP, ProtoSCTP, ProtoUDPLite:
		k.SrcPort = binary.BigEndian.Uint16(info.L4[0:2])
		k.DstPort = binary.BigEndian.Uint16(info.L4[2:4])
	case packet.ProtoICMP, packet.ProtoICMPv6:
		if (info.Proto == packet.ProtoICMPv6) == k.IPv6 {
			k.ICMPType, k.ICMPCode = info.L4[0], info.L4[1]
		}
	}
}

// PacketKey fills k from a parsed packet as the stage does before it
// classifies (k.State stays 0: conntrack sets it), and reports whether the
// stage classifies p at all: not a non-IP frame, which passes untouched,
// nor an IP packet that failed to parse, which it drops as malformed, nor
// IPv6 neighbor discovery, which it passes as it passes ARP, nor a later
// fragment, whose key the stage completes from its datagram's first
// fragment (conntrack's fragment tracker). It is the model an XDP
// pre-filter must read packets by: what it reports false for, the
// pre-filter leaves to the stage.
func PacketKey(p *packet.Packet, k *Key) bool {
	if p.EtherType != packet.EtherTypeIPv4 && p.EtherType != packet.EtherTypeIPv6 ||
		p.Flags&packet.FlagBad != 0 || p.Flags&(packet.FlagIPv4|packet.FlagIPv6) == 0 || neighborDiscovery(p) ||
		p.Flags&packet.FlagLaterFragment != 0 {
		return false
	}
	fillKey(k, p)
	return true
}

// fillKey reads the classifier's key from a parsed packet.
func fillKey(k *Key, p *packet.Packet) {
	*k = Key{InPort: p.InPort, Proto: p.L4Proto}
	h := p.Data[p.L3Off:]
	if p.Flags&packet.FlagIPv4 != 0 {
		copy(k.Src[12:], h[12:16])
		copy(k.Dst[12:], h[16:20])
	} else {
		k.IPv6 = true
		copy(k.Src[:], h[8:24])
		copy(k.Dst[:], h[24:40])
	}
	switch {
	case p.Flags&(packet.FlagTCP|packet.FlagUDP) != 0:
		l4 := p.Data[p.L4Off:]
		k.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		k.DstPort = binary.BigEndian.Uint16(l4[2:4])
	case p.Flags&(packet.FlagICMP|packet.FlagICMPv6) != 0:
		k.ICMPType, k.ICMPCode = p.Data[p.L4Off], p.Data[p.L4Off+1]
	case p.L4Proto == ProtoSCTP || p.L4Proto == ProtoUDPLite:
		// Parse leaves these headers alone, but both start with the
		// ports, as UDP does; their headers are 12 (SCTP) and 8 bytes.
		// L4Off is 0 in later fragments, which carry no ports.
		need := 8
		if p.L4Proto == ProtoSCTP {
			need = 12
		}
		if p.L4Off != 0 && int(p.L3End)-int(p.L4Off) >= need {
			l4 := p.Data[p.L4Off:]
			k.SrcPort = binary.BigEndian.Uint16(l4[0:2])
			k.DstPort = binary.BigEndian.Uint16(l4[2:4])
		}
	}
}

// StageMetrics implements pipeline.StageMetrics: verdicts, per-rule hits
// (rule_N_hits, default_hits), what became of rejected packets
// (reject_sent + reject_limited + reject_unanswerable = rejected) and the
// conntrack table's counters.
//
// With rules offloaded (Firewall.SetOffload), the packets they dropped
// before the stage count in dropped and in their rule_N_hits as if the
// stage had dropped them, and in xdp_dropped, the part of dropped that
// never reached the stage. The offloader's counters are read once a call.
func (s *Stage) StageMetrics() map[string]uint64 {
	m := s.ctrs.StageMetrics()
	m["default_hits"] = s.fw.DefaultHits()
	hits, off := s.fw.counts()
	for i, h := range hits {
		m[fmt.Sprintf("rule_%d_hits", i)] = h
	}
	if off != 0 || s.fw.Offloaded() != nil {
		m["dropped"] += off
		m["xdp_dropped"] = off
	}
	return m
}

// batchHits counts the rules that decided a batch's packets: a small
// open-addressed table, reset per batch, so the shared per-rule counters
// get one atomic add per distinct rule.
type batchHits struct {
	rule  [2 * packet.MaxBurst]int32 // rule index + 2 (0: empty slot; 1: default policy); never more than half full
	count [2 * packet.MaxBurst]uint32
	used  [packet.MaxBurst]uint16
	n     int
}

func (h *batchHits) reset() { h.n = 0 }

func (h *batchHits) add(rule int) {
	key := int32(rule + 2)
	i := (uint32(key) * 2654435769) >> 23 // Fibonacci hash into 512 slots
	for {
		switch h.rule[i] {
		case key:
			h.count[i]++
			return
		case 0:
			h.rule[i], h.count[i] = key, 1
			h.used[h.n] = uint16(i)
			h.n++
			return
		}
		i = (i + 1) & (2*packet.MaxBurst - 1)
	}
}

func (h *batchHits) flush(rs *Ruleset, worker int) {
	for _, i := range h.used[:h.n] {
		rs.AddHits(worker, int(h.rule[i])-2, uint64(h.count[i]))
		h.rule[i] = 0
	}
	h.n = 0
}
