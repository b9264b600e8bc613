package nat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

// Config describes one NAT. The zero value of every optional field takes
// its documented default.
type Config struct {
	// Inside and Outside are the pipeline port indices on each side. New
	// flows entering on an inside port are source-translated (SNAT);
	// new flows entering on an outside port are matched against
	// Forwards (DNAT). A port in neither list is neutral: its packets
	// follow existing translations but start none.
	Inside, Outside []uint16
	// Pool is the SNAT address pool (IPv4). Empty: no SNAT.
	Pool []netip.Addr
	// PortMin and PortMax bound the ports (and ICMP echo identifiers)
	// SNAT allocates, per protocol and pool address. Both zero means
	// 1024-65535 with the original port kept whenever it is free, in
	// range or not (as Linux's masquerade without --to-ports). When
	// set, translated ports always lie in the range: the original port
	// is kept only if it is inside it and free.
	PortMin, PortMax uint16
	// Except lists destinations that new inside flows reach without
	// SNAT (the NAT box's own inside addresses, other inside networks).
	// Pool addresses are always excepted.
	Except []netip.Prefix
	// Forwards are the DNAT rules, first match wins.
	Forwards []Forward
	// MaxProbes bounds the ports tried per pool address for one new
	// flow once its original port is taken (default 128). A range no
	// larger than MaxProbes is searched exhaustively.
	MaxProbes int
}

// Forward is a DNAT (port forwarding) rule: TCP or UDP packets of a new
// flow entering on an outside port for Addr, destination port in
// [PortMin, PortMax], go to To, port ToPort + (port - PortMin). ToPort 0
// keeps the port.
type Forward struct {
	Proto            uint8 // packet.ProtoTCP or packet.ProtoUDP
	Addr             netip.Addr
	PortMin, PortMax uint16
	To               netip.Addr
	ToPort           uint16
}

func (f Forward) String() string {
	proto := "tcp"
	if f.Proto == packet.ProtoUDP {
		proto = "udp"
	}
	ports := fmt.Sprint(f.PortMin)
	if f.PortMax != f.PortMin {
		ports += fmt.Sprintf("-%d", f.PortMax)
	}
	to := f.ToPort
	if to == 0 {
		to = f.PortMin
	}
	return fmt.Sprintf("%s %s:%s -> %s:%d", proto, f.Addr, ports, f.To, to)
}

// Port roles.
const (
	roleNeutral = iota
	roleInside
	roleOutside
)

// Flow.User bits: the NAT's decision about a flow, made once by the first
// packet that sees the flow with User == 0.
const (
	userDecided    = 1 << 0 // a decision was made
	userTranslated = 1 << 1 // the tuples differ: packets are rewritten
	userSNAT       = 1 << 2
	userDNAT       = 1 << 3
	userRefused    = 1 << 4 // no translation possible: drop, and forget at the end of the batch
)

// Counters are a stage's totals since it was made.
type Counters struct {
	SNATFlows        uint64 // new flows given a translated source
	PortsKept        uint64 // of those, flows that kept their original port (or echo id)
	DNATFlows        uint64 // new flows given a translated destination
	Translated       uint64 // packets rewritten
	ICMPErrors       uint64 // ICMP errors translated (outer and quoted headers)
	Exhausted        uint64 // new flows dropped (DropFull): no free port/address in the pool
	Conflicts        uint64 // new DNAT flows dropped (DropFull): the inside tuple is taken
	TableFull        uint64 // packets dropped (DropFull) that could not get a conntrack entry
	Untranslatable   uint64 // packets from an inside port dropped: no flow to translate them by (DropPolicy; DropMalformed if unsound)
	FragmentsKept    uint64 // later IPv4 fragments handled as their first fragment was (translated alike, or passed)
	FragmentsDropped uint64 // IPv4 fragments dropped (DropFragment): condemned by the fragment tracker, or later ones of no flow the NAT decided
	TTLExpiring      uint64 // packets of translated flows left untranslated: TTL <= 1, the router behind answers them
}

