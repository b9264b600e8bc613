package nftest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/nf/router"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/service"
)

// ipv6Chain is the chain of issue 16: a stateful firewall (established
// and related traffic, new flows from in, nothing else) in front of a
// router with IPv4 and IPv6 addresses on both ports and no static
// neighbor: the kernels on either side and the router find each other by
// ARP and neighbor discovery alone.
const ipv6Chain = `ports:
  - {name: in, interface: in0, mode: %[1]s}
  - {name: out, interface: out0, mode: %[1]s}
workers: {realtime: 0}
metrics: {listen: "off"}
chain:
  - type: firewall
    default: drop
    rules:
      - accept state established,related
      - accept in in state new
  - type: router
    interfaces:
      - {port: in, addrs: [%[2]s/24, "%[3]s/64"]}
      - {port: out, addrs: [%[4]s/24, "%[5]s/64"]}
`

// v6Lab runs ipv6Chain as a service in the DUT namespace of a lab whose
// peers speak IPv6 (lab.TopologyOptions.IPv6: the DUT's kernel has no
// IPv6, so only xnf can answer for its addresses). The service stops
// before the lab goes, failing the test if a frame is missing from its
// UMEM.
func v6Lab(t *testing.T, mode afxdp.AttachMode) (*lab.Topology, *service.Service, *firewall.Stage, *router.Router) {
	t.Helper()
	topo := lab.TopologyForTest(t, "v6"+mode.String()[:1], lab.TopologyOptions{IPv6: true})
	f, err := config.Parse("ipv6.yaml", []byte(fmt.Sprintf(ipv6Chain, mode, lab.DUTInAddr, lab.DUTInAddr6, lab.DUTOutAddr, lab.DUTOutAddr6)))
	if err != nil {
		t.Fatal(err)
	}
	var s *service.Service
	if err := topo.DUT.Do(func() (err error) {
		s, err = service.Start(f, slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping xnf: %v", err)
		}
	})
	for _, d := range s.Devices {
		if d.Mode() != mode {
			t.Fatalf("%s attached in %v mode, asked for %v", d.Name, d.Mode(), mode)
		}
	}
	stages := s.Workers[0].Stages
	return topo, s, config.Unwrap(stages[0]).(*firewall.Stage), config.Unwrap(stages[1]).(*router.Router)
}

