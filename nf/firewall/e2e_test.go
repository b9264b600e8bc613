package firewall_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xnfdev/xnf/internal/dut"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/nf/router"
	"github.com/xnfdev/xnf/pipeline"
)

func mac(s string) [6]byte { m, _ := net.ParseMAC(s); return [6]byte(m) }

// fwLab runs firewall -> router in xnf between gen (client side, port 0)
// and sink (server side, port 1).
func fwLab(t *testing.T, rules ...string) (*lab.Topology, *firewall.Stage) {
	topo := lab.TopologyForTest(t, "fw", lab.TopologyOptions{})
	if err := topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC); err != nil {
		t.Fatal(err)
	}
	if err := topo.Sink.AddNeigh("s0", lab.DUTOutAddr, lab.DUTOutMAC); err != nil {
		t.Fatal(err)
	}
	rs, err := firewall.ParseRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	fw, err := firewall.New(1, rs, firewall.Drop)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := conntrack.New(conntrack.Config{MaxFlows: 4096})
	if err != nil {
		t.Fatal(err)
	}
	fs := firewall.NewStage(fw, ct, 0)
	r, err := router.NewRouter(router.Config{
		Interfaces: []router.Interface{
			{Port: 0, MAC: mac(lab.DUTInMAC), Addrs: []netip.Prefix{netip.MustParsePrefix(lab.DUTInAddr + "/24")}},
			{Port: 1, MAC: mac(lab.DUTOutMAC), Addrs: []netip.Prefix{netip.MustParsePrefix(lab.DUTOutAddr + "/24")}},
		},
		Neighbors: []router.Neighbor{
			{Port: 0, Addr: netip.MustParseAddr(lab.GenAddr), MAC: mac(lab.GenMAC)},
			{Port: 1, Addr: netip.MustParseAddr(lab.SinkAddr), MAC: mac(lab.SinkMAC)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	dut.Start(t, topo, []pipeline.Stage{fs, r}, dut.Options{})
	return topo, fs
}

func listenTCP(t *testing.T, ns *lab.NS, port int) net.Listener {
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", lab.SinkAddr, port)); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestStatefulFirewallBetweenRealTCPPeers(t *testing.T) {
	topo, fs := fwLab(t,
		"accept state established,related",
		"accept in 0 proto tcp dport 8080 state new",
	)
	ln := listenTCP(t, topo.Sink, 8080)
	listenTCP(t, topo.Sink, 8081)
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(io.LimitReader(c, 5))
		c.Write([]byte("pong"))
		got <- string(b)
	}()
	var reply []byte
	if err := topo.Gen.Do(func() error {
		c, err := net.DialTimeout("tcp4", lab.SinkAddr+":8080", 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		c.Write([]byte("ping!"))
		reply, err = io.ReadAll(c)
		return err
	}); err != nil {
		t.Fatalf("allowed connection: %v", err)
	}
	if s := <-got; s != "ping!" || string(reply) != "pong" {
		t.Fatalf("exchange: server got %q, client got %q", s, reply)
	}
	before := fs.StageMetrics()
	// Another port: the SYN is dropped, the connection times out.
	if err := topo.Gen.Do(func() error {
		c, err := net.DialTimeout("tcp4", lab.SinkAddr+":8081", 1500*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	}); err == nil {
		t.Fatal("connection to 8081 went through the firewall")
	}
	// Unsolicited UDP from the server side is dropped.
	var client *net.UDPConn
	topo.Gen.Do(func() (err error) {
		client, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(lab.GenAddr), Port: 6000})
		return err
	})
	defer client.Close()
	const unsolicited = 10
	topo.Sink.Do(func() error {
		c, err := net.Dial("udp4", lab.GenAddr+":6000")
		if err != nil {
			return err
		}
		defer c.Close()
		for i := 0; i < unsolicited; i++ {
			c.Write([]byte("unasked"))
		}
		return nil
	})
	client.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, _, err := client.ReadFromUDP(make([]byte, 64)); err == nil {
		t.Error("unsolicited UDP from the server side reached the client")
	}
	after := fs.StageMetrics()
	// The SYNs to 8081 (1 and its retransmissions) and the 10 datagrams
	// are the only drops, all by the default policy.
	drops := after["dropped"] - before["dropped"]
	syns := after["default_hits"] - before["default_hits"] - unsolicited
	if drops != after["default_hits"]-before["default_hits"] || syns < 1 || syns > 3 {
		t.Errorf("dropped %d, default hits %d: want the 8081 SYNs (1-3) + %d datagrams", drops, after["default_hits"]-before["default_hits"], unsolicited)
	}
	if after["rule_1_hits"] != 1 {
		t.Errorf("rule 1 (new TCP to 8080) hit %d times, want 1", after["rule_1_hits"])
	}
}

func TestReloadUnderTrafficLosesNothingOnAllowedFlows(t *testing.T) {
	topo, fs := fwLab(t, "accept in 0 proto udp dport 7000")
	srv, err := topo.Sink.ListenUDP(lab.SinkAddr, 7000)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv2, err := topo.Sink.ListenUDP(lab.SinkAddr, 7001)
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	var received atomic.Int64
	go func() {
		buf := make([]byte, 64)
		for {
			srv.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, _, err := srv.ReadFromUDP(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	const n = 20000
	sendDone := make(chan error, 1)
	go func() {
		sendDone <- topo.Gen.Do(func() error {
			c, err := net.Dial("udp4", lab.SinkAddr+":7000")
			if err != nil {
				return err
			}
			defer c.Close()
			for i := 0; i < n; i++ {
				c.Write([]byte("stream"))
				if i%20 == 19 {
					// ~20k datagrams a second, well within what the chain
					// forwards, so only a reload could lose one.
					time.Sleep(time.Millisecond)
				}
			}
			return nil
		})
	}()
	// Reload again and again while the stream runs: rule sets that all
	// allow 7000, the later ones 7001 too.
	sets := [][]string{
		{"accept in 0 proto udp dport 7000"},
		{"drop proto tcp", "accept in 0 proto udp dport 7000-7001"},
		{"accept in 0 proto udp dport 7001", "accept in 0 proto udp dport 7000"},
	}
	reloads := 0
	for end := time.Now().Add(time.Second); time.Now().Before(end); reloads++ {
		rs, _ := firewall.ParseRules(sets[reloads%len(sets)])
		if _, err := fs.Firewall().Replace(rs, firewall.Drop); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := <-sendDone; err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(3 * time.Second); received.Load() < n && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := received.Load(); got != n {
		t.Errorf("allowed stream: %d of %d datagrams arrived across %d reloads", got, n, reloads)
	}
	// The verdict for new flows follows the rules in force: 7001 is allowed now.
	rs, _ := firewall.ParseRules(sets[2])
	fs.Firewall().Replace(rs, firewall.Drop)
	topo.Gen.Do(func() error {
		c, err := net.Dial("udp4", lab.SinkAddr+":7001")
		if err != nil {
			return err
		}
		defer c.Close()
		c.Write([]byte("new flow"))
		return nil
	})
	srv2.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, _, err := srv2.ReadFromUDP(make([]byte, 64)); err != nil {
		t.Errorf("a new flow to 7001 after the reload allowed it: %v", err)
	}
	t.Logf("%d reloads during %d datagrams, none lost", reloads, n)
}

// Rejected traffic is answered: a kernel TCP client's connect fails at
// once with "connection refused" (a RST), and a connected UDP socket
// gets ECONNREFUSED from the ICMP port unreachable; the kernel accepts
// both answers, checksums included. The counters add up.
func TestRejectAnswersRealTCPAndUDPPeers(t *testing.T) {
	topo, fs := fwLab(t,
		"accept state established,related",
		"reject in 0 proto tcp dport 8082",
		"reject in 0 proto udp dport 9000",
	)
	listenTCP(t, topo.Sink, 8082) // a listener the SYN must never reach
	start := time.Now()
	err := topo.Gen.Do(func() error {
		c, err := net.DialTimeout("tcp4", lab.SinkAddr+":8082", 3*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect to a rejected port: %v, want connection refused", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refused after %v: the RST should come at once", d)
	}
	err = topo.Gen.Do(func() error {
		c, err := net.Dial("udp4", lab.SinkAddr+":9000")
		if err != nil {
			return err
		}
		defer c.Close()
		c.Write([]byte("anyone?"))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 64))
		return err
	})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("UDP to a rejected port: %v, want ECONNREFUSED from the port unreachable", err)
	}
	m := fs.StageMetrics()
	if m["reject_sent"] != 2 || m["rejected"] != m["reject_sent"]+m["reject_limited"]+m["reject_unanswerable"] ||
		m["rule_1_hits"] != 1 || m["rule_2_hits"] != 1 {
		t.Errorf("metrics %v: want one SYN and one datagram rejected and answered", m)
	}
}