// Stage is a NAT as a pipeline stage, for one worker: it tracks every IP
// packet in its own conntrack table, decides the translation of each new
// flow once, and rewrites every packet of a translated flow. See the
// package doc.
type Stage struct {
	ct        *conntrack.Table
	role      []uint8
	pool      [][4]byte
	except    []netip.Prefix
	forwards  []fwd
	portMin   uint16
	portMax   uint16
	keepAny   bool
	maxProbes int
	cursor    [3]uint32 // per protocol class (tcp, udp, icmp): next port to try
	shared    bool
	results   []conntrack.Result
	forget    []packet.FlowKey
	local     [numCounters]uint64 // this batch's counts, published at its end
	ctrs      pipeline.Counters   // the totals, by name: the stage's StageMetrics
	ctr       [numCounters]*pipeline.Counter
	pending   atomic.Pointer[Stage] // rules from Replace, taken by the worker
	// The fragment tracker's counters, when the stage tracks: each
	// counter gets what its value grew by since the last batch.
	fragPub struct {
		last [len(conntrack.FragmentMetrics)]uint64
		ctrs [len(conntrack.FragmentMetrics)]*pipeline.Counter
	}
}

// Replace installs new rules (ports, pool, exceptions, port range,
// forwards) from any goroutine. They are checked here and take effect at
// the worker's next batch, all at once; flows already translated keep
// their translation (it lives in their conntrack entries) until they end.
func (s *Stage) Replace(cfg Config) error {
	n, err := newStage(cfg, s.ct, s.shared)
	if err != nil {
		return err
	}
	s.pending.Store(n)
	return nil
}

// takePending applies rules from Replace; only the worker calls it.
func (s *Stage) takePending() {
	n := s.pending.Swap(nil)
	if n == nil {
		return
	}
	s.role, s.pool, s.except, s.forwards = n.role, n.pool, n.except, n.forwards
	s.portMin, s.portMax, s.keepAny, s.maxProbes = n.portMin, n.portMax, n.keepAny, n.maxProbes
	s.cursor = n.cursor
}

type fwd struct {
	proto            uint8
	addr, to         [4]byte
	portMin, portMax uint16
	toPort           uint16
}

// NewStage returns a NAT stage over ct, a conntrack table the stage owns (one
// per worker: see conntrack's doc on steering). The stage calls
// TrackBatch on it for every batch.
func NewStage(cfg Config, ct *conntrack.Table) (*Stage, error) { return newStage(cfg, ct, false) }

// NewStageShared returns a NAT stage over a table that an earlier stage of the
// same worker's chain tracks (a stateful firewall: firewall.Stage's
// Conntrack), so both follow the same flows across the translation. The
// NAT stage does not track; it looks each packet up (LookupPacket: its
// flow key, or for an ICMP error the quoted key reversed), which costs a
// hash lookup more per packet than NewStage's. Packets the earlier stage
// tracked as invalid, and flows it deleted, are unknown here.
func NewStageShared(cfg Config, ct *conntrack.Table) (*Stage, error) { return newStage(cfg, ct, true) }

