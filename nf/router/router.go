package router

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/xnfdev/xnf/nf/ratelimit"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

// Interface is the router's presence on one pipeline port: its MAC and
// addresses. Each address's prefix becomes a connected route.
type Interface struct {
	Port  uint16
	MAC   [6]byte
	Addrs []netip.Prefix
	// MTU is the largest IP packet the interface sends (0: no limit). A
	// packet routed out of it that is larger is dropped: IPv4 with DF set
	// and IPv6 are answered with fragmentation needed (RFC 1191) or packet
	// too big (RFC 8201) carrying the MTU; IPv4 without DF is not
	// fragmented (a stage makes no frames) and only counted.
	MTU int
}

// StaticRoute is a route from configuration.
type StaticRoute struct {
	Prefix   netip.Prefix
	NextHops []NextHop
}

// Config configures a Router.
type Config struct {
	Interfaces []Interface
	Routes     []StaticRoute
	Neighbors  []Neighbor
	// ICMPRate is how many ICMP errors per second the router may send
	// (default 100); ICMPBurst how many at once (default 50).
	ICMPRate, ICMPBurst int
	// NeighborReachable is how long a learned neighbor is trusted
	// (default 30s); ResolveRetry the interval between resolution
	// requests for one address (default 1s).
	NeighborReachable, ResolveRetry time.Duration
	// MaxNeighbors bounds the neighbor table (default 4096).
	MaxNeighbors int
	// Tables, when set, are the FIB and neighbor table this router uses
	// instead of making its own: the routers of several workers share one
	// Tables, made once by NewTables from the same Config. NewRouter then
	// installs nothing in them (Routes, Neighbors, MaxNeighbors,
	// NeighborReachable and ResolveRetry were NewTables's business), so a
	// route the control plane changed meanwhile stays changed.
	Tables *Tables
}

// Tables are a router's forwarding state: the FIB and the neighbor table.
// One Tables may serve the routers of every worker of a service: a route
// installed once, a neighbor configured once or learned by any worker from
// ARP or NDP, is seen by all of them. Both are safe for any number of
// workers looking up while the control plane (nf/router/kernelsync) or a
// worker updates them, and lookups take no lock (see FIB and Neighbors).
type Tables struct {
	FIB       *FIB
	Neighbors *Neighbors
}

// NewTables makes the tables cfg describes: a FIB with the connected
// routes of cfg's interfaces and its static routes, and a neighbor table
// (MaxNeighbors, NeighborReachable, ResolveRetry) with its static
// neighbors. cfg.Tables is ignored.
func NewTables(cfg Config) (*Tables, error) {
	cfg.defaults()
	if _, err := cfg.interfaces(); err != nil {
		return nil, err
	}
	return cfg.newTables()
}

func (cfg *Config) defaults() {
	if cfg.ICMPRate == 0 {
		cfg.ICMPRate = 100
	}
	if cfg.ICMPBurst == 0 {
		cfg.ICMPBurst = 50
	}
	if cfg.NeighborReachable == 0 {
		cfg.NeighborReachable = 30 * time.Second
	}
	if cfg.ResolveRetry == 0 {
		cfg.ResolveRetry = time.Second
	}
	if cfg.MaxNeighbors == 0 {
		cfg.MaxNeighbors = 4096
	}
}

// interfaces checks the interfaces and the routes' next-hop ports and
// returns the interfaces indexed by port.
func (cfg *Config) interfaces() ([]*iface, error) {
	var ifaces []*iface
	for i, ic := range cfg.Interfaces {
		for int(ic.Port) >= len(ifaces) {
			ifaces = append(ifaces, nil)
		}
		if ifaces[ic.Port] != nil {
			return nil, fmt.Errorf("router: interfaces[%d]: port %d is configured twice", i, ic.Port)
		}
		f := &iface{Interface: ic}
		for _, a := range ic.Addrs {
			if !a.IsValid() {
				return nil, fmt.Errorf("router: interfaces[%d]: invalid address", i)
			}
			if ad := a.Addr().Unmap(); ad.Is4() {
				f.v4 = append(f.v4, netip.PrefixFrom(ad, a.Bits()))
			} else {
				f.v6 = append(f.v6, a)
			}
		}
		ifaces[ic.Port] = f
	}
	for i, rt := range cfg.Routes {
		for _, nh := range rt.NextHops {
			if int(nh.Port) >= len(ifaces) || ifaces[nh.Port] == nil {
				return nil, fmt.Errorf("router: routes[%d] %v: next hop port %d has no interface", i, rt.Prefix, nh.Port)
			}
		}
	}
	return ifaces, nil
}

