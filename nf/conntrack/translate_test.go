package conntrack

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/packet"
)

// TestTranslateError checks TranslateError byte for byte against errors
// built from scratch (gopacket computes every length and checksum): an
// error about a translated packet must leave as the error its receiver
// would have got about the packet as it was sent, in IPv4 and IPv6, for
// TCP, UDP and echo quotes, whole or cut short, about packets of either
// direction, for a flow translated on one side or on both.
//
// The flow runs from the client A:a to the service V:v and is rewritten
// to X:x > B:b (full NAT; DNAT only: A:a > B:b): its reply tuple is
// B:b > X:x. R is a router on either path.
func TestTranslateError(t *testing.T) {
	const a, v, x, b = 40000, 80, 50000, 8080
	fam := []struct {
		name                        string
		cA, vV, xX, bB, rR          netip.Addr
		unreach, code, tooBig, tbCd uint8
	}{
		{"IPv4", a4, netip.MustParseAddr("198.18.1.100"), x4, b4, r4, 3, 3, 3, 4},
		{"IPv6", a6, netip.MustParseAddr("2001:db8:100::100"), x6, b6, r6, 1, 4, 2, 0},
	}
	for _, fm := range fam {
		for _, full := range []bool{false, true} {
			for _, proto := range []uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMP} {
				for _, quoteLen := range []int{0, 28} { // whole, or the IP header and 8 bytes of L4 (IPv4)
					name := fm.name + "/" + map[bool]string{false: "dnat", true: "full-nat"}[full] + "/" +
						map[uint8]string{packet.ProtoTCP: "tcp", packet.ProtoUDP: "udp", packet.ProtoICMP: "echo"}[proto]
					if quoteLen > 0 {
						if !fm.vV.Is4() {
							quoteLen = 48
						}
						name += "/cut"
					}
					t.Run(name, func(t *testing.T) {
						translateErrorCase(t, fm.cA, fm.vV, fm.xX, fm.bB, fm.rR, full, proto, quoteLen,
							[2]uint8{fm.unreach, fm.code}, [2]uint8{fm.tooBig, fm.tbCd}, [4]uint16{a, v, x, b})
					})
				}
			}
		}
	}
}

func translateErrorCase(t *testing.T, A, V, X, B, R netip.Addr, full bool, proto uint8, quoteLen int, unreach, tooBig [2]uint8, ports [4]uint16) {
	a, v, x, b := ports[0], ports[1], ports[2], ports[3]
	src := A // the translated source of original packets
	sp := a
	if full {
		src, sp = X, x
	}
	v6 := !A.Is4()
	l4proto := proto
	if proto == packet.ProtoICMP && v6 {
		l4proto = packet.ProtoICMPv6
	}
	// pkt builds the packet of the flow from s:sp to d:dp (for echo: a
	// request with id sp, or a reply with id dp when reply).
	pkt := func(s netip.Addr, sp uint16, d netip.Addr, dp uint16, reply bool) []byte {
		switch proto {
		case packet.ProtoTCP:
			return tcpFrame(t, ap(s, sp), ap(d, dp), packet.TCPAck|packet.TCPPsh)
		case packet.ProtoUDP:
			return udpFrame(t, ap(s, sp), ap(d, dp))
		}
		if reply {
			return echoFrame(t, s, d, dp, true)
		}
		return echoFrame(t, s, d, sp, false)
	}
	tb := newTable(t, Config{MaxFlows: 16})
	orig := key(ap(A, a), ap(V, v), l4proto)
	reply := key(ap(B, b), ap(src, sp), l4proto)
	if proto == packet.ProtoICMP {
		// Echo keys: a request (id, 0), its reply (0, id).
		orig.DstPort, reply.SrcPort = 0, 0
	}
	f, err := tb.Create(orig, reply, sec)
	if err != nil {
		t.Fatal(err)
	}
	quote := func(fr []byte) []byte {
		if quoteLen > 0 {
			return fr[:14+quoteLen]
		}
		return fr
	}
	cases := []struct {
		name     string
		in, want []byte
		dir      Dir
	}{
		{
			// The original packet left as src:sp > B:b; R, on the way to
			// B, says it is too big. The client must hear it from V
			// about A:a > V:v. (The outer source becomes V: the flow
			// rewrites the source of its reply direction.)
			name: "about an original packet",
			in:   icmpErrorFrame(t, R, src, tooBig[0], tooBig[1], quote(pkt(src, sp, B, b, false)), 0),
			want: icmpErrorFrame(t, V, A, tooBig[0], tooBig[1], quote(pkt(A, a, V, v, false)), 0),
			dir:  Reply,
		},
		{
			// The reply left as V:v > A:a; R, on the way to A, says it
			// cannot deliver it. B must hear about B:b > src:sp; the
			// error keeps R's address unless the flow rewrites sources
			// of original packets (full NAT).
			name: "about a reply packet",
			in:   icmpErrorFrame(t, R, V, unreach[0], unreach[1], quote(pkt(V, v, A, a, true)), 0),
			want: icmpErrorFrame(t, map[bool]netip.Addr{false: R, true: X}[full], B, unreach[0], unreach[1], quote(pkt(B, b, src, sp, true)), 0),
			dir:  Original,
		},
	}
	for _, c := range cases {
		p := parsed(t, append([]byte(nil), c.in...))
		r := tb.LookupPacket(p, 2*sec)
		if r.State != StateRelated || r.Flow != f || r.Dir != c.dir {
			t.Fatalf("%s: lookup %v %v %v, want related %v", c.name, r.State, r.Flow, r.Dir, c.dir)
		}
		if !TranslateError(p, f, r.Dir) {
			t.Fatalf("%s: not translated", c.name)
		}
		if !bytes.Equal(p.Data, c.want) {
			t.Errorf("%s:\ngot  %s\nwant %s", c.name, hex.EncodeToString(p.Data), hex.EncodeToString(c.want))
		}
		if !p.L4ChecksumValid() {
			t.Errorf("%s: outer ICMP checksum wrong", c.name)
		}
	}
}

