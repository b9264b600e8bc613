package nat

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xnfdev/xnf/packet"
)

const sec = int64(time.Second)

// expect runs f through s and checks the verdict and the tuple it leaves with.
func expect(t *testing.T, s *Stage, in uint16, f []byte, now int64, want tuple) *packet.Packet {
	t.Helper()
	p := run(t, s, in, f, now)
	if p.Verdict != packet.Forward {
		t.Fatalf("verdict %v (%v), want forward", p.Verdict, p.Reason)
	}
	if got := tupleOf(p); got != want {
		t.Fatalf("translated to %v > %v, want %v > %v", got.src, got.dst, want.src, want.dst)
	}
	checksumsRight(t, p)
	return p
}

func TestSNATTranslationTable(t *testing.T) {
	s := masq(t, nil)
	// Each row goes through the same stage in order: later rows see the
	// flows of earlier ones.
	rows := []struct {
		name string
		in   uint16
		f    []byte
		want tuple
	}{
		{"tcp syn keeps its port", portIn, tcpFrame(t, ap(inA, 40000), ap(srvB, 80), packet.TCPSyn),
			tuple{ap(natX, 40000), ap(srvB, 80)}},
		{"tcp syn-ack translated back", portOut, tcpFrame(t, ap(srvB, 80), ap(natX, 40000), packet.TCPSyn|packet.TCPAck),
			tuple{ap(srvB, 80), ap(inA, 40000)}},
		{"tcp ack with data", portIn, tcpFrame(t, ap(inA, 40000), ap(srvB, 80), packet.TCPAck, []byte("GET / HTTP/1.0\r\n\r\n")...),
			tuple{ap(natX, 40000), ap(srvB, 80)}},
		{"second host, same port: next from the range", portIn, tcpFrame(t, ap(inA2, 40000), ap(srvB, 80), packet.TCPSyn),
			tuple{ap(natX, 1024), ap(srvB, 80)}},
		{"its reply", portOut, tcpFrame(t, ap(srvB, 80), ap(natX, 1024), packet.TCPSyn|packet.TCPAck),
			tuple{ap(srvB, 80), ap(inA2, 40000)}},
		{"same port, other server: kept (tuples differ)", portIn, tcpFrame(t, ap(inA2, 40000), ap(srvB, 81), packet.TCPSyn),
			tuple{ap(natX, 40000), ap(srvB, 81)}},
		{"udp keeps its port", portIn, udpFrame(t, ap(inA, 5353), ap(srvB, 53), "q"),
			tuple{ap(natX, 5353), ap(srvB, 53)}},
		{"udp answer", portOut, udpFrame(t, ap(srvB, 53), ap(natX, 5353), "a"),
			tuple{ap(srvB, 53), ap(inA, 5353)}},
		{"udp same port from another host", portIn, udpFrame(t, ap(inA3, 5353), ap(srvB, 53), "q"),
			tuple{ap(natX, 1024), ap(srvB, 53)}},
		{"echo request keeps its id", portIn, echoFrame(t, inA, srvB, 77, false),
			tuple{ap(natX, 77), ap(srvB, 77)}},
		{"echo reply", portOut, echoFrame(t, srvB, natX, 77, true),
			tuple{ap(srvB, 77), ap(inA, 77)}},
		{"echo id taken: next", portIn, echoFrame(t, inA2, srvB, 77, false),
			tuple{ap(natX, 1024), ap(srvB, 1024)}},
		{"its reply", portOut, echoFrame(t, srvB, natX, 1024, true),
			tuple{ap(srvB, 77), ap(inA2, 77)}},
		{"unsolicited from outside: untouched", portOut, udpFrame(t, ap(srvB, 9), ap(natX, 9999), "x"),
			tuple{ap(srvB, 9), ap(natX, 9999)}},
		{"inside to the pool address: not translated", portIn, udpFrame(t, ap(inA, 7), ap(natX, 7), "x"),
			tuple{ap(inA, 7), ap(natX, 7)}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) { expect(t, s, r.in, r.f, sec, r.want) })
	}
	st := s.Counters()
	if st.SNATFlows != 7 || st.PortsKept != 4 {
		t.Errorf("stats %+v: want 7 SNAT flows, 4 ports kept", st)
	}
}

func TestSNATPortRange(t *testing.T) {
	s := masq(t, func(c *Config) { c.PortMin, c.PortMax = 20000, 20009 })
	// In range and free: kept. Out of range: allocated from the range.
	expect(t, s, portIn, udpFrame(t, ap(inA, 20005), ap(srvB, 53), "q"), sec, tuple{ap(natX, 20005), ap(srvB, 53)})
	expect(t, s, portIn, udpFrame(t, ap(inA, 5000), ap(srvB, 53), "q"), sec, tuple{ap(natX, 20000), ap(srvB, 53)})
	expect(t, s, portIn, udpFrame(t, ap(inA, 5001), ap(srvB, 53), "q"), sec, tuple{ap(natX, 20001), ap(srvB, 53)})
}