// neighState is the state of ns's neighbor entry for ip on link (0: none).
func neighState(t *testing.T, ns *lab.NS, link, ip string) (int, string) {
	t.Helper()
	l, err := ns.Link(link)
	if err != nil {
		t.Fatal(err)
	}
	nbs, err := ns.Netlink().NeighList(l.Attrs().Index, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, nb := range nbs {
		if nb.IP.Equal(net.ParseIP(ip)) {
			return nb.State, nb.HardwareAddr.String()
		}
	}
	return 0, ""
}

// flushNeighbors forgets every neighbor ns learned on link, so its next
// packet out starts with a multicast solicitation.
func flushNeighbors(t *testing.T, ns *lab.NS, link string) {
	t.Helper()
	l, err := ns.Link(link)
	if err != nil {
		t.Fatal(err)
	}
	nbs, _ := ns.Netlink().NeighList(l.Attrs().Index, netlink.FAMILY_V6)
	for _, nb := range nbs {
		if nb.State&netlink.NUD_PERMANENT == 0 {
			ns.Netlink().NeighDel(&nb)
		}
	}
}

// TestIPv6EndToEndWithKernelPeers runs issue 16's firewall -> router chain
// between two kernels that speak IPv6 and IPv4, in native and generic
// mode, and checks what a network engineer would: the peers resolve the
// router's addresses by neighbor discovery, and the router resolves them
// by solicitations of its own; the peers' reachability probes (unicast
// solicitations from their link-local addresses) are answered; ping6, a
// 1 MiB TCP transfer each way and a UDP stream cross it exactly; hop limit
// 1 gets time exceeded from the router; the firewall still refuses new
// flows from outside; IPv4 with ARP works beside it. The kernels' NDP is
// never malformed to the router, and every frame is back in the UMEM at
// the end.
func TestIPv6EndToEndWithKernelPeers(t *testing.T) {
	for _, mode := range []afxdp.AttachMode{afxdp.ModeNative, afxdp.ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			topo, s, fw, r := v6Lab(t, mode)
			gen, sink := topo.Gen, topo.Sink
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("router %+v\nfirewall %v\nports %+v", r.Counters(), fw.StageMetrics(), s.Workers[0].PortCounters())
				}
			})

			t.Run("the client resolves the router's address by neighbor discovery", func(t *testing.T) {
				if err := gen.Ping(lab.DUTInAddr6, 1, 3); err != nil {
					t.Fatal(err)
				}
				if st, m := neighState(t, gen, "g0", lab.DUTInAddr6); st&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY) == 0 || m != lab.DUTInMAC {
					t.Errorf("client's neighbor entry for %s: state %#x, MAC %q; want reachable at %s", lab.DUTInAddr6, st, m, lab.DUTInMAC)
				}
				if c := r.Counters(); c.NDPAdverts == 0 || c.EchoReplies == 0 {
					t.Errorf("router counters %+v: want the solicitation and the ping answered by xnf", c)
				}
			})
			t.Run("the router resolves both peers by solicitation and ping6 crosses it", func(t *testing.T) {
				// The client's solicitation taught the router its MAC:
				// forget it, so that the reply needs a solicitation too.
				r.Neighbors().Delete(0, netip.MustParseAddr(lab.GenAddr6))
				before := r.Counters().Resolutions
				// The first request is spent on resolving the server,
				// the first reply on resolving the client.
				if err := gen.Ping(lab.SinkAddr6, 2, 5); err != nil {
					t.Fatal(err)
				}
				if n := r.Counters().Resolutions - before; n < 2 {
					t.Errorf("router sent %d solicitations, want one for each peer", n)
				}
			})
			t.Run("the server resolves the router's address by neighbor discovery", func(t *testing.T) {
				// The server learned the router's MAC from its
				// solicitation; forget it, so that it must ask before
				// its echo replies can go. (It cannot ping the router:
				// the rules accept no new flow from its side.)
				flushNeighbors(t, sink, "s0")
				before := r.Counters().NDPAdverts
				if err := gen.Ping(lab.SinkAddr6, 3, 3); err != nil {
					t.Fatal(err)
				}
				if st, m := neighState(t, sink, "s0", lab.DUTOutAddr6); st&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY) == 0 || m != lab.DUTOutMAC {
					t.Errorf("server's neighbor entry for %s: state %#x, MAC %q; want reachable at %s", lab.DUTOutAddr6, st, m, lab.DUTOutMAC)
				}
				if r.Counters().NDPAdverts == before {
					t.Error("the server's solicitation was not answered by xnf")
				}
			})
			t.Run("the client's reachability probe is answered", func(t *testing.T) {
				// A stale entry and traffic that confirms nothing (UDP;
				// ping would confirm with MSG_CONFIRM) make the kernel
				// probe: a unicast solicitation, from its link-local
				// address, after delay_first_probe_time.
				if err := gen.Sysctl("net.ipv6.neigh.g0.delay_first_probe_time", "1"); err != nil {
					t.Fatal(err)
				}
				l, _ := gen.Link("g0")
				if err := gen.Netlink().NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V6, State: netlink.NUD_STALE,
					IP: net.ParseIP(lab.DUTInAddr6), HardwareAddr: mustMAC(lab.DUTInMAC)}); err != nil {
					t.Fatal(err)
				}
				before := r.Counters().NDPAdverts
				if err := gen.SendUDP("["+lab.DUTInAddr6+"]:9", 8, "probe %d", 1, 300*time.Millisecond); err != nil {
					t.Fatal(err)
				}
				if st, _ := neighState(t, gen, "g0", lab.DUTInAddr6); st != netlink.NUD_REACHABLE {
					t.Errorf("client's entry for the router after its probe: state %#x, want reachable (%#x)", st, netlink.NUD_REACHABLE)
				}
				if r.Counters().NDPAdverts == before {
					t.Error("no advertisement answered the probe")
				}
			})
			t.Run("a TCP transfer of 1 MiB each way crosses the router", func(t *testing.T) {
				tcpBothWays(t, gen, sink, "["+lab.SinkAddr6+"]:8080")
			})
			t.Run("a UDP stream crosses the router whole, and so do the replies", func(t *testing.T) {
				udpEcho(t, gen, sink, lab.SinkAddr6, 200)
			})
			t.Run("hop limit 1 gets time exceeded from the router", func(t *testing.T) {
				if err := hopLimitOne(gen, lab.SinkAddr6, lab.DUTInAddr6); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("the firewall refuses a new flow from the outside", func(t *testing.T) {
				var ln net.Listener
				if err := gen.Do(func() (err error) { ln, err = net.Listen("tcp6", "["+lab.GenAddr6+"]:8081"); return err }); err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				before := fw.StageMetrics()["default_hits"]
				err := sink.Do(func() error {
					c, err := net.DialTimeout("tcp6", "["+lab.GenAddr6+"]:8081", time.Second)
					if err == nil {
						c.Close()
					}
					return err
				})
				if err == nil {
					t.Fatal("the server opened a connection to the client through the firewall")
				}
				if fw.StageMetrics()["default_hits"] == before {
					t.Errorf("dial failed (%v) but the firewall's default policy saw nothing", err)
				}
			})
			t.Run("IPv4 with ARP works beside it", func(t *testing.T) {
				before := r.Counters()
				if err := gen.Ping(lab.SinkAddr, 4, 5); err != nil {
					t.Fatal(err)
				}
				if c := r.Counters(); c.ARPReplies == before.ARPReplies || c.Resolutions == before.Resolutions {
					t.Errorf("router counters %+v: want the client's ARP answered and the server resolved by xnf", c)
				}
			})

			for i, pc := range s.Workers[0].PortCounters() {
				if n := pc.Dropped[packet.DropMalformed]; n != 0 {
					t.Errorf("port %d: %d frames dropped as malformed; the kernels sent none", i, n)
				}
			}
			if fw.StageMetrics()["neighbor_discovery"] == 0 {
				t.Error("the firewall passed no neighbor discovery")
			}
		})
	}
}