// An error that arrived with a wrong checksum leaves with a wrong one, and
// a packet that is not an error is left alone.
func TestTranslateErrorKeepsBadChecksumsBad(t *testing.T) {
	for _, fam := range []struct{ A, V, B, R netip.Addr }{
		{a4, netip.MustParseAddr("198.18.1.100"), b4, r4},
		{a6, netip.MustParseAddr("2001:db8:100::100"), b6, r6},
	} {
		tb := newTable(t, Config{MaxFlows: 16})
		f, err := tb.Create(key(ap(fam.A, 1000), ap(fam.V, 80), packet.ProtoTCP), key(ap(fam.B, 8080), ap(fam.A, 1000), packet.ProtoTCP), sec)
		if err != nil {
			t.Fatal(err)
		}
		typ := uint8(3)
		if !fam.A.Is4() {
			typ = 1
		}
		in := icmpErrorFrame(t, fam.R, fam.A, typ, 0, tcpFrame(t, ap(fam.A, 1000), ap(fam.B, 8080), packet.TCPSyn), 0)
		in[len(in)-1] ^= 0x5a // the quote's last byte: the outer checksum no longer holds
		p := parsed(t, in)
		if !TranslateError(p, f, Reply) {
			t.Fatal("not translated")
		}
		if p.L4ChecksumValid() {
			t.Errorf("%v: a wrong checksum became right", fam.A)
		}
		q := parsed(t, tcpFrame(t, ap(fam.A, 1000), ap(fam.V, 80), packet.TCPSyn))
		before := append([]byte(nil), q.Data...)
		if TranslateError(q, f, Original) || !bytes.Equal(before, q.Data) {
			t.Errorf("%v: a TCP segment was taken for an error", fam.A)
		}
	}
}

// The quoted IPv6 packet may carry extension headers; the quoted L4
// header after them is what is translated.
func TestTranslateErrorIPv6ExtensionHeaders(t *testing.T) {
	V := netip.MustParseAddr("2001:db8:100::100")
	tb := newTable(t, Config{MaxFlows: 16})
	f, err := tb.Create(key(ap(a6, 1000), ap(V, 53), packet.ProtoUDP), key(ap(b6, 5353), ap(a6, 1000), packet.ProtoUDP), sec)
	if err != nil {
		t.Fatal(err)
	}
	// withDstOpts is a UDP frame from s to d with a destination options
	// header (8 bytes of PadN) before the UDP header.
	withDstOpts := func(s, d netip.AddrPort) []byte {
		udp := &layers.UDP{SrcPort: layers.UDPPort(s.Port()), DstPort: layers.UDPPort(d.Port())}
		opts := &layers.IPv6Destination{}
		opts.NextHeader = layers.IPProtocolUDP
		opts.Options = []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4)}}
		return frame(t, s.Addr(), d.Addr(), layers.IPProtocolIPv6Destination, opts, udp, gopacket.Payload("query"))
	}
	in := icmpErrorFrame(t, r6, a6, 2, 0, withDstOpts(ap(a6, 1000), ap(b6, 5353)), 0)
	p := parsed(t, in)
	r := tb.LookupPacket(p, 2*sec)
	if r.State != StateRelated || r.Flow != f {
		t.Fatalf("lookup %v %v", r.State, r.Flow)
	}
	if !TranslateError(p, f, r.Dir) {
		t.Fatal("not translated")
	}
	// The outer source: the flow's translation of sources in its reply
	// direction (B > A becomes V > A), so R becomes V.
	want := icmpErrorFrame(t, V, a6, 2, 0, withDstOpts(ap(a6, 1000), ap(V, 53)), 0)
	if !bytes.Equal(p.Data, want) {
		t.Errorf("\ngot  %s\nwant %s", hex.EncodeToString(p.Data), hex.EncodeToString(want))
	}
}
