package packet

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// checkChecksums fails unless the IPv4 header checksum and the L4 checksum
// of p equal a full recompute.
func checkChecksums(t testing.TB, p *Packet, what string) {
	t.Helper()
	if ip := p.IPv4(); ip != nil && ip.Checksum() != ip.ComputeChecksum() {
		t.Fatalf("%s: IPv4 checksum %#04x, recomputed %#04x", what, ip.Checksum(), ip.ComputeChecksum())
	}
	want, ok := p.ComputeL4Checksum()
	if !ok {
		return
	}
	got := l4ChecksumField(p)
	if p.Flags&FlagUDP != 0 {
		if got == 0 {
			t.Fatalf("%s: a UDP checksum became zero", what)
		}
		if got != want {
			t.Fatalf("%s: UDP checksum %#04x, recomputed %#04x", what, got, want)
		}
	} else if !sameOnesComplement(got, want) {
		t.Fatalf("%s: L4 checksum %#04x, recomputed %#04x", what, got, want)
	}
	if !p.L4ChecksumValid() {
		t.Fatalf("%s: L4 checksum does not verify", what)
	}
}

// rewriteRandomly applies one random rewrite and names it.
func rewriteRandomly(p *Packet, rng *rand.Rand) string {
	var a4 [4]byte
	var a6 [16]byte
	binary.BigEndian.PutUint32(a4[:], rng.Uint32())
	binary.BigEndian.PutUint64(a6[:], rng.Uint64())
	binary.BigEndian.PutUint64(a6[8:], rng.Uint64())
	port := uint16(rng.Uint32())
	switch rng.IntN(9) {
	case 0:
		p.SetIPv4Src(a4)
		return "SetIPv4Src"
	case 1:
		p.SetIPv4Dst(a4)
		return "SetIPv4Dst"
	case 2:
		p.SetIPv6Src(a6)
		return "SetIPv6Src"
	case 3:
		p.SetIPv6Dst(a6)
		return "SetIPv6Dst"
	case 4:
		p.SetSrcPort(port)
		return "SetSrcPort"
	case 5:
		p.SetDstPort(port)
		return "SetDstPort"
	case 6:
		p.SetICMPEchoID(port)
		return "SetICMPEchoID"
	case 7:
		p.DecTTL()
		return "DecTTL"
	default:
		p.SetSrcMAC([6]byte(a6[:6]))
		return "SetSrcMAC"
	}
}

func TestRandomRewritesKeepChecksumsRight(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for i := range 3000 {
		p := Packet{Data: randomPacket(t, rng)}
		if p.Parse() != ErrNone {
			t.Fatalf("packet %d does not parse: %v", i, p.Err)
		}
		udpZero := p.Flags&FlagUDP != 0 && rng.IntN(4) == 0
		if udpZero {
			p.UDP().SetChecksum(0)
		}
		for range 1 + rng.IntN(6) {
			what := rewriteRandomly(&p, rng)
			if udpZero {
				if c := p.UDP().Checksum(); c != 0 {
					t.Fatalf("packet %d: %s made a zero UDP checksum %#04x", i, what, c)
				}
				continue
			}
			checkChecksums(t, &p, what)
		}
		if i%10 == 0 && !udpZero {
			verifyWithGopacket(t, p.Data)
		}
	}
}

func TestRewritesLandInTheFrame(t *testing.T) {
	p := Packet{Data: frameIPv4TCPOptions(t)}
	p.Parse()
	mac := [6]byte{1, 2, 3, 4, 5, 6}
	src, dst := [4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}
	ok := p.SetSrcMAC(mac) && p.SetDstMAC([6]byte{6, 5, 4, 3, 2, 1}) && p.SetIPv4Src(src) && p.SetIPv4Dst(dst) &&
		p.SetSrcPort(1000) && p.SetDstPort(2000) && p.DecTTL()
	if !ok {
		t.Fatalf("a rewrite of a present header reported false")
	}
	gp := decodeGopacket(t, p.Data)
	e, ip, tc := gp.eth, gp.ip4, gp.tcp
	if [6]byte(e.SrcMAC) != mac || [6]byte(e.DstMAC) != [6]byte{6, 5, 4, 3, 2, 1} || [4]byte(ip.SrcIP.To4()) != src ||
		[4]byte(ip.DstIP.To4()) != dst || tc.SrcPort != 1000 || tc.DstPort != 2000 || ip.TTL != 63 {
		t.Errorf("gopacket reads %v>%v %v>%v %d>%d ttl %d", e.SrcMAC, e.DstMAC, ip.SrcIP, ip.DstIP, tc.SrcPort, tc.DstPort, ip.TTL)
	}
	verifyWithGopacket(t, p.Data)

	p = Packet{Data: frameICMPv6Echo(t)}
	p.Parse()
	if !p.SetICMPEchoID(0x4242) || !p.SetIPv6Src([16]byte{15: 1}) || p.ICMP().ID() != 0x4242 {
		t.Fatalf("ICMPv6 echo id or address not rewritten")
	}
	verifyWithGopacket(t, p.Data)
}

