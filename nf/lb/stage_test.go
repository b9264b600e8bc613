package lb

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/packet"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

func ep(addr string, port uint16) string {
	return netip.AddrPortFrom(netip.MustParseAddr(addr), port).String()
}

// A new flow to a VIP leaves for the backend the table chose (and, with
// SNAT, from the SNAT address), its replies come back from the VIP, and
// every later packet goes to the same backend: bytes and checksums as a
// fresh build of the expected packet, TCP and UDP, IPv4 and IPv6, with
// and without SNAT.
func TestTranslatesBothWays(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, full := range []bool{false, true} {
			for _, proto := range []uint8{packet.ProtoTCP, packet.ProtoUDP} {
				name := fmt.Sprintf("%s/%s/%s", map[bool]string{false: "IPv4", true: "IPv6"}[v6],
					map[bool]string{false: "dnat", true: "full-nat"}[full], ProtoName(proto))
				t.Run(name, func(t *testing.T) { translatesBothWays(t, v6, full, proto) })
			}
		}
	}
}

func translatesBothWays(t *testing.T, v6, full bool, proto uint8) {
	cl, vp, sn, bes := client, vip, snat, backends
	if v6 {
		cl, vp, sn, bes = client6, vip6, snat6, backends6
	}
	cfg := Config{Services: []Service{svcOf(proto, ep(vp, 80), servers([]uint32{1, 2, 3}, bes...))}}
	src := cl // the source backends see
	if full {
		cfg.SNAT = []netip.Addr{netip.MustParseAddr(sn)}
		src = sn
	}
	s := newLB(t, cfg)
	h := pt.New(t, s)
	be := chosen(t, s, proto, ep(cl, 40000), ep(vp, 80)).String()
	var mk func(from, to, payload string, flags uint8) []byte
	switch {
	case proto == packet.ProtoTCP && !v6:
		mk = func(from, to, payload string, flags uint8) []byte {
			return pt.TCP4(from, to, payload, pt.TCPFlags(flags))
		}
	case proto == packet.ProtoTCP:
		mk = func(from, to, payload string, flags uint8) []byte {
			return pt.TCP6(from, to, payload, pt.TCPFlags(flags))
		}
	case !v6:
		mk = func(from, to, payload string, _ uint8) []byte { return pt.UDP4(from, to, payload) }
	default:
		mk = func(from, to, payload string, _ uint8) []byte { return pt.UDP6(from, to, payload) }
	}
	const syn, synack, ack = packet.TCPSyn, packet.TCPSyn | packet.TCPAck, packet.TCPAck | packet.TCPPsh
	h.Expect(h.Send(0, mk(ep(cl, 40000), ep(vp, 80), "", syn)), pt.Forwarded(1).Bytes(mk(ep(src, 40000), be, "", syn)))
	h.Expect(h.Send(1, mk(be, ep(src, 40000), "", synack)), pt.Forwarded(0).Bytes(mk(ep(vp, 80), ep(cl, 40000), "", synack)))
	h.Expect(h.Send(0, mk(ep(cl, 40000), ep(vp, 80), "GET / HTTP/1.0\r\n\r\n", ack)),
		pt.Forwarded(1).Bytes(mk(ep(src, 40000), be, "GET / HTTP/1.0\r\n\r\n", ack)))
	h.Expect(h.Send(1, mk(be, ep(src, 40000), "HTTP/1.0 200 OK\r\n\r\n", ack)),
		pt.Forwarded(0).Bytes(mk(ep(vp, 80), ep(cl, 40000), "HTTP/1.0 200 OK\r\n\r\n", ack)))
	if c := s.Counters(); c.Flows != 1 || c.Translated != 4 {
		t.Errorf("counters %+v: want 1 flow, 4 packets translated", c)
	}
}