// newTables makes and fills the tables of a checked cfg.
func (cfg *Config) newTables() (*Tables, error) {
	t := &Tables{FIB: NewFIB(), Neighbors: newNeighbors(cfg.MaxNeighbors, int64(cfg.NeighborReachable), int64(cfg.ResolveRetry))}
	for i, ic := range cfg.Interfaces {
		for _, a := range ic.Addrs {
			ad := a.Addr().Unmap()
			if err := t.FIB.Replace(netip.PrefixFrom(ad, a.Bits()).Masked(), NextHop{Port: ic.Port}); err != nil {
				return nil, fmt.Errorf("router: interfaces[%d]: connected route for %v: %w", i, a, err)
			}
		}
	}
	for i, rt := range cfg.Routes {
		if err := t.FIB.Replace(rt.Prefix, rt.NextHops...); err != nil {
			return nil, fmt.Errorf("router: routes[%d]: %w", i, err)
		}
	}
	for _, nb := range cfg.Neighbors {
		t.Neighbors.SetStatic(nb)
	}
	return t, nil
}

// Counters are the router's totals.
type Counters struct {
	Forwarded       uint64 // packets routed to a next hop
	EchoReplies     uint64 // pings to the router's addresses answered
	ARPReplies      uint64 // ARP requests for our addresses answered
	NDPAdverts      uint64 // NDP solicitations for our addresses answered
	Learned         uint64 // neighbor entries learned from ARP/NDP
	Resolutions     uint64 // ARP requests / NDP solicitations sent
	NoNeighbor      uint64 // packets dropped while their next hop was unresolved
	TimeExceeded    uint64 // ICMP time exceeded sent
	Unreachable     uint64 // ICMP destination unreachable sent
	ICMPRateLimited uint64 // ICMP errors not sent because of the rate limit
	NoRoute         uint64 // packets without a route
	TTLExpired      uint64 // packets whose TTL / hop limit ran out
	Local           uint64 // packets for the router itself that it does not serve
	// TooBig counts packets larger than their egress interface's MTU,
	// dropped with packet.DropTooBig; FragNeeded the fragmentation needed
	// (IPv4, DF set) and packet too big (IPv6) errors sent for them, within
	// ICMPRate. IPv4 without DF is counted in TooBig only.
	TooBig, FragNeeded uint64
	// Martians (RFC 1812 5.3.7, as Linux's ip_route_input counts them;
	// the IPv6 equivalents of RFC 4291 in the same counters), dropped
	// with packet.DropMartian, one counter per reason.
	MartianSrcZero      uint64 // source in 0.0.0.0/8, or ::
	MartianSrcLoopback  uint64 // source in 127.0.0.0/8, or ::1
	MartianSrcMulticast uint64 // source in 224.0.0.0/4, or ff00::/8
	MartianSrcBroadcast uint64 // source 255.255.255.255
	MartianDstZero      uint64 // destination in 0.0.0.0/8, or ::
	MartianDstLoopback  uint64 // destination in 127.0.0.0/8, or ::1
	// IPv6 scopes (RFC 4291 2.5.6, 2.7): a link-local source is not
	// forwarded off its link (answered with destination unreachable code
	// 2, beyond scope of source address, within ICMPRate); a link-local
	// destination that is not the router's is dropped as a martian;
	// multicast of interface, link, realm, admin or site scope (scope 5
	// or below, whatever its flags: ff01::/16 to ff05::/16, ff12::/16 and
	// so on; RFC 4291 2.7, RFC 7346) is absorbed, never forwarded.
	ScopeSrcLinkLocal uint64
	ScopeDstLinkLocal uint64
	ScopedMulticast   uint64
	// VLANTagged counts 802.1Q and 802.1ad (QinQ) tagged frames, dropped
	// with packet.DropUnsupported: no port is a VLAN port.
	VLANTagged uint64
	// NDPConflicts counts NDP messages of another node claiming one of
	// the router's IPv6 addresses: duplicate address detection for it
	// (answered with an advertisement to all nodes that defends it) and
	// advertisements or solicitations giving it a MAC (not learned).
	NDPConflicts uint64
	// RoutingHeader counts packets for the router whose routing header
	// has segments left (RFC 8200 4.4). The router processes no routing
	// type (type 0 is deprecated, RFC 5095), so each is dropped with
	// packet.DropUnsupported and answered, within ICMPRate, with a
	// parameter problem, code 0, pointing at the routing type
	// (ParamProblemSent).
	RoutingHeader    uint64
	ParamProblemSent uint64
}

