package conntrack

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/packet"
)

const sec = int64(time.Second)

func TestUDP(t *testing.T) {
	for _, fam := range []struct {
		name string
		a, b netip.Addr
	}{{"v4", a4, b4}, {"v6", a6, b6}} {
		t.Run(fam.name, func(t *testing.T) {
			tb := newTable(t, Config{MaxFlows: 16})
			query := parsed(t, udpFrame(t, ap(fam.a, 5353), ap(fam.b, 53)))
			answer := parsed(t, udpFrame(t, ap(fam.b, 53), ap(fam.a, 5353)))
			r := tb.Track(query, 10*sec)
			if r.State != StateNew || r.Dir != Original || r.Flow == nil {
				t.Fatalf("first datagram: %+v", r)
			}
			f := r.Flow
			if f.Expires() != 40*sec {
				t.Fatalf("unreplied flow expires at %v, want 30s later", f.Expires())
			}
			if r := tb.Track(query, 11*sec); r.State != StateNew || r.Flow != f {
				t.Fatalf("second datagram before any reply: %+v", r)
			}
			if r := tb.Track(answer, 12*sec); r.State != StateEstablished || r.Dir != Reply || r.Flow != f {
				t.Fatalf("reply: %+v", r)
			}
			if f.Expires() != 132*sec || !f.Replied() {
				t.Fatalf("replied flow expires at %v (replied %v), want 120s after the reply", f.Expires(), f.Replied())
			}
			if r := tb.Track(query, 13*sec); r.State != StateEstablished || r.Dir != Original {
				t.Fatalf("original after the reply: %+v", r)
			}
			if f.Packets(Original) != 3 || f.Packets(Reply) != 1 {
				t.Fatalf("packets %d/%d, want 3/1", f.Packets(Original), f.Packets(Reply))
			}
			if f.Orig() != query.FlowKey() || f.Reply() != answer.FlowKey() || f.Proto() != packet.ProtoUDP {
				t.Fatalf("tuples %v / %v", f.Orig(), f.Reply())
			}
			c := tb.Counters()
			if c.New != 1 || c.Found != 3 || tb.Len() != 1 {
				t.Fatalf("counters %+v, Len %d", c, tb.Len())
			}
		})
	}
}

func TestICMPEcho(t *testing.T) {
	for _, fam := range []struct {
		name string
		a, b netip.Addr
	}{{"icmp", a4, b4}, {"icmpv6", a6, b6}} {
		t.Run(fam.name, func(t *testing.T) {
			tb := newTable(t, Config{MaxFlows: 16})
			if r := tb.Track(parsed(t, echoFrame(t, fam.b, fam.a, 7, true)), sec); r.State != StateInvalid || tb.Len() != 0 {
				t.Fatalf("unsolicited echo reply: %+v, Len %d", r, tb.Len())
			}
			r := tb.Track(parsed(t, echoFrame(t, fam.a, fam.b, 7, false)), sec)
			if r.State != StateNew || r.Flow == nil || r.Flow.Expires() != 31*sec {
				t.Fatalf("echo request: %+v", r)
			}
			f := r.Flow
			if r := tb.Track(parsed(t, echoFrame(t, fam.b, fam.a, 7, true)), 2*sec); r.State != StateEstablished || r.Flow != f || r.Dir != Reply {
				t.Fatalf("echo reply: %+v", r)
			}
			if r := tb.Track(parsed(t, echoFrame(t, fam.b, fam.a, 8, true)), 2*sec); r.State != StateInvalid {
				t.Fatalf("echo reply with another identifier: %+v", r)
			}
			if r := tb.Track(parsed(t, echoFrame(t, fam.a, fam.b, 8, false)), 2*sec); r.State != StateNew || r.Flow == f {
				t.Fatalf("echo request with another identifier: %+v", r)
			}
			if tb.Len() != 2 {
				t.Fatalf("Len %d, want 2", tb.Len())
			}
		})
	}
}

