package packet

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
)

// parsed is what a test expects Parse to record.
type parsed struct {
	flags      Flags
	err        ErrorKind
	etherType  uint16
	vlans      []uint16
	l3Off      int
	l3End      int // -1: the frame length
	l4Proto    uint8
	l4Off      int
	payloadOff int
}

func (w parsed) check(t *testing.T, p *Packet) {
	t.Helper()
	if p.Flags != w.flags {
		t.Errorf("Flags = %v, want %v", p.Flags, w.flags)
	}
	if p.Err != w.err {
		t.Errorf("Err = %v, want %v", p.Err, w.err)
	}
	if p.EtherType != w.etherType {
		t.Errorf("EtherType = %#04x, want %#04x", p.EtherType, w.etherType)
	}
	if got := p.VLANTags[:p.VLANCount]; !slices.Equal(got, w.vlans) && !(len(got) == 0 && len(w.vlans) == 0) {
		t.Errorf("VLANTags = %#x, want %#x", got, w.vlans)
	}
	l3End := w.l3End
	if l3End == -1 {
		l3End = len(p.Data)
	}
	if int(p.L3Off) != w.l3Off || int(p.L3End) != l3End || int(p.L4Off) != w.l4Off || int(p.PayloadOff) != w.payloadOff {
		t.Errorf("L3Off, L3End, L4Off, PayloadOff = %d, %d, %d, %d; want %d, %d, %d, %d",
			p.L3Off, p.L3End, p.L4Off, p.PayloadOff, w.l3Off, l3End, w.l4Off, w.payloadOff)
	}
	if p.L4Proto != w.l4Proto {
		t.Errorf("L4Proto = %d, want %d", p.L4Proto, w.l4Proto)
	}
	checkInvariants(t, p)
}

// mutate returns a copy of a frame with one change applied.
func mutate(build func(testing.TB) []byte, change func(b []byte) []byte) func(testing.TB) []byte {
	return func(t testing.TB) []byte { return change(build(t)) }
}

func put16(off int, v uint16) func([]byte) []byte {
	return func(b []byte) []byte { binary.BigEndian.PutUint16(b[off:], v); return b }
}

func putByte(off int, v byte) func([]byte) []byte {
	return func(b []byte) []byte { b[off] = v; return b }
}