// counters are the router's counters, registered by name in a
// pipeline.Counters (its StageMetrics); Counters reads them as a struct.
type counters struct {
	pipeline.Counters
	forwarded, echo, arpReplies, ndpAdverts, learned, resolutions, noNeighbor,
	timeExceeded, unreachable, rateLimited, noRoute, ttl, local, tooBig, fragNeeded *pipeline.Counter

	martian                                                           [packet.NumMartians]*pipeline.Counter // by packet.Martian
	scopeSrcLinkLocal, scopeDstLinkLocal, scopedMulticast, vlanTagged *pipeline.Counter
	ndpConflicts, routingHeader, paramProblem                         *pipeline.Counter
}

var martianNames = [packet.NumMartians]string{
	packet.MartianSrcZero: "martian_src_zero", packet.MartianSrcLoopback: "martian_src_loopback",
	packet.MartianSrcMulticast: "martian_src_multicast", packet.MartianSrcBroadcast: "martian_src_broadcast",
	packet.MartianDstZero: "martian_dst_zero", packet.MartianDstLoopback: "martian_dst_loopback",
}

func (c *counters) register() {
	c.forwarded = c.Counter("forwarded")
	c.echo = c.Counter("echo_replies")
	c.arpReplies = c.Counter("arp_replies")
	c.ndpAdverts = c.Counter("ndp_adverts")
	c.learned = c.Counter("neighbors_learned")
	c.resolutions = c.Counter("resolutions_sent")
	c.noNeighbor = c.Counter("no_neighbor")
	c.timeExceeded = c.Counter("time_exceeded_sent")
	c.unreachable = c.Counter("unreachable_sent")
	c.rateLimited = c.Counter("icmp_rate_limited")
	c.noRoute = c.Counter("no_route")
	c.ttl = c.Counter("ttl_expired")
	c.local = c.Counter("local")
	c.tooBig = c.Counter("too_big")
	c.fragNeeded = c.Counter("frag_needed_sent")
	for m, name := range martianNames {
		if name != "" {
			c.martian[m] = c.Counter(name)
		}
	}
	c.scopeSrcLinkLocal = c.Counter("scope_src_link_local")
	c.scopeDstLinkLocal = c.Counter("scope_dst_link_local")
	c.scopedMulticast = c.Counter("scoped_multicast")
	c.vlanTagged = c.Counter("vlan_tagged")
	c.ndpConflicts = c.Counter("ndp_conflicts")
	c.routingHeader = c.Counter("routing_header")
	c.paramProblem = c.Counter("param_problem_sent")
}

type iface struct {
	Interface
	v4 []netip.Prefix
	v6 []netip.Prefix
}