// Traffic that is not for a service passes untouched, and so does
// traffic to a VIP on another port or protocol.
func TestOtherTrafficPassesUntouched(t *testing.T) {
	s := newLB(t, Config{Services: []Service{svcOf(packet.ProtoTCP, ep(vip, 80), servers(nil, backends...))}})
	h := pt.New(t, s)
	frames := [][]byte{
		pt.TCP4(ep(client, 40000), ep(vip, 443), "", pt.TCPFlags(packet.TCPSyn)),
		pt.UDP4(ep(client, 40000), ep(vip, 80), "not tcp"),
		pt.UDP4(ep(client, 40000), "198.18.9.9:80", "elsewhere"),
		pt.EchoRequest4(client, vip, 7, 1, "ping"),
		pt.UDP6(ep(client6, 40000), ep(vip6, 80), "v6"),
		pt.ARPRequest(client, vip),
	}
	res := h.Send(0, frames...)
	for i := range frames {
		h.Expect(res[i:i+1], pt.Forwarded(1).Bytes(frames[i]))
	}
	if c := s.Counters(); c != (Counters{}) {
		t.Errorf("counters %+v, want none", c)
	}
}

// Established flows keep their backend when a reload changes the pool:
// removed, re-weighted and added backends alike. Only new flows consult
// the new table; none reaches the removed backend, some the added one.
func TestEstablishedFlowsKeepTheirBackendAcrossAnUpdate(t *testing.T) {
	cfg := Config{Services: []Service{svcOf(packet.ProtoUDP, ep(vip, 53), servers(nil, backends...))}}
	s := newLB(t, cfg)
	const n = 900
	query := func(port int) []byte { return pt.UDP4(ep(client, uint16(port)), ep(vip, 53), "q") }
	dst := func(p *packet.Packet) string {
		ip := p.IPv4()
		return netip.AddrPortFrom(ip.DstAddr(), p.DstPort()).String()
	}
	before := map[int]string{}
	perBackend := map[string]int{}
	for i := range n {
		p := run(s, sec, query(10000+i))[0]
		before[10000+i] = dst(&p)
		perBackend[dst(&p)]++
	}
	if len(perBackend) != 3 {
		t.Fatalf("flows per backend %v", perBackend)
	}
	// Remove backends[0], weigh backends[1] 3, add a fourth.
	cfg.Services[0].Backends = servers([]uint32{3, 1, 1}, backends[1], backends[2], "198.18.2.13:8080")
	if err := s.Balancer().Update(cfg); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		p := run(s, 2*sec, query(10000+i))[0]
		if got := dst(&p); got != before[10000+i] {
			t.Fatalf("flow from port %d moved from %s to %s", 10000+i, before[10000+i], got)
		}
	}
	// The removed backend's replies are still translated.
	for port, be := range before {
		if be != backends[0] {
			continue
		}
		p := run(s, 3*sec, pt.UDP4(be, ep(client, uint16(port)), "a"))[0]
		if src := netip.AddrPortFrom(p.IPv4().SrcAddr(), p.SrcPort()).String(); src != ep(vip, 53) {
			t.Fatalf("reply from removed backend %s left from %s", be, src)
		}
		break
	}
	after := map[string]int{}
	for i := range 3000 {
		p := run(s, 4*sec, query(30000+i))[0]
		after[dst(&p)]++
	}
	if after[backends[0]] != 0 || after["198.18.2.13:8080"] == 0 {
		t.Errorf("new flows per backend after the update %v: want none to %s, some to the added one", after, backends[0])
	}
	// Weights 3:1:1 over 3000 flows: within 5% of the expected share.
	for be, w := range map[string]float64{backends[1]: 0.6, backends[2]: 0.2, "198.18.2.13:8080": 0.2} {
		if share := float64(after[be]) / 3000; share < w-0.05 || share > w+0.05 {
			t.Errorf("%s took %.3f of the new flows, want %.2f", be, share, w)
		}
	}
}

