package lab

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func TestLabPingsAcrossVethAndCleansUp(t *testing.T) {
	RequireRoot(t)
	l, err := New("xt-labself")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a := l.MustNS(t, "a")
	b := l.MustNS(t, "b")
	l.MustVeth(t, Veth{A: a, AName: "a0", B: b, BName: "b0", Queues: 2,
		AAddrs: []string{"198.18.0.1/24"}, BAddrs: []string{"198.18.0.2/24"}})

	link, err := a.Link("a0")
	if err != nil {
		t.Fatal(err)
	}
	if got := link.Attrs().NumRxQueues; got != 2 {
		t.Errorf("a0 has %d RX queues, want 2", got)
	}

	// A UDP datagram from a to b proves addresses, links and namespaces.
	var srv *net.UDPConn
	if err := b.Do(func() (err error) {
		srv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 18, 0, 2), Port: 9000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := a.Do(func() error {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(198, 18, 0, 2), Port: 9000})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("hello"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	n, _, err := srv.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("got %q, %v; want hello", buf[:n], err)
	}

	names := l.Namespaces()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if Exists(n) {
			t.Errorf("namespace %s still exists after Close", n)
		}
	}
}

// With IPv6, gen and sink get their 2001:db8::/32 addresses and routes to
// each other's /64 through the DUT's addresses, which the DUT's kernel
// does not hold (its IPv6 is off); Ping speaks ICMPv6 to IPv6 addresses.
func TestIPv6TopologyLeavesTheDUTsAddressesToXNF(t *testing.T) {
	topo := TopologyForTest(t, "labv6", TopologyOptions{IPv6: true})
	for _, c := range []struct {
		ns         *NS
		link, addr string
		route, via string
	}{
		{topo.Gen, "g0", GenAddr6, SinkNet6, DUTInAddr6},
		{topo.Sink, "s0", SinkAddr6, GenNet6, DUTOutAddr6},
	} {
		if err := c.ns.Ping(c.addr, 7, 3); err != nil { // tries: an address just added on a link just up can miss the first
			t.Errorf("%s: ping6 to its own %s: %v", c.ns.Short, c.addr, err)
		}
		l, _ := c.ns.Link(c.link)
		routes, err := c.ns.Netlink().RouteList(l, netlink.FAMILY_V6)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range routes {
			found = found || r.Dst != nil && r.Dst.String() == c.route && r.Gw.String() == c.via
		}
		if !found {
			t.Errorf("%s: no route to %s via %s in %v", c.ns.Short, c.route, c.via, routes)
		}
	}
	var v []byte
	topo.DUT.Do(func() (err error) { v, err = os.ReadFile("/proc/sys/net/ipv6/conf/in0/disable_ipv6"); return err })
	if string(v) != "1\n" {
		t.Errorf("DUT in0 disable_ipv6 = %q, want 1", v)
	}
}
