package service

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// The scenario of issue 15: two 2-queue veth pairs, a stateful chain
// (firewall accepting established/related and new flows from inside,
// masquerade, router) on two workers pinned to CPUs 0 and 1, a client
// pinned to one CPU and the server to the other. Before hand-off, veth's
// queue choice put a flow's SYN on one worker and its SYN-ACK on the
// other, and half the connections never opened.
const handoffChain = `ports:
  - {name: in, interface: in0, queues: [0, 1]}
  - {name: out, interface: out0, queues: [0, 1]}
workers: {cpus: [0, 1], realtime: 0, nice: 0}
metrics: {listen: "off"}
chain:
  - type: firewall
    default: drop
    rules:
      - accept state established,related
      - accept in in state new
  - type: nat
    inside: [in]
    outside: [out]
    snat: {to: [` + lab.DUTOutAddr + `], except: [` + lab.GenNet + `]}
  - type: router
    interfaces:
      - {port: in, addrs: [` + lab.DUTInAddr + `/24]}
      - {port: out, addrs: [` + lab.DUTOutAddr + `/24]}
    neighbors:
      - {port: in, addr: ` + lab.GenAddr + `, mac: "` + lab.GenMAC + `"}
      - {port: out, addr: ` + lab.SinkAddr + `, mac: "` + lab.SinkMAC + `"}
`

const handoffSize = 4 << 20