func TestUntrackedAndUnsound(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 16})
	udp := udpFrame(t, ap(a4, 5353), ap(b4, 53))
	short := func() *packet.Packet {
		p := &packet.Packet{}
		p.Reset(udp[:len(udp)-3], 0, 0) // cut inside the payload the IP header announces
		p.Parse()
		return p
	}()
	arp := &packet.Packet{}
	arp.Reset(make([]byte, 42), 0, 0)
	arp.Data[12], arp.Data[13] = 0x08, 0x06
	arp.Parse()
	cases := []struct {
		name  string
		p     *packet.Packet
		state State
	}{
		{"a truncated packet is invalid", short, StateInvalid},
		{"ARP is untracked", arp, StateUntracked},
		{"a router solicitation is untracked", parsed(t, frame(t, a6, b6, layers.IPProtocolICMPv6,
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeRouterSolicitation, 0)}, &layers.ICMPv6RouterSolicitation{})), StateUntracked},
		{"an ICMP timestamp request is untracked", parsed(t, frame(t, a4, b4, layers.IPProtocolICMPv4,
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(13, 0)})), StateUntracked},
		{"a UDP datagram from a port to itself is invalid", parsed(t, udpFrame(t, ap(a4, 7), ap(a4, 7))), StateInvalid},
		{"GRE is tracked by addresses", parsed(t, frame(t, a4, b4, layers.IPProtocolGRE, &layers.GRE{Protocol: layers.EthernetTypeIPv4})), StateNew},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if r := tb.Track(c.p, sec); r.State != c.state {
				t.Fatalf("state %v, want %v", r.State, c.state)
			}
		})
	}
	if r := tb.Track(parsed(t, frame(t, b4, a4, layers.IPProtocolGRE, &layers.GRE{Protocol: layers.EthernetTypeIPv4})), 2*sec); r.State != StateEstablished || r.Flow.Expires() != 602*sec {
		t.Fatalf("GRE the other way: %+v", r)
	}
	if c := tb.Counters(); c.Invalid != 2 || c.Untracked != 3 || c.New != 1 || c.Found != 1 {
		t.Fatalf("counters %+v", c)
	}
}

func TestRelated(t *testing.T) {
	type fam struct {
		name    string
		a, b, r netip.Addr
		unreach uint8 // port unreachable type and code
		code    uint8
		timeEx  uint8
		big     uint8
	}
	for _, f := range []fam{
		{"v4", a4, b4, r4, 3, 3, 11, 3}, // "packet too big" in v4 is unreachable/fragmentation needed
		{"v6", a6, b6, r6, 1, 4, 3, 2},
	} {
		t.Run(f.name, func(t *testing.T) {
			tb := newTable(t, Config{MaxFlows: 16})
			query := udpFrame(t, ap(f.a, 5353), ap(f.b, 53))
			r := tb.Track(parsed(t, query), sec)
			flow := r.Flow
			syn := tcpFrame(t, ap(f.a, 40000), ap(f.b, 443), packet.TCPSyn)
			tcpFlow := tb.Track(parsed(t, syn), sec).Flow
			ping := echoFrame(t, f.a, f.b, 99, false)
			echoFlow := tb.Track(parsed(t, ping), sec).Flow
			answer := udpFrame(t, ap(f.b, 53), ap(f.a, 5353))
			stranger := udpFrame(t, ap(f.a, 5354), ap(f.b, 53))
			cases := []struct {
				name  string
				frame []byte
				state State
				flow  *Flow
				dir   Dir
			}{
				{"port unreachable from the destination is related", icmpErrorFrame(t, f.b, f.a, f.unreach, f.code, query, 0), StateRelated, flow, Reply},
				{"time exceeded from a router is related", icmpErrorFrame(t, f.r, f.a, f.timeEx, 0, query, 0), StateRelated, flow, Reply},
				{"packet too big about a TCP segment is related", icmpErrorFrame(t, f.r, f.a, f.big, 4, syn, 0), StateRelated, tcpFlow, Reply},
				{"an error about an echo request is related", icmpErrorFrame(t, f.r, f.a, f.timeEx, 0, ping, 0), StateRelated, echoFlow, Reply},
				{"an error about the reply, sent to the responder, is related in the original direction", icmpErrorFrame(t, f.a, f.b, f.unreach, f.code, answer, 0), StateRelated, flow, Original},
				{"an error quoting only the IP header and 8 bytes is related", icmpErrorFrame(t, f.b, f.a, f.unreach, f.code, query, ipHeaderLen(f.a)+8), StateRelated, flow, Reply},
				{"an error quoting fewer than 8 bytes of L4 header is invalid", icmpErrorFrame(t, f.b, f.a, f.unreach, f.code, query, ipHeaderLen(f.a)+7), StateInvalid, nil, 0},
				{"an error about an untracked flow is invalid", icmpErrorFrame(t, f.b, f.a, f.unreach, f.code, stranger, 0), StateInvalid, nil, 0},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					before := flow.Expires()
					r := tb.Track(parsed(t, c.frame), 2*sec)
					if r.State != c.state || r.Flow != c.flow || r.Dir != c.dir {
						t.Fatalf("result %v %p %v, want %v %p %v", r.State, r.Flow, r.Dir, c.state, c.flow, c.dir)
					}
					if flow.Expires() != before || flow.Replied() {
						t.Fatal("an ICMP error moved the flow it quotes")
					}
				})
			}
			// NAT: the flow's packets leave translated to x:6000, so errors
			// quote the translated packet.
			nat, err := tb.Create(key(ap(f.a, 7000), ap(f.b, 53), packet.ProtoUDP), key(ap(f.b, 53), ap(xAddr(f.a), 6000), packet.ProtoUDP), 2*sec)
			if err != nil {
				t.Fatal(err)
			}
			sent := udpFrame(t, ap(xAddr(f.a), 6000), ap(f.b, 53))
			r = tb.Track(parsed(t, icmpErrorFrame(t, f.b, xAddr(f.a), f.unreach, f.code, sent, 0)), 3*sec)
			if r.State != StateRelated || r.Flow != nat || r.Dir != Reply {
				t.Fatalf("error about a translated packet: %v %p %v, want related %p reply", r.State, r.Flow, r.Dir, nat)
			}
			k, off, ok := QuotedKey(parsed(t, icmpErrorFrame(t, f.b, f.a, f.unreach, f.code, query, 0)))
			if !ok || k != parsed(t, query).FlowKey() || off != 14+ipHeaderLen(f.a)+8 {
				t.Fatalf("QuotedKey = %v, %d, %v", k, off, ok)
			}
		})
	}
}

