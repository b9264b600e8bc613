package router_test

import (
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"os"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/nf/router"
	"github.com/xnfdev/xnf/packet"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// kernelFrame is one frame of testdata/kernel-ndp.pcapng: what a Linux
// 6.18 kernel sent to xnf from a lab namespace, captured with tcpdump on
// the peer's veth end. Interface 0 of the capture is the client's g0
// (frames reaching the router's port 0, in0), interface 1 the server's s0
// (port 1, out0). The router's addresses were 2001:db8::2/64 on in0
// (02:00:00:00:00:02) and 2001:db8:1::1/64 on out0 (02:00:00:00:01:01);
// the client was 2001:db8::1 (02:00:00:00:00:01), the server
// 2001:db8:1::2 (02:00:00:00:01:02). In order:
//
//	0 in   NS 2001:db8::1 > ff02::1:ff00:2, who has 2001:db8::2, source link-layer address (address resolution)
//	1 in   NS fe80::ff:fe00:1 > 2001:db8::2, unicast to the router's MAC (a reachability probe, from the link-local address)
//	2 in   NS :: > ff02::1:ff00:99, who has 2001:db8::99, nonce option (duplicate address detection for the client's new address)
//	3 in   NS :: > ff02::1:ff00:2, who has 2001:db8::2, nonce option (the client trying to take the router's address)
//	4 in   MLDv2 report fe80::ff:fe00:1 > ff02::16, hop-by-hop router alert
//	5 out  NA 2001:db8:1::2 > 2001:db8:1::1, solicited, override, target link-layer address (the answer to the router's NS)
//	6 out  NS fe80::ff:fe00:102 > 2001:db8:1::1, unicast (the server's reachability probe)
type kernelFrame struct {
	port int
	data []byte
}

func kernelNDP(t *testing.T) []kernelFrame {
	t.Helper()
	f, err := os.Open("testdata/kernel-ndp.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var out []kernelFrame
	for {
		d, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, kernelFrame{ci.InterfaceIndex, d})
	}
	if len(out) != 7 {
		t.Fatalf("testdata/kernel-ndp.pcapng has %d frames, want 7", len(out))
	}
	return out
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ndpChain is the chain of issue 16's report: a firewall accepting
// established and related traffic and new flows from port 0, dropping the
// rest, in front of a router with IPv4 and IPv6 addresses on both ports
// and no static neighbor.
func ndpChain(t *testing.T) (*pt.Harness, *router.Router) {
	t.Helper()
	rules, err := firewall.ParseRules([]string{"accept state established,related", "accept in 0 state new"})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := firewall.New(1, rules, firewall.Drop)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := conntrack.New(conntrack.Config{MaxFlows: 64})
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.NewRouter(router.Config{Interfaces: []router.Interface{
		{Port: 0, MAC: mac("02:00:00:00:00:02"), Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24"), netip.MustParsePrefix("2001:db8::2/64")}},
		{Port: 1, MAC: mac("02:00:00:00:01:01"), Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.1.1/24"), netip.MustParsePrefix("2001:db8:1::1/64")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return pt.New(t, firewall.NewStage(fw, ct, 0), r), r
}

// A Linux peer's neighbor discovery through firewall -> router, as the
// issue reported it: its solicitations for the router's addresses got no
// advertisement, while the router's unit tests passed. The frames were
// fine (the unit tests' match them); the firewall in front was not: it
// classified them like any IPv6 packet, conntrack does not track NDP, so
// state-only rules never matched and the default policy dropped each one
// (firewall default_hits, drop reason policy, and the router's counters
// all zero). Now they reach the router, which answers with exactly the
// advertisement RFC 4861 7.2.4 describes and learns from what the peers
// sent. A node probing for one of the router's addresses gets the
// advertisement that defends it (RFC 4861 7.2.4), which the router did not
// send before.
func TestKernelNeighborDiscoveryThroughFirewallAndRouter(t *testing.T) {
	frames := kernelNDP(t)
	h, r := ndpChain(t)
	send := func(i int) []pt.Result { return h.Send(frames[i].port, frames[i].data) }

	// 0: solicited, router and override flags; the target link-layer address.
	h.Expect(send(0), pt.Bounced().Bytes(unhex(t, ""+
		"02000000000102000000000286dd"+ // to the client's MAC, from in0's
		"6000000000203aff20010db800000000000000000000000220010db8000000000000000000000001"+ // 2001:db8::2 > 2001:db8::1, hop limit 255
		"88000a71e000000020010db80000000000000000000000020201020000000002"))) // NA R|S|O, target 2001:db8::2, TLLA
	// 1: the probe from the link-local address is answered to it.
	h.Expect(send(1), pt.Bounced().Bytes(unhex(t, ""+
		"02000000000102000000000286dd"+
		"6000000000203aff20010db8000000000000000000000002fe80000000000000000000fffe000001"+
		"88003aa9e000000020010db80000000000000000000000020201020000000002")))
	// 2: duplicate address detection for an address not the router's: nothing to say.
	h.Expect(send(2), pt.Dropped(packet.DropConsumed))
	// 3: the client probing for the router's own address: the router
	// defends it with an advertisement to all nodes, not solicited.
	h.Expect(send(3), pt.Bounced().Bytes(unhex(t, ""+
		"33330000000102000000000286dd"+ // to all nodes' MAC, from in0's
		"6000000000203aff20010db8000000000000000000000002ff020000000000000000000000000001"+ // 2001:db8::2 > ff02::1
		"88007927a000000020010db80000000000000000000000020201020000000002"))) // NA R|O, target 2001:db8::2, TLLA
	// 4: multicast listener reports are not neighbor discovery: the rules decide.
	h.Expect(send(4), pt.Dropped(packet.DropPolicy))
	// 5: the server's advertisement is learned: its traffic needs no resolution.
	h.Expect(send(5), pt.Dropped(packet.DropConsumed))
	udp := pt.UDP6("[2001:db8::1]:5000", "[2001:db8:1::2]:9", "after the advertisement")
	h.Expect(h.Send(0, udp), pt.Forwarded(1).Bytes(pt.UDP6("[2001:db8::1]:5000", "[2001:db8:1::2]:9", "after the advertisement",
		pt.TTL(63), pt.SrcMAC("02:00:00:00:01:01"), pt.DstMAC("02:00:00:00:01:02"))))
	// 6: the server's probe, from the side where no rule accepts new flows.
	h.Expect(send(6), pt.Bounced().Bytes(unhex(t, ""+
		"02000000010202000000010186dd"+
		"6000000000203aff20010db8000100000000000000000001fe80000000000000000000fffe000102"+
		"880038a9e000000020010db80001000000000000000000010201020000000101")))

	h.ExpectMetrics(0, map[string]uint64{"neighbor_discovery": 6, "accepted": 1, "default_hits": 1})
	h.ExpectMetrics(1, map[string]uint64{"ndp_adverts": 4, "neighbors_learned": 4, "resolutions_sent": 0, "forwarded": 1, "ndp_conflicts": 1})
	if c := r.Counters(); c.NoNeighbor != 0 {
		t.Errorf("router counters %+v: a packet waited for a neighbor the advertisement taught", c)
	}
}

// NDP the router must not act on (RFC 4861 7.1.1, 7.1.2), made from the
// kernel's frames: each is dropped as malformed, teaches the neighbor
// table nothing and gets no answer. The advertisement with hop limit 64 is
// the dangerous one: it came through another router, from anywhere, and
// the router used to learn its MAC. An advertisement or solicitation that
// gives one of the router's own addresses a MAC is a conflict, counted,
// and not learned either.
func TestInvalidNeighborDiscoveryIsIgnored(t *testing.T) {
	frames := kernelNDP(t)
	ns, dad, na := frames[0].data, frames[3].data, frames[5].data
	const ip, icmp = 14, 14 + 40 // offsets in the frames: IPv6 header, ICMPv6 message
	// mod copies f, applies fn and recomputes the ICMPv6 checksum.
	mod := func(f []byte, fn func([]byte)) []byte {
		c := append([]byte(nil), f...)
		fn(c)
		p := packet.Packet{Data: c}
		p.Parse()
		p.SetL4Checksum()
		return c
	}
	evil := []byte{0x02, 0xee, 0xee, 0xee, 0xee, 0xee}
	cases := []struct {
		name   string
		port   int
		f      []byte
		reason packet.DropReason
	}{
		{"a solicitation with hop limit 254", 0, mod(ns, func(f []byte) { f[ip+7] = 254 }), packet.DropMalformed},
		{"a solicitation with code 1", 0, mod(ns, func(f []byte) { f[icmp+1] = 1 }), packet.DropMalformed},
		{"a solicitation with a bad checksum", 0, func() []byte { f := append([]byte(nil), ns...); f[icmp+3] ^= 1; return f }(), packet.DropMalformed},
		{"a solicitation whose option has length 0", 0, mod(ns, func(f []byte) { f[icmp+25] = 0 }), packet.DropMalformed},
		{"a solicitation for a multicast target", 0, mod(ns, func(f []byte) { f[icmp+8] = 0xff }), packet.DropMalformed},
		{"a solicitation from a multicast source", 0, mod(ns, func(f []byte) { f[ip+8] = 0xff }), packet.DropMalformed},
		{"duplicate address detection with a source link-layer address", 0, mod(dad, func(f []byte) { f[icmp+24] = 1 }), packet.DropMalformed},
		{"duplicate address detection to a unicast address", 0, mod(dad, func(f []byte) { copy(f[ip+24:ip+40], netip.MustParseAddr("2001:db8::2").AsSlice()) }), packet.DropMalformed},
		{"an advertisement with hop limit 64", 1, mod(na, func(f []byte) { f[ip+7] = 64; copy(f[icmp+26:], evil) }), packet.DropMalformed},
		{"a solicited advertisement to all nodes", 1, mod(na, func(f []byte) { copy(f[ip+24:ip+40], netip.MustParseAddr("ff02::1").AsSlice()) }), packet.DropMalformed},
		{"an advertisement of the router's own address", 1, mod(na, func(f []byte) {
			copy(f[icmp+8:icmp+24], netip.MustParseAddr("2001:db8:1::1").AsSlice())
			copy(f[icmp+26:], evil)
		}), packet.DropConsumed},
		{"a solicitation from the router's own address", 0, mod(ns, func(f []byte) {
			copy(f[ip+8:ip+24], netip.MustParseAddr("2001:db8::2").AsSlice())
			copy(f[icmp+26:], evil)
		}), packet.DropConsumed},
	}
	r, err := router.NewRouter(router.Config{Interfaces: []router.Interface{
		{Port: 0, MAC: mac("02:00:00:00:00:02"), Addrs: []netip.Prefix{netip.MustParsePrefix("2001:db8::2/64")}},
		{Port: 1, MAC: mac("02:00:00:00:01:01"), Addrs: []netip.Prefix{netip.MustParsePrefix("2001:db8:1::1/64")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := pt.New(t, r)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := h.Send(tc.port, tc.f)
			if res[0].Verdict != packet.Drop || res[0].Reason != tc.reason {
				t.Errorf("%v, want dropped (%v)", res[0], tc.reason)
			}
		})
	}
	if n := r.Neighbors().List(); len(n) != 0 {
		t.Errorf("the neighbor table learned %v", n)
	}
	// Nothing was learned for the server: its traffic is resolved afresh.
	h.Expect(h.Send(0, pt.UDP6("[2001:db8::1]:5000", "[2001:db8:1::2]:9", "x")), pt.Forwarded(1))
	h.ExpectMetrics(0, map[string]uint64{"ndp_adverts": 0, "neighbors_learned": 0, "ndp_conflicts": 2, "resolutions_sent": 1})
}
