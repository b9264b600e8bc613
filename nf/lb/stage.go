package lb

import (
	"errors"
	"sync/atomic"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

// Flow.User of a flow the stage balanced. Bits 0 to 4 stay clear: they
// are the NAT's flags (nf/nat), so a NAT sharing the table takes such a
// flow for decided and untranslated and leaves it alone, and the stage
// leaves alone every flow without userLB.
const (
	userLB      = 1 << 5 // balanced by this stage
	userRefused = 1 << 6 // refused (no backend, tuple taken): drop, forget after the batch
	// The drop reason of a refused flow, in bits 8 to 15.
	reasonShift = 8
	// The backend's counter slot, in the upper 32 bits.
	slotShift = 32
)

// Counter indices into Stage.local and Stage.ctr.
const (
	cFlows = iota
	cTranslated
	cICMPErrors
	cNoBackend
	cConflicts
	cTableFull
	cNoFlow
	cFragments
	cTTLExpiring
	numCounters
)

var counterNames = [numCounters]string{
	cFlows: "flows", cTranslated: "translated", cICMPErrors: "icmp_errors",
	cNoBackend: "no_backend", cConflicts: "conflicts", cTableFull: "table_full",
	cNoFlow: "no_flow", cFragments: "fragments_dropped", cTTLExpiring: "ttl_expiring",
}

// Counters are a stage's totals since it was made.
type Counters struct {
	Flows       uint64 // new flows balanced to a backend
	Translated  uint64 // packets rewritten, both directions
	ICMPErrors  uint64 // ICMP errors about balanced flows translated
	NoBackend   uint64 // new flows dropped (DropNoRoute): every backend of their service drained
	Conflicts   uint64 // new flows dropped (DropFull): their translated tuple is taken
	TableFull   uint64 // packets for a service dropped (DropFull): the conntrack table refused their flow
	NoFlow      uint64 // packets for a service dropped (DropPolicy): no flow (a TCP segment of a connection never seen)
	Fragments   uint64 // later fragments of balanced traffic dropped (DropFragment)
	TTLExpiring uint64 // packets of balanced flows left untranslated: TTL <= 1, the router behind answers them
}

// BackendStats are one backend's counters on one stage.
type BackendStats struct {
	Service string // "tcp/198.18.1.100:80"
	Backend string // "198.18.2.10:80"
	Packets uint64 // of its flows, both directions (ICMP errors about them included)
	Bytes   uint64 // IP bytes of those packets
	Flows   uint64 // new flows balanced to it
	Active  int64  // its flows in the conntrack table (freed ones not)
}

// flowCounters are a service's or a backend's counters on one stage.
type flowCounters struct {
	packets, bytes, flows atomic.Uint64
	active                atomic.Int64
	svc                   *flowCounters // a backend's service
}

// pending are a backend's counts in the current batch.
type pending struct {
	packets, bytes, flows uint64
	dirty                 bool
}

// Stage is a load balancer as a pipeline stage, for one worker: it
// balances new flows to the services of its Balancer and translates every
// packet of a balanced flow, in NAT mode. See the package doc.
type Stage struct {
	lb      *Balancer
	ct      *conntrack.Table
	shared  bool
	st      *state // the configuration of the current batch
	results []conntrack.Result
	forget  []packet.FlowKey
	cursor  uint32 // SNAT: the next port to try
	local   [numCounters]uint64
	ctrs    pipeline.Counters
	ctr     [numCounters]*pipeline.Counter
	// Counters by slot (see Balancer), grown when an update brings new
	// services or backends; read by StageMetrics from other goroutines.
	svc  atomic.Pointer[[]*flowCounters]
	be   atomic.Pointer[[]*flowCounters]
	pend []pending // by backend slot: the worker's alone
	// dirty lists the backend slots with pending counts.
	dirty []int32
	prev  func(*conntrack.Flow) // the table's release hook before ours
}

// NewStage returns a load balancer stage over b (shared by the workers'
// stages) and ct, a conntrack table the stage owns (one per worker: see
// conntrack's doc on steering) and tracks every packet in.
func NewStage(b *Balancer, ct *conntrack.Table) (*Stage, error) { return newStage(b, ct, false) }

// NewStageShared returns a load balancer stage over a table that an
// earlier stage of the same worker's chain tracks (a stateful firewall),
// so both follow the same flows across the translation: the firewall
// sees a backend's replies as established. The stage looks each packet up
// instead of tracking it. A table has room for one load balancer.
func NewStageShared(b *Balancer, ct *conntrack.Table) (*Stage, error) { return newStage(b, ct, true) }

func newStage(b *Balancer, ct *conntrack.Table, shared bool) (*Stage, error) {
	if b == nil {
		return nil, errors.New("lb: no balancer")
	}
	if ct == nil {
		return nil, errors.New("lb: no conntrack table")
	}
	s := &Stage{lb: b, ct: ct, shared: shared,
		results: make([]conntrack.Result, 0, packet.MaxBurst),
		forget:  make([]packet.FlowKey, 0, packet.MaxBurst),
		cursor:  1024}
	for i, name := range counterNames {
		s.ctr[i] = s.ctrs.Counter(name)
	}
	s.svc.Store(&[]*flowCounters{})
	s.be.Store(&[]*flowCounters{})
	s.adopt(b.cur.Load())
	s.prev = ct.OnRelease(s.released)
	return s, nil
}

// Name implements pipeline.Stage.
func (s *Stage) Name() string { return "lb" }

// Balancer returns the stage's balancer (its Update reconfigures every
// worker's stage).
func (s *Stage) Balancer() *Balancer { return s.lb }

// Conntrack returns the stage's table. Only the worker's goroutine may use
// it.
func (s *Stage) Conntrack() *conntrack.Table { return s.ct }

// adopt makes st the configuration of the batches to come, with counters
// for every slot it has.
func (s *Stage) adopt(st *state) {
	s.st = st
	sv, be := *s.svc.Load(), *s.be.Load()
	if len(sv) < st.nSvc {
		n := make([]*flowCounters, st.nSvc)
		copy(n, sv)
		for i := len(sv); i < len(n); i++ {
			n[i] = &flowCounters{}
		}
		s.svc.Store(&n)
		sv = n
	}
	if len(be) < st.nBe {
		n := make([]*flowCounters, st.nBe)
		copy(n, be)
		for i := len(be); i < len(n); i++ {
			n[i] = &flowCounters{svc: sv[st.beSvc[i]]}
		}
		s.be.Store(&n)
		s.pend = append(s.pend, make([]pending, st.nBe-len(s.pend))...)
		s.dirty = make([]int32, 0, st.nBe)
	}
}

// Process implements pipeline.Stage. Its clock is the batch's
// (packet.Batch.Time): the clock firewall.Stage and nat.Stage use, as it
// must be for a table they share.
func (s *Stage) Process(b *packet.Batch) { s.ProcessAt(b, b.Time()) }

// ProcessAt is Process with the clock given, in nanoseconds (tests and
// benchmarks choose it). Every stage using one table must pass the same
// clock.
func (s *Stage) ProcessAt(b *packet.Batch, now int64) {
	if st := s.lb.cur.Load(); st != s.st {
		s.adopt(st)
	}
	var res []conntrack.Result
	full := false
	if s.shared {
		res = s.ct.LookupBatch(b, now, s.results[:0])
	} else {
		before := s.ct.Counters().Full
		res = s.ct.TrackBatch(b, now, s.results[:0])
		full = s.ct.Counters().Full != before
	}
	for i := range res {
		p := &b.Packets[i]
		if p.Verdict != packet.Forward || p.Flags&(packet.FlagIPv4|packet.FlagIPv6) == 0 {
			// Dropped, or an answer an earlier stage bounced; non-IP
			// frames (ARP for the router behind) pass.
			continue
		}
		s.packet(p, &res[i], now, full)
	}
	for _, k := range s.forget {
		s.ct.Delete(k)
	}
	s.forget = s.forget[:0]
	s.publish()
}

// packet handles one IP packet with its conntrack result.
func (s *Stage) packet(p *packet.Packet, r *conntrack.Result, now int64, full bool) {
	f := r.Flow
	if f == nil {
		s.flowless(p, full)
		return
	}
	u := f.User
	if u == 0 {
		if r.State != conntrack.StateNew || r.Dir != conntrack.Original {
			return // a flow nobody balanced: not for a service
		}
		orig := f.Orig()
		svc := s.st.services[svcKey{addr: orig.Dst, port: orig.DstPort, proto: orig.Proto}]
		if svc == nil {
			return
		}
		u = s.balance(svc, f, &orig, now)
	}
	if u&userLB == 0 {
		return // another stage's flow (a NAT's)
	}
	if u&userRefused != 0 {
		if r.State != conntrack.StateRelated {
			p.SetDrop(packet.DropReason(uint8(u >> reasonShift)))
		}
		return
	}
	if ttl(p) <= 1 {
		// No router may forward it: the router behind drops it and
		// answers with a time exceeded, which must quote what the
		// sender sent (so traceroute to a VIP shows the hops to it).
		s.local[cTTLExpiring]++
		return
	}
	if r.State == conntrack.StateRelated {
		if !conntrack.TranslateError(p, f, r.Dir) {
			return
		}
		s.local[cICMPErrors]++
	} else {
		rewrite(p, f, r.Dir)
	}
	s.local[cTranslated]++
	pd := s.pending(int32(u >> slotShift))
	pd.packets++
	pd.bytes += uint64(p.L3End - p.L3Off)
}

// pending returns a backend's counts of the current batch.
func (s *Stage) pending(slot int32) *pending {
	pd := &s.pend[slot]
	if !pd.dirty {
		pd.dirty = true
		s.dirty = append(s.dirty, slot)
	}
	return pd
}

// flowless handles an IP packet without a flow: a later fragment, a packet
// conntrack found invalid (a TCP segment of a connection it never saw) or
// could not place (the table full), an untracked ICMP type. Such packets
// for a service are dropped: they cannot be translated, and would leave
// for the VIP itself.
func (s *Stage) flowless(p *packet.Packet, full bool) {
	if p.Flags&packet.FlagLaterFragment != 0 {
		// No ports: no flow to translate it by. Dropped when it belongs
		// to balanced traffic (to a VIP or the SNAT address, from a
		// backend), rather than leave untranslated.
		src, dst := addrs16(p)
		if s.st.addrs[dst]&(addrVIP|addrSNAT) != 0 || s.st.addrs[src]&addrBackend != 0 {
			p.SetDrop(packet.DropFragment)
			s.local[cFragments]++
		}
		return
	}
	if p.Flags&(packet.FlagTCP|packet.FlagUDP) == 0 {
		return
	}
	k := p.FlowKey()
	if s.st.services[svcKey{addr: k.Dst, port: k.DstPort, proto: k.Proto}] == nil {
		return
	}
	if full && startsFlow(p) {
		p.SetDrop(packet.DropFull)
		s.local[cTableFull]++
		return
	}
	p.SetDrop(packet.DropPolicy)
	s.local[cNoFlow]++
}

// balance chooses the backend of a new flow to svc from its first
// packet, writes the translated tuple as the flow's reply tuple and
// records the choice in f.User, which it returns.
func (s *Stage) balance(svc *service, f *conntrack.Flow, orig *packet.FlowKey, now int64) uint64 {
	if svc.table == nil {
		s.local[cNoBackend]++
		return s.refuse(f, orig, packet.DropNoRoute)
	}
	be := &svc.servers[svc.table.Lookup(FlowHash(orig))]
	// Replies come from the backend to the client, or to the SNAT
	// address, port kept if it is free there.
	reply := packet.FlowKey{Src: be.addr, Dst: orig.Src, SrcPort: be.port, DstPort: orig.SrcPort, Proto: orig.Proto}
	var err error
	if a, ok := s.st.snat(orig.IsIPv4()); ok {
		reply.Dst = a
		err = s.snatPort(f, &reply, now)
	} else {
		err = s.ct.SetReply(f, reply, now)
	}
	if err != nil {
		s.local[cConflicts]++
		return s.refuse(f, orig, packet.DropFull)
	}
	u := userLB | uint64(be.slot)<<slotShift
	f.User = u
	s.pending(be.slot).flows++
	s.local[cFlows]++
	return u
}

// snatPort installs reply (to the SNAT address) as f's reply tuple: with
// the client's port if no other flow holds that tuple, else with the
// first free port from the cursor on, trying at most maxProbes.
func (s *Stage) snatPort(f *conntrack.Flow, reply *packet.FlowKey, now int64) error {
	if s.ct.SetReply(f, *reply, now) == nil {
		return nil
	}
	orig := reply.DstPort
	for range s.st.maxProbes {
		if s.cursor < 1024 || s.cursor > 65535 {
			s.cursor = 1024
		}
		reply.DstPort = uint16(s.cursor)
		s.cursor++
		if reply.DstPort == orig {
			continue
		}
		if s.ct.SetReply(f, *reply, now) == nil {
			return nil
		}
	}
	return conntrack.ErrExists
}

// refuse marks a new flow that cannot be balanced: its packets in this
// batch are dropped with reason, and the flow is deleted after the batch,
// so that its next packet tries again.
func (s *Stage) refuse(f *conntrack.Flow, orig *packet.FlowKey, reason packet.DropReason) uint64 {
	f.User = userLB | userRefused | uint64(reason)<<reasonShift
	s.forget = append(s.forget, *orig)
	return f.User
}

// released is the table's release hook: a balanced flow is no longer
// active.
func (s *Stage) released(f *conntrack.Flow) {
	u := f.User
	if u&userLB == 0 {
		if s.prev != nil {
			s.prev(f)
		}
		return
	}
	if u&userRefused != 0 {
		return
	}
	c := (*s.be.Load())[u>>slotShift]
	c.active.Add(-1)
	c.svc.active.Add(-1)
}

// rewrite translates a packet of a balanced flow travelling in direction
// d into the other direction's tuple reversed: a client's packet to the
// backend (and the SNAT address), a backend's reply from the VIP to the
// client. Only what differs is written; the Set helpers keep the IP and
// L4 checksums right incrementally.
func rewrite(p *packet.Packet, f *conntrack.Flow, d conntrack.Dir) {
	cur, tgt := f.Key(d), f.Key(1-d).Reverse()
	if p.Flags&packet.FlagIPv4 != 0 {
		if cur.Src != tgt.Src {
			p.SetIPv4Src([4]byte(tgt.Src[12:]))
		}
		if cur.Dst != tgt.Dst {
			p.SetIPv4Dst([4]byte(tgt.Dst[12:]))
		}
	} else {
		if cur.Src != tgt.Src {
			p.SetIPv6Src(tgt.Src)
		}
		if cur.Dst != tgt.Dst {
			p.SetIPv6Dst(tgt.Dst)
		}
	}
	if cur.SrcPort != tgt.SrcPort {
		p.SetSrcPort(tgt.SrcPort)
	}
	if cur.DstPort != tgt.DstPort {
		p.SetDstPort(tgt.DstPort)
	}
}

// ttl is an IP packet's TTL or hop limit.
func ttl(p *packet.Packet) uint8 {
	if p.Flags&packet.FlagIPv4 != 0 {
		return p.Data[p.L3Off+8]
	}
	return p.Data[p.L3Off+7]
}

var v4Mapped = [12]byte{10: 0xff, 11: 0xff}

// addrs16 returns an IP packet's addresses as packet.FlowKey has them.
func addrs16(p *packet.Packet) (src, dst [16]byte) {
	h := p.Data[p.L3Off:]
	if p.Flags&packet.FlagIPv4 != 0 {
		copy(src[:], v4Mapped[:])
		copy(dst[:], v4Mapped[:])
		copy(src[12:], h[12:16])
		copy(dst[12:], h[16:20])
		return src, dst
	}
	return [16]byte(h[8:24]), [16]byte(h[24:40])
}

// startsFlow reports whether p could start a conntrack flow: so when it
// has none and the table refused new flows in this batch, the table was
// full.
func startsFlow(p *packet.Packet) bool {
	if p.Flags&packet.FlagTCP != 0 {
		return p.TCP().Flags()&(packet.TCPSyn|packet.TCPAck|packet.TCPRst|packet.TCPFin) == packet.TCPSyn
	}
	return p.Flags&packet.FlagUDP != 0
}

// publish adds the batch's counts to the totals other goroutines read.
func (s *Stage) publish() {
	for i, v := range s.local {
		if v != 0 {
			s.ctr[i].Add(v)
			s.local[i] = 0
		}
	}
	if len(s.dirty) == 0 {
		return
	}
	be := *s.be.Load()
	for _, slot := range s.dirty {
		pd := &s.pend[slot]
		c := be[slot]
		c.packets.Add(pd.packets)
		c.bytes.Add(pd.bytes)
		c.svc.packets.Add(pd.packets)
		c.svc.bytes.Add(pd.bytes)
		if pd.flows != 0 {
			// New flows are active until conntrack frees them (released
			// subtracts them one by one, at once: a flow balanced in a
			// batch is never freed before the batch's end).
			c.flows.Add(pd.flows)
			c.svc.flows.Add(pd.flows)
			c.active.Add(int64(pd.flows))
			c.svc.active.Add(int64(pd.flows))
		}
		*pd = pending{}
	}
	s.dirty = s.dirty[:0]
}

// Counters returns the totals as of the end of the last batch. Any
// goroutine may call it.
func (s *Stage) Counters() Counters {
	c := func(i int) uint64 { return s.ctr[i].Load() }
	return Counters{
		Flows: c(cFlows), Translated: c(cTranslated), ICMPErrors: c(cICMPErrors),
		NoBackend: c(cNoBackend), Conflicts: c(cConflicts), TableFull: c(cTableFull),
		NoFlow: c(cNoFlow), Fragments: c(cFragments), TTLExpiring: c(cTTLExpiring),
	}
}

// Backends returns every backend's counters on this stage, by the order
// in which the balancer first met them (removed backends included: their
// established flows may go on). Any goroutine may call it.
func (s *Stage) Backends() []BackendStats {
	_, names := s.lb.names()
	be := *s.be.Load()
	out := make([]BackendStats, 0, len(be))
	for i, c := range be {
		svc, backend := splitName(names[i])
		out = append(out, BackendStats{Service: svc, Backend: backend,
			Packets: c.packets.Load(), Bytes: c.bytes.Load(), Flows: c.flows.Load(), Active: c.active.Load()})
	}
	return out
}

// splitName cuts "tcp/198.18.1.100:80/198.18.2.10:80" after the service.
func splitName(n string) (svc, backend string) {
	first := -1
	for i := range len(n) {
		if n[i] == '/' {
			if first >= 0 {
				return n[:i], n[i+1:]
			}
			first = i
		}
	}
	return n, ""
}

// StageMetrics implements pipeline.StageMetrics: the stage's counters,
// and for every service and backend its packets, bytes and new flows, as
// vip/tcp/198.18.1.100:80/packets and
// backend/tcp/198.18.1.100:80/198.18.2.10:80/packets.
func (s *Stage) StageMetrics() map[string]uint64 {
	m := s.ctrs.StageMetrics()
	svcNames, beNames := s.lb.names()
	for i, c := range *s.svc.Load() {
		n := "vip/" + svcNames[i] + "/"
		m[n+"packets"], m[n+"bytes"], m[n+"flows"] = c.packets.Load(), c.bytes.Load(), c.flows.Load()
	}
	for i, c := range *s.be.Load() {
		n := "backend/" + beNames[i] + "/"
		m[n+"packets"], m[n+"bytes"], m[n+"flows"] = c.packets.Load(), c.bytes.Load(), c.flows.Load()
	}
	return m
}

// StageGauges implements pipeline.StageGauges: the active flows of every
// service and backend, as vip/tcp/198.18.1.100:80/active_flows and
// backend/tcp/198.18.1.100:80/198.18.2.10:80/active_flows.
func (s *Stage) StageGauges() map[string]int64 {
	m := map[string]int64{}
	svcNames, beNames := s.lb.names()
	for i, c := range *s.svc.Load() {
		m["vip/"+svcNames[i]+"/active_flows"] = c.active.Load()
	}
	for i, c := range *s.be.Load() {
		m["backend/"+beNames[i]+"/active_flows"] = c.active.Load()
	}
	return m
}