func TestPoolAddressesAndExhaustion(t *testing.T) {
	s := masq(t, func(c *Config) {
		c.Pool = []netip.Addr{natX, natY}
		c.PortMin, c.PortMax = 2000, 2001
	})
	seen := map[netip.AddrPort]bool{}
	// Four flows from different hosts, all from port 2000 to the same
	// server: 2 addresses x 2 ports.
	for i := range 4 {
		src := netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)})
		p := run(t, s, portIn, udpFrame(t, ap(src, 2000), ap(srvB, 53), "q"), sec)
		if p.Verdict != packet.Forward {
			t.Fatalf("flow %d dropped (%v) with %d of 4 translations used", i, p.Reason, i)
		}
		got := tupleOf(p).src
		if seen[got] {
			t.Fatalf("flow %d got %v twice", i, got)
		}
		seen[got] = true
		checksumsRight(t, p)
	}
	// The fifth finds nothing: dropped and counted, never translated.
	before := s.Conntrack().Len()
	p := run(t, s, portIn, udpFrame(t, ap(netip.MustParseAddr("198.18.0.99"), 2000), ap(srvB, 53), "q"), sec)
	if p.Verdict != packet.Drop || p.Reason != packet.DropFull {
		t.Fatalf("fifth flow: verdict %v reason %v, want drop full", p.Verdict, p.Reason)
	}
	if s.Counters().Exhausted != 1 {
		t.Errorf("Exhausted = %d, want 1", s.Counters().Exhausted)
	}
	if s.Conntrack().Len() != before {
		t.Errorf("the refused flow stayed in the table (%d entries, was %d)", s.Conntrack().Len(), before)
	}
	// A different server: every port is free again for it, and the
	// original port is kept.
	p = run(t, s, portIn, udpFrame(t, ap(netip.MustParseAddr("198.18.0.99"), 2000), ap(rtrR, 53), "q"), sec)
	if got := tupleOf(p).src; p.Verdict != packet.Forward || got.Port() != 2000 {
		t.Errorf("other server: verdict %v, source %v, want port 2000 kept", p.Verdict, got)
	}
	// Release: once the flows time out (UDP unreplied: 30s), ports are free.
	later := sec + 31*sec
	p = run(t, s, portIn, udpFrame(t, ap(netip.MustParseAddr("198.18.0.99"), 2000), ap(srvB, 53), "q"), later)
	if p.Verdict != packet.Forward {
		t.Fatalf("after the timeouts: verdict %v reason %v", p.Verdict, p.Reason)
	}
}

func TestExhaustedEchoAndTCP(t *testing.T) {
	s := masq(t, func(c *Config) { c.PortMin, c.PortMax = 3000, 3000 })
	expect(t, s, portIn, echoFrame(t, inA, srvB, 3000, false), sec, tuple{ap(natX, 3000), ap(srvB, 3000)})
	p := run(t, s, portIn, echoFrame(t, inA2, srvB, 3000, false), sec)
	if p.Verdict != packet.Drop || p.Reason != packet.DropFull {
		t.Errorf("echo with no id left: %v %v", p.Verdict, p.Reason)
	}
	expect(t, s, portIn, tcpFrame(t, ap(inA, 3000), ap(srvB, 80), packet.TCPSyn), sec, tuple{ap(natX, 3000), ap(srvB, 80)})
	p = run(t, s, portIn, tcpFrame(t, ap(inA2, 1), ap(srvB, 80), packet.TCPSyn), sec)
	if p.Verdict != packet.Drop || p.Reason != packet.DropFull {
		t.Errorf("tcp with no port left: %v %v", p.Verdict, p.Reason)
	}
	if got := s.Counters().Exhausted; got != 2 {
		t.Errorf("Exhausted = %d, want 2", got)
	}
}

func TestRefusedFlowDropsTheWholeBatch(t *testing.T) {
	s := masq(t, func(c *Config) { c.PortMin, c.PortMax = 3000, 3000 })
	var b packet.Batch
	for _, f := range [][]byte{
		udpFrame(t, ap(inA, 3000), ap(srvB, 53), "1"),
		udpFrame(t, ap(inA2, 3000), ap(srvB, 53), "2"),
		udpFrame(t, ap(inA2, 3000), ap(srvB, 53), "3"),
	} {
		b.Append(f, 0, portIn).Parse()
	}
	s.ProcessAt(&b, sec)
	if b.Packets[0].Verdict != packet.Forward || b.Packets[1].Verdict != packet.Drop || b.Packets[2].Verdict != packet.Drop {
		t.Errorf("verdicts %v %v %v, want forward drop drop", b.Packets[0].Verdict, b.Packets[1].Verdict, b.Packets[2].Verdict)
	}
}

