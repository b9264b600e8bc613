package router_test

import (
	"net/netip"
	"testing"

	"github.com/xnfdev/xnf/nf/router"
	"github.com/xnfdev/xnf/packet"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// The router through the users' test kit: it answers ARP for its address
// back out the ingress port, routes with TTL and MACs rewritten, and sends
// time exceeded for TTL 1.
func TestRouterThroughTheTestKit(t *testing.T) {
	r, err := router.NewRouter(router.Config{
		Interfaces: []router.Interface{
			{Port: 0, MAC: mac(pt.DefaultDstMAC), Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}},
			{Port: 1, MAC: [6]byte{2, 0, 0, 0, 1, 1}, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.1.1/24")}},
		},
		Neighbors: []router.Neighbor{{Port: 1, Addr: netip.MustParseAddr("198.18.1.2"), MAC: [6]byte{2, 0, 0, 0, 1, 2}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := pt.New(t, r)
	arp := pt.ARPRequest("198.18.0.1", "198.18.0.2")
	h.Expect(h.Send(0, arp), pt.Bounced())

	in := pt.UDP4("198.18.0.1:1000", "198.18.1.2:53", "query")
	want := pt.UDP4("198.18.0.1:1000", "198.18.1.2:53", "query", pt.TTL(63), pt.SrcMAC("02:00:00:00:01:01"), pt.DstMAC("02:00:00:00:01:02"))
	h.Expect(h.Send(0, in), pt.Forwarded(1).Bytes(want))

	ttl1 := pt.UDP4("198.18.0.1:1000", "198.18.1.2:53", "query", pt.TTL(1))
	h.Expect(h.Send(0, ttl1), pt.Bounced())
	h.ExpectMetrics(0, map[string]uint64{"arp_replies": 1, "forwarded": 1, "time_exceeded_sent": 1})
	h.ExpectDropped(0, map[packet.DropReason]uint64{})
}