func ipHeaderLen(a netip.Addr) int {
	if a.Is4() {
		return 20
	}
	return 40
}

func xAddr(a netip.Addr) netip.Addr {
	if a.Is4() {
		return x4
	}
	return x6
}

func TestTimeouts(t *testing.T) {
	to := Timeouts{UDP: 5 * time.Second, UDPStream: 50 * time.Second, ICMP: 3 * time.Second, TCPSynSent: 7 * time.Second}
	cases := []struct {
		name  string
		first []byte
		reply []byte
		life  time.Duration
	}{
		{"an unreplied UDP flow lives UDP", udpFrame(t, ap(a4, 1), ap(b4, 2)), nil, to.UDP},
		{"a replied UDP flow lives UDPStream", udpFrame(t, ap(a4, 1), ap(b4, 2)), udpFrame(t, ap(b4, 2), ap(a4, 1)), to.UDPStream},
		{"an echo lives ICMP", echoFrame(t, a6, b6, 1, false), nil, to.ICMP},
		{"a SYN lives TCPSynSent", tcpFrame(t, ap(a4, 1), ap(b4, 2), syn), nil, to.TCPSynSent},
		{"a SYN-ACK moves to TCPSynRecv (default)", tcpFrame(t, ap(a4, 1), ap(b4, 2), syn), tcpFrame(t, ap(b4, 2), ap(a4, 1), synack), DefaultTimeouts.TCPSynRecv},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb := newTable(t, Config{MaxFlows: 16, Timeouts: to})
			p := parsed(t, c.first)
			start := 100 * sec
			tb.Track(p, start)
			if c.reply != nil {
				start += sec
				if r := tb.Track(parsed(t, c.reply), start); r.State != StateEstablished {
					t.Fatalf("reply: %+v", r)
				}
			}
			end := start + int64(c.life)
			if _, _, ok := tb.Lookup(p.FlowKey(), end-1); !ok {
				t.Fatal("gone before its timeout")
			}
			if _, _, ok := tb.Lookup(p.FlowKey(), end); ok {
				t.Fatal("alive at its timeout")
			}
			if n := tb.Expire(end-1, 0); n != 0 || tb.Len() != 1 {
				t.Fatalf("Expire before the timeout freed %d", n)
			}
			if n := tb.Expire(end, 0); n != 1 || tb.Len() != 0 || tb.Counters().Expired != 1 {
				t.Fatalf("Expire at the timeout freed %d (Len %d)", n, tb.Len())
			}
			tb.check(t)
		})
	}
	t.Run("an expired flow met by a packet starts over", func(t *testing.T) {
		tb := newTable(t, Config{MaxFlows: 16, Timeouts: to, ExpireScan: 1})
		q := parsed(t, udpFrame(t, ap(a4, 1), ap(b4, 2)))
		tb.Track(q, 0)
		tb.Track(parsed(t, udpFrame(t, ap(b4, 2), ap(a4, 1))), sec)
		// A second flow, so the hand (one entry per packet) is elsewhere
		// when the first is met again.
		tb.Track(parsed(t, udpFrame(t, ap(a4, 3), ap(b4, 4))), sec)
		r := tb.Track(q, sec+int64(to.UDPStream))
		if r.State != StateNew || r.Flow.Replied() {
			t.Fatalf("after expiry: %+v", r)
		}
		// The hand, one entry per packet, freed the second flow; the
		// packet itself met the first.
		if c := tb.Counters(); c.Expired != 2 || c.New != 3 {
			t.Fatalf("counters %+v", c)
		}
		tb.check(t)
	})
	t.Run("the clock hand frees expired flows as packets pass", func(t *testing.T) {
		tb := newTable(t, Config{MaxFlows: 1024, Timeouts: to, ExpireScan: 4})
		for i := range 100 {
			tb.Track(parsed(t, udpFrame(t, ap(a4, uint16(1000+i)), ap(b4, 53))), 0)
		}
		other := parsed(t, udpFrame(t, ap(a4, 1), ap(b4, 2)))
		for range 25 {
			tb.Track(other, int64(to.UDP)) // the 100 first have expired
		}
		if tb.Len() != 1 || tb.Counters().Expired != 100 {
			t.Fatalf("Len %d, expired %d: want 1, 100", tb.Len(), tb.Counters().Expired)
		}
		tb.check(t)
	})
}