const (
	fEthIPv4    = FlagEthernet | FlagIPv4
	fEthIPv6    = FlagEthernet | FlagIPv6
	ipv4UDPLen  = 14 + 20 + 8 + 10 // "hello, xnf"
	ipv4TCPOLen = 14 + 20 + 32 + 8 // 12 bytes of TCP options
	ipv6TCPOLen = 14 + 40 + 32 + 8
)

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		frame func(testing.TB) []byte
		want  parsed
	}{
		{"an IPv4 UDP datagram is parsed to its payload", frameIPv4UDP,
			parsed{flags: fEthIPv4 | FlagUDP, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoUDP, l4Off: 34, payloadOff: 42}},
		{"TCP options are skipped to find the payload", frameIPv4TCPOptions,
			parsed{flags: fEthIPv4 | FlagTCP, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoTCP, l4Off: 34, payloadOff: 66}},
		{"IPv4 options move the L4 header and are flagged", frameIPv4OptionsTCP,
			parsed{flags: fEthIPv4 | FlagIPv4Options | FlagTCP, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoTCP, l4Off: 42, payloadOff: 62}},
		{"an IPv6 TCP segment is parsed", frameIPv6TCP,
			parsed{flags: fEthIPv6 | FlagTCP, etherType: EtherTypeIPv6, l3Off: 14, l3End: -1, l4Proto: ProtoTCP, l4Off: 54, payloadOff: 86}},
		{"two VLAN tags are recorded outer first", frameVLANVLANIPv6TCP,
			parsed{flags: fEthIPv6 | FlagVLAN | FlagQinQ | FlagTCP, etherType: EtherTypeIPv6, vlans: []uint16{3<<13 | 100, 200},
				l3Off: 22, l3End: -1, l4Proto: ProtoTCP, l4Off: 62, payloadOff: 94}},
		{"one VLAN tag is recorded", frameVLANIPv4UDP,
			parsed{flags: fEthIPv4 | FlagVLAN | FlagUDP, etherType: EtherTypeIPv4, vlans: []uint16{42},
				l3Off: 18, l3End: -1, l4Proto: ProtoUDP, l4Off: 38, payloadOff: 46}},
		{"IPv6 extension headers are walked to TCP", frameIPv6ExtTCP,
			parsed{flags: fEthIPv6 | FlagIPv6ExtHeaders | FlagTCP, etherType: EtherTypeIPv6, l3Off: 14, l3End: -1,
				l4Proto: ProtoTCP, l4Off: 54 + 8 + 16 + 8 + 24, payloadOff: 54 + 56 + 20}},
		{"an IPv6 first fragment has its UDP header parsed despite the datagram's length", frameIPv6FirstFragmentUDP,
			parsed{flags: fEthIPv6 | FlagIPv6ExtHeaders | FlagFragment | FlagUDP, etherType: EtherTypeIPv6, l3Off: 14, l3End: -1,
				l4Proto: ProtoUDP, l4Off: 54 + 16, payloadOff: 54 + 24}},
		{"an IPv6 later fragment has no L4 header", frameIPv6LaterFragment,
			parsed{flags: fEthIPv6 | FlagIPv6ExtHeaders | FlagFragment | FlagLaterFragment, etherType: EtherTypeIPv6, l3Off: 14, l3End: -1,
				l4Proto: ProtoUDP, payloadOff: 62}},
		{"an IPv4 first fragment has its UDP header parsed", validFrames[9].build,
			parsed{flags: fEthIPv4 | FlagFragment | FlagUDP, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoUDP, l4Off: 34, payloadOff: 42}},
		{"an IPv4 later fragment has no L4 header", validFrames[10].build,
			parsed{flags: fEthIPv4 | FlagFragment | FlagLaterFragment, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoUDP, payloadOff: 34}},
		{"an ICMP echo request is parsed", frameICMPEcho,
			parsed{flags: fEthIPv4 | FlagICMP, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoICMP, l4Off: 34, payloadOff: 42}},
		{"an ICMPv6 echo request is parsed", frameICMPv6Echo,
			parsed{flags: fEthIPv6 | FlagICMPv6, etherType: EtherTypeIPv6, l3Off: 14, l3End: -1, l4Proto: ProtoICMPv6, l4Off: 54, payloadOff: 62}},
		{"an ARP request is parsed", frameARP,
			parsed{flags: FlagEthernet | FlagARP, etherType: EtherTypeARP, l3Off: 14, l3End: -1}},
		{"an unknown ethertype stops after Ethernet", frameUnknownEtherType,
			parsed{flags: FlagEthernet, etherType: 0x88cc, l3Off: 14, l3End: -1}},
		{"Ethernet padding after a short IPv4 packet is flagged and excluded", validFrames[15].build,
			parsed{flags: fEthIPv4 | FlagUDP | FlagPadding, etherType: EtherTypeIPv4, l3Off: 14, l3End: 43, l4Proto: ProtoUDP, l4Off: 34, payloadOff: 42}},
		{"ARP padded to the minimum frame is flagged", mutate(frameARP, func(b []byte) []byte { return padTo(b, 60) }),
			parsed{flags: FlagEthernet | FlagARP | FlagPadding, etherType: EtherTypeARP, l3Off: 14, l3End: 42}},
		{"an ESP packet stops the IPv6 walk with no L4 header",
			mutate(frameIPv6TCP, putByte(14+6, ProtoESP)),
			parsed{flags: fEthIPv6, etherType: EtherTypeIPv6, l3Off: 14, l3End: -1, l4Proto: ProtoESP, l4Off: 54}},
		{"no next header stops the IPv6 walk",
			mutate(frameIPv6ExtTCP, putByte(54+8+16, ProtoNoNext)), // the routing header says nothing follows
			parsed{flags: fEthIPv6 | FlagIPv6ExtHeaders, etherType: EtherTypeIPv6, l3Off: 14, l3End: -1, l4Proto: ProtoNoNext, l4Off: 54 + 32}},

		// Malformed.
		{"an IPv4 version other than 4 is malformed", mutate(frameIPv4UDP, putByte(14, 0x65)),
			parsed{flags: FlagEthernet | FlagMalformed, err: ErrIPv4Version, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1}},
		{"an IPv4 header length under 20 is malformed", mutate(frameIPv4UDP, putByte(14, 0x44)),
			parsed{flags: FlagEthernet | FlagMalformed, err: ErrIPv4HeaderLength, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1}},
		{"an IPv4 total length under the header length is malformed", mutate(frameIPv4UDP, put16(16, 19)),
			parsed{flags: FlagEthernet | FlagMalformed, err: ErrIPv4TotalLength, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1}},
		{"an IPv4 total length past the frame is truncation", mutate(frameIPv4UDP, put16(16, ipv4UDPLen-14+1)),
			parsed{flags: fEthIPv4 | FlagTruncated, err: ErrIPv4Truncated, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoUDP}},
		{"a TCP data offset under 5 is malformed", mutate(frameIPv4TCPOptions, putByte(34+12, 4<<4)),
			parsed{flags: fEthIPv4 | FlagMalformed, err: ErrTCPHeaderLength, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoTCP, l4Off: 34}},
		{"a TCP data offset past the packet is malformed", mutate(frameIPv4TCPOptions, putByte(34+12, 15<<4)),
			parsed{flags: fEthIPv4 | FlagMalformed, err: ErrTCPHeaderLength, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoTCP, l4Off: 34}},
		{"a TCP header cut by the IP length is malformed", mutate(frameIPv4TCPOptions, put16(16, 20+19)),
			parsed{flags: fEthIPv4 | FlagPadding | FlagMalformed, err: ErrTCPHeaderLength, etherType: EtherTypeIPv4, l3Off: 14, l3End: 14 + 39, l4Proto: ProtoTCP, l4Off: 34}},
		{"a UDP length under 8 is malformed", mutate(frameIPv4UDP, put16(34+4, 7)),
			parsed{flags: fEthIPv4 | FlagMalformed, err: ErrUDPLength, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoUDP, l4Off: 34}},
		{"a UDP length past the IP payload is malformed", mutate(frameIPv4UDP, put16(34+4, 19)),
			parsed{flags: fEthIPv4 | FlagMalformed, err: ErrUDPLength, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoUDP, l4Off: 34}},
		{"an ICMP message under 8 bytes is malformed", mutate(frameICMPEcho, func(b []byte) []byte { return put16(16, 20+7)(b[:14+27]) }),
			parsed{flags: fEthIPv4 | FlagMalformed, err: ErrICMPLength, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoICMP, l4Off: 34}},
		{"an IPv4 fragment with MF and a length not a multiple of 8 is malformed",
			func(t testing.TB) []byte { return frameIPv4Fragment(t, 0, true, []byte("odd")) },
			parsed{flags: fEthIPv4 | FlagFragment | FlagMalformed, err: ErrFragmentLength, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoUDP}},
		{"an IPv4 fragment reaching past 65535 bytes is malformed",
			func(t testing.TB) []byte { return frameIPv4Fragment(t, 65528, false, []byte("0123456789")) },
			parsed{flags: fEthIPv4 | FlagFragment | FlagMalformed, err: ErrFragmentLength, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoUDP}},
		{"an IPv6 version other than 6 is malformed", mutate(frameIPv6TCP, putByte(14, 0x40)),
			parsed{flags: FlagEthernet | FlagMalformed, err: ErrIPv6Version, etherType: EtherTypeIPv6, l3Off: 14, l3End: -1}},
		{"an IPv6 payload length past the frame is truncation", mutate(frameIPv6TCP, put16(14+4, 41)),
			parsed{flags: fEthIPv6 | FlagTruncated, err: ErrIPv6Truncated, etherType: EtherTypeIPv6, l3Off: 14, l3End: -1, l4Proto: ProtoTCP}},
		{"an IPv6 extension header past the payload is malformed", mutate(frameIPv6ExtTCP, putByte(54+1, 200)),
			parsed{flags: fEthIPv6 | FlagMalformed, err: ErrIPv6ExtHeader, etherType: EtherTypeIPv6, l3Off: 14, l3End: -1, l4Proto: ProtoHopByHop}},
		{"a hop-by-hop header other than first is malformed", mutate(frameIPv6ExtTCP, putByte(54, ProtoHopByHop)),
			parsed{flags: fEthIPv6 | FlagIPv6ExtHeaders | FlagMalformed, err: ErrIPv6HopByHopOrder, etherType: EtherTypeIPv6, l3Off: 14, l3End: -1}},
		{"more than MaxIPv6ExtHeaders extension headers are unsupported",
			func(t testing.TB) []byte {
				b := frameIPv6TCP(t)[:54]
				b[14+6] = ProtoDstOpts
				for range MaxIPv6ExtHeaders + 1 {
					b = append(b, extHeader(ProtoDstOpts, 8)...)
				}
				binary.BigEndian.PutUint16(b[14+4:], uint16(len(b)-54))
				return b
			},
			parsed{flags: fEthIPv6 | FlagIPv6ExtHeaders | FlagUnsupported, err: ErrIPv6ExtHeaderLimit, etherType: EtherTypeIPv6, l3Off: 14, l3End: -1, l4Proto: ProtoDstOpts}},
		{"a third VLAN tag is unsupported",
			func(t testing.TB) []byte {
				b := frameVLANIPv4UDP(t)
				return concat(b[:12], []byte{0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2}, b[12:])
			},
			parsed{flags: FlagEthernet | FlagVLAN | FlagQinQ | FlagUnsupported, err: ErrVLANDepth, etherType: EtherTypeVLAN, vlans: []uint16{1, 2}, l3Off: 22, l3End: -1}},
		{"ICMPv6 inside IPv4 is left unparsed", mutate(frameICMPEcho, putByte(14+9, ProtoICMPv6)),
			parsed{flags: fEthIPv4, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1, l4Proto: ProtoICMPv6, l4Off: 34}},

		// Truncated.
		{"an empty frame is truncated", func(testing.TB) []byte { return nil },
			parsed{flags: FlagTruncated, err: ErrEthernetTruncated}},
		{"a frame shorter than Ethernet is truncated", func(t testing.TB) []byte { return frameIPv4UDP(t)[:13] },
			parsed{flags: FlagTruncated, err: ErrEthernetTruncated}},
		{"a cut VLAN tag is truncation", func(t testing.TB) []byte { return frameVLANIPv4UDP(t)[:17] },
			parsed{flags: FlagEthernet | FlagTruncated, err: ErrVLANTruncated}},
		{"a cut IPv4 header is truncation", func(t testing.TB) []byte { return frameIPv4UDP(t)[:33] },
			parsed{flags: FlagEthernet | FlagTruncated, err: ErrIPv4Truncated, etherType: EtherTypeIPv4, l3Off: 14, l3End: -1}},
		{"a cut ARP packet is truncation", func(t testing.TB) []byte { return frameARP(t)[:41] },
			parsed{flags: FlagEthernet | FlagTruncated, err: ErrARPTruncated, etherType: EtherTypeARP, l3Off: 14, l3End: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Packet{Data: tt.frame(t)}
			if got := p.Parse(); got != p.Err {
				t.Errorf("Parse returned %v, but Err is %v", got, p.Err)
			}
			tt.want.check(t, &p)
		})
	}
}