func newStage(cfg Config, ct *conntrack.Table, shared bool) (*Stage, error) {
	if ct == nil {
		return nil, errors.New("nat: no conntrack table")
	}
	s := &Stage{ct: ct, shared: shared, maxProbes: cfg.MaxProbes,
		results: make([]conntrack.Result, 0, packet.MaxBurst),
		forget:  make([]packet.FlowKey, 0, packet.MaxBurst)}
	for i, name := range counterNames {
		s.ctr[i] = s.ctrs.Counter(name)
	}
	if !shared && ct.Fragments() != nil {
		for i, name := range conntrack.FragmentMetrics {
			s.fragPub.ctrs[i] = s.ctrs.Counter(name)
		}
	}
	maxPort := -1
	for _, p := range append(append([]uint16(nil), cfg.Inside...), cfg.Outside...) {
		maxPort = max(maxPort, int(p))
	}
	s.role = make([]uint8, maxPort+1)
	for _, p := range cfg.Inside {
		s.role[p] = roleInside
	}
	for _, p := range cfg.Outside {
		if s.role[p] == roleInside {
			return nil, fmt.Errorf("nat: port %d is both inside and outside", p)
		}
		s.role[p] = roleOutside
	}
	for _, a := range cfg.Pool {
		if !a.Is4() {
			return nil, fmt.Errorf("nat: pool address %s: only IPv4 is translated", a)
		}
		s.pool = append(s.pool, a.As4())
		s.except = append(s.except, netip.PrefixFrom(a, 32))
	}
	s.except = append(s.except, cfg.Except...)
	switch {
	case cfg.PortMin == 0 && cfg.PortMax == 0:
		s.portMin, s.portMax, s.keepAny = 1024, 65535, true
	case cfg.PortMin == 0 || cfg.PortMin > cfg.PortMax:
		return nil, fmt.Errorf("nat: port range %d-%d: expected 1 <= min <= max", cfg.PortMin, cfg.PortMax)
	default:
		s.portMin, s.portMax = cfg.PortMin, cfg.PortMax
	}
	if s.maxProbes <= 0 {
		s.maxProbes = 128
	}
	for i := range s.cursor {
		s.cursor[i] = uint32(s.portMin)
	}
	for i, f := range cfg.Forwards {
		if f.Proto != packet.ProtoTCP && f.Proto != packet.ProtoUDP {
			return nil, fmt.Errorf("nat: forward %d: protocol %d: expected tcp or udp", i, f.Proto)
		}
		if !f.Addr.Is4() || !f.To.Is4() {
			return nil, fmt.Errorf("nat: forward %d: only IPv4 addresses are translated", i)
		}
		if f.PortMin == 0 || f.PortMin > f.PortMax {
			return nil, fmt.Errorf("nat: forward %d: port range %d-%d: expected 1 <= min <= max", i, f.PortMin, f.PortMax)
		}
		to := f.ToPort
		if to == 0 {
			to = f.PortMin
		}
		if int(to)+int(f.PortMax-f.PortMin) > 65535 {
			return nil, fmt.Errorf("nat: forward %d: target ports %d-%d run past 65535", i, to, int(to)+int(f.PortMax-f.PortMin))
		}
		s.forwards = append(s.forwards, fwd{proto: f.Proto, addr: f.Addr.As4(), to: f.To.As4(),
			portMin: f.PortMin, portMax: f.PortMax, toPort: to})
	}
	return s, nil
}

// Name implements pipeline.Stage.
func (s *Stage) Name() string { return "nat" }

// Conntrack returns the stage's table. Only the worker's goroutine may use
// it.
func (s *Stage) Conntrack() *conntrack.Table { return s.ct }

// Process implements pipeline.Stage. Its clock is the batch's
// (packet.Batch.Time): the clock firewall.Stage uses, as it must be for a
// table the two share (NewStageShared).
func (s *Stage) Process(b *packet.Batch) { s.ProcessAt(b, b.Time()) }