// An update that does not check changes nothing: the services in force
// stay, and say why it was refused.
func TestUpdateChecksEverythingFirst(t *testing.T) {
	good := Config{Services: []Service{svcOf(packet.ProtoTCP, ep(vip, 80), servers(nil, backends...))}}
	b, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	cur := b.cur.Load()
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no services", Config{}, "lb: no services"},
		{"a protocol other than tcp or udp", Config{Services: []Service{{Proto: 1, VIP: netip.MustParseAddrPort(ep(vip, 80)), Backends: servers(nil, backends...)}}},
			"lb: service 0: protocol 1: expected tcp (6) or udp (17)"},
		{"port 0", Config{Services: []Service{svcOf(packet.ProtoTCP, ep(vip, 0), servers(nil, backends...))}},
			"lb: service 0: 198.18.1.100:0 port 0: expected a port from 1 to 65535"},
		{"a service twice", Config{Services: []Service{good.Services[0], good.Services[0]}},
			"lb: service 1 (tcp/198.18.1.100:80): the same service twice (expected each protocol, address and port once)"},
		{"no backends", Config{Services: []Service{svcOf(packet.ProtoTCP, ep(vip, 80), nil)}},
			"lb: service 0 (tcp/198.18.1.100:80): no backends (expected at least one; weight 0 drains a backend)"},
		{"a backend of another family", Config{Services: []Service{svcOf(packet.ProtoTCP, ep(vip, 80), servers(nil, backends[0], backends6[0]))}},
			"lb: service 0 (tcp/198.18.1.100:80): backend 1: 2001:db8:2::10 is not an IPv4 address like the VIP (no translation between families)"},
		{"a backend twice", Config{Services: []Service{svcOf(packet.ProtoTCP, ep(vip, 80), servers(nil, backends[0], backends[0]))}},
			"lb: service 0 (tcp/198.18.1.100:80): backend 1: 198.18.2.10:8080 is also backend 0 (expected each address and port once)"},
		{"a table too small", Config{Services: []Service{{Proto: packet.ProtoTCP, VIP: netip.MustParseAddrPort(ep(vip, 80)), Backends: servers(nil, backends...), TableSize: 101}}},
			"lb: service 0 (tcp/198.18.1.100:80): lb: table size 101 is too small"},
		{"two SNAT addresses of a family", Config{Services: good.Services, SNAT: []netip.Addr{netip.MustParseAddr(snat), netip.MustParseAddr(client)}},
			"lb: snat address 198.18.0.1: a second IPv4 address (expected at most one IPv4 and one IPv6 address)"},
	} {
		err := b.Update(c.cfg)
		if err == nil || len(err.Error()) < len(c.want) || err.Error()[:len(c.want)] != c.want {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if b.cur.Load() != cur {
		t.Error("a refused update changed the services")
	}
}

// ICMP errors about a balanced flow reach the other side translated:
// a fragmentation needed (packet too big) from a router on the client's
// path about a backend's reply reaches the backend, about the packet it
// sent; one from a router on the backend's path about the client's
// packet reaches the client, about the packet it sent to the VIP.
func TestICMPErrorsAboutBalancedFlowsAreTranslated(t *testing.T) {
	for _, c := range []struct {
		name               string
		cl, vp, sn, rt     string
		bes                []string
		full               bool
		tooBig, tbCode     uint8
		unreach, unreachPC uint8
		tcp                func(src, dst string, payload string, opts ...pt.Option) []byte
	}{
		{"IPv4", client, vip, snat, router, backends, false, 3, 4, 3, 3, pt.TCP4[string]},
		{"IPv4 full NAT", client, vip, snat, router, backends, true, 3, 4, 3, 3, pt.TCP4[string]},
		{"IPv6", client6, vip6, snat6, router6, backends6, false, 2, 0, 1, 4, pt.TCP6[string]},
		{"IPv6 full NAT", client6, vip6, snat6, router6, backends6, true, 2, 0, 1, 4, pt.TCP6[string]},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Services: []Service{svcOf(packet.ProtoTCP, ep(c.vp, 80), servers(nil, c.bes...))}}
			src := c.cl
			if c.full {
				cfg.SNAT = []netip.Addr{netip.MustParseAddr(c.sn)}
				src = c.sn
			}
			s := newLB(t, cfg)
			h := pt.New(t, s)
			be := chosen(t, s, packet.ProtoTCP, ep(c.cl, 40000), ep(c.vp, 80))
			beAddr := be.Addr().String()
			syn := pt.TCPFlags(packet.TCPSyn)
			synack := pt.TCPFlags(packet.TCPSyn | packet.TCPAck)
			data := pt.TCPFlags(packet.TCPAck | packet.TCPPsh)
			h.Send(0, c.tcp(ep(c.cl, 40000), ep(c.vp, 80), "", syn))
			h.Send(1, c.tcp(be.String(), ep(src, 40000), "", synack))

			// The backend's reply, as the client's path saw it, was too
			// big: the router tells the VIP. The backend must learn it
			// about what it sent (the outer source is the router's,
			// unless the flow rewrites sources towards the backend).
			reply := c.tcp(ep(c.vp, 80), ep(c.cl, 40000), "a large answer", data)
			fromRouter := c.rt
			if c.full {
				fromRouter = c.sn
			}
			in := icmpError(c.rt, c.vp, c.tooBig, c.tbCode, 1400, reply)
			want := icmpError(fromRouter, beAddr, c.tooBig, c.tbCode, 1400, c.tcp(be.String(), ep(src, 40000), "a large answer", data))
			h.Expect(h.Send(0, in), pt.Forwarded(1).Bytes(want))

			// The client's request, on the backend's path, could not be
			// delivered: the client must hear it from the VIP about what
			// it sent to the VIP.
			req := c.tcp(ep(src, 40000), be.String(), "GET", data)
			in = icmpError(c.rt, src, c.unreach, c.unreachPC, 0, req)
			want = icmpError(c.vp, c.cl, c.unreach, c.unreachPC, 0, c.tcp(ep(c.cl, 40000), ep(c.vp, 80), "GET", data))
			h.Expect(h.Send(1, in), pt.Forwarded(0).Bytes(want))

			// An error about another flow passes as it is.
			other := icmpError(c.rt, c.cl, c.unreach, c.unreachPC, 0, c.tcp(ep(c.cl, 40001), ep(c.rt, 22), "", syn))
			h.Expect(h.Send(1, other), pt.Forwarded(0).Bytes(other))
			if got := s.Counters().ICMPErrors; got != 2 {
				t.Errorf("%d ICMP errors translated, want 2", got)
			}
		})
	}
}