func TestFull(t *testing.T) {
	fill := func(t *testing.T, tb *Table) []*Flow {
		var fs []*Flow
		for i := range tb.Cap() {
			// Flow i was last seen at i seconds: flow 0 expires first.
			r := tb.Track(parsed(t, udpFrame(t, ap(a4, uint16(1000+i)), ap(b4, 53))), int64(i)*sec)
			fs = append(fs, r.Flow)
		}
		return fs
	}
	extra := func(t *testing.T) *packet.Packet { return parsed(t, udpFrame(t, ap(a4, 9), ap(b4, 53))) }

	t.Run("refuse: a new flow is invalid and counted", func(t *testing.T) {
		tb := newTable(t, Config{MaxFlows: 4})
		fill(t, tb)
		r := tb.Track(extra(t), 5*sec)
		if r.State != StateInvalid || r.Flow != nil || tb.Len() != 4 {
			t.Fatalf("%+v, Len %d", r, tb.Len())
		}
		if c := tb.Counters(); c.Full != 1 || c.Invalid != 1 || c.Evicted != 0 {
			t.Fatalf("counters %+v", c)
		}
		// Known flows still pass.
		if r := tb.Track(parsed(t, udpFrame(t, ap(b4, 53), ap(a4, 1000))), 5*sec); r.State != StateEstablished {
			t.Fatalf("known flow in a full table: %+v", r)
		}
		tb.check(t)
	})
	t.Run("refuse: an expired flow makes room", func(t *testing.T) {
		tb := newTable(t, Config{MaxFlows: 4, ExpireScan: 1})
		fill(t, tb)
		r := tb.Track(extra(t), 30*sec) // flow 0 expired, the hand has not seen it
		if r.State != StateNew {
			t.Fatalf("%+v", r)
		}
		if c := tb.Counters(); c.Full != 0 || c.Expired != 1 || c.Evicted != 0 {
			t.Fatalf("counters %+v", c)
		}
		tb.check(t)
	})
	t.Run("evict: the flow that expires first goes", func(t *testing.T) {
		tb := newTable(t, Config{MaxFlows: 4, Full: EvictOldest})
		fill(t, tb)
		// Make flow 1 the one to keep longest: a reply gives it 120s.
		tb.Track(parsed(t, udpFrame(t, ap(b4, 53), ap(a4, 1001))), 4*sec)
		tb.Track(parsed(t, udpFrame(t, ap(a4, 1000), ap(b4, 53))), 4*sec) // flow 0 refreshed: expires 34s
		r := tb.Track(extra(t), 5*sec)
		if r.State != StateNew {
			t.Fatalf("%+v", r)
		}
		// Flow 2 (seen at 2s, expires at 32s) was the first to expire.
		if _, _, ok := tb.Lookup(key(ap(a4, 1002), ap(b4, 53), packet.ProtoUDP), 5*sec); ok {
			t.Fatal("flow 2 survived")
		}
		for _, port := range []uint16{1000, 1001, 1003} {
			if _, _, ok := tb.Lookup(key(ap(a4, port), ap(b4, 53), packet.ProtoUDP), 5*sec); !ok {
				t.Fatalf("flow from port %d was evicted", port)
			}
		}
		if c := tb.Counters(); c.Evicted != 1 || c.Full != 0 || tb.Len() != 4 {
			t.Fatalf("counters %+v", c)
		}
		tb.check(t)
	})
	t.Run("evict: a flow in an earlier result of the batch is spared, even a related one", func(t *testing.T) {
		tb := newTable(t, Config{MaxFlows: 2, Full: EvictOldest})
		fill(t, tb) // flow 0 expires first
		var b packet.Batch
		for _, f := range [][]byte{
			icmpErrorFrame(t, b4, a4, 3, 3, udpFrame(t, ap(a4, 1000), ap(b4, 53)), 0), // related to flow 0
			udpFrame(t, ap(a4, 1), ap(b4, 53)),                                        // evicts flow 1, not 0
			udpFrame(t, ap(a4, 2), ap(b4, 53)),                                        // nothing left to evict
		} {
			b.Append(f, 0, 0).Parse()
		}
		out := tb.TrackBatch(&b, 9*sec, make([]Result, 3))
		if out[0].State != StateRelated || out[1].State != StateNew || out[2].State != StateInvalid {
			t.Fatalf("states %v %v %v", out[0].State, out[1].State, out[2].State)
		}
		if out[0].Flow.Orig().SrcPort != 1000 {
			t.Fatalf("the related flow was evicted: %v", out[0].Flow)
		}
		if c := tb.Counters(); c.Evicted != 1 || c.Full != 1 {
			t.Fatalf("counters %+v", c)
		}
		// The next call may evict it.
		if r := tb.Track(parsed(t, udpFrame(t, ap(a4, 2), ap(b4, 53))), 9*sec); r.State != StateNew || tb.Counters().Evicted != 2 {
			t.Fatalf("next call: %+v, %+v", r, tb.Counters())
		}
	})
	t.Run("evict: a batch never evicts a flow it tracked", func(t *testing.T) {
		tb := newTable(t, Config{MaxFlows: 4, Full: EvictOldest})
		fill(t, tb)
		var b packet.Batch
		frames := [][]byte{
			udpFrame(t, ap(a4, 1000), ap(b4, 53)),
			udpFrame(t, ap(a4, 1001), ap(b4, 53)),
			udpFrame(t, ap(a4, 1002), ap(b4, 53)),
			udpFrame(t, ap(a4, 1), ap(b4, 53)), // evicts 1003, the only one untouched
			udpFrame(t, ap(a4, 2), ap(b4, 53)), // no victim left
		}
		for _, f := range frames {
			b.Append(f, 0, 0).Parse()
		}
		out := tb.TrackBatch(&b, 10*sec, make([]Result, packet.MaxBurst))
		want := []State{StateNew, StateNew, StateNew, StateNew, StateInvalid}
		if len(out) != len(want) {
			t.Fatalf("%d results", len(out))
		}
		for i, r := range out {
			if r.State != want[i] {
				t.Fatalf("packet %d: %v, want %v", i, r.State, want[i])
			}
			if r.Flow != nil && r.Flow.Orig() != b.Packets[i].FlowKey() {
				t.Fatalf("packet %d: its flow was reused within the batch", i)
			}
		}
		if c := tb.Counters(); c.Evicted != 1 || c.Full != 1 {
			t.Fatalf("counters %+v", c)
		}
		tb.check(t)
	})
}

