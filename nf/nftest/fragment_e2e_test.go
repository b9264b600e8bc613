package nftest

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/service"
)

// fragChain is issue 16's chain (a stateful firewall: established and
// related traffic, new flows from in, nothing else; a router with IPv4
// and IPv6 on both ports), with a masquerading NAT between them or not.
const fragChain = `ports:
  - {name: in, interface: in0, mode: %[1]s, queues: %[2]s}
  - {name: out, interface: out0, mode: %[1]s, queues: %[2]s}
workers: {realtime: 0%[3]s}
metrics: {listen: "off"}
chain:
  - type: firewall
    default: drop
    rules:
      - accept state established,related
      - accept in in state new
%[4]s  - type: router
    interfaces:
      - {port: in, addrs: [` + lab.DUTInAddr + `/24, "` + lab.DUTInAddr6 + `/64"]}
      - {port: out, addrs: [` + lab.DUTOutAddr + `/24, "` + lab.DUTOutAddr6 + `/64"]}
`

const fragNAT = `  - type: nat
    inside: [in]
    outside: [out]
    snat: {to: [` + lab.DUTOutAddr + `], except: [` + lab.GenNet + `]}
`

// fragLab runs fragChain in the DUT namespace of a dual-stack lab (MTU
// 1500), on one worker or on two (queues 0 and 1, workers on CPUs 0 and
// 1, flows handed to their owner).
func fragLab(t *testing.T, mode afxdp.AttachMode, withNAT bool, workers int) (*lab.Topology, *service.Service) {
	t.Helper()
	nat, queues, cpus := "", "[0]", ""
	if withNAT {
		nat = fragNAT
	}
	if workers == 2 {
		queues, cpus = "[0, 1]", ", cpus: [0, 1], nice: 0"
	}
	topo := lab.TopologyForTest(t, "frag", lab.TopologyOptions{IPv6: true, Queues: workers})
	f, err := config.Parse("frag.yaml", []byte(fmt.Sprintf(fragChain, mode, queues, cpus, nat)))
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
	return topo, s
}

// fragMetrics sums the firewalls' fragment counters over the workers.
func fragMetrics(s *service.Service) map[string]uint64 {
	sum := map[string]uint64{}
	for _, w := range s.Workers {
		for k, v := range config.Unwrap(w.Stages[0]).(*firewall.Stage).StageMetrics() {
			if strings.HasPrefix(k, "fragment_") {
				sum[k] += v
			}
		}
	}
	return sum
}

// onCPU runs fn in ns on a thread pinned to cpu (-1: unpinned), so that
// veth puts what fn sends on that CPU's queue.
func onCPU(ns *lab.NS, cpu int, fn func() error) error {
	return ns.Do(func() error {
		if cpu < 0 {
			return fn()
		}
		var old, set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err != nil {
			return err
		}
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return err
		}
		defer unix.SchedSetaffinity(0, &old)
		return fn()
	})
}