// The counters add up: every translated packet and its IP bytes are
// counted once for its backend and once for its service, new flows
// likewise; active flows go up with new flows and down as conntrack frees
// them.
func TestCountersAddUp(t *testing.T) {
	s := newLB(t, Config{Services: []Service{
		svcOf(packet.ProtoUDP, ep(vip, 53), servers([]uint32{1, 2, 3}, backends...)),
		svcOf(packet.ProtoTCP, ep(vip6, 80), servers(nil, backends6[:2]...)),
	}})
	now := sec
	var packets, bytes uint64
	for i := range 300 {
		q := pt.UDP4(ep(client, uint16(20000+i)), ep(vip, 53), "query")
		p := run(s, now, q)[0]
		be := netip.AddrPortFrom(p.IPv4().DstAddr(), p.DstPort()).String()
		a := pt.UDP4(be, ep(client, uint16(20000+i)), "a somewhat longer answer")
		run(s, now, a)
		packets += 2
		bytes += uint64(len(q)-14) + uint64(len(a)-14)
	}
	syn := pt.TCP6(ep(client6, 5000), ep(vip6, 80), "", pt.TCPFlags(packet.TCPSyn))
	run(s, now, syn)
	packets++
	bytes += uint64(len(syn) - 14)

	var sum BackendStats
	flows := map[string]uint64{}
	for _, b := range s.Backends() {
		sum.Packets += b.Packets
		sum.Bytes += b.Bytes
		sum.Flows += b.Flows
		sum.Active += b.Active
		flows[b.Service] += b.Flows
	}
	c := s.Counters()
	if sum.Packets != packets || sum.Bytes != bytes || c.Translated != packets {
		t.Errorf("backends count %d packets, %d bytes; the stage %d; sent %d, %d bytes", sum.Packets, sum.Bytes, c.Translated, packets, bytes)
	}
	if sum.Flows != 301 || c.Flows != 301 || sum.Active != 301 || flows["udp/198.18.1.100:53"] != 300 || flows["tcp/[2001:db8:100::100]:80"] != 1 {
		t.Errorf("flows %d (by service %v), active %d, the stage's %d: want 301", sum.Flows, flows, sum.Active, c.Flows)
	}
	m, g := s.StageMetrics(), s.StageGauges()
	var bePackets uint64
	for _, be := range backends {
		bePackets += m["backend/udp/198.18.1.100:53/"+be+"/packets"]
	}
	if v := m["vip/udp/198.18.1.100:53/packets"]; v != 600 || bePackets != 600 {
		t.Errorf("metrics: vip packets %d, its backends' %d; want 600", v, bePackets)
	}
	if g["vip/udp/198.18.1.100:53/active_flows"] != 300 || g["vip/tcp/[2001:db8:100::100]:80/active_flows"] != 1 {
		t.Errorf("gauges %v", g)
	}
	// Long after the UDP timeouts (and the TCP SYN's), every flow is freed.
	s.Conntrack().Expire(now+time.Hour.Nanoseconds(), 0)
	for _, b := range s.Backends() {
		if b.Active != 0 {
			t.Errorf("%s %s: %d active flows after expiry", b.Service, b.Backend, b.Active)
		}
	}
	if g := s.StageGauges(); g["vip/udp/198.18.1.100:53/active_flows"] != 0 {
		t.Errorf("gauges after expiry %v", g)
	}
}