func TestDNAT(t *testing.T) {
	inSrv := netip.MustParseAddr("198.18.0.80")
	client := netip.MustParseAddr("198.18.1.2")
	s := masq(t, func(c *Config) {
		c.Forwards = []Forward{
			{Proto: packet.ProtoTCP, Addr: natX, PortMin: 8080, PortMax: 8080, To: inSrv, ToPort: 80},
			{Proto: packet.ProtoUDP, Addr: natX, PortMin: 6000, PortMax: 6009, To: inSrv, ToPort: 7000},
		}
	})
	expect(t, s, portOut, tcpFrame(t, ap(client, 33333), ap(natX, 8080), packet.TCPSyn), sec, tuple{ap(client, 33333), ap(inSrv, 80)})
	expect(t, s, portIn, tcpFrame(t, ap(inSrv, 80), ap(client, 33333), packet.TCPSyn|packet.TCPAck), sec, tuple{ap(natX, 8080), ap(client, 33333)})
	expect(t, s, portOut, tcpFrame(t, ap(client, 33333), ap(natX, 8080), packet.TCPAck), sec, tuple{ap(client, 33333), ap(inSrv, 80)})
	expect(t, s, portOut, udpFrame(t, ap(client, 1000), ap(natX, 6003), "x"), sec, tuple{ap(client, 1000), ap(inSrv, 7003)})
	expect(t, s, portIn, udpFrame(t, ap(inSrv, 7003), ap(client, 1000), "y"), sec, tuple{ap(natX, 6003), ap(client, 1000)})
	// Not forwarded: untouched.
	expect(t, s, portOut, tcpFrame(t, ap(client, 33334), ap(natX, 8081), packet.TCPSyn), sec, tuple{ap(client, 33334), ap(natX, 8081)})
	// A DNAT flow whose inside tuple is taken: the inside server has its
	// own outbound flow 198.18.0.80:7004 > client:1001, SNATed.
	expect(t, s, portIn, udpFrame(t, ap(inSrv, 7004), ap(client, 1001), "o"), sec, tuple{ap(natX, 7004), ap(client, 1001)})
	p := run(t, s, portOut, udpFrame(t, ap(client, 1001), ap(natX, 6004), "x"), sec)
	if p.Verdict != packet.Drop || p.Reason != packet.DropFull || s.Counters().Conflicts != 1 {
		t.Errorf("conflicting DNAT: %v %v, conflicts %d", p.Verdict, p.Reason, s.Counters().Conflicts)
	}
	if st := s.Counters(); st.DNATFlows != 2 {
		t.Errorf("DNATFlows = %d, want 2", st.DNATFlows)
	}
}

func TestUDPZeroChecksumStaysZero(t *testing.T) {
	s := masq(t, nil)
	f := frame(t, inA, srvB, 17, ipOpts{noChksum: true}, udpL(4000, 53), payload("q"))
	expect(t, s, portIn, udpFrame(t, ap(inA2, 4000), ap(srvB, 53), "taken"), sec, tuple{ap(natX, 4000), ap(srvB, 53)})
	p := expect(t, s, portIn, f, sec, tuple{ap(natX, 1024), ap(srvB, 53)})
	if c := p.UDP().Checksum(); c != 0 {
		t.Errorf("UDP checksum %#04x, want 0 (none)", c)
	}
	r := frame(t, srvB, natX, 17, ipOpts{noChksum: true}, udpL(53, 1024), payload("a"))
	p = expect(t, s, portOut, r, sec, tuple{ap(srvB, 53), ap(inA, 4000)})
	if c := p.UDP().Checksum(); c != 0 {
		t.Errorf("reply UDP checksum %#04x, want 0 (none)", c)
	}
}