// bigDatagrams sends n datagrams of size bytes from a kernel UDP socket in
// gen, on cpu, to an echo server in the sink, one at a time: over the
// 1500-byte MTU the kernels fragment them both ways. Every datagram must
// reach the server whole, from want (the NAT's address, or the client's),
// and come back whole. It returns how many did.
func bigDatagrams(t *testing.T, topo *lab.Topology, server, want string, port, n, size, cpu int) int {
	t.Helper()
	srv, err := topo.Sink.ListenUDP(server, port)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 65536)
		for {
			k, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if from.IP.String() != want {
				t.Errorf("the server got a datagram from %v, want %s", from, want)
			}
			srv.WriteToUDP(buf[:k], from)
		}
	}()
	ok := 0
	err = onCPU(topo.Gen, cpu, func() error {
		c, err := net.DialUDP(udpFamily(server), nil, &net.UDPAddr{IP: net.ParseIP(server), Port: port})
		if err != nil {
			return err
		}
		defer c.Close()
		msg, back := make([]byte, size), make([]byte, 65536)
		for i := range n {
			for j := range msg {
				msg[j] = byte(rand.Uint32())
			}
			if _, err := c.Write(msg); err != nil {
				return fmt.Errorf("datagram %d: %w", i, err)
			}
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			k, err := c.Read(back)
			if err != nil {
				t.Errorf("datagram %d of %d bytes: no echo: %v", i, size, err)
				continue
			}
			if !bytes.Equal(back[:k], msg) {
				t.Errorf("datagram %d: %d bytes came back, not the %d sent", i, k, size)
				continue
			}
			ok++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func udpFamily(addr string) string {
	if strings.Contains(addr, ":") {
		return "udp6"
	}
	return "udp4"
}

// warmUp exchanges small datagrams until they pass both ways, so that
// the kernels and the router have resolved one another (the router drops
// what it must first resolve a neighbor for).
func warmUp(t *testing.T, topo *lab.Topology, server string) {
	t.Helper()
	srv, err := topo.Sink.ListenUDP(server, 9999)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			k, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			srv.WriteToUDP(buf[:k], from)
		}
	}()
	if err := topo.Gen.Do(func() error {
		c, err := net.DialUDP(udpFamily(server), nil, &net.UDPAddr{IP: net.ParseIP(server), Port: 9999})
		if err != nil {
			return err
		}
		defer c.Close()
		for try := 0; try < 20; try++ {
			c.Write([]byte("hello"))
			c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
			if _, err := c.Read(make([]byte, 64)); err == nil {
				return nil
			}
		}
		return fmt.Errorf("no answer from %s", server)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestFragmentedUDPFromKernelSocketsArrivesWhole is issue 16's fragment
// test: a real kernel socket sends 8000-byte UDP datagrams over the
// 1500-byte MTU, the kernel cuts each into 6 fragments, and every one
// reaches the server's socket whole through firewall -> router and
// firewall -> NAT -> router, IPv4 and IPv6, native and generic mode; the
// server's answers, fragmented by its kernel, come back whole too. The
// firewall's counters show the later fragments followed their first and
// none was dropped.
func TestFragmentedUDPFromKernelSocketsArrivesWhole(t *testing.T) {
	const n, size = 20, 8000
	for _, mode := range []afxdp.AttachMode{afxdp.ModeNative, afxdp.ModeGeneric} {
		for _, withNAT := range []bool{false, true} {
			name := mode.String() + "/firewall-router"
			if withNAT {
				name = mode.String() + "/firewall-nat-router"
			}
			t.Run(name, func(t *testing.T) {
				topo, s := fragLab(t, mode, withNAT, 1)
				client4 := lab.GenAddr
				if withNAT {
					client4 = lab.DUTOutAddr
				}
				for _, fam := range []struct{ server, client string }{{lab.SinkAddr, client4}, {lab.SinkAddr6, lab.GenAddr6}} {
					warmUp(t, topo, fam.server)
					before := fragMetrics(s)
					if got := bigDatagrams(t, topo, fam.server, fam.client, 9000, n, size, -1); got != n {
						t.Errorf("%s: %d of %d datagrams of %d bytes there and back", fam.server, got, n, size)
					}
					m := fragMetrics(s)
					d := func(k string) uint64 { return m[k] - before[k] }
					t.Logf("%s: %v", fam.server, m)
					// 8000 bytes of UDP in 1480 (IPv4) or 1448 (IPv6) bytes
					// a fragment: 6 fragments, 5 of them later ones; both
					// ways.
					if d("fragment_tracked") != 2*n || d("fragment_followed") != 2*n*5 || d("fragment_complete") != 2*n {
						t.Errorf("%s: tracked %d, followed %d, complete %d; want %d, %d, %d",
							fam.server, d("fragment_tracked"), d("fragment_followed"), d("fragment_complete"), 2*n, 2*n*5, 2*n)
					}
					if d("fragment_out_of_order")+d("fragment_overlap")+d("fragment_holes")+d("fragment_incomplete_chain") != 0 {
						t.Errorf("%s: fragments dropped: %v", fam.server, m)
					}
				}
			})
		}
	}
}

// TestFragmentedUDPOnTwoWorkers is the same through firewall -> NAT ->
// router on two workers. A client socket's datagrams land on the queue
// (so the worker) veth picks for it, and all of them go to the worker
// that owns the flow (with a NAT, the server's endpoint decides): first
// fragments by their flow and the later ones after them, so that
// worker's tracker sees every fragment. New sockets, from each CPU in
// turn, until one's datagrams were received by the other worker and
// handed off.
func TestFragmentedUDPOnTwoWorkers(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs for 2 workers")
	}
	const n, size = 5, 8000
	topo, s := fragLab(t, afxdp.ModeNative, true, 2)
	for _, fam := range []struct{ server, client string }{{lab.SinkAddr, lab.DUTOutAddr}, {lab.SinkAddr6, lab.GenAddr6}} {
		warmUp(t, topo, fam.server)
		handed := false
		for round := 0; round < 10 && !handed; round++ {
			before, m0 := handedOff(s), fragMetrics(s)
			if got := bigDatagrams(t, topo, fam.server, fam.client, 9000+round, n, size, round%2); got != n {
				t.Errorf("%s, socket %d: %d of %d datagrams of %d bytes there and back", fam.server, round, got, n, size)
			}
			m := fragMetrics(s)
			handed = handedOff(s) > before
			t.Logf("%s, socket %d on CPU %d: handed off %d packets; %v", fam.server, round, round%2, handedOff(s)-before, m)
			if d := m["fragment_out_of_order"] - m0["fragment_out_of_order"]; d != 0 {
				t.Errorf("%s, socket %d: %d later fragments met a worker that had not seen their first", fam.server, round, d)
			}
		}
		if !handed {
			t.Errorf("%s: no socket's datagrams were handed off in 10: the test did not put fragments on the worker that does not own their flow", fam.server)
		}
	}
}

func handedOff(s *service.Service) (n uint64) {
	for _, w := range s.Workers {
		n += w.Counters().HandedOff
	}
	return n
}