// New flows to a service whose backends are all drained are dropped
// (no-route) and forgotten, so that they are balanced once a backend has
// a weight again; established flows of drained backends go on.
func TestDrainedServiceRefusesNewFlows(t *testing.T) {
	cfg := Config{Services: []Service{svcOf(packet.ProtoUDP, ep(vip, 53), servers(nil, backends[0]))}}
	s := newLB(t, cfg)
	old := pt.UDP4(ep(client, 1000), ep(vip, 53), "q")
	run(s, sec, old)
	cfg.Services[0].Backends[0].Weight = 0
	if err := s.Balancer().Update(cfg); err != nil {
		t.Fatal(err)
	}
	q := pt.UDP4(ep(client, 2000), ep(vip, 53), "q")
	if p := run(s, sec, q, q); p[0].Reason != packet.DropNoRoute || p[1].Reason != packet.DropNoRoute {
		t.Fatalf("new flow to a drained service: %v %v, %v %v", p[0].Verdict, p[0].Reason, p[1].Verdict, p[1].Reason)
	}
	if p := run(s, sec, old)[0]; p.Verdict != packet.Forward || p.IPv4().DstAddr().String() != "198.18.2.10" {
		t.Fatalf("established flow of a drained backend: %v to %v", p.Verdict, p.IPv4().DstAddr())
	}
	cfg.Services[0].Backends[0].Weight = 1
	if err := s.Balancer().Update(cfg); err != nil {
		t.Fatal(err)
	}
	if p := run(s, sec, q)[0]; p.Verdict != packet.Forward {
		t.Fatalf("after the backend came back: %v %v", p.Verdict, p.Reason)
	}
	if c := s.Counters(); c.NoBackend != 1 || c.Flows != 2 {
		t.Errorf("counters %+v: want 1 refused, 2 balanced", c)
	}
	for _, b := range s.Backends() {
		if b.Active != 2 {
			t.Errorf("%+v: want 2 active (refused flows never count)", b)
		}
	}
}

// Packets for a service that cannot be translated are dropped rather than
// sent on to the VIP: a TCP segment of a connection conntrack never saw
// (no-flow), later fragments of balanced traffic; packets with TTL 1 are
// left untranslated for the router to answer.
func TestPacketsThatCannotBeTranslated(t *testing.T) {
	s := newLB(t, Config{Services: []Service{
		svcOf(packet.ProtoTCP, ep(vip, 80), servers(nil, backends[0])),
		svcOf(packet.ProtoUDP, ep(vip, 53), servers(nil, backends[0])),
	}})
	h := pt.New(t, s)
	stray := pt.TCP4(ep(client, 1000), ep(vip, 80), "data")
	later := laterFragment(t, pt.UDP4(ep(client, 1000), ep(vip, 53), "a fragmented query"))
	fromBackend := laterFragment(t, pt.UDP4(backends[0], ep(client, 1000), "a fragmented answer"))
	elsewhere := laterFragment(t, pt.UDP4(ep(client, 1000), "198.18.9.9:53", "not ours"))
	h.Expect(h.Send(0, stray, later, fromBackend, elsewhere),
		pt.Dropped(packet.DropPolicy), pt.Dropped(packet.DropFragment), pt.Dropped(packet.DropFragment), pt.Forwarded(1).Bytes(elsewhere))
	dying := pt.TCP4(ep(client, 2000), ep(vip, 80), "", pt.TCPFlags(packet.TCPSyn), pt.TTL(1))
	h.Expect(h.Send(0, dying), pt.Forwarded(1).Bytes(dying))
	next := pt.TCP4(ep(client, 2000), ep(vip, 80), "", pt.TCPFlags(packet.TCPSyn), pt.TTL(2))
	h.Expect(h.Send(0, next), pt.Forwarded(1).Bytes(pt.TCP4(ep(client, 2000), backends[0], "", pt.TCPFlags(packet.TCPSyn), pt.TTL(2))))
	if c := s.Counters(); c.NoFlow != 1 || c.Fragments != 2 || c.TTLExpiring != 1 || c.Flows != 1 {
		t.Errorf("counters %+v", c)
	}
}