func TestStatefulChainOnTwoWorkersHandsFlowsToTheirOwner(t *testing.T) {
	topo := lab.TopologyForTest(t, "hoff", lab.TopologyOptions{Queues: 2})
	for _, err := range []error{
		topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC),
		topo.Sink.AddNeigh("s0", lab.DUTOutAddr, lab.DUTOutMAC),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	f, err := config.Parse("handoff.yaml", []byte(handoffChain))
	if err != nil {
		t.Fatal(err)
	}
	var s *Service
	if err := topo.DUT.Do(func() (err error) {
		s, err = Start(f, slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()
	if len(s.Workers) != 2 || s.Spec.Steering == nil || s.handoff == nil {
		t.Fatalf("%d workers, steering %v: want 2 workers joined by a hand-off", len(s.Workers), s.Spec.Steering)
	}

	for _, cpus := range [][2]int{{0, 1}, {1, 0}} {
		client, server := cpus[0], cpus[1]
		t.Run(fmt.Sprintf("client on CPU %d, server on CPU %d", client, server), func(t *testing.T) {
			stopServer := startPeer(t, topo.Sink, server, "server")
			defer stopServer()
			before := handoffCounters(s)
			out := runPeer(t, topo.Gen, client, "tcp", strconv.Itoa(handoffSize))
			if want := fmt.Sprintf("ok %d", handoffSize); out != want {
				t.Errorf("TCP: %q, want %q", out, want)
			}
			if out := runPeer(t, topo.Gen, client, "udp", "100"); out != "ok 100" {
				t.Errorf("UDP from 100 ports: %q", out)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if out, err := peerCmd(ctx, topo.Gen, client, "ping", "-c", "3", "-i", "0.2", "-W", "2", lab.SinkAddr).CombinedOutput(); err != nil {
				t.Errorf("ping: %v\n%s", err, out)
			}
			after := handoffCounters(s)
			t.Logf("hand-off: %+v", after)
			if after.HandedOff <= before.HandedOff {
				t.Errorf("no packet was handed off (%+v before, %+v after): the test did not exercise the hand-off", before, after)
			}
		})
	}

	t.Run("ICMP error about a NAT flow, received by the other worker", func(t *testing.T) {
		refusedOnOther, tries := 0, 0
		for port := 9900; port < 9940 && refusedOnOther < 2; port++ {
			tries++
			var rx [2]uint64
			for i, w := range s.Workers {
				rx[i] = w.PortCounters()[1].RX
			}
			err := udpToClosedPort(t, topo, port)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("UDP to the server's closed port %d: %v, want ECONNREFUSED (the port unreachable translated back to the client)", port, err)
			}
			// Which worker received the error on the outside port, and
			// which owns the flow (keyed by the server's endpoint).
			got := -1
			for i, w := range s.Workers {
				if w.PortCounters()[1].RX == rx[i]+1 {
					got = i
				}
			}
			p := packet.Packet{}
			p.Reset(pipelinetest.UDP4(fmt.Sprintf("%s:%d", lab.SinkAddr, port), lab.DUTOutAddr+":40000", "x"), 0, 1)
			p.Parse()
			p.InPort = 1
			owner := s.Spec.Steering.(interface {
				Owner(*packet.Packet, uint8) uint8
			}).Owner(&p, 255)
			if got >= 0 && got != int(owner) {
				refusedOnOther++
			}
		}
		t.Logf("%d of %d port unreachables landed on the worker that does not own their flow", refusedOnOther, tries)
		if refusedOnOther == 0 {
			t.Errorf("no port unreachable landed on the worker that does not own its flow in 40 tries: the hand-off of ICMP errors was not exercised")
		}
	})

	stopped = true
	if err := s.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	var rx, tx, dropped, policy, handed, received, noFrame uint64
	for _, w := range s.Workers {
		for _, pc := range w.PortCounters() {
			rx += pc.RX
			tx += pc.TX
			dropped += pc.DroppedTotal()
			policy += pc.Dropped[packet.DropPolicy]
		}
		c := w.Counters()
		handed += c.HandedOff
		received += c.ReceivedHandoff
		noFrame += c.HandoffNoFrame
		t.Logf("worker %d: %+v; ports %+v", w.Index, c, w.PortCounters())
	}
	if policy != 0 {
		t.Errorf("%d packets dropped by policy: established traffic must pass", policy)
	}
	if rx+received != tx+dropped+handed {
		t.Errorf("rx %d + received %d != tx %d + dropped %d + handed off %d", rx, received, tx, dropped, handed)
	}
	if handed < received+noFrame {
		t.Errorf("handed off %d < received %d + no frame %d", handed, received, noFrame)
	}
}

// handoffCounters sums the hand-off counters of the service's workers.
func handoffCounters(s *Service) (c pipeline.WorkerCounters) {
	for _, w := range s.Workers {
		wc := w.Counters()
		c.HandedOff += wc.HandedOff
		c.ReceivedHandoff += wc.ReceivedHandoff
		c.HandoffFull += wc.HandoffFull
		c.HandoffNoFrame += wc.HandoffNoFrame
	}
	return c
}

// udpToClosedPort sends a datagram from a connected client socket to a
// port nothing listens on at the server, and returns what reading the
// answer gave (the server's port unreachable, translated by the NAT, is
// ECONNREFUSED); it tries three times when nothing comes.
func udpToClosedPort(t *testing.T, topo *lab.Topology, port int) error {
	t.Helper()
	var c *net.UDPConn
	if err := topo.Gen.Do(func() (err error) {
		c, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(lab.GenAddr)}, &net.UDPAddr{IP: net.ParseIP(lab.SinkAddr), Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var err error
	for try := 0; try < 3; try++ {
		c.Write([]byte("anyone?"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err = c.Read(make([]byte, 64))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return err
		}
	}
	return err
}

// peerCmd runs name in namespace ns pinned to cpu, killed when ctx ends.
func peerCmd(ctx context.Context, ns *lab.NS, cpu int, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, "taskset", "-c", strconv.Itoa(cpu), name}, args...)...)
}

// selfCmd runs this test binary as a peer (TestHandoffPeerProcess) in ns,
// pinned to cpu.
func selfCmd(ctx context.Context, ns *lab.NS, cpu int, role string, args ...string) *exec.Cmd {
	cmd := peerCmd(ctx, ns, cpu, os.Args[0], "-test.run=^TestHandoffPeerProcess$")
	cmd.Env = append(os.Environ(), "XNF_HANDOFF_PEER="+strings.Join(append([]string{role}, args...), " "))
	return cmd
}

// runPeer runs a client role to its end and returns its last line.
func runPeer(t *testing.T, ns *lab.NS, cpu int, role string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := selfCmd(ctx, ns, cpu, role, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("%s client on CPU %d: %v\n%s%s", role, cpu, err, out, stderr.Bytes())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// startPeer starts the server role and waits until it listens; the
// returned function ends it (closing its stdin) and waits for it.
func startPeer(t *testing.T, ns *lab.NS, cpu int, role string) func() {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := selfCmd(ctx, ns, cpu, role)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cancel() // kills it
			<-done
		}
		cancel()
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			stop()
			t.Fatalf("the %s on CPU %d ended before listening", role, cpu)
		}
	case <-time.After(10 * time.Second):
		stop()
		t.Fatalf("the %s on CPU %d did not listen within 10s", role, cpu)
	}
	return stop
}

// TestHandoffPeerProcess is not a test: it is the client or server that
// TestStatefulChainOnTwoWorkersHandsFlowsToTheirOwner runs as a process of
// its own, pinned to a CPU in a lab namespace (XNF_HANDOFF_PEER says
// which). It prints its result on stdout.
func TestHandoffPeerProcess(t *testing.T) {
	role := strings.Fields(os.Getenv("XNF_HANDOFF_PEER"))
	if len(role) == 0 {
		return
	}
	var err error
	switch role[0] {
	case "server":
		err = peerServer()
	case "tcp":
		n, _ := strconv.Atoi(role[1])
		err = peerTCP(n)
	case "udp":
		n, _ := strconv.Atoi(role[1])
		err = peerUDP(n)
	default:
		err = fmt.Errorf("unknown role %q", role[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// peerServer counts the bytes of each TCP connection on :9000 and sends
// the count back, and answers each UDP datagram on :9001 with it and its
// source, until stdin closes.
func peerServer() error {
	ln, err := net.Listen("tcp4", lab.SinkAddr+":9000")
	if err != nil {
		return err
	}
	defer ln.Close()
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(lab.SinkAddr), Port: 9001})
	if err != nil {
		return err
	}
	defer u.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "%d", n)
			}()
		}
	}()
	go func() {
		buf := make([]byte, 256)
		for {
			k, from, err := u.ReadFromUDP(buf)
			if err != nil {
				return
			}
			u.WriteToUDP(fmt.Appendf(nil, "%s|%s", buf[:k], from), from)
		}
	}()
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// peerTCP sends n bytes to the server and prints "ok COUNT" with the
// count the server sent back.
func peerTCP(n int) error {
	c, err := net.DialTimeout("tcp4", lab.SinkAddr+":9000", 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	chunk := bytes.Repeat([]byte("xnf-hoff"), 8192)
	for sent := 0; sent < n; sent += len(chunk) {
		if _, err := c.Write(chunk[:min(len(chunk), n-sent)]); err != nil {
			return fmt.Errorf("after %d bytes: %w", sent, err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	ack, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	fmt.Printf("ok %s\n", ack)
	return nil
}

// peerUDP sends a request from each of n sockets (distinct ports, kept
// open) and prints "ok N" with the number answered, each answer naming
// the NAT address as the source the server saw. It gives up after 10
// sockets without an answer.
func peerUDP(n int) error {
	answered := 0
	for i := range n {
		if i-answered >= 10 {
			break
		}
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(lab.GenAddr)})
		if err != nil {
			return err
		}
		defer c.Close()
		req := fmt.Sprintf("req-%d", i)
		for try := 0; try < 3; try++ {
			c.WriteToUDP([]byte(req), &net.UDPAddr{IP: net.ParseIP(lab.SinkAddr), Port: 9001})
			c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			buf := make([]byte, 256)
			k, _, err := c.ReadFromUDP(buf)
			if err != nil {
				continue
			}
			got, from, _ := strings.Cut(string(buf[:k]), "|")
			if got != req || !strings.HasPrefix(from, lab.DUTOutAddr+":") {
				return fmt.Errorf("socket %d: answer %q", i, buf[:k])
			}
			answered++
			break
		}
	}
	fmt.Printf("ok %d\n", answered)
	return nil
}