// Router is the router network function as a pipeline stage: it answers
// ARP, NDP and ping for its own addresses, routes IPv4 and IPv6 by longest
// prefix match, rewrites MACs from the neighbor table, decrements TTL / hop
// limit, and sends rate-limited ICMP errors.
type Router struct {
	tables *Tables
	fib    *FIB
	neigh  *Neighbors
	ifaces []*iface  // by port
	local4 [][4]byte // few addresses: a scan beats a map per packet
	local6 [][16]byte
	ctr    counters

	icmpLimit ratelimit.Bucket // ICMP errors sent; refilled once per batch

	// The last neighbor resolved: a stream to one gateway skips the map.
	cache struct {
		gen     uint64
		port    uint16
		addr    [16]byte
		mac     [6]byte
		expires int64 // learned entries age; static ones never (max int64)
		ok      bool
	}
}

// neighbor resolves (port, addr) through the one-entry cache: one atomic
// load when the table has not changed since the cached answer. The
// generation is read before the lookup, so an answer older than a change
// is never cached under the changed generation.
func (r *Router) neighbor(port uint16, addr [16]byte, now int64) ([6]byte, bool) {
	c := &r.cache
	gen := r.neigh.gen.Load()
	if c.ok && c.gen == gen && c.port == port && c.addr == addr && now <= c.expires {
		return c.mac, true
	}
	e := r.neigh.lookup(port, addr, now)
	if e == nil {
		return [6]byte{}, false
	}
	c.gen, c.port, c.addr, c.mac, c.ok = gen, port, addr, e.mac, true
	c.expires = e.expires.Load()
	if e.state == neighStatic {
		c.expires = 1<<63 - 1
	}
	return e.mac, true
}

// NewRouter builds a router from its configuration: with tables of its
// own (NewTables), or over cfg.Tables shared with other routers. The
// router itself (its counters, its ICMP error budget, its neighbor cache)
// belongs to one worker.
func NewRouter(cfg Config) (*Router, error) {
	cfg.defaults()
	ifaces, err := cfg.interfaces()
	if err != nil {
		return nil, err
	}
	t := cfg.Tables
	if t == nil {
		if t, err = cfg.newTables(); err != nil {
			return nil, err
		}
	}
	r := &Router{tables: t, fib: t.FIB, neigh: t.Neighbors, ifaces: ifaces, icmpLimit: ratelimit.New(cfg.ICMPRate, cfg.ICMPBurst)}
	r.ctr.register()
	for _, f := range ifaces {
		if f == nil {
			continue
		}
		for _, a := range f.v4 {
			r.local4 = append(r.local4, a.Addr().As4())
		}
		for _, a := range f.v6 {
			r.local6 = append(r.local6, a.Addr().As16())
		}
	}
	return r, nil
}

func (r *Router) iface(port uint16) *iface {
	if int(port) < len(r.ifaces) {
		return r.ifaces[port]
	}
	return nil
}

// Name implements pipeline.Stage.
func (r *Router) Name() string { return "router" }

// FIB is the router's forwarding table (safe to update while traffic flows).
func (r *Router) FIB() *FIB { return r.fib }

// Neighbors is the router's neighbor table.
func (r *Router) Neighbors() *Neighbors { return r.neigh }

// Tables are the router's FIB and neighbor table, perhaps shared with
// other routers (Config.Tables).
func (r *Router) Tables() *Tables { return r.tables }

