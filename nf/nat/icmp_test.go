package nat

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/packet"
)

// The ICMP error tests build, with gopacket, both the error as it reaches
// the NAT (quoting the packet as the NAT sent it) and the error the inside
// host must receive (quoting the packet as the host sent it), with every
// checksum computed from scratch by gopacket, and compare byte for byte.

func sameBytes(t *testing.T, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("frames differ\n got %s\nwant %s", hex.EncodeToString(got), hex.EncodeToString(want))
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Errorf("first difference at byte %d: %#02x, want %#02x", i, got[i], want[i])
				break
			}
		}
	}
}

func TestICMPErrorTranslationByteForByte(t *testing.T) {
	type tc struct {
		name     string
		quoted   []byte     // as the NAT sent it
		orig     []byte     // as the inside host sent it
		from     netip.Addr // who sends the error
		typ      uint8
		code     uint8
		quoteLen int
	}
	pl := bytes.Repeat([]byte("0123456789abcdef"), 4)
	cases := []tc{
		{name: "udp port unreachable from the server", from: srvB, typ: 3, code: 3,
			orig:   udpFrame(t, ap(inA2, 4000), ap(srvB, 53), string(pl)),
			quoted: udpFrame(t, ap(natX, 1024), ap(srvB, 53), string(pl))},
		{name: "udp time exceeded from a router, 8-byte quote", from: rtrR, typ: 11, code: 0, quoteLen: 28,
			orig:   udpFrame(t, ap(inA2, 4000), ap(srvB, 53), string(pl)),
			quoted: udpFrame(t, ap(natX, 1024), ap(srvB, 53), string(pl))},
		{name: "tcp frag needed from a router, whole header", from: rtrR, typ: 3, code: 4,
			orig:   tcpFrame(t, ap(inA2, 4000), ap(srvB, 80), packet.TCPSyn, pl...),
			quoted: tcpFrame(t, ap(natX, 1024), ap(srvB, 80), packet.TCPSyn, pl...)},
		{name: "tcp unreachable, 8-byte quote (no checksum quoted)", from: rtrR, typ: 3, code: 1, quoteLen: 28,
			orig:   tcpFrame(t, ap(inA2, 4000), ap(srvB, 80), packet.TCPSyn, pl...),
			quoted: tcpFrame(t, ap(natX, 1024), ap(srvB, 80), packet.TCPSyn, pl...)},
		{name: "echo request time exceeded", from: rtrR, typ: 11, code: 0,
			orig:   echoFrame(t, inA2, srvB, 4000, false),
			quoted: echoFrame(t, natX, srvB, 1024, false)},
		{name: "udp with IPv4 options, time exceeded", from: rtrR, typ: 11, code: 0,
			orig:   frame(t, inA2, srvB, 17, ipOpts{options: true}, udpL(4000, 53), gopacket.Payload(pl)),
			quoted: frame(t, natX, srvB, 17, ipOpts{options: true}, udpL(1024, 53), gopacket.Payload(pl))},
		{name: "tcp with IPv4 options, 8-byte quote", from: rtrR, typ: 11, code: 0, quoteLen: 32,
			orig: frame(t, inA2, srvB, 6, ipOpts{options: true},
				&layers.TCP{SrcPort: 4000, DstPort: 80, SYN: true, Seq: 9, Window: 100}, gopacket.Payload(pl)),
			quoted: frame(t, natX, srvB, 6, ipOpts{options: true},
				&layers.TCP{SrcPort: 1024, DstPort: 80, SYN: true, Seq: 9, Window: 100}, gopacket.Payload(pl))},
		{name: "udp with no checksum", from: srvB, typ: 3, code: 3,
			orig:   frame(t, inA2, srvB, 17, ipOpts{noChksum: true}, udpL(4000, 53), gopacket.Payload(pl)),
			quoted: frame(t, natX, srvB, 17, ipOpts{noChksum: true}, udpL(1024, 53), gopacket.Payload(pl))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := masq(t, nil)
			// inA holds port (and id) 4000 towards srvB, so inA2's flow
			// is translated to 1024.
			q := &packet.Packet{}
			q.Reset(c.orig, 0, 0)
			q.Parse()
			var first []byte
			switch q.L4Proto {
			case packet.ProtoTCP:
				first = tcpFrame(t, ap(inA, 4000), ap(srvB, q.DstPort()), packet.TCPSyn)
			case packet.ProtoUDP:
				first = udpFrame(t, ap(inA, 4000), ap(srvB, q.DstPort()), "x")
			default:
				first = echoFrame(t, inA, srvB, 4000, false)
			}
			run(t, s, portIn, first, sec)
			p := run(t, s, portIn, c.orig, sec)
			if !bytes.Equal(p.Data[14:], c.quoted[14:]) {
				t.Fatalf("the flow's packet left as\n%x\nwant\n%x", p.Data[14:], c.quoted[14:])
			}
			in := icmpErrorFrame(t, c.from, natX, c.typ, c.code, c.quoted, c.quoteLen)
			want := icmpErrorFrame(t, c.from, inA2, c.typ, c.code, c.orig, c.quoteLen)
			got := run(t, s, portOut, in, sec)
			if got.Verdict != packet.Forward {
				t.Fatalf("verdict %v %v", got.Verdict, got.Reason)
			}
			sameBytes(t, got.Data, want)
			if s.Counters().ICMPErrors != 1 {
				t.Errorf("ICMPErrors = %d", s.Counters().ICMPErrors)
			}
		})
	}
}