// ProcessAt is Process with the clock given: now is nanoseconds, as
// conntrack takes it (tests and benchmarks choose it). Every stage using
// one table must pass the same clock.
func (s *Stage) ProcessAt(b *packet.Batch, now int64) {
	s.takePending()
	var res []conntrack.Result
	full := false
	if s.shared {
		res = s.lookupIPv4(b, now)
	} else {
		fullBefore := s.ct.Counters().Full
		res = s.ct.TrackBatch(b, now, s.results[:0])
		full = s.ct.Counters().Full != fullBefore
	}
	later := false
	for i := range res {
		p := &b.Packets[i]
		if p.Verdict != packet.Forward {
			// Dropped, or bounced back out of its ingress port by an
			// earlier stage: it does not cross the NAT.
			continue
		}
		if p.Flags&packet.FlagIPv4 == 0 {
			// Non-IP (ARP for the router behind) and IPv6 pass: this
			// NAT translates IPv4 only.
			continue
		}
		if p.Flags&packet.FlagLaterFragment != 0 {
			later = true // after the batch's first fragments are decided
			continue
		}
		s.packet(p, &res[i], now, full)
	}
	if later {
		for i := range res {
			if p := &b.Packets[i]; p.Verdict == packet.Forward && p.Flags&(packet.FlagIPv4|packet.FlagLaterFragment) == packet.FlagIPv4|packet.FlagLaterFragment {
				s.laterFragment(p, &res[i])
			}
		}
	}
	for _, k := range s.forget {
		s.ct.Delete(k)
	}
	s.forget = s.forget[:0]
	s.publish()
}

// lookupIPv4 gives a shared stage its results: the flows of the batch's
// forwarded IPv4 packets looked up as Track would have said them (their
// direction, New for an original packet of a flow not yet replied, what
// decide needs; Related for an ICMP error). Only those packets are
// looked up, as only they are translated: conntrack's LookupBatch would
// also hash and probe for every IPv6 packet of a dual-stack chain. The
// other results are left as they are and never read.
func (s *Stage) lookupIPv4(b *packet.Batch, now int64) []conntrack.Result {
	res := s.results[:b.Len]
	for i := range res {
		if p := &b.Packets[i]; p.Verdict == packet.Forward && p.Flags&packet.FlagIPv4 != 0 {
			res[i] = s.ct.LookupPacket(p, now)
		}
	}
	return res
}

func (s *Stage) portRole(port uint16) uint8 {
	if int(port) < len(s.role) {
		return s.role[port]
	}
	return roleNeutral
}

// packet handles one IPv4 packet (but a later fragment) with its
// conntrack result.
func (s *Stage) packet(p *packet.Packet, r *conntrack.Result, now int64, full bool) {
	if r.Fragment.Drop() {
		// A first fragment the tracker condemned (an overlap).
		p.SetDrop(packet.DropFragment)
		s.local[cFragmentsDropped]++
		return
	}
	f := r.Flow
	if f == nil {
		// No flow: the table was full, or the packet is invalid, or
		// untracked (an ICMP type that is neither echo nor error).
		if full && startsFlow(p) {
			p.SetDrop(packet.DropFull)
			s.local[cTableFull]++
			return
		}
		// From the inside it cannot be translated and must not leak
		// untranslated; elsewhere it passes as it is.
		if s.portRole(p.InPort) == roleInside && len(s.pool) > 0 {
			if p.Flags&packet.FlagBad != 0 {
				p.SetDrop(packet.DropMalformed)
			} else {
				p.SetDrop(packet.DropPolicy)
			}
			s.local[cUntranslatable]++
		}
		return
	}
	if f.User == 0 {
		if r.State != conntrack.StateNew || r.Dir != conntrack.Original {
			// A flow the stage has not decided (possible only for a
			// table shared with another stage): leave it alone.
			return
		}
		s.decide(p, f, now)
	}
	u := f.User
	if u&userRefused != 0 {
		if r.State != conntrack.StateRelated {
			p.SetDrop(packet.DropFull)
		}
		return
	}
	if u&userTranslated != 0 {
		if p.IPv4().TTL() <= 1 {
			// No router may forward it: the router behind drops it and
			// answers with a time exceeded, which must reach the
			// sender's own address and quote what it sent (Linux
			// routes before it source-translates).
			s.local[cTTLExpiring]++
			return
		}
		if r.State == conntrack.StateRelated {
			if conntrack.TranslateError(p, f, r.Dir) {
				s.local[cICMPErrors]++
				s.local[cTranslated]++
			}
			return
		}
		s.rewrite(p, f, r.Dir)
		s.local[cTranslated]++
	}
}

