package router

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/packet"
)

// arpReply is an ARP reply from host (on the out port's subnet) with mac,
// to the router's out port.
func arpReply(t testing.TB, host [4]byte, mac [6]byte) []byte {
	return serialize(t, eth(mac, macOut, layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPReply, SourceHwAddress: mac[:], SourceProtAddress: host[:],
		DstHwAddress: macOut[:], DstProtAddress: []byte{198, 18, 1, 1}})
}

// Two workers' routers over one Tables: what one learns the other uses,
// a route installed once routes through both, and building the second
// router installs nothing again.
func TestRoutersSharingTablesSeeOneFIBAndOneNeighborTable(t *testing.T) {
	cfg := Config{
		Interfaces: []Interface{
			{Port: 0, MAC: macIn, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}},
			{Port: 1, MAC: macOut, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.1.1/24")}},
		},
		Routes: []StaticRoute{{Prefix: netip.MustParsePrefix("198.19.0.0/16"), NextHops: []NextHop{{Port: 1, Gateway: netip.MustParseAddr("198.18.1.2")}}}},
	}
	tables, err := NewTables(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tables = tables
	r0, err := NewRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The control plane removes the static route before the second worker
	// starts: building its router must not put it back.
	if err := tables.FIB.Delete(netip.MustParsePrefix("198.19.0.0/16")); err != nil {
		t.Fatal(err)
	}
	r1, err := NewRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r0.FIB() != r1.FIB() || r0.Neighbors() != r1.Neighbors() || r1.Tables() != tables {
		t.Fatal("the routers do not share the tables they were given")
	}
	if _, ok := tables.FIB.Lookup(netip.MustParseAddr("198.19.5.5")); ok {
		t.Fatal("the second router reinstalled a static route the control plane had deleted")
	}

	// Worker 0 learns the gateway from its ARP reply...
	gw := [6]byte{2, 0, 0, 0, 1, 9}
	if p := run(r0, 1, arpReply(t, [4]byte{198, 18, 1, 2}, gw))[0]; p.Verdict != packet.Drop || p.Reason != packet.DropConsumed {
		t.Fatalf("ARP reply through worker 0: %v %v", p.Verdict, p.Reason)
	}
	// ...a route is added once...
	if err := tables.FIB.Add(netip.MustParsePrefix("198.20.0.0/16"), NextHop{Port: 1, Gateway: netip.MustParseAddr("198.18.1.2")}); err != nil {
		t.Fatal(err)
	}
	// ...and both workers forward through it to the learned MAC, worker 1
	// without ever having seen the ARP reply or sent a request.
	for i, r := range []*Router{r0, r1} {
		p := run(r, 0, udp4(t, "198.18.0.1", "198.20.3.4", 64))[0]
		if dst := p.Ethernet().Dst(); p.Verdict != packet.Forward || p.OutPort != 1 || dst != gw {
			t.Errorf("worker %d: %v %v port %d to %v, want forwarded to port 1 and %v", i, p.Verdict, p.Reason, p.OutPort, net.HardwareAddr(dst[:]), net.HardwareAddr(gw[:]))
		}
	}
	if c := r1.Counters(); c.Resolutions != 0 || c.Learned != 0 || c.Forwarded != 1 {
		t.Errorf("worker 1's counters %+v: want 1 forwarded and nothing learned or resolved (counters stay per worker)", c)
	}
	// One request for an unresolved address goes out, from whichever
	// worker misses it first; the other waits for the answer.
	if p := run(r0, 0, udp4(t, "198.18.0.1", "198.18.1.77", 64))[0]; p.Verdict != packet.Forward || p.Flags&packet.FlagARP == 0 {
		t.Fatalf("worker 0's miss: %v %v, want an ARP request", p.Verdict, p.Reason)
	}
	if p := run(r1, 0, udp4(t, "198.18.0.1", "198.18.1.77", 64))[0]; p.Verdict != packet.Drop || p.Reason != packet.DropNoNeighbor {
		t.Errorf("worker 1's miss right after: %v %v, want a no-neighbor drop (a request is pending)", p.Verdict, p.Reason)
	}
}

// Several routers learn and look up in one neighbor table at once while
// the control plane changes it; run with -race. Every forwarded packet
// must carry a MAC its host announced: the MACs encode the host.
func TestConcurrentNeighborLearningAndLookups(t *testing.T) {
	tables, err := NewTables(Config{
		Interfaces: []Interface{
			{Port: 0, MAC: macIn, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}},
			{Port: 1, MAC: macOut, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.1.1/24")}},
		},
		MaxNeighbors: 48, // fewer than the hosts: entries are evicted and replaced
	})
	if err != nil {
		t.Fatal(err)
	}
	const hosts = 64
	rounds := 300
	if testing.Short() || raceEnabled {
		rounds = 100
	}
	var forwarded, wrong atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 {
		r, err := NewRouter(Config{Interfaces: []Interface{
			{Port: 0, MAC: macIn, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}},
			{Port: 1, MAC: macOut, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.1.1/24")}},
		}, Tables: tables})
		if err != nil {
			t.Fatal(err)
		}
		// Each worker has its own frames: ARP replies from every host
		// (a new MAC each round: 02:00:<round>:<worker>:01:<host>) and a
		// packet to every host.
		var replies, udps [][]byte
		for h := range hosts {
			ip := [4]byte{198, 18, 1, byte(10 + h)}
			replies = append(replies, arpReply(t, ip, [6]byte{2, 0, 0, byte(w), 1, byte(10 + h)}))
			udps = append(udps, udp4(t, "198.18.0.1", net.IP(ip[:]).String(), 64))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range rounds {
				for _, f := range replies {
					f[6+2], f[22+2] = byte(round), byte(round) // the Ethernet and ARP sender MACs
				}
				run(r, 1, replies[:hosts/2]...)
				for _, p := range run(r, 0, udps...) {
					if p.Verdict != packet.Forward || p.Flags&packet.FlagARP != 0 {
						continue // no neighbor, or an ARP request in its place
					}
					forwarded.Add(1)
					dst, mac := p.IPv4().Dst(), p.Ethernet().Dst()
					if mac[0] != 2 || mac[4] != 1 || mac[5] != dst[3] {
						wrong.Add(1)
					}
				}
				run(r, 1, replies[hosts/2:]...)
			}
		}()
	}
	// The control plane: static entries set and deleted meanwhile.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range rounds * 4 {
			h := byte(10 + i%hosts)
			a := netip.AddrFrom4([4]byte{198, 18, 1, h})
			tables.Neighbors.SetStatic(Neighbor{Port: 1, Addr: a, MAC: [6]byte{2, 0, 0xff, 0xff, 1, h}})
			tables.Neighbors.Delete(1, a)
		}
	}()
	wg.Wait()
	t.Logf("%d rounds, %d packets forwarded", rounds, forwarded.Load())
	if wrong.Load() != 0 {
		t.Errorf("%d of %d packets forwarded to a MAC their host never announced", wrong.Load(), forwarded.Load())
	}
	if forwarded.Load() == 0 {
		t.Error("nothing was forwarded: the test tested nothing")
	}
	if n := len(tables.Neighbors.List()); n > 48 {
		t.Errorf("%d resolved neighbors in a table of 48", n)
	}
}

