package bpf_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/bpf"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/port/xdp"
)

const xdpDrop = 1

// offloadRules is what config hands the pre-filter: the plan's entries as
// plain data.
func offloadRules(p *firewall.OffloadPlan) []bpf.OffloadRule {
	out := make([]bpf.OffloadRule, len(p.Entries))
	for i, e := range p.Entries {
		out[i] = bpf.OffloadRule{InPort: e.InPort, Proto: e.Proto, Src: e.Src, Dst: e.Dst,
			SrcPort: [2]uint16{e.SrcPort.Lo, e.SrcPort.Hi}, DstPort: [2]uint16{e.DstPort.Lo, e.DstPort.Hi}}
	}
	return out
}

// offloadRig is a 2-queue veth whose queue 0 has a bound AF_XDP socket, so
// that a redirect of queue 0 succeeds and one of queue 1 falls back to the
// kernel, and the namespace to load programs in.
type offloadRig struct {
	ns      *lab.NS
	ifindex uint32
	sock    *afxdp.Socket
}

func newOffloadRig(t testing.TB) *offloadRig {
	l := lab.ForTest(t, "bpfoff")
	a := l.MustNS(t, "a")
	b := l.MustNS(t, "b")
	l.MustVeth(t, lab.Veth{A: a, AName: "x0", B: b, BName: "x1", Queues: 2})
	link, err := a.Link("x0")
	if err != nil {
		t.Fatal(err)
	}
	rig := &offloadRig{ns: a, ifindex: uint32(link.Attrs().Index)}
	if err := a.Do(func() error {
		u, err := afxdp.NewUMEM(afxdp.UMEMConfig{FrameCount: 64})
		if err != nil {
			return err
		}
		t.Cleanup(func() { u.Close() })
		rig.sock, err = afxdp.OpenSocket(u, "x0", 0, afxdp.SocketConfig{RXSize: 64, TXSize: 64, FillSize: 64, CompletionSize: 64})
		if err != nil {
			return err
		}
		t.Cleanup(func() { rig.sock.Close() })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return rig
}

// load loads a redirect program in the rig's namespace and registers the
// socket on queue 0.
func (rig *offloadRig) load(t testing.TB, o bpf.RedirectOptions) *bpf.Redirect {
	t.Helper()
	o.Queues = 2
	var r *bpf.Redirect
	if err := rig.ns.Do(func() (err error) {
		if r, err = bpf.LoadRedirect(o); err != nil {
			return err
		}
		return r.Register(0, rig.sock.FD())
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// run runs the program over frame as received on queue, in the rig's
// namespace, where the context's ifindex is the veth's.
func (rig *offloadRig) run(t *testing.T, r *bpf.Redirect, frame []byte, queue uint32) uint32 {
	t.Helper()
	var got uint32
	rig.ns.Do(func() error { got = rig.runHere(t, r, frame, queue); return nil })
	return got
}

// runHere is run for a caller already in the rig's namespace.
func (rig *offloadRig) runHere(t *testing.T, r *bpf.Redirect, frame []byte, queue uint32) uint32 {
	t.Helper()
	got, err := r.Program.Run(&ebpf.RunOptions{
		Data:    frame,
		Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: rig.ifindex, RxQueueIndex: queue},
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// The program drops exactly the frames the plan's model drops (packet.Parse,
// the stage's key, OffloadPlan.Match), counts each for the entry the model
// credits, and leaves everything else to the socket. Random rule sets meet
// random frames: VLAN tags, IPv4 options and fragments, IPv6 extension
// header chains up to and past Parse's limits, every transport the key
// reads, truncated and corrupted headers. Each set replaces the one before
// in the same tables (a reload), and the old set's final counts come back
// from Install.
func TestOffloadMatchesThePlan(t *testing.T) {
	rig := newOffloadRig(t)
	o := bpf.NewOffload()
	defer o.Close()
	// Two interfaces sharing the tables: port 0, and port 2 with the
	// multi-buffer program.
	// Three interfaces sharing the tables: port 0; port 2 with the
	// multi-buffer program; and a trunk, whose untagged frames are port
	// 3's and whose VLANs 100, 200 and 300 are ports 4, 5 and 300 (which
	// the tables do not hold), their tags taken off as port/xdp does.
	trunk := rig.load(t, bpf.RedirectOptions{Offload: o, Port: 3})
	var byVID [4096]int
	for i := range byVID {
		byVID[i] = -1
	}
	byVID[0], byVID[100], byVID[200], byVID[300] = 3, 4, 5, 300
	if err := trunk.SetVLANPorts(&byVID); err != nil {
		t.Fatal(err)
	}
	progs := []struct {
		r     *bpf.Redirect
		port  uint16
		trunk bool
	}{
		{rig.load(t, bpf.RedirectOptions{Offload: o, Port: 0}), 0, false},
		{rig.load(t, bpf.RedirectOptions{Offload: o, Port: 2, Frags: true}), 2, false},
		{trunk, 3, true},
	}
	sets, frames := 60, 1500
	if testing.Short() {
		sets, frames = 10, 500
	}
	g := newFrameGen(42)
	var prevWant []uint64
	var total, dropped, judged, entries, ndp, vlanJudged int
	var dropsSeen [bpf.MaxOffloadRules]bool
	for set := range sets {
		rules := g.rules(1 + g.IntN(30))
		if set%5 == 4 {
			rules = g.blocklist(200 + g.IntN(100)) // up to more than the tables hold
		}
		plan, err := firewall.PlanOffload(rules)
		if err != nil {
			t.Fatal(err)
		}
		entries += len(plan.Entries)
		old, err := o.Install(offloadRules(plan))
		if err != nil {
			t.Fatalf("set %d: %v", set, err)
		}
		if fmt.Sprint(old) != fmt.Sprint(prevWant) {
			t.Fatalf("set %d: Install returned the old rules' counts %v, want %v", set, old, prevWant)
		}
		rulePos := map[int]int{}
		for i, e := range plan.Entries {
			rulePos[e.Rule] = i
		}
		want := make([]uint64, len(plan.Entries))
		var wantDropped uint64
		before := counters(t, progs[0].r, progs[1].r, progs[2].r)
		rig.ns.Do(func() error {
			for range frames {
				pr := progs[g.IntN(len(progs))]
				f := g.frame(rules)
				seen, port, reaches := f, pr.port, true
				if pr.trunk {
					seen, port, reaches = trunkView(f, &byVID)
				}
				p := packet.Packet{Data: seen, InPort: port}
				p.Parse()
				var k firewall.Key
				rule, drop := -1, false
				if reaches && port < bpf.MaxOffloadPorts && firewall.PacketKey(&p, &k) {
					judged++
					if pr.trunk && port != pr.port {
						vlanJudged++
					}
					rule, drop = plan.Match(&k)
				} else if p.Flags&packet.FlagICMPv6 != 0 && p.Flags&packet.FlagBad == 0 {
					ndp++ // neighbor discovery, which the stage passes
				}
				got := rig.runHere(t, pr.r, f, 0)
				wantV := uint32(xdpRedirect)
				if drop {
					wantV = xdpDrop
					want[rulePos[rule]]++
					wantDropped++
					dropsSeen[rulePos[rule]] = true
				}
				if got != wantV {
					t.Fatalf("set %d, port %d: verdict %d, want %d (model: rule %d)\nframe %x\nparsed %v %v, key %+v\nrules:\n%s",
						set, pr.port, got, wantV, rule, f, p.Flags, p.Err, k, ruleList(rules, plan))
				}
				total++
			}
			return nil
		})
		if err := checkHits(o, want); err != nil {
			t.Fatalf("set %d: %v\nrules:\n%s", set, err, ruleList(rules, plan))
		}
		after := counters(t, progs[0].r, progs[1].r, progs[2].r)
		if d := after.Dropped - before.Dropped; d != wantDropped {
			t.Fatalf("set %d: the programs counted %d drops, want %d", set, d, wantDropped)
		}
		dropped += int(wantDropped)
		prevWant = want
		if len(plan.Entries) == 0 {
			prevWant = nil
		}
	}
	t.Logf("%d frames, %d judged (%d on the trunk's VLAN ports), %d dropped, %d neighbor discovery, over %d rule sets with %d offloaded rules",
		total, judged, vlanJudged, dropped, ndp, sets, entries)
	if dropped < total/20 || judged < total/2 || ndp < 50 || vlanJudged < 500 {
		t.Errorf("%d of %d frames judged and %d dropped: the test proves too little", judged, total, dropped)
	}
	// Every word of the rule bitmaps must have credited some drop.
	var words [bpf.MaxOffloadRules / 64]int
	for i, s := range dropsSeen {
		if s {
			words[i/64]++
		}
	}
	t.Logf("entry positions credited with drops, by bitmap word: %v", words)
	for w, n := range words {
		if n == 0 {
			t.Errorf("no drop was credited to entries %d-%d", 64*w, 64*w+63)
		}
	}
}

// trunkView is what a port/xdp trunk hands the chain for frame f: the
// frame without its outer 802.1Q tag and the port of its VLAN (byVID; 0
// for untagged and priority-tagged frames), or reaches false when the
// trunk drops it (a VLAN no port carries, 802.1ad, a cut tag).
func trunkView(f []byte, byVID *[4096]int) (seen []byte, port uint16, reaches bool) {
	vid, tagged := uint16(0), false
	if len(f) >= 14 {
		switch binary.BigEndian.Uint16(f[12:]) {
		case packet.EtherTypeVLAN:
			if len(f) < 18 {
				return nil, 0, false
			}
			vid, tagged = binary.BigEndian.Uint16(f[14:])&0xfff, true
		case packet.EtherTypeQinQ:
			return nil, 0, false
		}
	}
	if byVID[vid] < 0 {
		return nil, 0, false
	}
	if tagged {
		f = xdp.Strip(bytes.Clone(f))
	}
	return f, uint16(byVID[vid]), true
}

func counters(t *testing.T, rs ...*bpf.Redirect) bpf.Counters {
	var sum bpf.Counters
	for _, r := range rs {
		c, err := r.Counters()
		if err != nil {
			t.Fatal(err)
		}
		sum.Redirected += c.Redirected
		sum.Passed += c.Passed
		sum.Filtered += c.Filtered
		sum.Dropped += c.Dropped
	}
	return sum
}

func checkHits(o *bpf.Offload, want []uint64) error {
	got, err := o.Hits()
	if err != nil {
		return err
	}
	if len(want) == 0 && len(got) == 0 {
		return nil
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("hits per entry %v, want %v", got, want)
	}
	return nil
}

func ruleList(rules []firewall.Rule, p *firewall.OffloadPlan) string {
	s := ""
	for i, r := range rules {
		s += fmt.Sprintf("  %d %v: %v\n", i, r, p.Why(i))
	}
	return s
}

// Only frames that would reach the stage are judged: a frame the filter
// does not claim, or one on a queue without a socket, goes to the kernel
// even when a rule would drop it; the program without an Offload never
// drops.
func TestOffloadJudgesOnlyWhatReachesTheStage(t *testing.T) {
	rig := newOffloadRig(t)
	o := bpf.NewOffload()
	defer o.Close()
	rules, err := firewall.ParseRules([]string{"drop proto udp dport 53", "drop src 2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := firewall.PlanOffload(rules)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Install(offloadRules(plan)); err != nil {
		t.Fatal(err)
	}
	tcpOnly := rig.load(t, bpf.RedirectOptions{Offload: o, Filter: bpf.Filter{IPProto: 6}})
	all := rig.load(t, bpf.RedirectOptions{Offload: o})
	plain := rig.load(t, bpf.RedirectOptions{})
	cases := []struct {
		name  string
		r     *bpf.Redirect
		frame []byte
		queue uint32
		want  uint32
	}{
		{"a claimed frame a rule drops is dropped", all, udp4(t, 53), 0, xdpDrop},
		{"a claimed frame no rule drops is redirected", all, udp4(t, 54), 0, xdpRedirect},
		{"an IPv6 frame a prefix rule drops is dropped", all, udp6(t, 9), 0, xdpDrop},
		{"a frame behind a VLAN tag is judged as the stage judges it", all, vlanUDP4(t, 53), 0, xdpDrop},
		{"a frame the filter does not claim goes to the kernel", tcpOnly, udp4(t, 53), 0, xdpPass},
		{"a frame on a queue without a socket goes to the kernel", all, udp4(t, 53), 1, xdpPass},
		{"ARP is never judged", all, arp(t), 0, xdpRedirect},
		{"nor is a neighbor solicitation, which the stage passes as ARP", all, ndp(t, 255), 0, xdpRedirect},
		{"an ICMPv6 message from off the link is judged", all, ndp(t, 64), 0, xdpDrop},
		{"a later fragment has no ports: dport 53 does not match it", all, fragment4(t), 0, xdpRedirect},
		{"without an Offload nothing is dropped", plain, udp4(t, 53), 0, xdpRedirect},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := rig.run(t, tc.r, tc.frame, tc.queue); got != tc.want {
				t.Errorf("verdict %d, want %d", got, tc.want)
			}
		})
	}
	// Hits: two drops of rule 0 (UDP 53, VLAN), two of rule 1 (UDP, ICMPv6).
	if err := checkHits(o, []uint64{2, 2}); err != nil {
		t.Error(err)
	}
	// No rules: nothing is dropped, and the last counts come back.
	old, err := o.Install(nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(old) != "[2 2]" {
		t.Errorf("Install(nil) returned %v, want [2 2]", old)
	}
	if got := rig.run(t, all, udp4(t, 53), 0); got != xdpRedirect {
		t.Errorf("with no rules installed: verdict %d, want redirect", got)
	}
	if h, _ := o.Hits(); h != nil {
		t.Errorf("hits with no rules: %v", h)
	}
}

// ndp is a neighbor solicitation from 2001:db8::1 with hop limit hop.
func ndp(t *testing.T, hop uint8) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: hop, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("ff02::1:ff00:2")}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(135, 0)}
	ic.SetNetworkLayerForChecksum(ip)
	return frame(t, &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeIPv6}, ip, ic, gopacket.Payload(make([]byte, 20)))
}

// frameGen makes rules and frames for the offload tests.
type frameGen struct{ *rand.Rand }

func newFrameGen(seed uint64) *frameGen { return &frameGen{rand.New(rand.NewPCG(seed, seed*7+1))} }

func (g *frameGen) pct(p int) bool { return g.IntN(100) < p }

func (g *frameGen) prefix(v6 bool) netip.Prefix {
	if v6 {
		var a [16]byte
		a[0], a[1], a[2], a[3], a[4] = 0x20, 0x01, 0x0d, 0xb8, byte(g.IntN(3))
		for i := 5; i < 16; i++ {
			a[i] = byte(g.IntN(4))
		}
		return netip.PrefixFrom(netip.AddrFrom16(a), []int{32, 40, 48, 64, 96, 120, 127, 128}[g.IntN(8)]).Masked()
	}
	a := [4]byte{198, 18 + byte(g.IntN(2)), byte(g.IntN(3)), byte(g.IntN(8))}
	return netip.PrefixFrom(netip.AddrFrom4(a), []int{15, 16, 20, 24, 28, 31, 32}[g.IntN(7)]).Masked()
}

var genProtos = []int{firewall.ProtoTCP, firewall.ProtoUDP, firewall.ProtoICMP, firewall.ProtoICMPv6, firewall.ProtoSCTP, firewall.ProtoUDPLite, 47}

func (g *frameGen) portRange() firewall.PortRange {
	switch g.IntN(6) {
	case 0, 1:
		return firewall.AllPorts
	case 2:
		p := uint16(g.IntN(4))
		return firewall.PortRange{Lo: 0, Hi: p}
	case 3:
		return firewall.PortRange{Lo: 65535 - uint16(g.IntN(3)), Hi: 65535}
	case 4:
		p := uint16(50 + g.IntN(8))
		return firewall.PortRange{Lo: p, Hi: p}
	}
	lo := uint16(1000 + g.IntN(100))
	return firewall.PortRange{Lo: lo, Hi: lo + uint16(g.IntN(50))}
}

// rules makes n valid rules, most of them offloadable drops, with a few
// accepts and stateful drops to shadow them.
func (g *frameGen) rules(n int) []firewall.Rule {
	var out []firewall.Rule
	for len(out) < n {
		r := firewall.NewRule(firewall.Drop)
		switch {
		case g.pct(8):
			r.Action = firewall.Accept
		case g.pct(4):
			r.States = firewall.StateNew
		}
		if g.pct(30) {
			r.InPort = g.IntN(6)
		}
		if g.pct(70) {
			r.Proto = genProtos[g.IntN(len(genProtos))]
		}
		v6 := g.pct(50)
		if g.pct(50) {
			r.Src = g.prefix(v6)
		}
		if g.pct(50) {
			r.Dst = g.prefix(v6)
		}
		if r.Proto != firewall.Any && (r.Proto == firewall.ProtoTCP || r.Proto == firewall.ProtoUDP || r.Proto == firewall.ProtoSCTP || r.Proto == firewall.ProtoUDPLite) {
			r.SrcPort, r.DstPort = g.portRange(), g.portRange()
		}
		if r.Validate() == nil {
			out = append(out, r)
		}
	}
	return out
}

// blocklist makes n drop rules on long prefixes, most of them offloaded.
func (g *frameGen) blocklist(n int) []firewall.Rule {
	out := make([]firewall.Rule, n)
	for i := range out {
		r := firewall.NewRule(firewall.Drop)
		v6 := g.pct(50)
		p := g.prefix(v6)
		p = netip.PrefixFrom(p.Addr(), max(p.Bits(), p.Addr().BitLen()-g.IntN(4))).Masked()
		if g.pct(50) {
			r.Src = p
		} else {
			r.Dst = p
		}
		if g.pct(30) {
			r.Proto = firewall.ProtoUDP
			r.DstPort = g.portRange()
		}
		out[i] = r
	}
	return out
}

func (g *frameGen) addr(rules []firewall.Rule, v6 bool) netip.Addr {
	var ps []netip.Prefix
	for _, r := range rules {
		for _, p := range []netip.Prefix{r.Src, r.Dst} {
			if p.IsValid() && p.Addr().Is6() == v6 {
				ps = append(ps, p)
			}
		}
	}
	if len(ps) == 0 || g.pct(15) {
		return g.prefix(v6).Addr()
	}
	p := ps[g.IntN(len(ps))]
	b := p.Addr().AsSlice()
	switch g.IntN(4) {
	case 0: // the first address
	case 1: // the last
		for i := p.Bits(); i < len(b)*8; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
	case 2: // just outside
		a, _ := netip.AddrFromSlice(b)
		if a.Prev().IsValid() {
			return a.Prev()
		}
	default: // somewhere inside
		for i := p.Bits(); i < len(b)*8; i++ {
			if g.pct(50) {
				b[i/8] |= 0x80 >> (i % 8)
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (g *frameGen) port(rules []firewall.Rule) uint16 {
	if len(rules) == 0 || g.pct(20) {
		return uint16(g.IntN(65536))
	}
	r := rules[g.IntN(len(rules))]
	pr := r.DstPort
	if g.pct(50) {
		pr = r.SrcPort
	}
	return []uint16{pr.Lo, pr.Hi, pr.Lo - 1, pr.Hi + 1}[g.IntN(4)]
}

func (g *frameGen) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.IntN(256))
	}
	return b
}

// l4 builds a transport header for proto with its ports, and a payload;
// sometimes with a length field Parse refuses.
func (g *frameGen) l4(proto uint8, sport, dport uint16) []byte {
	payload := g.bytes(g.IntN(24))
	var h []byte
	switch proto {
	case 6:
		doff := 5 + g.IntN(3)
		if g.pct(5) {
			doff = g.IntN(16) // < 5, or past the packet
		}
		h = make([]byte, 20+4*max(doff-5, 0))
		h[12] = byte(doff << 4)
	case 17:
		h = make([]byte, 8)
		ulen := 8 + len(payload)
		if g.pct(5) {
			ulen = g.IntN(80)
		}
		binary.BigEndian.PutUint16(h[4:], uint16(ulen))
	case 1, 58:
		h = make([]byte, 8)
		if g.pct(5) {
			h = h[:g.IntN(8)]
			payload = nil
		}
		return append(h, payload...)
	case 132:
		h = make([]byte, 12)
	case 136:
		h = make([]byte, 8)
	default:
		return append(g.bytes(8), payload...)
	}
	if g.pct(4) {
		// A header cut short (SCTP and UDP-Lite then carry no ports).
		h = h[:4+g.IntN(len(h)-4)]
		payload = nil
	}
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	return append(h, payload...)
}

// proto picks a protocol from the rules, or any other.
func (g *frameGen) proto(rules []firewall.Rule) uint8 {
	if g.pct(75) {
		r := rules[g.IntN(len(rules))]
		if r.Proto != firewall.Any {
			return uint8(r.Proto)
		}
	}
	return uint8(genProtos[g.IntN(len(genProtos))])
}

// fragOffset is a fragment offset in 8-byte units: small, large, a power
// of two, or at the end of the largest datagram (where most fragments do
// not fit).
func (g *frameGen) fragOffset() uint16 {
	switch g.IntN(4) {
	case 0:
		return uint16(1 + g.IntN(100))
	case 1:
		return uint16(0x1000 + g.IntN(0xf00))
	case 2:
		return 1 << g.IntN(13) // one bit of the field
	}
	return uint16(0x1fff - g.IntN(3))
}

func (g *frameGen) ipv4(rules []firewall.Rule) []byte {
	proto := g.proto(rules)
	src, dst := g.addr(rules, false).As4(), g.addr(rules, false).As4()
	opts := 0
	if g.pct(15) {
		opts = 1 + g.IntN(10)
	}
	hl := 20 + 4*opts
	var body []byte
	frag := uint16(0)
	switch {
	case g.pct(8): // a later fragment: the body is the middle of a datagram
		frag = g.fragOffset()
		if g.pct(50) {
			frag |= 0x2000
		}
		body = g.bytes(8 * (1 + g.IntN(4)))
	case g.pct(8): // a first fragment
		frag = 0x2000
		body = g.l4(proto, g.port(rules), g.port(rules))
		for len(body)%8 != 0 {
			body = append(body, 0)
		}
	default:
		body = g.l4(proto, g.port(rules), g.port(rules))
	}
	if g.pct(3) {
		frag = uint16(g.IntN(65536)) // any flags and offset, lengths that may not fit
	}
	h := make([]byte, hl)
	h[0] = byte(0x40 | (hl / 4))
	total := hl + len(body)
	if g.pct(4) {
		total = g.IntN(total + 20)
	}
	binary.BigEndian.PutUint16(h[2:], uint16(total))
	binary.BigEndian.PutUint16(h[6:], frag)
	h[8], h[9] = 64, proto
	copy(h[12:], src[:])
	copy(h[16:], dst[:])
	for i := 20; i < hl; i++ {
		h[i] = 1 // NOP options
	}
	if g.pct(2) {
		h[0] = byte(g.IntN(256)) // a wrong version or header length
	}
	return append(h, body...)
}

var extHeaders = []uint8{0, 43, 60, 44, 51}

func (g *frameGen) ipv6(rules []firewall.Rule) []byte {
	proto := g.proto(rules)
	src, dst := g.addr(rules, true).As16(), g.addr(rules, true).As16()
	var exts []uint8
	switch {
	case g.pct(40):
	case g.pct(5):
		for range 15 + g.IntN(4) { // at and past the 16-header limit
			exts = append(exts, 60)
		}
	default:
		for range 1 + g.IntN(4) {
			exts = append(exts, extHeaders[g.IntN(len(extHeaders))])
		}
	}
	later := false
	var chain []byte
	next := func(i int) uint8 {
		if i+1 < len(exts) {
			return exts[i+1]
		}
		return proto
	}
	for i, e := range exts {
		var h []byte
		switch e {
		case 44:
			h = make([]byte, 8)
			off := uint16(0)
			if g.pct(40) {
				off = g.fragOffset() << 3
				later = true
			}
			if g.pct(50) {
				off |= 1
			}
			binary.BigEndian.PutUint16(h[2:], off)
		case 51:
			n := g.IntN(4)
			h = make([]byte, (n+2)*4)
			h[1] = byte(n)
		default:
			n := g.IntN(3)
			if g.pct(5) {
				n = 20 + g.IntN(20) // a header that runs past 256 bytes
			}
			h = make([]byte, (n+1)*8)
			h[1] = byte(n)
		}
		h[0] = next(i)
		chain = append(chain, h...)
		if later {
			break
		}
	}
	var body []byte
	if later {
		body = g.bytes(8 * (1 + g.IntN(4)))
	} else {
		body = g.l4(proto, g.port(rules), g.port(rules))
	}
	first := proto
	if len(exts) > 0 {
		first = exts[0]
	}
	hop := byte(64)
	if proto == 58 && !later && len(body) >= 2 && g.pct(50) {
		// Neighbor discovery, which the stage passes without the rules
		// when sent on the link (hop limit 255, code 0), or almost.
		body[0] = []byte{135, 136, 133, 128}[g.IntN(4)]
		if g.pct(20) {
			body[1] = 1
		}
		if g.pct(80) {
			hop = 255
		}
	}
	h := make([]byte, 40)
	h[0] = 0x60
	plen := len(chain) + len(body)
	if g.pct(4) {
		plen = g.IntN(plen + 20)
	}
	binary.BigEndian.PutUint16(h[4:], uint16(plen))
	h[6], h[7] = first, hop
	copy(h[8:], src[:])
	copy(h[24:], dst[:])
	if g.pct(2) {
		h[0] = byte(g.IntN(256))
	}
	return append(append(h, chain...), body...)
}

// frame makes an Ethernet frame aimed at the rules, sometimes damaged.
func (g *frameGen) frame(rules []firewall.Rule) []byte {
	f := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}
	tags := 0
	switch {
	case g.pct(75):
	case g.pct(45):
		tags = 1
	case g.pct(60):
		tags = 2
	default:
		tags = 3 // one more than Parse reads
	}
	for range tags {
		tpid := uint16(0x8100)
		if g.pct(30) {
			tpid = 0x88a8
		}
		f = binary.BigEndian.AppendUint16(f, tpid)
		vid := uint16(g.IntN(4096))
		if g.pct(60) {
			vid = []uint16{0, 100, 200, 300}[g.IntN(4)] // the trunk's VLANs, and priority tags
		}
		f = binary.BigEndian.AppendUint16(f, uint16(g.IntN(8))<<13|vid)
	}
	switch {
	case g.pct(50):
		f = binary.BigEndian.AppendUint16(f, 0x0800)
		f = append(f, g.ipv4(rules)...)
	case g.pct(95):
		f = binary.BigEndian.AppendUint16(f, 0x86dd)
		f = append(f, g.ipv6(rules)...)
	default:
		f = binary.BigEndian.AppendUint16(f, 0x0806)
		f = append(f, g.bytes(28)...)
	}
	if g.pct(10) {
		f = append(f, g.bytes(1+g.IntN(30))...) // Ethernet padding
	}
	if g.pct(6) {
		f = f[:14+g.IntN(len(f)-13)] // cut anywhere after the Ethernet header
	}
	if g.pct(3) && len(f) > 14 {
		f[14+g.IntN(min(len(f)-14, 80))] ^= byte(1 << g.IntN(8))
	}
	if len(f) < 14 {
		f = append(f, make([]byte, 14-len(f))...)
	}
	return f
}

// BenchmarkOffload measures the program per frame under BPF_PROG_TEST_RUN
// (the kernel's own timing of Repeat runs, ns/frame): without an Offload,
// with one and no rules, and with 256 rules that a UDP frame passes or
// the last of which drops it.
func BenchmarkOffload(b *testing.B) {
	rig := newOffloadRig(b)
	frame := udp4(b, 4242)
	var drops []string
	for i := range 255 {
		drops = append(drops, fmt.Sprintf("drop src 203.0.%d.%d/32", i/250, i%250))
	}
	pass := func() []string { return drops }
	last := func() []string { return append(append([]string(nil), drops...), "drop proto udp dport 4242") }
	cases := []struct {
		name    string
		offload bool
		rules   func() []string
		want    uint32
	}{
		{"no offload", false, nil, xdpRedirect},
		{"offload, no rules", true, func() []string { return nil }, xdpRedirect},
		{"offload, 255 rules, none match", true, pass, xdpRedirect},
		{"offload, 256 rules, the last drops", true, last, xdpDrop},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			o := bpf.NewOffload()
			defer o.Close()
			opts := bpf.RedirectOptions{}
			if c.offload {
				opts.Offload = o
				rules, err := firewall.ParseRules(c.rules())
				if err != nil {
					b.Fatal(err)
				}
				plan, err := firewall.PlanOffload(rules)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := o.Install(offloadRules(plan)); err != nil {
					b.Fatal(err)
				}
			}
			r := rig.load(b, opts)
			var per time.Duration
			rig.ns.Do(func() error {
				ret, d, err := r.Program.Benchmark(frame, b.N, nil)
				if err != nil {
					b.Fatal(err)
				}
				if ret != c.want {
					b.Fatalf("verdict %d, want %d", ret, c.want)
				}
				per = d
				return nil
			})
			b.ReportMetric(float64(per.Nanoseconds()), "ns/frame")
		})
	}
}