func TestNATReplyTuple(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 16})
	orig := key(ap(a4, 5000), ap(b4, 80), packet.ProtoTCP)
	reply := key(ap(b4, 80), ap(x4, 61000), packet.ProtoTCP) // SNAT to x4:61000
	f, err := tb.Create(orig, reply, sec)
	if err != nil {
		t.Fatal(err)
	}
	if f.TCPState() != TCPSynSent || f.Replied() || f.Reply() != reply {
		t.Fatalf("created %v", f)
	}
	steps := []struct {
		src, dst netip.AddrPort
		flags    uint8
		state    State
		dir      Dir
	}{
		{ap(a4, 5000), ap(b4, 80), syn, StateNew, Original},
		{ap(b4, 80), ap(x4, 61000), synack, StateEstablished, Reply},
		{ap(a4, 5000), ap(b4, 80), ack, StateEstablished, Original},
		{ap(b4, 80), ap(x4, 61000), data, StateEstablished, Reply},
	}
	for i, s := range steps {
		r := tb.Track(parsed(t, tcpFrame(t, s.src, s.dst, s.flags)), 2*sec)
		if r.State != s.state || r.Dir != s.dir || r.Flow != f {
			t.Fatalf("step %d: %v %v %p, want %v %v %p", i, r.State, r.Dir, r.Flow, s.state, s.dir, f)
		}
	}
	// The untranslated reverse tuple is not the flow's.
	if _, _, ok := tb.Lookup(orig.Reverse(), 2*sec); ok {
		t.Fatal("orig.Reverse() finds the translated flow")
	}
	if g, d, ok := tb.Lookup(reply, 2*sec); !ok || g != f || d != Reply {
		t.Fatal("Lookup of the reply tuple")
	}
	if _, err := tb.Create(key(ap(a4, 5001), ap(b4, 80), packet.ProtoTCP), reply, 2*sec); !errors.Is(err, ErrExists) {
		t.Fatalf("a second flow with the same reply tuple: %v", err)
	}
	if _, err := tb.Create(orig, key(ap(b4, 80), ap(x4, 1), packet.ProtoTCP), 2*sec); !errors.Is(err, ErrExists) {
		t.Fatalf("a second flow with the same original tuple: %v", err)
	}
	if _, err := tb.Create(orig, key(ap(b4, 80), ap(x4, 1), packet.ProtoUDP), 2*sec); !errors.Is(err, ErrMismatch) {
		t.Fatalf("tuples of two protocols: %v", err)
	}

	t.Run("SetReply translates a flow Track made", func(t *testing.T) {
		r := tb.Track(parsed(t, udpFrame(t, ap(a6, 7000), ap(b6, 53))), 3*sec)
		g := r.Flow
		old := g.Reply()
		nat := key(ap(b6, 53), ap(x6, 40000), packet.ProtoUDP)
		if err := tb.SetReply(g, nat, 3*sec); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := tb.Lookup(old, 3*sec); ok {
			t.Fatal("the old reply tuple still finds the flow")
		}
		if r := tb.Track(parsed(t, udpFrame(t, ap(b6, 53), ap(x6, 40000))), 4*sec); r.Flow != g || r.Dir != Reply || r.State != StateEstablished {
			t.Fatalf("translated reply: %+v", r)
		}
		if err := tb.SetReply(g, reply, 4*sec); !errors.Is(err, ErrMismatch) {
			t.Fatalf("SetReply to a TCP tuple: %v", err)
		}
		h := tb.Track(parsed(t, udpFrame(t, ap(a6, 7001), ap(b6, 53))), 4*sec).Flow
		if err := tb.SetReply(h, nat, 4*sec); !errors.Is(err, ErrExists) {
			t.Fatalf("SetReply to a tuple in use: %v", err)
		}
		if err := tb.SetReply(h, h.Orig(), 4*sec); !errors.Is(err, ErrExists) {
			t.Fatalf("SetReply to the flow's own original tuple: %v", err)
		}
		if err := tb.SetReply(&Flow{}, nat, 4*sec); !errors.Is(err, ErrNotFound) {
			t.Fatalf("SetReply of a foreign Flow: %v", err)
		}
		tb.check(t)
	})
}