// The table's own invariants under churn from one goroutine per worker and
// a reader: lookups see only entries that were written for their key, and
// the count of entries matches the chains.
func TestNeighborTableChurn(t *testing.T) {
	n := newNeighbors(32, 50, 10)
	const keys = 100
	addr := func(i int) [16]byte { return mapped([4]byte{10, 0, byte(i >> 8), byte(i)}) }
	iters := 20000
	if raceEnabled {
		iters = 5000
	}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range iters {
				k, now := (i*7+w*13)%keys, int64(i)
				switch i % 4 {
				case 0, 1:
					n.learn(uint16(k%2), addr(k), [6]byte{2, byte(w), 0, 0, byte(k >> 8), byte(k)}, now)
				case 2:
					n.shouldResolve(uint16(k%2), addr(k), now)
				case 3:
					if e := n.lookup(uint16(k%2), addr(k), now); e != nil && e.mac[5] != byte(k) {
						bad.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d lookups returned another key's MAC", bad.Load())
	}
	count := 0
	for i := range n.buckets {
		for e := n.buckets[i].Load(); e != nil; e = e.next.Load() {
			count++
			if n.find(e.key) != e {
				t.Errorf("key %v appears twice", e.key)
			}
		}
	}
	if count != n.n || count > 32 {
		t.Errorf("%d entries in the chains, %d counted, at most 32 allowed", count, n.n)
	}
}

// Forwarding through shared tables to neighbors another worker learned,
// and dropping packets whose resolution is pending, allocate nothing.
func TestSharedTableForwardingAllocatesNothing(t *testing.T) {
	cfg := Config{Interfaces: []Interface{
		{Port: 0, MAC: macIn, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}},
		{Port: 1, MAC: macOut, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.1.1/24")}},
	}}
	var err error
	if cfg.Tables, err = NewTables(cfg); err != nil {
		t.Fatal(err)
	}
	r0, err := NewRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := NewRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for h := range 48 {
		ip := [4]byte{198, 18, 1, byte(10 + h)}
		run(r0, 1, arpReply(t, ip, [6]byte{2, 0, 0, 0, 1, byte(h)}))
		frames = append(frames, udp4(t, "198.18.0.1", net.IP(ip[:]).String(), 64))
	}
	for h := range 16 { // never answer
		frames = append(frames, udp4(t, "198.18.0.1", net.IP{198, 18, 1, byte(100 + h)}.String(), 64))
	}
	bufs := make([][]byte, len(frames))
	for i := range bufs {
		bufs[i] = make([]byte, 0, 2048)
	}
	var b packet.Batch
	allocs := testing.AllocsPerRun(100, func() {
		b.Reset()
		for i, f := range frames {
			bufs[i] = append(bufs[i][:0], f...)
			b.Append(bufs[i], 0, 0).Parse()
		}
		r1.Process(&b)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per batch", allocs)
	}
	if c := r1.Counters(); c.Forwarded == 0 || c.NoNeighbor == 0 {
		t.Errorf("counters %+v: want packets forwarded and some without a neighbor", c)
	}
}

// Repeating a static entry, as the kernel sync and reloads do, leaves the
// table and the routers' cached answers alone; a new MAC replaces it.
func TestSetStaticRepeatedChangesNothing(t *testing.T) {
	n := newNeighbors(16, 50, 10)
	nb := Neighbor{Port: 1, Addr: netip.MustParseAddr("198.18.1.2"), MAC: macSink}
	n.SetStatic(nb)
	gen, e := n.gen.Load(), n.lookup(1, mapped([4]byte{198, 18, 1, 2}), 0)
	n.SetStatic(nb)
	if n.gen.Load() != gen || n.lookup(1, mapped([4]byte{198, 18, 1, 2}), 0) != e {
		t.Error("repeating a static entry replaced it")
	}
	nb.MAC = macGen
	n.SetStatic(nb)
	if got := n.lookup(1, mapped([4]byte{198, 18, 1, 2}), 0); n.gen.Load() == gen || got == nil || got.mac != macGen || n.n != 1 {
		t.Errorf("a new MAC: gen %d (was %d), entry %+v, %d entries", n.gen.Load(), gen, got, n.n)
	}
}