// laterFragment handles a fragment other than the first as its datagram's
// first fragment was handled. The conntrack table's fragment tracker gave
// it that fragment's flow (conntrack's doc, "Fragments"), so it gets the
// flow's address translation: its ports, and the L4 checksum, are in the
// first fragment. It is dropped (DropFragment) when the tracker condemned
// it (out of order, overlapping) or its datagram has no flow the NAT
// decided (the first fragment was dropped, refused or not tracked).
func (s *Stage) laterFragment(p *packet.Packet, r *conntrack.Result) {
	f := r.Flow
	if r.Fragment.Drop() || f == nil || f.User == 0 || f.User&userRefused != 0 {
		p.SetDrop(packet.DropFragment)
		s.local[cFragmentsDropped]++
		return
	}
	s.local[cFragmentsKept]++
	if f.User&userTranslated == 0 {
		return
	}
	if p.IPv4().TTL() <= 1 {
		s.local[cTTLExpiring]++ // as its first fragment: the router behind answers
		return
	}
	s.rewrite(p, f, r.Dir)
	s.local[cTranslated]++
}

// decide chooses the translation of a new flow from its first packet and
// records it in f.User (and, through SetReply, in f's reply tuple).
func (s *Stage) decide(p *packet.Packet, f *conntrack.Flow, now int64) {
	orig := f.Orig()
	if !orig.IsIPv4() {
		f.User = userDecided
		return
	}
	switch s.portRole(p.InPort) {
	case roleInside:
		// A martian keeps its addresses, so the router behind the NAT
		// still sees what it must drop (Linux decides before SNAT too).
		if len(s.pool) == 0 || s.excepted(orig.Dst) ||
			packet.Martian4([4]byte(orig.Src[12:]), [4]byte(orig.Dst[12:])) != packet.MartianNone {
			f.User = userDecided
			return
		}
		switch ep, res := s.snat(f, orig, now); res {
		case errNone:
			f.User = userDecided | userTranslated | userSNAT | ep
			s.local[cSNATFlows]++
		case errFull:
			s.refuse(f, orig)
			s.local[cExhausted]++
		}
	case roleOutside:
		if orig.Proto != packet.ProtoTCP && orig.Proto != packet.ProtoUDP {
			f.User = userDecided
			return
		}
		for i := range s.forwards {
			fw := &s.forwards[i]
			if fw.proto != orig.Proto || fw.addr != [4]byte(orig.Dst[12:]) ||
				orig.DstPort < fw.portMin || orig.DstPort > fw.portMax {
				continue
			}
			reply := orig.Reverse()
			copy(reply.Src[12:], fw.to[:])
			reply.SrcPort = fw.toPort + (orig.DstPort - fw.portMin)
			if err := s.ct.SetReply(f, reply, now); err != nil {
				s.refuse(f, orig)
				s.local[cConflicts]++
				return
			}
			f.User = userDecided | userTranslated | userDNAT | packEndpoint(reply.Src, reply.SrcPort)
			s.local[cDNATFlows]++
			return
		}
		f.User = userDecided
	default:
		f.User = userDecided
	}
}

// refuse marks a flow that cannot be translated: its packets in this
// batch are dropped, and the flow is deleted after the batch, so the next
// packet tries again.
func (s *Stage) refuse(f *conntrack.Flow, orig packet.FlowKey) {
	f.User = userDecided | userRefused
	s.forget = append(s.forget, orig)
}

func (s *Stage) excepted(dst [16]byte) bool {
	if len(s.except) == 0 {
		return false
	}
	a := netip.AddrFrom4([4]byte(dst[12:]))
	for _, e := range s.except {
		if e.Contains(a) {
			return true
		}
	}
	return false
}

type allocResult uint8

const (
	errNone allocResult = iota
	errFull
)