func TestDeleteAndFlows(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 16})
	for i := range 5 {
		tb.Track(parsed(t, udpFrame(t, ap(a4, uint16(1000+i)), ap(b4, 53))), int64(i)*sec)
	}
	if !tb.Delete(key(ap(b4, 53), ap(a4, 1002), packet.ProtoUDP)) {
		t.Fatal("Delete by the reply tuple found nothing")
	}
	if tb.Delete(key(ap(b4, 53), ap(a4, 1002), packet.ProtoUDP)) {
		t.Fatal("Delete twice")
	}
	// At 31s flows 0 and 1 have expired.
	var ports []uint16
	for f := range tb.Flows(31 * sec) {
		ports = append(ports, f.Orig().SrcPort)
	}
	if len(ports) != 2 || ports[0] != 1003 || ports[1] != 1004 {
		t.Fatalf("Flows at 31s: %v", ports)
	}
	if c := tb.Counters(); c.Deleted != 1 || tb.Len() != 4 {
		t.Fatalf("counters %+v, Len %d", c, tb.Len())
	}
	tb.check(t)
}

func TestConfig(t *testing.T) {
	bad := []Config{
		{MaxFlows: -1},
		{MaxFlows: maxFlows + 1},
		{Full: 7},
		{EvictScan: -1},
		{ExpireScan: -1},
		{Timeouts: Timeouts{UDP: -time.Second}},
	}
	for _, c := range bad {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	tb := newTable(t, Config{})
	if tb.Cap() != 65536 || tb.tcpTO[TCPEstablished] != int64(DefaultTimeouts.TCPEstablished) {
		t.Fatalf("defaults: cap %d", tb.Cap())
	}
	if EntrySize != 128 || tupleOff != 64 || unsafe.Offsetof(Flow{}.orig) != 0 {
		t.Errorf("EntrySize %d, reply tuple at %d: want 128 and 64 (a cache line per direction)", EntrySize, tupleOff)
	}
}

func TestStrings(t *testing.T) {
	for s, want := range map[State]string{StateUntracked: "untracked", StateNew: "new", StateEstablished: "established", StateRelated: "related", StateInvalid: "invalid", 3: "state(3)"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", s, s.String(), want)
		}
	}
	tb := newTable(t, Config{MaxFlows: 4})
	f, _ := tb.Create(key(ap(a6, 1), ap(b6, 2), packet.ProtoTCP), key(ap(b6, 2), ap(x6, 3), packet.ProtoTCP), 0)
	if got, want := f.String(), "tcp [2001:db8::1]:1 > [2001:db8:1::2]:2 reply [2001:db8:1::2]:2 > [2001:db8:beef::7]:3 syn_sent unreplied"; got != want {
		t.Errorf("Flow.String() = %q, want %q", got, want)
	}
}