// TestParseEveryTruncation cuts every valid frame at every length: Parse
// must not panic, must flag truncation whenever a header or the announced
// L3 length is cut, and must find the same packet when only padding is cut.
func TestParseEveryTruncation(t *testing.T) {
	for _, f := range validFrames {
		t.Run(f.name, func(t *testing.T) {
			frame := f.build(t)
			full := Packet{Data: frame}
			if full.Parse() != ErrNone {
				t.Fatalf("the whole frame does not parse: %v", full.Err)
			}
			// The L3 packet has a length (IP, ARP): any cut inside it is
			// truncation. Otherwise only the Ethernet and VLAN headers are.
			mustEnd := int(full.L3End)
			if full.Flags&(FlagIPv4|FlagIPv6|FlagARP) == 0 {
				mustEnd = int(full.L3Off)
			}
			for n := range len(frame) {
				// Cap the slice so that reading past n panics even within
				// the backing array.
				p := Packet{Data: frame[:n:n]}
				p.Parse()
				checkInvariants(t, &p)
				switch {
				case n < mustEnd:
					if p.Flags&FlagTruncated == 0 || p.Err.Flag() != FlagTruncated {
						t.Fatalf("cut at %d of %d: Flags %v, Err %v; want truncated", n, len(frame), p.Flags, p.Err)
					}
				default:
					want := full.Flags
					if n == int(full.L3End) {
						want &^= FlagPadding
					}
					if p.Err != ErrNone || p.Flags != want || p.L4Off != full.L4Off || p.PayloadOff != full.PayloadOff {
						t.Fatalf("cut at %d of %d in the padding: Flags %v Err %v L4Off %d; want %v, none, %d",
							n, len(frame), p.Flags, p.Err, p.L4Off, want, full.L4Off)
					}
				}
			}
		})
	}
}

