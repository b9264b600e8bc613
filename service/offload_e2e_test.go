package service

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/port/xdp"
)

// udpCounter counts the datagrams a sink socket receives, and the
// sequence numbers ("seq N") they carry.
type udpCounter struct {
	n    atomic.Uint64
	mu   sync.Mutex
	seqs map[int]bool
	done chan struct{}
}

func countUDP(t *testing.T, ns *lab.NS, port int) *udpCounter {
	t.Helper()
	c, err := ns.ListenUDP(lab.SinkAddr, port)
	if err != nil {
		t.Fatal(err)
	}
	u := &udpCounter{seqs: map[int]bool{}, done: make(chan struct{})}
	go func() {
		defer close(u.done)
		buf := make([]byte, 2048)
		for {
			k, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			u.n.Add(1)
			var seq int
			if _, err := fmt.Sscanf(string(buf[:k]), "seq %d", &seq); err == nil {
				u.mu.Lock()
				u.seqs[seq] = true
				u.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-u.done })
	return u
}

// after returns the sequence numbers above first that arrived (first
// itself may have been on its way as it was counted).
func (u *udpCounter) after(first int) []int {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []int
	for seq := range u.seqs {
		if seq > first {
			out = append(out, seq)
		}
	}
	return out
}

// sendSeq sends n datagrams "seq i" from ns to dst, paced to about rate a
// second, and counts in sent those written.
func sendSeq(ns *lab.NS, dst string, n int, rate float64, sent *atomic.Int64) error {
	return ns.Do(func() error {
		c, err := net.Dial("udp4", dst)
		if err != nil {
			return err
		}
		defer c.Close()
		start := time.Now()
		for i := range n {
			fmt.Fprintf(c, "seq %d", i)
			sent.Store(int64(i + 1))
			if i%64 == 63 {
				if ahead := time.Duration(float64(i+1)/rate*float64(time.Second)) - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
			}
		}
		return nil
	})
}

func (u *udpCounter) missing(n int) []int {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []int
	for i := range n {
		if !u.seqs[i] {
			out = append(out, i)
		}
	}
	return out
}

// tcpTransfer sends size bytes over a kernel TCP connection from gen to
// sink:port through the DUT and reports an error unless all arrive.
func tcpTransfer(topo *lab.Topology, port, size int) error {
	return topo.Gen.SendTCP(topo.Sink, lab.SinkAddr, port, size, 20*time.Second)
}

// inSocket is worker 0's AF_XDP socket on the in port.
func inSocket(t *testing.T, s *Service) *afxdp.Socket {
	t.Helper()
	xp, ok := s.Workers[0].Ports[0].(*xdp.Port)
	if !ok {
		t.Fatalf("port 0 is a %T", s.Workers[0].Ports[0])
	}
	return xp.Socket()
}

// A UDP flood from the generator's namespace that an offloaded rule drops
// dies in XDP: the sink sees none of it, the AF_XDP socket and the worker
// receive only the allowed traffic, and no flood packet reaches the
// firewall in Go; meanwhile a kernel TCP transfer through the same chain
// completes. Then a reload adds a drop rule for a second stream while it
// and a paced allowed stream flow: the second stream stops at the reload,
// and the allowed one loses nothing.
func TestFloodDiesInXDPAndAReloadStopsAnotherWithoutLoss(t *testing.T) {
	topo := lab.TopologyForTest(t, "svcflood", lab.TopologyOptions{})
	rules := func(r ...string) string {
		s := "    rules:\n"
		for _, x := range r {
			s += "      - " + x + "\n"
		}
		return s
	}
	s := startIn(t, topo, offloadChain(t, "[0]", rules("drop proto udp dport 9")))
	if err := topo.Gen.Ping(lab.SinkAddr, 7, 3); err != nil {
		t.Fatal(err)
	}
	flooded := countUDP(t, topo.Sink, 9)
	sock := inSocket(t, s)
	rx0, st0 := sock.Counters().RXPackets, must(sock.Stats())
	wrx0 := s.Workers[0].PortCounters()[0].RX
	prog0 := must(s.Devices[0].Counters())

	const flood = 200000
	var sent int
	var floodErr, tcpErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		sent, floodErr = topo.Gen.SendUDPFlows(lab.SinkAddr+":9", 64, flood, 18, 0)
	}()
	go func() { defer wg.Done(); tcpErr = tcpTransfer(topo, 8080, 4<<20) }()
	wg.Wait()
	if floodErr != nil || tcpErr != nil {
		t.Fatalf("flood: %v; TCP transfer during the flood: %v", floodErr, tcpErr)
	}
	time.Sleep(200 * time.Millisecond)
	prog := must(s.Devices[0].Counters()).Sub(prog0)
	rx := sock.Counters().RXPackets - rx0
	wrx := s.Workers[0].PortCounters()[0].RX - wrx0
	st := must(sock.Stats())
	m := firewallMetrics(s, 0)
	t.Logf("flood: %d sent, %d dropped in XDP, %d redirected; socket rx %d (worker %d), rx_dropped +%d, rx_ring_full +%d; sink got %d",
		sent, prog.Dropped, prog.Redirected, rx, wrx, st.RXDropped-st0.RXDropped, st.RXRingFull-st0.RXRingFull, flooded.n.Load())
	if n := flooded.n.Load(); n != 0 {
		t.Errorf("the sink received %d flood datagrams", n)
	}
	if prog.Dropped < uint64(sent)*9/10 {
		t.Errorf("XDP dropped %d of %d flood datagrams sent", prog.Dropped, sent)
	}
	// The socket got the TCP transfer's segments (about 3,000) and ARP,
	// none of the flood.
	if rx > uint64(sent)/40 || wrx != rx {
		t.Errorf("the socket received %d frames (the worker %d) during a flood of %d", rx, wrx, sent)
	}
	if d := st.RXDropped - st0.RXDropped + st.RXRingFull - st0.RXRingFull; d > 100 {
		t.Errorf("the socket dropped %d frames (XDP_STATISTICS rx_dropped + rx_ring_full)", d)
	}
	if inGo := m["rule_0_hits"] - m["xdp_dropped"]; inGo != 0 || m["xdp_dropped"] != prog.Dropped {
		t.Errorf("firewall: %d flood packets judged in Go, xdp_dropped %d for %d XDP drops", inGo, m["xdp_dropped"], prog.Dropped)
	}

	// The reload, under traffic.
	allowed := countUDP(t, topo.Sink, 7000)
	second := countUDP(t, topo.Sink, 10)
	const allowedN, secondN = 20000, 40000
	var sendErr [2]error
	wg.Add(2)
	go func() {
		defer wg.Done()
		sendErr[0] = topo.Gen.SendUDP(lab.SinkAddr+":7000", allowedN, "seq %d", 100, 10*time.Millisecond) // ~10k/s for 2 s
	}()
	var secondSent atomic.Int64
	go func() {
		defer wg.Done()
		sendErr[1] = sendSeq(topo.Gen, lab.SinkAddr+":10", secondN, 20000, &secondSent) // 2 s
	}()
	time.Sleep(time.Second)
	before := must(s.Devices[0].Counters())
	if _, err := s.Reload(offloadChain(t, "[0]", rules("drop proto udp dport 9", "drop proto udp dport 10"))); err != nil {
		t.Fatal(err)
	}
	// Every datagram of the second stream sent from now on meets the new
	// rules; the sink may still read some sent before.
	atReload := int(secondSent.Load())
	wg.Wait()
	if sendErr[0] != nil || sendErr[1] != nil {
		t.Fatalf("senders: %v", sendErr)
	}
	time.Sleep(300 * time.Millisecond)
	after := must(s.Devices[0].Counters()).Sub(before)
	m = firewallMetrics(s, 0)
	late := second.after(atReload)
	t.Logf("reload: the second stream had sent %d when the reload returned; the sink got %d of them, and %d sent later; XDP dropped %d since; allowed %d of %d",
		atReload, second.n.Load()-uint64(len(late)), len(late), after.Dropped, allowed.n.Load(), allowedN)
	if second.n.Load() == 0 {
		t.Error("the second stream never reached the sink before the reload: the test proves nothing")
	}
	if len(late) > 0 {
		t.Errorf("%d datagrams of the stream the reload drops, sent after it returned, reached the sink (first: %v)", len(late), late[:min(len(late), 10)])
	}
	if after.Dropped == 0 || m["rule_1_hits"] == 0 {
		t.Errorf("after the reload: XDP dropped %d, rule_1_hits %d", after.Dropped, m["rule_1_hits"])
	}
	if miss := allowed.missing(allowedN); len(miss) > 0 {
		t.Errorf("the allowed stream lost %d of %d datagrams across the reload (first: %v)", len(miss), allowedN, miss[:min(len(miss), 10)])
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
