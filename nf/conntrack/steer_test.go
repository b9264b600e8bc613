package conntrack

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/packet"
)

// Ports of the NAT tests: 0 and 2 inside, 1 outside.
const (
	inside  = 0
	outside = 1
	inside2 = 2
)

func newSteering(t testing.TB, c SteeringConfig) *Steering {
	t.Helper()
	s, err := NewSteering(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// on is a parsed packet of f received on port in.
func on(t testing.TB, f []byte, in uint16) packet.Packet {
	t.Helper()
	p := *parsed(t, f)
	p.InPort = in
	return p
}

// sameOwner fails unless every packet has one owner, and a tracked one:
// with self = 255 (no such worker) a packet of no flow would show.
func sameOwner(t *testing.T, s *Steering, what string, pkts ...packet.Packet) {
	t.Helper()
	out := make([]uint8, len(pkts))
	s.Owners(pkts, 255, out)
	for i := range out {
		if out[i] == 255 {
			t.Errorf("%s: packet %d is not steered by a flow", what, i)
		}
		if out[i] != out[0] {
			t.Errorf("%s: packet %d owned by worker %d, packet 0 by %d", what, i, out[i], out[0])
		}
	}
}

func TestSteeringSymmetricKeepsBothDirectionsTogether(t *testing.T) {
	s := newSteering(t, SteeringConfig{Workers: 7})
	for _, pair := range [][2]netip.Addr{{a4, b4}, {a6, b6}} {
		a, b := pair[0], pair[1]
		r := r4
		if a.Is6() {
			r = r6
		}
		for port := uint16(1); port < 200; port += 7 {
			q := udpFrame(t, ap(a, port), ap(b, 53))
			reply := udpFrame(t, ap(b, 53), ap(a, port))
			sameOwner(t, s, fmt.Sprintf("udp %v:%d", a, port),
				on(t, q, 0), on(t, reply, 1),
				// an unreachable from the far side about the query, one
				// from a router about the reply
				on(t, icmpErrorFrame(t, b, a, unreachType(a), 3, q, 0), 1),
				on(t, icmpErrorFrame(t, r, b, timeExceededType(a), 0, reply, 0), 0))
			sameOwner(t, s, fmt.Sprintf("tcp %v:%d", a, port),
				on(t, tcpFrame(t, ap(a, port), ap(b, 80), syn), 0), on(t, tcpFrame(t, ap(b, 80), ap(a, port), synack), 1))
			sameOwner(t, s, fmt.Sprintf("echo %v id %d", a, port),
				on(t, echoFrame(t, a, b, port, false), 0), on(t, echoFrame(t, b, a, port, true), 1))
		}
		gre := frame(t, a, b, layers.IPProtocolGRE)
		sameOwner(t, s, "gre", on(t, gre, 0), on(t, frame(t, b, a, layers.IPProtocolGRE), 1))
	}
}

func unreachType(a netip.Addr) uint8 {
	if a.Is4() {
		return 3
	}
	return 1
}

func timeExceededType(a netip.Addr) uint8 {
	if a.Is4() {
		return 11
	}
	return 3
}

var (
	c4 = netip.MustParseAddr("198.19.5.5")   // an outside client of a port forward
	s4 = netip.MustParseAddr("198.18.0.80")  // the inside server it reaches
	i4 = netip.MustParseAddr("198.18.7.9")   // another inside host, on port inside2
	e4 = netip.MustParseAddr("198.19.100.1") // an outside host in Except
)

func natSteering(t testing.TB, workers int) *Steering {
	return newSteering(t, SteeringConfig{Workers: workers, NAT: true, Outside: []uint16{outside},
		Except:    []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16"), netip.MustParsePrefix("198.19.100.0/24"), netip.MustParsePrefix("2001:db8::/32")},
		Forwarded: []PortRange{{packet.ProtoTCP, x4, 8080, 8080}, {packet.ProtoTCP, s4, 80, 80}}})
}

func TestSteeringNATKeysByTheOutsideEndpoint(t *testing.T) {
	for _, workers := range []int{2, 3, 16} {
		s := natSteering(t, workers)
		for i := range 64 {
			a, b := ap(a4, uint16(1000+i)), ap(b4, uint16(53+i))
			x := ap(x4, uint16(40000+i)) // the SNAT translation of a
			q := udpFrame(t, a, b)
			qOut := udpFrame(t, x, b) // q as it left
			reply := udpFrame(t, b, x)
			replyIn := udpFrame(t, b, a) // reply as it left
			sameOwner(t, s, fmt.Sprintf("snat udp %v", a),
				on(t, q, inside), on(t, reply, outside),
				on(t, icmpErrorFrame(t, b4, x4, 3, 3, qOut, 0), outside),    // port unreachable from B
				on(t, icmpErrorFrame(t, r4, x4, 11, 0, qOut, 0), outside),   // time exceeded on the way
				on(t, icmpErrorFrame(t, a4, b4, 3, 3, replyIn, 0), inside),  // A's answer to the reply
				on(t, icmpErrorFrame(t, i4, b4, 3, 1, replyIn, 28), inside)) // an inside router's
			sameOwner(t, s, fmt.Sprintf("snat tcp %v", a),
				on(t, tcpFrame(t, a, b, syn), inside), on(t, tcpFrame(t, b, x, synack), outside), on(t, tcpFrame(t, a, b, ack), inside))
			sameOwner(t, s, fmt.Sprintf("snat echo id %d", i),
				on(t, echoFrame(t, a4, b4, uint16(i), false), inside), on(t, echoFrame(t, b4, x4, uint16(30000+i), true), outside))

			c, v, srv := ap(c4, uint16(2000+i)), ap(x4, 8080), ap(s4, 80)
			fwd := tcpFrame(t, c, srv, synack) // the request as it left, for a quote
			sameOwner(t, s, fmt.Sprintf("dnat tcp %v", c),
				on(t, tcpFrame(t, c, v, syn), outside), on(t, tcpFrame(t, srv, c, synack), inside),
				on(t, icmpErrorFrame(t, s4, c4, 3, 3, fwd, 0), inside),
				on(t, icmpErrorFrame(t, c4, x4, 3, 3, tcpFrame(t, v, c, synack), 0), outside))
		}
	}
}

func TestSteeringNATExceptedFlowsAreSymmetric(t *testing.T) {
	s := natSteering(t, 5)
	for i := range 64 {
		a, e := ap(a4, uint16(1000+i)), ap(e4, 443)
		sameOwner(t, s, "inside to an excepted outside host", on(t, tcpFrame(t, a, e, syn), inside), on(t, tcpFrame(t, e, a, synack), outside),
			on(t, icmpErrorFrame(t, r4, a4, 11, 0, tcpFrame(t, e, a, synack), 0), inside))
		in := ap(i4, 22)
		sameOwner(t, s, "inside to inside", on(t, tcpFrame(t, a, in, syn), inside), on(t, tcpFrame(t, in, a, synack), inside2))
		sameOwner(t, s, "ipv6", on(t, udpFrame(t, ap(a6, uint16(i+1)), ap(b6, 53)), inside), on(t, udpFrame(t, ap(b6, 53), ap(a6, uint16(i+1))), outside))
		// A forward's client in an excepted network is keyed by its
		// endpoint all the same: the reply comes from the translated
		// server.
		c := ap(netip.MustParseAddr("198.19.100.9"), uint16(5000+i))
		sameOwner(t, s, "dnat from an excepted client",
			on(t, tcpFrame(t, c, ap(x4, 8080), syn), outside), on(t, tcpFrame(t, ap(s4, 80), c, synack), inside))
	}
}

func TestSteeringLeavesPacketsOfNoFlowWhereTheyArrived(t *testing.T) {
	s := natSteering(t, 4)
	later := udpFrame(t, ap(a4, 1), ap(b4, 2))
	later[14+6] = 0x00 // fragment offset 8 bytes: a later fragment
	later[14+7] = 0x01
	later[14+10], later[14+11] = 0, 0
	cs := packet.Checksum(later[14:34])
	later[14+10], later[14+11] = byte(cs>>8), byte(cs)
	arp := make([]byte, 60)
	arp[12], arp[13] = 0x08, 0x06
	ts := echoFrame(t, a4, b4, 1, false)
	ts[14+20] = 13 // ICMP timestamp: tracked by no table
	for name, f := range map[string][]byte{"arp": arp, "later fragment": later, "icmp timestamp": ts, "runt": ts[:30]} {
		p := packet.Packet{}
		p.Reset(f, 0, 0)
		p.Parse()
		for _, self := range []uint8{0, 3} {
			if o := s.Owner(&p, self); o != self {
				t.Errorf("%s on worker %d: owner %d, want the receiving worker", name, self, o)
			}
		}
	}
}

func TestSteeringSpreadsFlows(t *testing.T) {
	for _, st := range []*Steering{newSteering(t, SteeringConfig{Workers: 4}), natSteering(t, 4)} {
		var count [4]int
		for i := range 400 {
			p := on(t, udpFrame(t, ap(a4, uint16(1000+i)), ap(b4, uint16(rand.IntN(60000)+1))), inside)
			count[st.Owner(&p, 0)]++
		}
		for w, n := range count {
			if n < 50 {
				t.Errorf("worker %d owns %d of 400 flows: %v", w, n, count)
			}
		}
	}
}

func TestSteeringOneWorkerOwnsAll(t *testing.T) {
	s := newSteering(t, SteeringConfig{Workers: 1})
	p := on(t, udpFrame(t, ap(a4, 1), ap(b4, 2)), 0)
	if o := s.Owner(&p, 0); o != 0 {
		t.Fatalf("owner %d", o)
	}
	for _, bad := range []SteeringConfig{{Workers: 0}, {Workers: 257}, {Workers: 2, Forwarded: []PortRange{{Addr: a6}}}} {
		if _, err := NewSteering(bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestSteeringAllocatesNothing(t *testing.T) {
	s := natSteering(t, 2)
	q := udpFrame(t, ap(a4, 1000), ap(b4, 53))
	pkts := []packet.Packet{on(t, q, inside), on(t, udpFrame(t, ap(b4, 53), ap(x4, 1)), outside),
		on(t, icmpErrorFrame(t, b4, x4, 3, 3, q, 0), outside), on(t, udpFrame(t, ap(a6, 1), ap(b6, 2)), inside)}
	for _, f := range split(t, a6, b6, packet.ProtoUDP, 9, udpDatagram(1, 2, 2000), 1024) {
		pkts = append(pkts, on(t, f, inside))
	}
	out := make([]uint8, len(pkts))
	if n := testing.AllocsPerRun(100, func() { s.Owners(pkts, 0, out) }); n != 0 {
		t.Fatalf("%v allocations per batch", n)
	}
}

// FuzzSteering builds a flow from the fuzzer's numbers, translates it as
// SNAT or DNAT would, and checks that every packet of it, ICMP errors
// quoting either direction included, has one owner; any frame at all must
// not panic.
func FuzzSteering(f *testing.F) {
	f.Add(uint32(0xc6120001), uint32(0xc6130002), uint32(0xcb007107), uint16(1000), uint16(53), uint16(40000), uint8(0), uint8(2), []byte{})
	f.Add(uint32(0x0a000001), uint32(0x08080808), uint32(0xcb007107), uint16(1), uint16(2), uint16(3), uint8(1), uint8(3), []byte{0x45})
	f.Fuzz(func(t *testing.T, a, b, x uint32, pa, pb, px uint16, mode, workers uint8, junk []byte) {
		n := int(workers)%16 + 1
		s := newSteering(t, SteeringConfig{Workers: n, NAT: true, Outside: []uint16{outside}})
		var p packet.Packet
		p.Reset(junk, 0, 0)
		p.Parse()
		if o := s.Owner(&p, 0); int(o) >= n {
			t.Fatalf("owner %d of %d workers", o, n)
		}
		pa, pb, px = max(pa, 1), max(pb, 1), max(px, 1)
		A, B, X := addr4(a), addr4(b), addr4(x)
		if A == B || A == X || B == X {
			return
		}
		var orig, origOut, reply, replyOut []byte // as they arrive and as they leave
		var origIn, replyIn uint16
		switch mode % 3 {
		case 0: // SNAT A:pa > B:pb as X:px
			orig, origOut = udpFrame(t, ap(A, pa), ap(B, pb)), udpFrame(t, ap(X, px), ap(B, pb))
			reply, replyOut = udpFrame(t, ap(B, pb), ap(X, px)), udpFrame(t, ap(B, pb), ap(A, pa))
			origIn, replyIn = inside, outside
		case 1: // DNAT B:pb > X:px to A:pa
			orig, origOut = udpFrame(t, ap(B, pb), ap(X, px)), udpFrame(t, ap(B, pb), ap(A, pa))
			reply, replyOut = udpFrame(t, ap(A, pa), ap(B, pb)), udpFrame(t, ap(X, px), ap(B, pb))
			origIn, replyIn = outside, inside
		case 2: // SNAT of an echo, the identifier translated
			orig, origOut = echoFrame(t, A, B, pa, false), echoFrame(t, X, B, px, false)
			reply, replyOut = echoFrame(t, B, X, px, true), echoFrame(t, B, A, pa, true)
			origIn, replyIn = inside, outside
		}
		from := func(fr []byte) netip.Addr { return netip.AddrFrom4([4]byte(fr[26:30])) }
		to := func(fr []byte) netip.Addr { return netip.AddrFrom4([4]byte(fr[30:34])) }
		sameOwner(t, s, fmt.Sprintf("mode %d", mode%3),
			on(t, orig, origIn), on(t, reply, replyIn),
			// the far side answers what left with an error; so does the near side
			on(t, icmpErrorFrame(t, to(origOut), from(origOut), 3, 3, origOut, 0), replyIn),
			on(t, icmpErrorFrame(t, to(replyOut), from(replyOut), 3, 3, replyOut, 0), origIn))
		sym := newSteering(t, SteeringConfig{Workers: n})
		sameOwner(t, sym, "symmetric", on(t, orig, origIn), on(t, replyOut, replyIn),
			on(t, icmpErrorFrame(t, to(orig), from(orig), 3, 3, orig, 0), replyIn))
	})
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func BenchmarkSteeringOwners(b *testing.B) {
	for _, nat := range []bool{false, true} {
		b.Run(fmt.Sprintf("nat=%v", nat), func(b *testing.B) {
			s := newSteering(b, SteeringConfig{Workers: 2, NAT: nat, Outside: []uint16{outside}})
			pkts := make([]packet.Packet, 64)
			for i := range pkts {
				pkts[i] = on(b, udpFrame(b, ap(a4, uint16(1000+i)), ap(b4, 53)), uint16(i&1))
			}
			out := make([]uint8, len(pkts))
			b.ReportAllocs()
			for b.Loop() {
				s.Owners(pkts, 0, out)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(pkts)), "ns/pkt")
		})
	}
}

// A datagram's later fragments, which carry no ports, go where the
// receiving worker sent its first fragment; before their first fragment,
// or on another receiving worker, they stay where they landed.
func TestSteeringSendsLaterFragmentsAfterTheirFirst(t *testing.T) {
	for _, s := range []*Steering{newSteering(t, SteeringConfig{Workers: 4}), natSteering(t, 4)} {
		owners := map[uint8]int{}
		for i := range 64 {
			for _, fam := range families {
				frs := split(t, fam.src, fam.dst, packet.ProtoUDP, uint32(i), udpDatagram(uint16(1000+i), 53, 2000), 1024)
				first, later := on(t, frs[0], inside), on(t, frs[1], inside)
				if o := s.Owner(&later, 2); o != 2 {
					t.Fatalf("a later fragment before its first: owner %d, want the receiving worker", o)
				}
				o := s.Owner(&first, 2)
				whole := on(t, udpFrame(t, ap(fam.src, uint16(1000+i)), ap(fam.dst, 53)), inside)
				if o != s.Owner(&whole, 2) {
					t.Errorf("the first fragment's owner %d is not its flow's %d", o, s.Owner(&whole, 2))
				}
				owners[o]++
				for j, f := range frs[1:] {
					p := on(t, f, inside)
					if got := s.Owner(&p, 2); got != o {
						t.Errorf("%s datagram %d, fragment %d: owner %d, want %d", fam.name, i, j+1, got, o)
					}
					if got := s.Owner(&p, 1); got != 1 {
						t.Errorf("another receiving worker knows nothing of it: owner %d", got)
					}
				}
			}
		}
		if len(owners) < 3 {
			t.Errorf("datagrams of 64 flows went to %v", owners)
		}
	}
	// An atomic fragment is a packet like any other.
	s := newSteering(t, SteeringConfig{Workers: 4})
	at := on(t, fragFrame(t, a6, b6, packet.ProtoUDP, 1, 0, false, udpDatagram(7, 8, 8)), inside)
	if s.Owner(&at, 255) == 255 {
		t.Error("an atomic fragment is not steered by its flow")
	}
}
