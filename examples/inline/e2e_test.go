package main

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/xnftest"
)

func TestMain(m *testing.M) { xnftest.Main(m, main) }

const metricsAddr = "127.0.0.1:19466"

// TestChainBuiltInGoCarriesRealTraffic runs this binary (the chain built in
// Go, no YAML) in the lab's DUT namespace and sends kernel traffic through
// it: a TCP connection from gen to an echo server on sink (firewall
// conntrack both ways, the router resolving both neighbors), UDP datagrams
// of which those with a low TTL die in the custom stage, and a connection
// the sink tries to open towards gen, which the firewall refuses.
func TestChainBuiltInGoCarriesRealTraffic(t *testing.T) {
	topo := lab.TopologyForTest(t, "inl", lab.TopologyOptions{})
	if err := topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC); err != nil {
		t.Fatal(err)
	}
	var echo, back net.Listener
	if err := topo.Sink.Do(func() (err error) {
		echo, err = net.Listen("tcp4", lab.SinkAddr+":7000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	if err := topo.Gen.Do(func() (err error) {
		back, err = net.Listen("tcp4", lab.GenAddr+":7001")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	udp, err := topo.Sink.ListenUDP(lab.SinkAddr, 9)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()

	x := xnftest.Start(t, topo.DUT, "-metrics", metricsAddr)
	x.WaitFor(t, "metrics: http://"+metricsAddr, 10*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("metrics:\n%s\noutput:\n%s", xnftest.Metrics(t, topo.DUT, metricsAddr), x.Output())
		}
	})

	// TCP, gen -> sink and back: the first SYN and SYN-ACK may be spent on
	// the router's neighbor resolution, so the dial may take a retransmit.
	const msg = "through firewall, ttlfloor and router"
	if err := topo.Gen.Do(func() error {
		c, err := net.DialTimeout("tcp4", lab.SinkAddr+":7000", 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			return err
		}
		if string(got) != msg {
			t.Errorf("echo returned %q, want %q", got, msg)
		}
		return nil
	}); err != nil {
		t.Fatalf("TCP from gen to sink through the chain: %v", err)
	}

	// UDP: 20 datagrams at TTL 64 arrive; 10 at TTL 2 do not.
	const ok, low = 20, 10
	if err := topo.Gen.Do(func() error {
		c, err := net.Dial("udp4", lab.SinkAddr+":9")
		if err != nil {
			return err
		}
		defer c.Close()
		send := func(ttl, n int, tag string) error {
			raw, err := c.(*net.UDPConn).SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl) })
			if serr != nil {
				return serr
			}
			for range n {
				io.WriteString(c, tag)
				time.Sleep(200 * time.Microsecond)
			}
			return nil
		}
		if err := send(2, low, "low"); err != nil {
			return err
		}
		return send(64, ok, "ok")
	}); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	buf := make([]byte, 64)
	for {
		udp.SetReadDeadline(time.Now().Add(time.Second))
		n, err := udp.Read(buf)
		if err != nil {
			break
		}
		got[string(buf[:n])]++
	}
	if got["ok"] != ok || got["low"] != 0 {
		t.Errorf("the sink received %v, want %d ok and no low", got, ok)
	}
	if v := xnftest.Settle(t, topo.DUT, metricsAddr, xnftest.StageEvent("ttlfloor", "low_ttl"), low); v != low {
		t.Errorf("ttlfloor counted %d low-TTL packets, sent %d", v, low)
	}

	// The sink may not open connections into the inside.
	if err := topo.Sink.Do(func() error {
		c, err := net.DialTimeout("tcp4", lab.GenAddr+":7001", time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err == nil {
		t.Error("the sink opened a connection to gen through the firewall")
	}

	x.Stop(t)
	if out := x.Output(); !strings.Contains(out, "ttlfloor") || !strings.Contains(out, "firewall") {
		t.Errorf("no final stage counters printed:\n%s", out)
	}
	for _, ifname := range []string{"in0", "out0"} {
		l, err := topo.DUT.Link(ifname)
		if err != nil {
			t.Fatal(err)
		}
		if a := l.Attrs().Xdp; a != nil && a.Attached {
			t.Errorf("%s still has an XDP program after SIGTERM", ifname)
		}
	}
}