// Counters reads the router's counters; safe from any goroutine.
func (r *Router) Counters() Counters {
	c := &r.ctr
	return Counters{
		Forwarded: c.forwarded.Load(), EchoReplies: c.echo.Load(), ARPReplies: c.arpReplies.Load(),
		NDPAdverts: c.ndpAdverts.Load(), Learned: c.learned.Load(), Resolutions: c.resolutions.Load(),
		NoNeighbor: c.noNeighbor.Load(), TimeExceeded: c.timeExceeded.Load(), Unreachable: c.unreachable.Load(),
		ICMPRateLimited: c.rateLimited.Load(), NoRoute: c.noRoute.Load(), TTLExpired: c.ttl.Load(), Local: c.local.Load(),
		TooBig: c.tooBig.Load(), FragNeeded: c.fragNeeded.Load(),
		MartianSrcZero: c.martian[packet.MartianSrcZero].Load(), MartianSrcLoopback: c.martian[packet.MartianSrcLoopback].Load(),
		MartianSrcMulticast: c.martian[packet.MartianSrcMulticast].Load(), MartianSrcBroadcast: c.martian[packet.MartianSrcBroadcast].Load(),
		MartianDstZero: c.martian[packet.MartianDstZero].Load(), MartianDstLoopback: c.martian[packet.MartianDstLoopback].Load(),
		ScopeSrcLinkLocal: c.scopeSrcLinkLocal.Load(), ScopeDstLinkLocal: c.scopeDstLinkLocal.Load(),
		ScopedMulticast: c.scopedMulticast.Load(), VLANTagged: c.vlanTagged.Load(),
		NDPConflicts: c.ndpConflicts.Load(), RoutingHeader: c.routingHeader.Load(), ParamProblemSent: c.paramProblem.Load(),
	}
}

// StageMetrics exports the counters for metrics (pipeline.StageMetrics).
func (r *Router) StageMetrics() map[string]uint64 { return r.ctr.StageMetrics() }

// Process implements pipeline.Stage.
func (r *Router) Process(b *packet.Batch) {
	now := b.Time()
	r.icmpLimit.Refill(now)
	var fwd, tagged uint64
	for i := range b.Slice() {
		p := &b.Packets[i]
		if p.Verdict != packet.Forward {
			// Dropped, or an answer an earlier stage bounced (a
			// firewall's reject): not the router's to route.
			continue
		}
		switch {
		case p.Flags&packet.FlagVLAN != 0:
			// No port is a VLAN port: a tagged frame belongs to a
			// network the router is not on, and routing it out with its
			// tags would leak it into another port's VLAN.
			p.SetDrop(packet.DropUnsupported)
			tagged++
		case p.Flags&packet.FlagARP != 0:
			r.arp(p, now)
		case p.Flags&packet.FlagIPv4 != 0:
			if r.ipv4(p, now) {
				fwd++
			}
		case p.Flags&packet.FlagIPv6 != 0:
			if r.ipv6(p, now) {
				fwd++
			}
		case p.Flags&packet.FlagBad != 0:
			p.SetDrop(packet.DropMalformed)
		default:
			p.SetDrop(packet.DropUnsupported)
		}
	}
	if fwd > 0 {
		r.ctr.forwarded.Add(fwd)
	}
	if tagged > 0 {
		r.ctr.vlanTagged.Add(tagged)
	}
}

// allowICMP takes a token for one ICMP error.
func (r *Router) allowICMP() bool {
	if r.icmpLimit.Take() {
		return true
	}
	r.ctr.rateLimited.Add(1)
	return false
}

func mapped(a [4]byte) (m [16]byte) {
	m[10], m[11] = 0xff, 0xff
	copy(m[12:], a[:])
	return
}