// An inside host's error about a reply it received (port unreachable for
// a late DNS answer) goes out translated: outer source and quoted
// destination become the NAT's.
func TestICMPErrorFromInside(t *testing.T) {
	s := masq(t, nil)
	run(t, s, portIn, udpFrame(t, ap(inA, 4000), ap(srvB, 53), "x"), sec)
	run(t, s, portIn, udpFrame(t, ap(inA2, 4000), ap(srvB, 53), "x"), sec) // -> natX:1024
	run(t, s, portOut, udpFrame(t, ap(srvB, 53), ap(natX, 1024), "answer"), sec)
	quotedIn := udpFrame(t, ap(srvB, 53), ap(inA2, 4000), "answer")
	quotedOut := udpFrame(t, ap(srvB, 53), ap(natX, 1024), "answer")
	in := icmpErrorFrame(t, inA2, srvB, 3, 3, quotedIn, 0)
	want := icmpErrorFrame(t, natX, srvB, 3, 3, quotedOut, 0)
	got := run(t, s, portIn, in, sec)
	if got.Verdict != packet.Forward {
		t.Fatalf("verdict %v %v", got.Verdict, got.Reason)
	}
	sameBytes(t, got.Data, want)
}

// An error about a DNAT flow, from a router inside: the outer source is
// the NAT's public address (as Linux does), the quote as the client sent it.
func TestICMPErrorAboutDNATFlow(t *testing.T) {
	inSrv := netip.MustParseAddr("198.18.0.80")
	inRtr := netip.MustParseAddr("198.18.0.254")
	client := srvB
	s := masq(t, func(c *Config) {
		c.Forwards = []Forward{{Proto: packet.ProtoUDP, Addr: natX, PortMin: 53, PortMax: 53, To: inSrv, ToPort: 5353}}
	})
	sent := udpFrame(t, ap(client, 999), ap(natX, 53), "query")
	run(t, s, portOut, sent, sec)
	forwarded := udpFrame(t, ap(client, 999), ap(inSrv, 5353), "query")
	in := icmpErrorFrame(t, inRtr, client, 3, 1, forwarded, 0)
	want := icmpErrorFrame(t, natX, client, 3, 1, sent, 0)
	got := run(t, s, portIn, in, sec)
	sameBytes(t, got.Data, want)
}

// An error quoting nothing we know passes untouched; an error quoting a
// flow whose translation is the identity, too.
func TestICMPErrorUnrelated(t *testing.T) {
	s := masq(t, nil)
	in := icmpErrorFrame(t, rtrR, natX, 3, 3, udpFrame(t, ap(natX, 1), ap(srvB, 2), "x"), 0)
	got := run(t, s, portOut, in, sec)
	if got.Verdict != packet.Forward || !bytes.Equal(got.Data, in) {
		t.Errorf("unrelated error: verdict %v, changed %v", got.Verdict, !bytes.Equal(got.Data, in))
	}
}

// An error the outside client sends about the forwarded server's answer
// (port unreachable for it) reaches the inside server as if about its own
// packet: outer destination and quoted source become the server's.
func TestICMPErrorToDNATServer(t *testing.T) {
	inSrv := netip.MustParseAddr("198.18.0.80")
	client := srvB
	s := masq(t, func(c *Config) {
		c.Forwards = []Forward{{Proto: packet.ProtoUDP, Addr: natX, PortMin: 53, PortMax: 53, To: inSrv, ToPort: 5353}}
	})
	run(t, s, portOut, udpFrame(t, ap(client, 999), ap(natX, 53), "query"), sec)
	p := run(t, s, portIn, udpFrame(t, ap(inSrv, 5353), ap(client, 999), "answer"), sec)
	if tupleOf(p) != (tuple{ap(natX, 53), ap(client, 999)}) {
		t.Fatalf("answer left as %v", tupleOf(p))
	}
	in := icmpErrorFrame(t, client, natX, 3, 3, udpFrame(t, ap(natX, 53), ap(client, 999), "answer"), 0)
	want := icmpErrorFrame(t, client, inSrv, 3, 3, udpFrame(t, ap(inSrv, 5353), ap(client, 999), "answer"), 0)
	got := run(t, s, portOut, in, sec)
	sameBytes(t, got.Data, want)
}