// checkInvariants holds for any parse of any bytes.
func checkInvariants(t testing.TB, p *Packet) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s (flags %v, err %v, L3Off %d, L3End %d, L4Off %d, PayloadOff %d, len %d)",
			fmt.Sprintf(format, args...), p.Flags, p.Err, p.L3Off, p.L3End, p.L4Off, p.PayloadOff, len(p.Data))
	}
	n := len(p.Data)
	if int(p.L3Off) > n || int(p.L3End) > n || int(p.L4Off) > n || int(p.PayloadOff) > n {
		fail("an offset is past the frame")
	}
	if p.L3End < p.L3Off {
		fail("L3End before L3Off")
	}
	if p.RoutingOff != 0 && (p.Flags&FlagIPv6 == 0 || int(p.RoutingOff) < int(p.L3Off)+IPv6Len || int(p.RoutingOff)+ipv6ExtMinLen > int(p.L3End)) {
		fail("RoutingOff outside the IPv6 packet")
	}
	if p.L4Off != 0 && (p.L4Off < p.L3Off || p.L4Off > p.L3End) {
		fail("L4Off outside the L3 packet")
	}
	if p.PayloadOff != 0 && (p.PayloadOff < p.L4Off || p.PayloadOff > p.L3End) {
		fail("PayloadOff outside the L4 segment")
	}
	if (p.Err == ErrNone) != (p.Flags&FlagBad == 0) || p.Flags&FlagBad != p.Err.Flag() {
		fail("Err and the bad flags disagree")
	}
	oneOf := func(f Flags) bool { return f&(f-1) == 0 }
	if !oneOf(p.Flags & (FlagARP | FlagIPv4 | FlagIPv6)) {
		fail("more than one L3 flag")
	}
	l4 := p.Flags & (FlagTCP | FlagUDP | FlagICMP | FlagICMPv6)
	if !oneOf(l4) {
		fail("more than one L4 flag")
	}
	if l4 != 0 && (p.L4Off == 0 || p.PayloadOff == 0 || p.Flags&(FlagIPv4|FlagIPv6) == 0) {
		fail("an L4 flag without its offsets or an IP header")
	}
	if p.Flags&FlagLaterFragment != 0 && (p.Flags&FlagFragment == 0 || l4 != 0) {
		fail("a later fragment with an L4 header")
	}
	if p.Flags&FlagTCP != 0 {
		if h := p.TCP(); len(h) < TCPMinLen || h.HeaderLen() < TCPMinLen || h.HeaderLen() > len(h) || int(p.PayloadOff) != int(p.L4Off)+h.HeaderLen() {
			fail("TCP header inconsistent")
		}
	}
	if p.Flags&FlagUDP != 0 {
		if h := p.UDP(); len(h) < UDPLen || h.Length() < UDPLen || p.Flags&FlagFragment == 0 && int(h.Length()) > len(h) {
			fail("UDP header inconsistent")
		}
	}
	if p.Flags&(FlagICMP|FlagICMPv6) != 0 && len(p.ICMP()) < ICMPLen {
		fail("ICMP header too short")
	}
	if p.Flags&FlagIPv4 != 0 {
		h := p.IPv4()
		if len(h) < IPv4MinLen || h.HeaderLen() > len(h) || h.Version() != 4 {
			fail("IPv4 header inconsistent")
		}
		_ = h.ChecksumValid()
		_ = h.SrcAddr()
	}
	if p.Flags&FlagIPv6 != 0 {
		if h := p.IPv6(); len(h) < IPv6Len || h.Version() != 6 {
			fail("IPv6 header inconsistent")
		}
	}
	if p.Flags&FlagARP != 0 {
		h := p.ARP()
		if len(h) < arpFixedLen {
			fail("ARP header too short")
		}
		if h.IsEthernetIPv4() {
			_ = h.TargetIP()
		}
	}
	// Everything a stage may call must be callable.
	_ = p.Ethernet()
	_ = p.L4()
	_ = p.Payload()
	_, _ = p.SrcPort(), p.DstPort()
	_ = p.FlowKey()
	_, _ = p.ComputeL4Checksum()
	_ = p.L4ChecksumValid()
}