func TestRewritesWithoutTheirHeaderChangeNothing(t *testing.T) {
	tests := []struct {
		name    string
		frame   func(testing.TB) []byte
		rewrite func(*Packet) bool
	}{
		{"SetIPv4Src needs IPv4", frameIPv6TCP, func(p *Packet) bool { return p.SetIPv4Src([4]byte{1, 2, 3, 4}) }},
		{"SetIPv4Dst needs IPv4", frameARP, func(p *Packet) bool { return p.SetIPv4Dst([4]byte{1, 2, 3, 4}) }},
		{"SetIPv6Src needs IPv6", frameIPv4UDP, func(p *Packet) bool { return p.SetIPv6Src([16]byte{1}) }},
		{"SetIPv6Dst needs IPv6", frameIPv4UDP, func(p *Packet) bool { return p.SetIPv6Dst([16]byte{1}) }},
		{"SetSrcPort needs TCP or UDP", frameICMPEcho, func(p *Packet) bool { return p.SetSrcPort(1) }},
		{"SetDstPort needs TCP or UDP", validFrames[10].build, func(p *Packet) bool { return p.SetDstPort(1) }},
		{"SetICMPEchoID needs ICMP", frameIPv4UDP, func(p *Packet) bool { return p.SetICMPEchoID(1) }},
		{"SetICMPEchoID needs an echo message", mutate(frameICMPEcho, putByte(34, 3)), func(p *Packet) bool { return p.SetICMPEchoID(1) }},
		{"SetSrcMAC needs Ethernet", func(testing.TB) []byte { return []byte{1, 2, 3} }, func(p *Packet) bool { return p.SetSrcMAC([6]byte{1}) }},
		{"SetDstMAC needs Ethernet", func(testing.TB) []byte { return nil }, func(p *Packet) bool { return p.SetDstMAC([6]byte{1}) }},
		{"DecTTL needs IP", frameARP, func(p *Packet) bool { return p.DecTTL() }},
		{"DecTTL refuses an IPv4 TTL of 1", mutate(frameIPv4UDP, putByte(14+8, 1)), func(p *Packet) bool { return p.DecTTL() }},
		{"DecTTL refuses an IPv4 TTL of 0", mutate(frameIPv4UDP, putByte(14+8, 0)), func(p *Packet) bool { return p.DecTTL() }},
		{"DecTTL refuses an IPv6 hop limit of 1", mutate(frameIPv6TCP, putByte(14+7, 1)), func(p *Packet) bool { return p.DecTTL() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Packet{Data: tt.frame(t)}
			p.Parse()
			before := bytes.Clone(p.Data)
			if tt.rewrite(&p) {
				t.Errorf("reported true")
			}
			if !bytes.Equal(before, p.Data) {
				t.Errorf("changed the frame")
			}
		})
	}
}

func TestDecTTL(t *testing.T) {
	tests := []struct {
		name  string
		frame func(testing.TB) []byte
		ttlAt int
		from  byte
	}{
		{"an IPv4 TTL of 64 becomes 63", frameIPv4UDP, 14 + 8, 64},
		{"an IPv4 TTL of 2 becomes 1", mutate(frameIPv4UDP, putByte(14+8, 2)), 14 + 8, 2},
		{"an IPv4 TTL of 255 becomes 254", mutate(frameIPv4UDP, putByte(14+8, 255)), 14 + 8, 255},
		{"an IPv6 hop limit of 64 becomes 63", frameIPv6TCP, 14 + 7, 64},
		{"an IPv6 hop limit behind two tags is found", frameVLANVLANIPv6TCP, 22 + 7, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Packet{Data: tt.frame(t)}
			p.Parse()
			if ip := p.IPv4(); ip != nil {
				ip.SetChecksum(ip.ComputeChecksum()) // after the mutation
			}
			if !p.DecTTL() {
				t.Fatalf("DecTTL reported false")
			}
			if got := p.Data[tt.ttlAt]; got != tt.from-1 {
				t.Errorf("TTL %d, want %d", got, tt.from-1)
			}
			checkChecksums(t, &p, "DecTTL")
		})
	}
}

// TestRewriteOfFirstFragmentKeepsDatagramChecksum rewrites a datagram while
// its IPv4 header says "first fragment", then makes it whole again: the L4
// checksum, which covers the whole datagram, must still be right.
func TestRewriteOfFirstFragmentKeepsDatagramChecksum(t *testing.T) {
	for _, proto := range []layers.IPProtocol{layers.IPProtocolUDP, layers.IPProtocolTCP} {
		ip := ipv4(proto)
		var frame []byte
		if proto == layers.IPProtocolUDP {
			frame = serialize(t, eth(layers.EthernetTypeIPv4), ip, udp(ip), data8) // 16 bytes of UDP
		} else {
			frame = serialize(t, eth(layers.EthernetTypeIPv4), ip, tcp(ip, false), data8[:4]) // 24 bytes of TCP
		}
		frame[14+6] |= 0x20 // MF
		p := Packet{Data: frame}
		p.Parse()
		if p.Flags&FlagFragment == 0 || p.Flags&(FlagUDP|FlagTCP) == 0 {
			t.Fatalf("%v: not a first fragment with an L4 header: %v %v", proto, p.Flags, p.Err)
		}
		p.SetIPv4Src([4]byte{192, 0, 2, 99})
		p.SetDstPort(8080)
		frame[14+6] &^= 0x20
		p.Parse()
		checkChecksums(t, &p, proto.String()+" first fragment")
	}
}