func TestUntranslatableFromInsideIsDropped(t *testing.T) {
	s := masq(t, nil)
	// An ACK of a connection the table never saw: no flow, cannot be
	// translated, must not leave with the inside address.
	p := run(t, s, portIn, tcpFrame(t, ap(inA, 40000), ap(srvB, 80), packet.TCPAck), sec)
	if p.Verdict != packet.Drop || p.Reason != packet.DropPolicy || s.Counters().Untranslatable != 1 {
		t.Errorf("verdict %v reason %v untranslatable %d", p.Verdict, p.Reason, s.Counters().Untranslatable)
	}
	// The same from the outside passes untouched (the router decides).
	p = run(t, s, portOut, tcpFrame(t, ap(srvB, 80), ap(natX, 40000), packet.TCPAck), sec)
	if p.Verdict != packet.Forward {
		t.Errorf("outside: verdict %v", p.Verdict)
	}
	// Non-IP passes.
	arp := make([]byte, 60)
	arp[12], arp[13] = 0x08, 0x06
	if p := run(t, s, portIn, arp, sec); p.Verdict != packet.Forward {
		t.Errorf("ARP: verdict %v", p.Verdict)
	}
}

func TestTableFull(t *testing.T) {
	s := masq(t, nil)
	ct := s.Conntrack()
	f := udpFrame(t, ap(inA, 1), ap(srvB, 53), "q")
	var b packet.Batch
	for i := range ct.Cap() {
		if b.Full() {
			s.ProcessAt(&b, sec)
			b.Reset()
		}
		p := b.Append(append([]byte(nil), f...), 0, portIn)
		p.Parse()
		p.SetSrcPort(uint16(10000 + i))
	}
	s.ProcessAt(&b, sec)
	if ct.Len() != ct.Cap() {
		t.Fatalf("table holds %d of %d", ct.Len(), ct.Cap())
	}
	p := run(t, s, portIn, udpFrame(t, ap(inA, 9), ap(srvB, 53), "q"), sec)
	if p.Verdict != packet.Drop || p.Reason != packet.DropFull || s.Counters().TableFull != 1 {
		t.Errorf("table full: %v %v table_full %d", p.Verdict, p.Reason, s.Counters().TableFull)
	}
}

// A packet no router may forward (TTL 1) is left untranslated, so the
// router's time exceeded reaches the sender's own address; the flow is
// decided all the same, and the next packet with a TTL to spare is
// translated.
func TestTTLExpiringPacketsAreLeftToTheRouter(t *testing.T) {
	s := masq(t, nil)
	probe := frame(t, inA, srvB, 17, ipOpts{ttl: 1}, udpL(33434, 33434), payload("probe"))
	p := run(t, s, portIn, probe, sec)
	if p.Verdict != packet.Forward || tupleOf(p) != (tuple{ap(inA, 33434), ap(srvB, 33434)}) {
		t.Fatalf("TTL 1: %v %v", p.Verdict, tupleOf(p))
	}
	probe2 := frame(t, inA, srvB, 17, ipOpts{ttl: 2}, udpL(33434, 33434), payload("probe"))
	expect(t, s, portIn, probe2, sec, tuple{ap(natX, 33434), ap(srvB, 33434)})
	if st := s.Counters(); st.TTLExpiring != 1 || st.SNATFlows != 1 {
		t.Errorf("stats %+v", st)
	}
}

// A packet an earlier stage bounces back out of its ingress port does not
// cross the NAT: it is left alone.
func TestBouncedPacketsAreLeftAlone(t *testing.T) {
	s := masq(t, nil)
	var b packet.Batch
	b.Append(udpFrame(t, ap(inA, 1), ap(srvB, 2), "x"), 0, portIn).Parse()
	b.Packets[0].SetBounce()
	s.ProcessAt(&b, sec)
	if got := tupleOf(&b.Packets[0]); got != (tuple{ap(inA, 1), ap(srvB, 2)}) || s.Counters().SNATFlows != 0 {
		t.Errorf("bounced packet translated to %v", got)
	}
}

// Martians from inside are not translated: the router behind the NAT must
// still see the source it drops (RFC 1812 5.3.7; Linux routes before SNAT).
func TestMartiansAreNotTranslated(t *testing.T) {
	rows := []struct {
		name     string
		src, dst string
	}{
		{"a loopback source keeps its address", "127.0.0.1", "198.19.0.9"},
		{"a 0/8 source keeps its address", "0.0.0.0", "198.19.0.9"},
		{"a multicast source keeps its address", "224.0.0.9", "198.19.0.9"},
		{"the broadcast source keeps its address", "255.255.255.255", "198.19.0.9"},
		{"a loopback destination is not translated", "10.0.0.1", "127.0.0.1"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			s := masq(t, nil)
			src, dst := ap(netip.MustParseAddr(r.src), 4000), ap(netip.MustParseAddr(r.dst), 53)
			expect(t, s, portIn, udpFrame(t, src, dst, "q"), sec, tuple{src, dst})
			if st := s.Counters(); st.SNATFlows != 0 {
				t.Errorf("stats %+v: a martian was given a translation", st)
			}
		})
	}
}