func TestParseResetsEarlierResults(t *testing.T) {
	p := Packet{Data: frameVLANVLANIPv6TCP(t)}
	p.Parse()
	p.Data = frameARP(t)
	p.Parse()
	want := Packet{Data: p.Data}
	want.Parse()
	if parsedFields(&p) != parsedFields(&want) {
		t.Errorf("re-parse kept old state: %+v, want %+v", parsedFields(&p), parsedFields(&want))
	}
}

func TestParseFrameTooLong(t *testing.T) {
	p := Packet{Data: make([]byte, MaxFrameLen+1)}
	if p.Parse() != ErrFrameTooLong || p.Flags != FlagUnsupported {
		t.Errorf("Err %v Flags %v, want %v and unsupported", p.Err, p.Flags, ErrFrameTooLong)
	}
}

func TestHeaderViewsReadTheFields(t *testing.T) {
	p := Packet{Data: frameIPv4TCPOptions(t)}
	p.Parse()
	e := p.Ethernet()
	if e.Src() != [6]byte(macA) || e.Dst() != [6]byte(macB) || e.Type() != EtherTypeIPv4 {
		t.Errorf("Ethernet %x %x %#x", e.Src(), e.Dst(), e.Type())
	}
	ip := p.IPv4()
	if ip.Src() != [4]byte(ip4A) || ip.DstAddr().String() != "198.19.0.2" || ip.TTL() != 64 || ip.ID() != 0x1234 ||
		ip.Protocol() != ProtoTCP || int(ip.TotalLen()) != len(p.Data)-14 || !ip.ChecksumValid() || ip.ComputeChecksum() != ip.Checksum() {
		t.Errorf("IPv4 view: src %v dst %v ttl %d id %#x proto %d len %d csum ok %v", ip.SrcAddr(), ip.DstAddr(), ip.TTL(), ip.ID(), ip.Protocol(), ip.TotalLen(), ip.ChecksumValid())
	}
	h := p.TCP()
	if h.SrcPort() != 40000 || h.DstPort() != 443 || h.Seq() != 1 || h.Ack() != 2 || h.Flags() != TCPSyn|TCPAck ||
		h.Window() != 65535 || len(h.Options()) != 12 || string(p.Payload()) != "abcdefgh" {
		t.Errorf("TCP view: %d>%d seq %d ack %d flags %#x win %d opts %d payload %q", h.SrcPort(), h.DstPort(), h.Seq(), h.Ack(), h.Flags(), h.Window(), len(h.Options()), p.Payload())
	}
	if p.UDP() != nil || p.ICMP() != nil || p.IPv6() != nil || p.ARP() != nil {
		t.Errorf("views of absent headers are not nil")
	}

	p = Packet{Data: frameVLANVLANIPv6TCP(t)}
	p.Parse()
	ip6 := p.IPv6()
	if ip6.SrcAddr().String() != "2001:db8::1" || ip6.Dst() != [16]byte(ip6B.To16()) || ip6.HopLimit() != 64 ||
		ip6.FlowLabel() != 0x12345 || ip6.NextHeader() != ProtoTCP || int(ip6.PayloadLen()) != len(p.Data)-62 {
		t.Errorf("IPv6 view: %v %v hl %d fl %#x nh %d plen %d", ip6.SrcAddr(), ip6.DstAddr(), ip6.HopLimit(), ip6.FlowLabel(), ip6.NextHeader(), ip6.PayloadLen())
	}

	p = Packet{Data: frameARP(t)}
	p.Parse()
	a := p.ARP()
	if !a.IsEthernetIPv4() || a.Op() != ARPRequest || a.SenderHW() != [6]byte(macA) || a.SenderIP() != [4]byte(ip4A) ||
		a.TargetIP() != [4]byte(ip4B) || a.TargetHW() != [6]byte{} {
		t.Errorf("ARP view: op %d %x %v %x %v", a.Op(), a.SenderHW(), a.SenderIP(), a.TargetHW(), a.TargetIP())
	}

	p = Packet{Data: frameICMPv6Echo(t)}
	p.Parse()
	if m := p.ICMP(); !m.IsEcho(true) || m.Type() != ICMPv6EchoRequest || m.ID() != 0xcafe || m.Seq() != 9 {
		t.Errorf("ICMPv6 view: type %d id %#x seq %d", m.Type(), m.ID(), m.Seq())
	}
}