// ipv4 routes one IPv4 packet; it reports whether it was forwarded.
func (r *Router) ipv4(p *packet.Packet, now int64) bool {
	if p.Flags&packet.FlagBad != 0 {
		p.SetDrop(packet.DropMalformed)
		return false
	}
	h := p.IPv4()
	if !h.ChecksumValid() {
		// RFC 1812 5.2.2: a router must verify the header checksum; a
		// corrupted header could carry any address.
		p.SetDrop(packet.DropMalformed)
		return false
	}
	dst, src := h.Dst(), h.Src()
	if dst[0] >= 224 {
		p.SetDrop(packet.DropConsumed) // multicast and broadcast are not routed
		r.ctr.local.Add(1)
		return false
	}
	if m := packet.Martian4(src, dst); m != packet.MartianNone {
		r.ctr.martian[m].Add(1)
		p.SetDrop(packet.DropMartian)
		return false
	}
	if r.isLocal4(dst) {
		r.local4Packet(p)
		return false
	}
	if h.TTL() <= 1 {
		r.ctr.ttl.Add(1)
		r.icmp4Error(p, 11, 0, packet.DropTTL, r.ctr.timeExceeded)
		return false
	}
	hash := binary.BigEndian.Uint32(src[:]) ^ uint32(p.SrcPort())<<16 ^ uint32(p.DstPort())
	id, ok := r.fib.LookupFlow4(dst, hash)
	if !ok {
		r.ctr.noRoute.Add(1)
		r.icmp4Error(p, 3, 0, packet.DropNoRoute, r.ctr.unreachable)
		return false
	}
	nh := r.fib.NextHop(id)
	out := r.iface(nh.Port)
	if out == nil {
		p.SetDrop(packet.DropNoPort)
		return false
	}
	if out.MTU > 0 && int(h.TotalLen()) > out.MTU {
		// RFC 1812 5.2.6 / RFC 1191: too big with DF is answered with the
		// next hop's MTU; without DF Linux fragments, a stage cannot.
		r.ctr.tooBig.Add(1)
		if !h.DontFragment() {
			p.SetDrop(packet.DropTooBig)
			return false
		}
		r.icmp4ErrorMTU(p, 3, 4, uint16(min(out.MTU, 0xffff)), packet.DropTooBig, r.ctr.fragNeeded)
		return false
	}
	target := mapped(dst)
	if nh.Gateway.IsValid() {
		target = nh.Gateway.As16()
		if nh.Gateway.Is4() {
			target = mapped(nh.Gateway.As4())
		}
	}
	mac, ok := r.neighbor(nh.Port, target, now)
	if !ok {
		r.resolve4(p, out, [4]byte(target[12:]), now)
		return false
	}
	p.DecTTL()
	p.SetSrcMAC(out.MAC)
	p.SetDstMAC(mac)
	p.SetForward(nh.Port)
	return true
}

// local4Packet serves IPv4 packets addressed to the router: it answers
// echo requests and absorbs the rest.
func (r *Router) local4Packet(p *packet.Packet) {
	in := r.iface(p.InPort)
	ic := p.ICMP()
	if in == nil || p.Flags&packet.FlagICMP == 0 || ic.Type() != packet.ICMPEchoRequest || p.Flags&packet.FlagFragment != 0 {
		r.ctr.local.Add(1)
		p.SetDrop(packet.DropConsumed)
		return
	}
	h := p.IPv4()
	ic[0] = packet.ICMPEchoReply
	ic.SetChecksum(packet.ChecksumUpdate16(ic.Checksum(), uint16(packet.ICMPEchoRequest)<<8, uint16(packet.ICMPEchoReply)<<8))
	src, dst := h.Src(), h.Dst()
	h.SetSrc(dst) // swapping words leaves the header checksum unchanged
	h.SetDst(src)
	oldTTL := binary.BigEndian.Uint16(h[8:10])
	h.SetTTL(64)
	h.SetChecksum(packet.ChecksumUpdate16(h.Checksum(), oldTTL, binary.BigEndian.Uint16(h[8:10])))
	answer(p, in, r.ctr.echo)
}

// answer sends p, rewritten into an answer, back out of its ingress port
// in: from in's MAC to the MAC it came from. It counts the answer in sent.
func answer(p *packet.Packet, in *iface, sent *pipeline.Counter) {
	e := p.Ethernet()
	e.SetDst(e.Src())
	e.SetSrc(in.MAC)
	p.SetBounce()
	sent.Add(1)
}

// icmp4Error turns p into an ICMP error of type/code about itself, sent
// back out of its ingress port from the router's address there (RFC 1812
// 4.3.2). When no error may be sent, p is dropped with reason. p has
// passed ipv4's martian check (packet.Martian4), so its source is not in
// 0/8, 127/8 or 224/4 nor the broadcast address; class E, which Martian4
// lets through, is not answered either.
func (r *Router) icmp4Error(p *packet.Packet, typ, code uint8, reason packet.DropReason, sent *pipeline.Counter) {
	r.icmp4ErrorMTU(p, typ, code, 0, reason, sent)
}

