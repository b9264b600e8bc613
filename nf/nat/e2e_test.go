package nat_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/internal/dut"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/nat"
	"github.com/xnfdev/xnf/nf/router"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

// End-to-end tests: real kernel peers on both sides of xnf running
// NAT -> router, client (gen) inside on port 0, server (sink) outside on
// port 1, masquerading behind the DUT's outside address.

const (
	farNet  = "198.19.0.0/24" // behind the sink, which forwards (a second hop)
	farAddr = "198.19.0.9"
	client2 = "198.18.0.3" // a second address of the client namespace
)

func mac(s string) [6]byte { m, _ := net.ParseMAC(s); return [6]byte(m) }

// baseLab is the standard topology with what both the xnf and the kernel
// variants need: a second client address, static neighbors towards the
// DUT, and a far network behind the sink (the sink forwards, so a packet
// reaching it with TTL 1 dies there with a time exceeded).
func baseLab(t *testing.T) *lab.Topology {
	t.Helper()
	topo := lab.TopologyForTest(t, "nat", lab.TopologyOptions{})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC))
	must(topo.Sink.AddNeigh("s0", lab.DUTOutAddr, lab.DUTOutMAC))
	must(topo.Gen.AddAddr("g0", client2+"/24"))
	must(topo.Gen.AddRoute(farNet, lab.DUTInAddr, "g0"))
	must(topo.Sink.Sysctl("net/ipv4/ip_forward", "1"))
	// Where the sink would send the far network does not matter: a TTL 1
	// packet expires before it is forwarded.
	must(topo.Sink.AddRoute(farNet, lab.DUTOutAddr, "s0"))
	return topo
}

// xnfLab runs NAT -> router in xnf on the base lab.
func xnfLab(t *testing.T, forwards ...nat.Forward) (*lab.Topology, *nat.Stage) {
	t.Helper()
	ct, err := conntrack.New(conntrack.Config{MaxFlows: 4096})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := nat.NewStage(nat.Config{
		Inside: []uint16{0}, Outside: []uint16{1},
		Pool:     []netip.Addr{netip.MustParseAddr(lab.DUTOutAddr)},
		Except:   []netip.Prefix{netip.MustParsePrefix(lab.GenNet)},
		Forwards: forwards,
	}, ct)
	if err != nil {
		t.Fatal(err)
	}
	return xnfLabWith(t, ns), ns
}