func mustMAC(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }

// tcpBothWays sends 1 MiB from client to a server listening at addr, which
// reads it to the end and sends 1 MiB of its own back; both sides must get
// exactly the other's bytes.
func tcpBothWays(t *testing.T, client, server *lab.NS, addr string) {
	t.Helper()
	up := bytes.Repeat([]byte("client to server"), 1<<16)   // 1 MiB
	down := bytes.Repeat([]byte("server to client"), 1<<16) // 1 MiB
	var ln net.Listener
	if err := server.Do(func() (err error) { ln, err = net.Listen("tcp6", addr); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		b, _ := io.ReadAll(c)
		got <- b
		c.Write(down)
	}()
	var back []byte
	if err := client.Do(func() error {
		c, err := net.DialTimeout("tcp6", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write(up); err != nil {
			return err
		}
		c.(*net.TCPConn).CloseWrite()
		back, err = io.ReadAll(c)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, up) {
		t.Errorf("server got %d bytes, want %d identical", len(b), len(up))
	}
	if !bytes.Equal(back, down) {
		t.Errorf("client got %d bytes back, want %d identical", len(back), len(down))
	}
}

// udpEcho sends n paced datagrams from client to port 9 of server at
// addr, whose socket echoes each back; every datagram and every echo must
// arrive, once.
func udpEcho(t *testing.T, client, server *lab.NS, addr string, n int) {
	t.Helper()
	srv, err := server.ListenUDP(addr, 9)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	received := make(chan int, 1)
	go func() {
		seen := map[string]bool{}
		buf := make([]byte, 2048)
		for len(seen) < n {
			srv.SetReadDeadline(time.Now().Add(3 * time.Second))
			k, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				break
			}
			seen[string(buf[:k])] = true
			srv.WriteToUDP(buf[:k], from)
		}
		received <- len(seen)
	}()
	echoed := map[string]bool{}
	if err := client.Do(func() error {
		c, err := net.DialUDP("udp6", nil, &net.UDPAddr{IP: net.ParseIP(addr), Port: 9})
		if err != nil {
			return err
		}
		defer c.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 2048)
			for len(echoed) < n {
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				k, err := c.Read(buf)
				if err != nil {
					return
				}
				echoed[string(buf[:k])] = true
			}
		}()
		for i := range n {
			fmt.Fprintf(c, "datagram %d", i)
			if i%20 == 19 {
				time.Sleep(time.Millisecond)
			}
		}
		<-done
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if k := <-received; k != n {
		t.Errorf("server received %d of %d datagrams", k, n)
	}
	if len(echoed) != n {
		t.Errorf("client received %d of %d echoes", len(echoed), n)
	}
}

// hopLimitOne sends a UDP datagram with hop limit 1 from ns to dst and
// waits for the ICMPv6 time exceeded that router must send back.
func hopLimitOne(ns *lab.NS, dst, router string) error {
	return ns.Do(func() error {
		icmp, err := net.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		defer icmp.Close()
		u, err := net.Dial("udp6", "["+dst+"]:33434")
		if err != nil {
			return err
		}
		defer u.Close()
		raw, _ := u.(*net.UDPConn).SyscallConn()
		raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 1) })
		u.Write([]byte("traceroute probe"))
		buf := make([]byte, 1500)
		icmp.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, from, err := icmp.ReadFrom(buf)
			if err != nil {
				return errors.New("no time exceeded from " + router)
			}
			if n >= 8 && buf[0] == 3 && from.(*net.IPAddr).IP.Equal(net.ParseIP(router)) {
				return nil
			}
		}
	})
}