// TestRelatedIPv6ExtensionHeaders: the quoted IPv6 packet may carry
// extension headers before its L4 header; QuotedKey walks them.
func TestRelatedIPv6ExtensionHeaders(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 16})
	q := udpFrame(t, ap(a6, 5353), ap(b6, 53))
	flow := tb.Track(parsed(t, q), sec).Flow
	// withExt returns q with an extension header of type nh inserted
	// after the fixed header.
	withExt := func(nh uint8, ext []byte) []byte {
		f := append([]byte(nil), q[:14+40]...)
		f = append(f, ext...)
		f = append(f, q[14+40:]...)
		ip := f[14:]
		ext[0], ip[6] = ip[6], nh // the extension header takes the old next header
		copy(f[14+40:], ext)
		binary.BigEndian.PutUint16(ip[4:6], binary.BigEndian.Uint16(ip[4:6])+uint16(len(ext)))
		return f
	}
	dstOpts := []byte{0, 0, 1, 4, 0, 0, 0, 0}              // PadN
	firstFrag := []byte{0, 0, 0x00, 0x01, 0, 0, 0, 1}      // offset 0, more fragments
	laterFrag := []byte{0, 0, 0x00, 0x08 << 3, 0, 0, 0, 1} // offset 64
	cases := []struct {
		name  string
		quote []byte
		state State
	}{
		{"a quote with destination options is related", withExt(packet.ProtoDstOpts, dstOpts), StateRelated},
		{"a quoted first fragment is related", withExt(packet.ProtoFragment, firstFrag), StateRelated},
		{"a quoted later fragment is invalid", withExt(packet.ProtoFragment, laterFrag), StateInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := tb.Track(parsed(t, icmpErrorFrame(t, b6, a6, 1, 4, c.quote, 0)), 2*sec)
			if r.State != c.state {
				t.Fatalf("state %v, want %v", r.State, c.state)
			}
			if c.state == StateRelated && (r.Flow != flow || r.Dir != Reply) {
				t.Fatalf("flow %v dir %v", r.Flow, r.Dir)
			}
		})
	}
}

func TestLookupPacket(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 16})
	q := udpFrame(t, ap(a4, 5353), ap(b4, 53))
	query, answer := parsed(t, q), parsed(t, udpFrame(t, ap(b4, 53), ap(a4, 5353)))
	unreach := parsed(t, icmpErrorFrame(t, b4, a4, 3, 3, q, 0))
	if r := tb.LookupPacket(query, sec); r != (Result{}) {
		t.Fatalf("before any Track: %+v", r)
	}
	f := tb.Track(query, sec).Flow
	before, ctr := *f, tb.Counters()
	cases := []struct {
		name  string
		p     *packet.Packet
		state State
		dir   Dir
	}{
		{"the query of an unreplied flow is new", query, StateNew, Original},
		{"its answer is established", answer, StateEstablished, Reply},
		{"an error quoting the query is related", unreach, StateRelated, Reply},
	}
	for _, c := range cases {
		r := tb.LookupPacket(c.p, 2*sec)
		if r.State != c.state || r.Dir != c.dir || r.Flow != f {
			t.Errorf("%s: %v %v %p", c.name, r.State, r.Dir, r.Flow)
		}
	}
	if *f != before || tb.Counters() != ctr {
		t.Fatal("LookupPacket changed the flow or the counters")
	}
	if r := tb.LookupPacket(query, f.Expires()); r.Flow != nil {
		t.Fatalf("an expired flow: %+v", r)
	}
}