// icmp4ErrorMTU is icmp4Error carrying a next-hop MTU (fragmentation
// needed) when mtu is not 0.
func (r *Router) icmp4ErrorMTU(p *packet.Packet, typ, code uint8, mtu uint16, reason packet.DropReason, sent *pipeline.Counter) {
	in := r.iface(p.InPort)
	src := p.IPv4().Src()
	if in == nil || len(in.v4) == 0 || p.Flags&packet.FlagLaterFragment != 0 ||
		(p.Flags&packet.FlagICMP != 0 && p.ICMP().IsError(false)) ||
		src[0] >= 240 || !r.allowICMP() {
		p.SetDrop(reason)
		return
	}
	from := r.sourceFor(in, src)
	if ok := mtu != 0 && p.ToICMPv4FragNeeded(mtu, from) || mtu == 0 && p.ToICMPv4Error(typ, code, from, false); !ok {
		p.SetDrop(reason)
		return
	}
	answer(p, in, sent)
}

// sourceFor picks the interface address in the same subnet as peer, or the
// first one.
func (r *Router) sourceFor(in *iface, peer [4]byte) [4]byte {
	pa := netip.AddrFrom4(peer)
	for _, a := range in.v4 {
		if a.Contains(pa) {
			return a.Addr().As4()
		}
	}
	return in.v4[0].Addr().As4()
}

// arp answers requests for our addresses and learns senders.
func (r *Router) arp(p *packet.Packet, now int64) {
	a := p.ARP()
	in := r.iface(p.InPort)
	if !a.IsEthernetIPv4() || in == nil {
		p.SetDrop(packet.DropUnsupported)
		return
	}
	sip := a.SenderIP()
	if sip != [4]byte{} {
		r.neigh.learn(p.InPort, mapped(sip), a.SenderHW(), now)
		r.ctr.learned.Add(1)
	}
	tip := a.TargetIP()
	if a.Op() != packet.ARPRequest || !r.ownsOn(in, tip) {
		p.SetDrop(packet.DropConsumed)
		return
	}
	a.SetOp(packet.ARPReply)
	a.SetTargetHW(a.SenderHW())
	a.SetTargetIP(sip)
	a.SetSenderHW(in.MAC)
	a.SetSenderIP(tip)
	e := p.Ethernet()
	e.SetDst(a.TargetHW())
	e.SetSrc(in.MAC)
	p.SetBounce()
	r.ctr.arpReplies.Add(1)
}

func (r *Router) ownsOn(in *iface, a [4]byte) bool {
	for _, p := range in.v4 {
		if p.Addr().As4() == a {
			return true
		}
	}
	return false
}

// resolve4 turns p into an ARP request for target out of port out (rate
// limited per address); the original packet is lost and counted.
func (r *Router) resolve4(p *packet.Packet, out *iface, target [4]byte, now int64) {
	r.ctr.noNeighbor.Add(1)
	if len(out.v4) == 0 || cap(p.Data) < 60 || !r.neigh.shouldResolve(out.Port, mapped(target), now) {
		p.SetDrop(packet.DropNoNeighbor)
		return
	}
	d := p.Data[:60]
	clear(d)
	e := packet.Ethernet(d)
	e.SetDst([6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	e.SetSrc(out.MAC)
	e.SetType(packet.EtherTypeARP)
	a := packet.ARP(d[14:42])
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], packet.EtherTypeIPv4)
	a[4], a[5] = 6, 4
	a.SetOp(packet.ARPRequest)
	a.SetSenderHW(out.MAC)
	a.SetSenderIP(r.sourceFor(out, target))
	a.SetTargetIP(target)
	p.Data = d
	p.Parse()
	p.SetForward(out.Port)
	r.ctr.resolutions.Add(1)
}

func (r *Router) isLocal4(a [4]byte) bool {
	for _, l := range r.local4 {
		if l == a {
			return true
		}
	}
	return false
}

func (r *Router) isLocal6(a [16]byte) bool {
	for _, l := range r.local6 {
		if l == a {
			return true
		}
	}
	return false
}