func TestFlowKey(t *testing.T) {
	tests := []struct {
		name  string
		frame func(testing.TB) []byte
		want  string // src:port>dst:port/proto
	}{
		{"UDP over IPv4 keys by addresses and ports", frameIPv4UDP, "198.18.0.1:5353>198.19.0.2:53/17"},
		{"TCP over IPv6 behind two tags keys the same way", frameVLANVLANIPv6TCP, "2001:db8::1:40000>2001:db8:1::2:443/6"},
		{"an ICMP echo request's id is its source port", frameICMPEcho, "198.18.0.1:48879>198.19.0.2:0/1"},
		{"an ICMPv6 echo request's id is its source port", frameICMPv6Echo, "2001:db8::1:51966>2001:db8:1::2:0/58"},
		{"a later fragment has no ports", frameIPv6LaterFragment, "2001:db8::1:0>2001:db8:1::2:0/17"},
		{"ARP has the zero key", frameARP, "invalid IP:0>invalid IP:0/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Packet{Data: tt.frame(t)}
			p.Parse()
			k := p.FlowKey()
			got := fmt.Sprintf("%v:%d>%v:%d/%d", k.SrcAddr(), k.SrcPort, k.DstAddr(), k.DstPort, k.Proto)
			if k == (FlowKey{}) {
				got = "invalid IP:0>invalid IP:0/0"
			}
			if got != tt.want {
				t.Errorf("FlowKey = %s, want %s", got, tt.want)
			}
			if k != (FlowKey{}) && k.IsIPv4() != (p.Flags&FlagIPv4 != 0) {
				t.Errorf("IsIPv4 = %v", k.IsIPv4())
			}
			if r := k.Reverse(); r.Src != k.Dst || r.SrcPort != k.DstPort || r.Reverse() != k {
				t.Errorf("Reverse does not swap: %+v", r)
			}
		})
	}
}