// xnfLabWith runs the stages -> router in xnf on the base lab.
func xnfLabWith(t *testing.T, stages ...pipeline.Stage) *lab.Topology {
	t.Helper()
	topo := baseLab(t)
	r, err := router.NewRouter(router.Config{
		Interfaces: []router.Interface{
			{Port: 0, MAC: mac(lab.DUTInMAC), Addrs: []netip.Prefix{netip.MustParsePrefix(lab.DUTInAddr + "/24")}},
			{Port: 1, MAC: mac(lab.DUTOutMAC), Addrs: []netip.Prefix{netip.MustParsePrefix(lab.DUTOutAddr + "/24")}},
		},
		Routes: []router.StaticRoute{{Prefix: netip.MustParsePrefix(farNet),
			NextHops: []router.NextHop{{Port: 1, Gateway: netip.MustParseAddr(lab.SinkAddr)}}}},
		Neighbors: []router.Neighbor{
			{Port: 0, Addr: netip.MustParseAddr(lab.GenAddr), MAC: mac(lab.GenMAC)},
			{Port: 1, Addr: netip.MustParseAddr(lab.SinkAddr), MAC: mac(lab.SinkMAC)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	dut.Start(t, topo, append(stages, r), dut.Options{})
	return topo
}

// kernelLab masquerades with the DUT kernel's own NAT (nftables).
func kernelLab(t *testing.T) *lab.Topology {
	t.Helper()
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Skip("nft not installed: no kernel masquerade to compare with (apt-get install nftables)")
	}
	topo := baseLab(t)
	if err := topo.DUT.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	// The DUT kernel needs the route to the far network too.
	if err := topo.DUT.AddRoute(farNet, lab.SinkAddr, "out0"); err != nil {
		t.Fatal(err)
	}
	rules := `table ip xnfnat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "out0" masquerade
	}
}
`
	err = topo.DUT.Do(func() error {
		cmd := exec.Command(nft, "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft: %v: %s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Skipf("kernel masquerade unavailable here: %v", err)
	}
	return topo
}

func udpListen(t *testing.T, ns *lab.NS, addr string, port int) *net.UDPConn {
	t.Helper()
	c, err := ns.ListenUDP(addr, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// (1) A TCP connection moves 10 MB; the server sees the NAT address, and
// the client's port (free) is kept.
func TestMasqueradeTCP10MB(t *testing.T) {
	topo, ns := xnfLab(t)
	peer, local, n := tcpTransfer(t, topo, 10<<20)
	if n != 10<<20 {
		t.Fatalf("server received %d bytes, want %d", n, 10<<20)
	}
	if peer.Addr().String() != lab.DUTOutAddr {
		t.Errorf("server saw peer %v, want the NAT address %s", peer, lab.DUTOutAddr)
	}
	if peer.Port() != local.Port() {
		t.Errorf("server saw port %d, client used %d: a free port should be kept", peer.Port(), local.Port())
	}
	st := ns.Counters()
	t.Logf("10 MiB through the NAT: %+v", st)
	if st.SNATFlows != 1 || st.PortsKept != 1 || st.Translated < 1000 || st.Untranslatable != 0 || st.Exhausted != 0 {
		t.Errorf("stats %+v: want 1 SNAT flow, kept port, thousands of translated packets, no drops", st)
	}
}

// tcpTransfer sends size bytes from the client to a server on the sink and
// returns the peer the server saw, the client's local address and the
// byte count the server received (and acknowledged back).
func tcpTransfer(t *testing.T, topo *lab.Topology, size int) (peer, local netip.AddrPort, n int64) {
	t.Helper()
	var ln net.Listener
	if err := topo.Sink.Do(func() (err error) {
		ln, err = net.Listen("tcp4", lab.SinkAddr+":9000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		peer netip.AddrPort
		n    int64
		err  error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		n, err := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "%d", n)
		got <- result{c.RemoteAddr().(*net.TCPAddr).AddrPort(), n, err}
	}()
	var ack []byte
	if err := topo.Gen.Do(func() error {
		c, err := net.DialTimeout("tcp4", lab.SinkAddr+":9000", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		local = c.LocalAddr().(*net.TCPAddr).AddrPort()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		chunk := bytes.Repeat([]byte("xnf-nat-"), 8192)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk[:min(len(chunk), size-sent)]); err != nil {
				return fmt.Errorf("after %d bytes: %w", sent, err)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		ack, err = io.ReadAll(c)
		return err
	}); err != nil {
		t.Fatalf("client: %v", err)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("server: %v", r.err)
	}
	if string(ack) != fmt.Sprint(r.n) {
		t.Errorf("client got %q back, server counted %d", ack, r.n)
	}
	return netip.AddrPortFrom(r.peer.Addr().Unmap(), r.peer.Port()), local, r.n
}

// (2) UDP request/response from 100 client ports: every one answered, the
// server sees 100 distinct translated ports, all from the NAT address.
func TestMasqueradeUDP100Ports(t *testing.T) {
	topo, ns := xnfLab(t)
	seen := udpExchange(t, topo, 100, lab.GenAddr)
	for _, p := range seen {
		if p.Addr().String() != lab.DUTOutAddr {
			t.Fatalf("server saw %v, want the NAT address", p)
		}
	}
	if st := ns.Counters(); st.SNATFlows != 100 {
		t.Errorf("stats %+v: want 100 SNAT flows", st)
	}
}

// udpExchange sends one request from each of n client sockets (bound to
// clientAddr, distinct ports), waits for each answer, and returns what the
// server saw as each request's source, by client port. All answers must
// arrive and the server must see n distinct sources.
func udpExchange(t *testing.T, topo *lab.Topology, n int, clientAddr string) map[int]netip.AddrPort {
	t.Helper()
	srv := udpListen(t, topo.Sink, lab.SinkAddr, 9001)
	go func() {
		buf := make([]byte, 256)
		for {
			srv.SetReadDeadline(time.Now().Add(10 * time.Second))
			k, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			// Answer with what the server saw.
			srv.WriteToUDP(fmt.Appendf(nil, "%s|%s", buf[:k], from), from)
		}
	}()
	seen := map[int]netip.AddrPort{}
	distinct := map[netip.AddrPort]bool{}
	for i := range n {
		c := udpListen(t, topo.Gen, clientAddr, 0)
		port := c.LocalAddr().(*net.UDPAddr).Port
		req := fmt.Sprintf("req-%d", i)
		var reply string
		for try := 0; try < 3 && reply == ""; try++ {
			c.WriteToUDP([]byte(req), &net.UDPAddr{IP: net.ParseIP(lab.SinkAddr), Port: 9001})
			c.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 256)
			if k, _, err := c.ReadFromUDP(buf); err == nil {
				reply = string(buf[:k])
			}
		}
		got, from, ok := strings.Cut(reply, "|")
		if !ok || got != req {
			t.Fatalf("client port %d: answer %q to %q", port, reply, req)
		}
		ap := netip.MustParseAddrPort(from)
		seen[port] = ap
		distinct[ap] = true
		// c stays open (closed at cleanup): a closed socket's port may
		// be handed to the next one, which would then be the same flow.
	}
	if len(seen) != n {
		t.Fatalf("the client used %d distinct ports for %d sockets", len(seen), n)
	}
	if len(distinct) != n {
		t.Errorf("server saw %d distinct sources for %d client ports", len(distinct), n)
	}
	return seen
}

// (3) Ping from the client to the server through the NAT: the server sees
// the request from the NAT address, the client gets its reply.
func TestMasqueradePing(t *testing.T) {
	topo, ns := xnfLab(t)
	src, id, err := ping(t, topo, 0x4242)
	if err != nil {
		t.Fatal(err)
	}
	if src.String() != lab.DUTOutAddr || id != 0x4242 {
		t.Errorf("server saw the request from %v with id %#x, want %s and the id kept", src, id, lab.DUTOutAddr)
	}
	if st := ns.Counters(); st.SNATFlows != 1 || st.Translated < 2 {
		t.Errorf("stats %+v", st)
	}
}

// ping sends an echo request with identifier id from the client to the
// server on a raw socket, waits for the matching reply, and returns the
// source and identifier with which the request reached the server (a raw
// socket there sees a copy).
func ping(t *testing.T, topo *lab.Topology, id uint16) (netip.Addr, uint16, error) {
	t.Helper()
	var spy, cl int
	if err := topo.Sink.Do(func() (err error) {
		spy, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(spy)
	if err := topo.Gen.Do(func() (err error) {
		cl, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(cl)
	tv := unix.NsecToTimeval(int64(500 * time.Millisecond))
	unix.SetsockoptTimeval(spy, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	unix.SetsockoptTimeval(cl, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	msg := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'x', 'n', 'f', '!'}
	binary.BigEndian.PutUint16(msg[2:], packet.Checksum(msg))
	sink := [4]byte(netip.MustParseAddr(lab.SinkAddr).AsSlice())
	var seenSrc netip.Addr
	var seenID uint16
	for try := 0; try < 3; try++ {
		if err := unix.Sendto(cl, msg, 0, &unix.SockaddrInet4{Addr: sink}); err != nil {
			return seenSrc, 0, err
		}
		// The server side: the request as it arrived.
		buf := make([]byte, 1500)
		for end := time.Now().Add(time.Second); time.Now().Before(end) && !seenSrc.IsValid(); {
			n, _, err := unix.Recvfrom(spy, buf, 0)
			if err != nil || n < 28 {
				continue
			}
			if ihl := int(buf[0]&15) * 4; buf[ihl] == 8 && n >= ihl+8 {
				seenSrc = netip.AddrFrom4([4]byte(buf[12:16]))
				seenID = binary.BigEndian.Uint16(buf[ihl+4:])
			}
		}
		// The client: the matching reply.
		for end := time.Now().Add(time.Second); time.Now().Before(end); {
			n, _, err := unix.Recvfrom(cl, buf, 0)
			if err != nil || n < 28 {
				continue
			}
			ihl := int(buf[0]&15) * 4
			if buf[ihl] == 0 && binary.BigEndian.Uint16(buf[ihl+4:]) == id &&
				netip.AddrFrom4([4]byte(buf[12:16])).String() == lab.SinkAddr {
				return seenSrc, seenID, nil
			}
		}
	}
	return seenSrc, seenID, errors.New("no echo reply reached the client")
}

// (4) A DNAT rule lets the outside reach a server inside.
func TestPortForwardingReachesInsideServer(t *testing.T) {
	topo, ns := xnfLab(t, nat.Forward{Proto: packet.ProtoTCP, Addr: netip.MustParseAddr(lab.DUTOutAddr),
		PortMin: 8080, PortMax: 8080, To: netip.MustParseAddr(lab.GenAddr), ToPort: 8000})
	var ln net.Listener
	if err := topo.Gen.Do(func() (err error) { ln, err = net.Listen("tcp4", lab.GenAddr+":8000"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 5)
		io.ReadFull(c, b)
		c.Write([]byte("hello from inside"))
		peer <- c.RemoteAddr().String()
	}()
	var reply []byte
	var server string
	if err := topo.Sink.Do(func() error {
		c, err := net.DialTimeout("tcp4", lab.DUTOutAddr+":8080", 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		server = c.RemoteAddr().String()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		c.Write([]byte("hello"))
		reply, err = io.ReadAll(c)
		return err
	}); err != nil {
		t.Fatalf("outside client: %v", err)
	}
	p := <-peer
	if string(reply) != "hello from inside" || server != lab.DUTOutAddr+":8080" {
		t.Errorf("outside client talked to %s and got %q", server, reply)
	}
	if !strings.HasPrefix(p, lab.SinkAddr+":") {
		t.Errorf("inside server saw %s, want the outside client %s", p, lab.SinkAddr)
	}
	if st := ns.Counters(); st.DNATFlows != 1 {
		t.Errorf("stats %+v", st)
	}
}

// (5) ICMP errors about translated flows reach the client's socket:
// port unreachable from the server (ECONNREFUSED on a connected UDP
// socket), and time exceeded from the hop after xnf for a probe with TTL
// 2, reported on the socket's error queue (IP_RECVERR) with the hop as
// offender. A probe with TTL 1 dies in xnf's router, whose time exceeded
// reaches the client from the router's inside address.
func TestICMPErrorsReachTheClientSocket(t *testing.T) {
	topo, ns := xnfLab(t)
	if err := icmpErrorChecks(t, topo); err != nil {
		t.Fatal(err)
	}
	st := ns.Counters()
	if st.ICMPErrors < 2 || st.TTLExpiring < 1 {
		t.Errorf("stats %+v: want the port unreachable and the far time exceeded translated, the TTL 1 probe left to the router", st)
	}
}

func icmpErrorChecks(t *testing.T, topo *lab.Topology) error {
	t.Helper()
	// Port unreachable.
	err := topo.Gen.Do(func() error {
		c, err := net.Dial("udp4", lab.SinkAddr+":9999")
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 16)
		for try := 0; try < 3; try++ {
			c.Write([]byte("anyone?"))
			c.SetReadDeadline(time.Now().Add(time.Second))
			_, err = c.Read(buf)
			if errors.Is(err, syscall.ECONNREFUSED) {
				return nil
			}
		}
		return fmt.Errorf("closed port: read gave %v, want ECONNREFUSED", err)
	})
	if err != nil {
		return err
	}
	// Time exceeded past a hop, and at xnf itself.
	for _, tc := range []struct {
		ttl      int
		offender string
	}{{2, lab.SinkAddr}, {1, lab.DUTInAddr}} {
		var from netip.Addr
		var typ uint8
		err := topo.Gen.Do(func() error {
			var err error
			from, typ, err = ttlProbe(farAddr+":33434", tc.ttl)
			return err
		})
		if err != nil {
			return fmt.Errorf("TTL %d probe: %w", tc.ttl, err)
		}
		if typ != 11 || from.String() != tc.offender {
			return fmt.Errorf("TTL %d probe: ICMP type %d from %v, want time exceeded (11) from %s", tc.ttl, typ, from, tc.offender)
		}
	}
	return nil
}

// ttlProbe sends a UDP datagram with the given TTL on a connected socket
// with IP_RECVERR and returns the ICMP error the kernel queued on it: the
// offender's address and the ICMP type.
func ttlProbe(dst string, ttl int) (netip.Addr, uint8, error) {
	c, err := net.Dial("udp4", dst)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	defer c.Close()
	raw, _ := c.(*net.UDPConn).SyscallConn()
	var serr error
	raw.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl); serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
		}
	})
	if serr != nil {
		return netip.Addr{}, 0, serr
	}
	for try := 0; try < 3; try++ {
		c.Write([]byte("probe"))
		for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			var from netip.Addr
			var typ uint8
			var found bool
			raw.Control(func(fd uintptr) {
				buf, oob := make([]byte, 512), make([]byte, 512)
				_, oobn, _, _, err := unix.Recvmsg(int(fd), buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
				if err != nil {
					return
				}
				msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
				if err != nil {
					return
				}
				for _, m := range msgs {
					// struct sock_extended_err (16 bytes), then the
					// offender's sockaddr_in.
					if m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR && len(m.Data) >= 16+8 &&
						m.Data[4] == unix.SO_EE_ORIGIN_ICMP {
						typ = m.Data[5]
						from = netip.AddrFrom4([4]byte(m.Data[16+4 : 16+8]))
						found = true
					}
				}
			})
			if found {
				return from, typ, nil
			}
		}
	}
	return netip.Addr{}, 0, errors.New("no ICMP error on the socket's error queue")
}