// With SNAT, two clients using the same port towards the same backend get
// distinct translated ports; without it, a flow whose translated tuple is
// held by another (the client reaches the backend directly from the same
// port) is dropped and counted as a conflict.
func TestTranslatedTuplesNeverCollide(t *testing.T) {
	svc := svcOf(packet.ProtoUDP, ep(vip, 53), servers(nil, backends[0]))
	s := newLB(t, Config{Services: []Service{svc}, SNAT: []netip.Addr{netip.MustParseAddr(snat)}})
	a := run(s, sec, pt.UDP4(ep(client, 5000), ep(vip, 53), "a"))[0]
	b := run(s, sec, pt.UDP4(ep(client2, 5000), ep(vip, 53), "b"))[0]
	if a.SrcPort() != 5000 || b.SrcPort() == 5000 || a.IPv4().SrcAddr() != b.IPv4().SrcAddr() {
		t.Errorf("translated sources %v:%d and %v:%d", a.IPv4().SrcAddr(), a.SrcPort(), b.IPv4().SrcAddr(), b.SrcPort())
	}
	// Each answer finds its own client.
	for _, c := range []struct {
		p    packet.Packet
		want string
	}{{a, ep(client, 5000)}, {b, ep(client2, 5000)}} {
		r := run(s, sec, pt.UDP4(backends[0], ep(snat, c.p.SrcPort()), "r"))[0]
		if got := netip.AddrPortFrom(r.IPv4().DstAddr(), r.DstPort()).String(); got != c.want {
			t.Errorf("answer to port %d went to %s, want %s", c.p.SrcPort(), got, c.want)
		}
	}

	d := newLB(t, Config{Services: []Service{svc}})
	run(d, sec, pt.UDP4(ep(client, 6000), backends[0], "direct"))
	p := run(d, sec, pt.UDP4(ep(client, 6000), ep(vip, 53), "via the VIP"))[0]
	if p.Reason != packet.DropFull || d.Counters().Conflicts != 1 {
		t.Errorf("conflicting flow: %v %v, counters %+v", p.Verdict, p.Reason, d.Counters())
	}
}

// A stateful firewall in front shares the table: it tracks every packet
// before the balancer translates it, so a backend's replies (arriving as
// the flow's reply tuple) are established for it, and a backend opening a
// flow of its own is new, for the rules to decide.
func TestAFirewallInFrontSharesTheTable(t *testing.T) {
	b, err := New(Config{Services: []Service{svcOf(packet.ProtoTCP, ep(vip, 80), servers(nil, backends[0]))}})
	if err != nil {
		t.Fatal(err)
	}
	ct, err := conntrack.New(conntrack.Config{MaxFlows: 1024})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := firewall.ParseRules([]string{"accept state established,related", "accept proto tcp dport 80 state new"})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := firewall.New(1, rules, firewall.Drop)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStageShared(b, ct)
	if err != nil {
		t.Fatal(err)
	}
	h := pt.New(t, firewall.NewStage(fw, ct, 0), s)
	syn, synack := pt.TCPFlags(packet.TCPSyn), pt.TCPFlags(packet.TCPSyn|packet.TCPAck)
	h.Expect(h.Send(0, pt.TCP4(ep(client, 7000), ep(vip, 80), "", syn)), pt.Forwarded(1).Bytes(pt.TCP4(ep(client, 7000), backends[0], "", syn)))
	h.Expect(h.Send(1, pt.TCP4(backends[0], ep(client, 7000), "", synack)), pt.Forwarded(0).Bytes(pt.TCP4(ep(vip, 80), ep(client, 7000), "", synack)))
	h.Expect(h.Send(1, pt.TCP4(backends[0], ep(client, 7001), "", syn)), pt.Dropped(packet.DropPolicy))
	if c := s.Counters(); c.Flows != 1 || c.Translated != 2 {
		t.Errorf("counters %+v", c)
	}
}