type fields struct {
	Flags                                      Flags
	Err                                        ErrorKind
	VLANCount, L4Proto                         uint8
	VLANTags                                   [2]uint16
	EtherType, L3Off, L3End, L4Off, PayloadOff uint16
	RoutingOff                                 uint16
}

func parsedFields(p *Packet) fields {
	return fields{p.Flags, p.Err, p.VLANCount, p.L4Proto, p.VLANTags, p.EtherType, p.L3Off, p.L3End, p.L4Off, p.PayloadOff, p.RoutingOff}
}

// RFC 7045: a chain of 9 extension headers (hop-by-hop, destination
// options, routing type 253 with no segments left, six more destination
// options) before UDP parses whole; the walk stops at 16 headers or at a
// header starting 256 bytes into the payload, whichever comes first.
func TestIPv6ExtensionChainLimits(t *testing.T) {
	cases := []struct {
		name       string
		n, size    int
		err        ErrorKind
		routingOff uint16
	}{
		{"9 headers then UDP parse whole", 9, 8, ErrNone, 14 + 40 + 16},
		{"16 headers then UDP parse whole", 16, 8, ErrNone, 14 + 40 + 16},
		{"17 headers are past the limit", 17, 8, ErrIPv6ExtHeaderLimit, 14 + 40 + 16},
		{"headers reaching 256 bytes into the payload are past the limit", 5, 64, ErrIPv6ExtHeaderLimit, 14 + 40 + 128},
		{"4 headers of 64 bytes end at 256: UDP follows", 4, 64, ErrNone, 14 + 40 + 128},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := Packet{Data: frameIPv6Chain(t, tc.n, tc.size)}
			if err := p.Parse(); err != tc.err {
				t.Fatalf("Parse: %v, want %v", err, tc.err)
			}
			checkInvariants(t, &p)
			if p.RoutingOff != tc.routingOff {
				t.Errorf("RoutingOff %d, want %d", p.RoutingOff, tc.routingOff)
			}
			if tc.err == ErrNone && (p.Flags&FlagUDP == 0 || p.SrcPort() != 5000 || p.DstPort() != 53) {
				t.Errorf("flags %v ports %d>%d, want UDP 5000>53", p.Flags, p.SrcPort(), p.DstPort())
			}
		})
	}
}