// snat finds a free translated source for a new flow: a pool address
// (the one the inside address hashes to first), the original port (or
// echo id) if it is free and allowed, else the next free one from the
// protocol's cursor. "Free" means no live conntrack entry holds the
// would-be reply tuple; SetReply checks and installs it in one step.
func (s *Stage) snat(f *conntrack.Flow, orig packet.FlowKey, now int64) (endpoint uint64, res allocResult) {
	reply := orig.Reverse()
	n := uint32(len(s.pool))
	first := hash4([4]byte(orig.Src[12:])) % n
	class := -1
	switch orig.Proto {
	case packet.ProtoTCP:
		class = 0
	case packet.ProtoUDP:
		class = 1
	case packet.ProtoICMP:
		if orig.SrcPort != 0 || orig.DstPort == 0 { // an echo request flow: (id, 0)
			class = 2
		}
	}
	for ai := uint32(0); ai < n; ai++ {
		copy(reply.Dst[12:], s.pool[(first+ai)%n][:])
		if class < 0 {
			// Other protocols: addresses only, one inside host per
			// (remote, protocol, pool address).
			if s.ct.SetReply(f, reply, now) == nil {
				return packEndpoint(reply.Dst, 0), errNone
			}
			continue
		}
		// The original port (id) sits in reply.DstPort: a reply to X:x.
		op := orig.SrcPort
		if s.keepAny || (op >= s.portMin && op <= s.portMax) {
			if s.ct.SetReply(f, reply, now) == nil {
				s.local[cPortsKept]++
				return packEndpoint(reply.Dst, reply.DstPort), errNone
			}
		}
		size := uint32(s.portMax-s.portMin) + 1
		tries := min(size, uint32(s.maxProbes))
		c := s.cursor[class]
		for range tries {
			if c < uint32(s.portMin) || c > uint32(s.portMax) {
				c = uint32(s.portMin)
			}
			cand := uint16(c)
			c++
			if cand == op {
				continue // tried above
			}
			reply.DstPort = cand
			if s.ct.SetReply(f, reply, now) == nil {
				s.cursor[class] = c
				return packEndpoint(reply.Dst, reply.DstPort), errNone
			}
		}
		s.cursor[class] = c
	}
	return 0, errFull
}

// packEndpoint packs an IPv4 address (IPv4-mapped in a) and a port into
// the upper 48 bits of Flow.User: the translated endpoint, so that a
// packet is rewritten from User and the tuple of its own cache line.
func packEndpoint(a [16]byte, port uint16) uint64 {
	return uint64(binary.BigEndian.Uint32(a[12:]))<<32 | uint64(port)<<16
}

func hash4(a [4]byte) uint32 {
	h := binary.BigEndian.Uint32(a[:]) * 0x9e3779b1
	return h ^ h>>16
}

// rewrite translates a packet of a translated flow travelling in direction
// d: it makes the packet's tuple (f.Key(d)) into the tuple the other side
// expects, the other direction's tuple reversed. The translated endpoint
// is in f.User (SNAT: the new source of original packets; DNAT: their new
// destination); the endpoint it replaces, for reply packets, is in the
// original tuple.
func (s *Stage) rewrite(p *packet.Packet, f *conntrack.Flow, d conntrack.Dir) {
	u := f.User
	var addr [4]byte
	var port uint16
	if d == conntrack.Original {
		binary.BigEndian.PutUint32(addr[:], uint32(u>>32))
		port = uint16(u >> 16)
	} else {
		o := f.Orig()
		if u&userSNAT != 0 {
			addr, port = [4]byte(o.Src[12:]), o.SrcPort
		} else {
			addr, port = [4]byte(o.Dst[12:]), o.DstPort
		}
	}
	// SNAT rewrites the source of original packets and the destination
	// of replies; DNAT the other way round.
	src := (u&userSNAT != 0) == (d == conntrack.Original)
	ip := p.Data[p.L3Off:]
	if src {
		if [4]byte(ip[12:16]) != addr {
			p.SetIPv4Src(addr)
		}
	} else if [4]byte(ip[16:20]) != addr {
		p.SetIPv4Dst(addr)
	}
	switch {
	case p.Flags&(packet.FlagTCP|packet.FlagUDP) != 0:
		l4 := p.Data[p.L4Off:]
		if src {
			if binary.BigEndian.Uint16(l4[0:2]) != port {
				p.SetSrcPort(port)
			}
		} else if binary.BigEndian.Uint16(l4[2:4]) != port {
			p.SetDstPort(port)
		}
	case p.Flags&packet.FlagICMP != 0:
		// Only echo flows are translated with an id (an echo request
		// original, its replies reply); port is 0 for address-only
		// translations, which never reach here with an echo.
		if h := p.ICMP(); h.IsEcho(false) && h.ID() != port {
			p.SetICMPEchoID(port)
		}
	}
}