// laterFragment turns a frame into its second fragment (offset 8, no
// more fragments), its IPv4 header checksum recomputed.
func laterFragment(t *testing.T, f []byte) []byte {
	t.Helper()
	g := append([]byte(nil), f...)
	ip := g[14:]
	ip[6], ip[7] = 0, 1 // offset 1 (8 bytes)
	ip[10], ip[11] = 0, 0
	c := packet.Checksum(ip[:20])
	ip[10], ip[11] = byte(c>>8), byte(c)
	return g
}

// Updates and metric reads run on other goroutines than the worker's,
// while it balances: the race detector watches (make test runs -race).
func TestUpdatesAndMetricsWhileBalancing(t *testing.T) {
	cfg := Config{Services: []Service{svcOf(packet.ProtoUDP, ep(vip, 53), servers(nil, backends...))}}
	s := newLB(t, cfg)
	stop := make(chan struct{})
	done := make(chan struct{}, 2)
	go func() { // the control plane: pools grow, shrink, reweigh
		defer func() { done <- struct{}{} }()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c := Config{Services: []Service{svcOf(packet.ProtoUDP, ep(vip, 53),
				servers([]uint32{uint32(i%3 + 1)}, backends[i%3], fmt.Sprintf("198.18.3.%d:53", i%200+1)))}}
			if err := s.Balancer().Update(c); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() { // the exporter
		defer func() { done <- struct{}{} }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.StageMetrics()
			s.StageGauges()
			s.Backends()
			s.Counters()
		}
	}()
	for i := range 2000 {
		run(s, sec, pt.UDP4(ep(client, uint16(1024+i)), ep(vip, 53), "q"))
	}
	close(stop)
	<-done
	<-done
	var flows uint64
	for _, b := range s.Backends() {
		flows += b.Flows
	}
	if c := s.Counters(); c.Flows != 2000 || flows != 2000 {
		t.Errorf("%d flows balanced, backends count %d: want 2000", c.Flows, flows)
	}
}

// A fragmented datagram of a balanced flow: its first fragment is
// balanced, the later ones follow it through conntrack's fragment tracker
// and go to the same backend (their addresses translated; the ports, and
// the L4 checksum, are in the first fragment), IPv4 and IPv6, both ways.
func TestFragmentsFollowTheirFirstToTheBackend(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		cl, vp, bes, udp := client, vip, backends, pt.UDP4[[]byte]
		if v6 {
			cl, vp, bes, udp = client6, vip6, backends6, pt.UDP6[[]byte]
		}
		s := newLB(t, Config{Services: []Service{svcOf(packet.ProtoUDP, ep(vp, 53), servers(nil, bes[0]))}})
		h := pt.New(t, s)
		query, answer := make([]byte, 3000), make([]byte, 3000)
		out := pt.Fragments(udp(ep(cl, 5000), ep(vp, 53), query), 1232, 7)
		want := pt.Fragments(udp(ep(cl, 5000), bes[0], query), 1232, 7)
		var exp []pt.Want
		for _, f := range want {
			exp = append(exp, pt.Forwarded(1).Bytes(f))
		}
		h.Expect(h.Send(0, out...), exp...)
		back := pt.Fragments(udp(bes[0], ep(cl, 5000), answer), 1232, 8)
		wantBack := pt.Fragments(udp(ep(vp, 53), ep(cl, 5000), answer), 1232, 8)
		exp = exp[:0]
		for _, f := range wantBack {
			exp = append(exp, pt.Forwarded(0).Bytes(f))
		}
		h.Expect(h.Send(1, back...), exp...)
		if c := s.Counters(); c.Fragments != 0 || c.Translated != 6 {
			t.Errorf("v6 %v: counters %+v", v6, c)
		}
	}
}