// Batch tracks for the stage that owns the table and only looks up for a
// stage that shares it; packets no longer forwarded get a zero Result.
func TestBatchTracksOrLooksUp(t *testing.T) {
	tb := newTable(t, Config{MaxFlows: 16})
	var b packet.Batch
	for _, f := range [][]byte{udpFrame(t, ap(a4, 5353), ap(b4, 53)), udpFrame(t, ap(a4, 5354), ap(b4, 53))} {
		b.Append(f, 0, 0).Parse()
	}
	b.Packets[1].SetDrop(packet.DropPolicy)
	out := make([]Result, 0, packet.MaxBurst)
	res := tb.Batch(&b, sec, true, out)
	if len(res) != 2 || res[0] != (Result{}) || res[1] != (Result{}) || tb.Len() != 0 {
		t.Fatalf("shared, before any tracking: %+v, %d flows", res, tb.Len())
	}
	res = tb.Batch(&b, sec, false, out)
	if res[0].State != StateNew || res[0].Flow == nil || res[1] != (Result{}) || tb.Len() != 1 {
		t.Fatalf("tracking: %+v, %d flows", res, tb.Len())
	}
	f, ctr := *res[0].Flow, tb.Counters()
	res = tb.Batch(&b, 2*sec, true, out)
	if res[0].State != StateNew || res[0].Flow == nil || res[1] != (Result{}) {
		t.Fatalf("shared, after tracking: %+v", res)
	}
	if *res[0].Flow != f || tb.Counters() != ctr {
		t.Fatal("a shared Batch changed the flow or the counters")
	}
}

// What the RFCs forbid is invalid, so "drop state invalid" drops it: IPv6
// UDP without a checksum (RFC 8200 8.1) and TCP or UDP to or from port 0.
func TestForbiddenByRFCIsInvalid(t *testing.T) {
	a4, b4 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.19.0.1")
	a6, b6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:1::1")
	noSum := func(f []byte) []byte {
		f[14+40+6], f[14+40+7] = 0, 0
		return f
	}
	cases := []struct {
		name  string
		f     []byte
		state State
	}{
		{"IPv6 UDP with checksum 0 is invalid", noSum(udpFrame(t, ap(a6, 5000), ap(b6, 53))), StateInvalid},
		{"IPv6 UDP with a checksum is new", udpFrame(t, ap(a6, 5000), ap(b6, 53)), StateNew},
		{"IPv4 UDP with checksum 0 is new (RFC 768 allows it)", func() []byte {
			f := udpFrame(t, ap(a4, 5000), ap(b4, 53))
			f[14+20+6], f[14+20+7] = 0, 0
			return f
		}(), StateNew},
		{"UDP to port 0 is invalid", udpFrame(t, ap(a4, 5001), ap(b4, 0)), StateInvalid},
		{"UDP from port 0 is invalid", udpFrame(t, ap(a4, 0), ap(b4, 53)), StateInvalid},
		{"IPv6 UDP to port 0 is invalid", udpFrame(t, ap(a6, 5001), ap(b6, 0)), StateInvalid},
		{"a TCP SYN to port 0 is invalid", tcpFrame(t, ap(a4, 40000), ap(b4, 0), packet.TCPSyn), StateInvalid},
		{"a TCP SYN from port 0 is invalid", tcpFrame(t, ap(a6, 0), ap(b6, 80), packet.TCPSyn), StateInvalid},
		{"a TCP SYN between real ports is new", tcpFrame(t, ap(a4, 40000), ap(b4, 80), packet.TCPSyn), StateNew},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb := newTable(t, Config{MaxFlows: 64})
			if r := tb.Track(parsed(t, c.f), sec); r.State != c.state {
				t.Fatalf("state %v, want %v", r.State, c.state)
			}
			if c.state == StateInvalid && (tb.Len() != 0 || tb.Counters().Invalid != 1) {
				t.Errorf("an invalid packet left %d flows, invalid counted %d", tb.Len(), tb.Counters().Invalid)
			}
		})
	}
}