// Counter indices into Stage.local and Stage.ctr.
const (
	cSNATFlows = iota
	cPortsKept
	cDNATFlows
	cTranslated
	cICMPErrors
	cExhausted
	cConflicts
	cTableFull
	cUntranslatable
	cFragmentsKept
	cFragmentsDropped
	cTTLExpiring
	numCounters
)

// counterNames are the counters' names in StageMetrics.
var counterNames = [numCounters]string{
	cSNATFlows: "snat_flows", cPortsKept: "ports_kept", cDNATFlows: "dnat_flows",
	cTranslated: "translated", cICMPErrors: "icmp_errors", cExhausted: "exhausted",
	cConflicts: "conflicts", cTableFull: "table_full", cUntranslatable: "untranslatable",
	cFragmentsKept: "fragments_kept", cFragmentsDropped: "fragments_dropped", cTTLExpiring: "ttl_expiring",
}

// publish adds the batch's counts to the totals other goroutines read.
func (s *Stage) publish() {
	for i, v := range s.local {
		if v != 0 {
			s.ctr[i].Add(v)
			s.local[i] = 0
		}
	}
	if s.fragPub.ctrs[0] != nil {
		fp := &s.fragPub
		for i, v := range s.ct.Fragments().Metrics() {
			if v != fp.last[i] {
				fp.ctrs[i].Add(v - fp.last[i])
				fp.last[i] = v
			}
		}
	}
}

// Counters returns the totals as of the end of the last batch. It may be
// called from any goroutine.
func (s *Stage) Counters() Counters {
	c := func(i int) uint64 { return s.ctr[i].Load() }
	return Counters{
		SNATFlows: c(cSNATFlows), PortsKept: c(cPortsKept), DNATFlows: c(cDNATFlows),
		Translated: c(cTranslated), ICMPErrors: c(cICMPErrors), Exhausted: c(cExhausted),
		Conflicts: c(cConflicts), TableFull: c(cTableFull), Untranslatable: c(cUntranslatable),
		FragmentsKept: c(cFragmentsKept), FragmentsDropped: c(cFragmentsDropped), TTLExpiring: c(cTTLExpiring),
	}
}

// StageMetrics implements pipeline.StageMetrics.
func (s *Stage) StageMetrics() map[string]uint64 { return s.ctrs.StageMetrics() }

// startsFlow reports whether p could start a conntrack flow: so when it
// has none and the table refused new flows in this batch, the table was
// full.
func startsFlow(p *packet.Packet) bool {
	switch {
	case p.Flags&packet.FlagTCP != 0:
		return p.TCP().Flags()&(packet.TCPSyn|packet.TCPAck|packet.TCPRst|packet.TCPFin) == packet.TCPSyn
	case p.Flags&packet.FlagUDP != 0:
		return true
	case p.Flags&packet.FlagICMP != 0:
		return p.ICMP().Type() == packet.ICMPEchoRequest
	}
	return p.L4Proto != packet.ProtoICMP
}
