package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// referenceSum is RFC 1071 the slow way: 16-bit words, 32-bit accumulator.
func referenceSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// sameOnesComplement reports whether a and b are the same ones'-complement
// number: 0x0000 and 0xffff are both zero.
func sameOnesComplement(a, b uint16) bool {
	return a == b || a == 0 && b == 0xffff || a == 0xffff && b == 0
}

func TestSum(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want uint16
	}{
		{"the RFC 1071 example sums to ddf2", []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0xddf2},
		{"nothing sums to zero", nil, 0},
		{"an odd byte is the high byte of a word", []byte{0xab}, 0xab00},
		{"carries wrap around", []byte{0xff, 0xff, 0x00, 0x01}, 0x0001},
		{"32 bytes of ones stay ffff", []byte("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"), 0xffff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sum(tt.data, 0); got != tt.want {
				t.Errorf("Sum = %#04x, want %#04x", got, tt.want)
			}
		})
	}
}

func TestSumMatchesReferenceOnRandomData(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 2048)
	for i := range 20000 {
		n := rng.IntN(len(buf))
		b := buf[:n]
		for j := range b {
			b[j] = byte(rng.Uint32())
			if i%3 == 0 {
				b[j] |= 0xf0 // many carries
			}
		}
		initial := uint16(rng.Uint32())
		want := referenceSum(b)
		if got := Sum(b, 0); got != want && !(n > 0 && sameOnesComplement(got, want)) {
			t.Fatalf("len %d: Sum = %#04x, reference %#04x", n, got, want)
		}
		if got, want := Sum(b, initial), Combine(referenceSum(b), initial); !sameOnesComplement(got, want) {
			t.Fatalf("len %d: Sum with initial = %#04x, want %#04x", n, got, want)
		}
		if got, want := Checksum(b), gopacket.FoldChecksum(gopacket.ComputeChecksum(b, 0)); !sameOnesComplement(got, want) {
			t.Fatalf("len %d: Checksum = %#04x, gopacket %#04x", n, got, want)
		}
		// Chaining over an even split gives the same sum.
		split := rng.IntN(n+1) &^ 1
		if got := Sum(b[split:], Sum(b[:split], 0)); !sameOnesComplement(got, Sum(b, 0)) {
			t.Fatalf("len %d split %d: chained %#04x, whole %#04x", n, split, got, Sum(b, 0))
		}
	}
}

func TestIncrementalUpdatesEqualRecompute(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 64)
	for range 20000 {
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		binary.BigEndian.PutUint16(buf[10:], 0)
		binary.BigEndian.PutUint16(buf[10:], Checksum(buf))
		off := rng.IntN(len(buf)/4) * 4
		if off == 8 {
			off = 12 // keep away from the checksum field
		}
		switch rng.IntN(3) {
		case 0:
			from := binary.BigEndian.Uint16(buf[off:])
			to := uint16(rng.Uint32())
			binary.BigEndian.PutUint16(buf[off:], to)
			binary.BigEndian.PutUint16(buf[10:], ChecksumUpdate16(binary.BigEndian.Uint16(buf[10:]), from, to))
		case 1:
			from := binary.BigEndian.Uint32(buf[off:])
			to := rng.Uint32()
			binary.BigEndian.PutUint32(buf[off:], to)
			binary.BigEndian.PutUint16(buf[10:], ChecksumUpdate32(binary.BigEndian.Uint16(buf[10:]), from, to))
		case 2:
			if off < 16 {
				off = 16
			}
			n := 2 * rng.IntN((len(buf)-off)/2+1)
			from := append([]byte(nil), buf[off:off+n]...)
			for j := off; j < off+n; j++ {
				buf[j] = byte(rng.Uint32())
			}
			binary.BigEndian.PutUint16(buf[10:], ChecksumUpdateBytes(binary.BigEndian.Uint16(buf[10:]), from, buf[off:off+n]))
		}
		if Sum(buf, 0) != 0xffff {
			t.Fatalf("after an update the data does not verify: sum %#04x", Sum(buf, 0))
		}
	}
}

// randomPacket builds a random IPv4 or IPv6 packet carrying TCP, UDP or
// ICMP(v6), with gopacket computing every checksum.
func randomPacket(t testing.TB, rng *rand.Rand) []byte {
	payload := make([]byte, rng.IntN(1400))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	var ip gopacket.NetworkLayer
	var ipLayer gopacket.SerializableLayer
	v6 := rng.IntN(2) == 1
	var a4, b4 [4]byte
	var a6, b6 [16]byte
	binary.BigEndian.PutUint32(a4[:], rng.Uint32())
	binary.BigEndian.PutUint32(b4[:], rng.Uint32())
	binary.BigEndian.PutUint64(a6[:], rng.Uint64())
	binary.BigEndian.PutUint64(a6[8:], rng.Uint64())
	binary.BigEndian.PutUint64(b6[:], rng.Uint64())
	binary.BigEndian.PutUint64(b6[8:], rng.Uint64())
	kind := rng.IntN(3)
	protos := [2][3]layers.IPProtocol{{layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolICMPv4}, {layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolICMPv6}}
	ethType := layers.EthernetTypeIPv4
	if v6 {
		l := ipv6(protos[1][kind])
		l.SrcIP, l.DstIP = a6[:], b6[:]
		l.HopLimit = uint8(rng.Uint32())
		ip, ipLayer, ethType = l, l, layers.EthernetTypeIPv6
	} else {
		l := ipv4(protos[0][kind])
		l.SrcIP, l.DstIP = a4[:], b4[:]
		l.TTL, l.Id, l.TOS = uint8(rng.Uint32()), uint16(rng.Uint32()), uint8(rng.Uint32())
		ip, ipLayer = l, l
	}
	var l4 []gopacket.SerializableLayer
	switch kind {
	case 0:
		h := tcp(ip, rng.IntN(2) == 0)
		h.SrcPort, h.DstPort = layers.TCPPort(rng.Uint32()), layers.TCPPort(rng.Uint32())
		h.Seq, h.Ack, h.Window = rng.Uint32(), rng.Uint32(), uint16(rng.Uint32())
		l4 = append(l4, h)
	case 1:
		h := udp(ip)
		h.SrcPort, h.DstPort = layers.UDPPort(rng.Uint32()), layers.UDPPort(rng.Uint32())
		l4 = append(l4, h)
	case 2:
		if v6 {
			typ := uint8(layers.ICMPv6TypeEchoRequest + rng.IntN(2))
			h := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
			h.SetNetworkLayerForChecksum(ip)
			l4 = append(l4, h, &layers.ICMPv6Echo{Identifier: uint16(rng.Uint32()), SeqNumber: uint16(rng.Uint32())})
		} else {
			typ := []uint8{layers.ICMPv4TypeEchoRequest, layers.ICMPv4TypeEchoReply}[rng.IntN(2)]
			l4 = append(l4, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: uint16(rng.Uint32()), Seq: uint16(rng.Uint32())})
		}
	}
	ls := append([]gopacket.SerializableLayer{eth(ethType), ipLayer}, l4...)
	return serialize(t, append(ls, gopacket.Payload(payload))...)
}

// l4ChecksumField reads the L4 checksum as written in the frame.
func l4ChecksumField(p *Packet) uint16 {
	return binary.BigEndian.Uint16(p.l4ChecksumPtr())
}

func TestChecksumsEqualGopacketOnRandomPackets(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 3000 {
		frame := randomPacket(t, rng)
		p := Packet{Data: frame}
		if p.Parse() != ErrNone {
			t.Fatalf("packet %d does not parse: %v", i, p.Err)
		}
		if ip := p.IPv4(); ip != nil && (ip.ComputeChecksum() != ip.Checksum() || !ip.ChecksumValid()) {
			t.Fatalf("packet %d: IPv4 checksum %#04x, gopacket wrote %#04x", i, ip.ComputeChecksum(), ip.Checksum())
		}
		got, ok := p.ComputeL4Checksum()
		if !ok {
			t.Fatalf("packet %d (%v): no L4 checksum", i, p.Flags)
		}
		if want := l4ChecksumField(&p); got != want {
			t.Fatalf("packet %d (%v): L4 checksum %#04x, gopacket wrote %#04x", i, p.Flags, got, want)
		}
		if !p.L4ChecksumValid() {
			t.Fatalf("packet %d (%v): L4ChecksumValid is false", i, p.Flags)
		}
		// One flipped bit in the segment must be noticed.
		pos := int(p.L4Off) + rng.IntN(int(p.L3End-p.L4Off))
		p.Data[pos] ^= 1 << rng.IntN(8)
		if p.L4ChecksumValid() {
			t.Fatalf("packet %d (%v): a flipped bit at %d still verifies", i, p.Flags, pos)
		}
	}
}

func TestSetL4ChecksumWritesWhatGopacketVerifies(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 500 {
		frame := randomPacket(t, rng)
		p := Packet{Data: frame}
		p.Parse()
		binary.BigEndian.PutUint16(p.l4ChecksumPtr(), 0x1234)
		if !p.SetL4Checksum() {
			t.Fatalf("packet %d: SetL4Checksum found no checksum", i)
		}
		verifyWithGopacket(t, frame)
	}
}

// verifyWithGopacket decodes a frame with gopacket and fails on any checksum
// it finds wrong.
func verifyWithGopacket(t testing.TB, frame []byte) {
	t.Helper()
	gp := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := gp.ErrorLayer(); el != nil {
		t.Fatalf("gopacket cannot decode: %v", el.Error())
	}
	type checksummed interface {
		VerifyChecksum() (error, gopacket.ChecksumVerificationResult)
	}
	type pseudoHeadered interface {
		SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
	}
	verified := 0
	for _, l := range gp.Layers() {
		if ph, ok := l.(pseudoHeadered); ok {
			if err := ph.SetNetworkLayerForChecksum(gp.NetworkLayer()); err != nil {
				t.Fatalf("gopacket %v: %v", l.LayerType(), err)
			}
		}
		if c, ok := l.(checksummed); ok {
			err, res := c.VerifyChecksum()
			if err != nil {
				t.Fatalf("gopacket %v: %v", l.LayerType(), err)
			}
			if !res.Valid {
				t.Fatalf("gopacket finds a bad checksum in %v: %#x, want %#x", l.LayerType(), res.Actual, res.Correct)
			}
			verified++
		}
	}
	if verified < 2 && gp.Layer(layers.LayerTypeIPv6) == nil {
		t.Fatalf("gopacket verified %d checksums, want the IPv4 and L4 ones", verified)
	}
}

func TestComputeL4ChecksumRefusesFragments(t *testing.T) {
	for _, build := range []func(testing.TB) []byte{frameIPv6FirstFragmentUDP, validFrames[9].build, frameARP} {
		p := Packet{Data: build(t)}
		p.Parse()
		if _, ok := p.ComputeL4Checksum(); ok || p.L4ChecksumValid() || p.SetL4Checksum() {
			t.Errorf("%v: a checksum over a fragment or no L4 header was computed", p.Flags)
		}
	}
}

func TestUDPZeroChecksumOverIPv4MeansNone(t *testing.T) {
	p := Packet{Data: frameIPv4UDP(t)}
	p.Parse()
	p.UDP().SetChecksum(0)
	if !p.L4ChecksumValid() {
		t.Errorf("a zero UDP checksum over IPv4 does not verify")
	}
	p = Packet{Data: frameIPv6TCP(t)}
	p.Parse()
	p.TCP().SetChecksum(0)
	if p.L4ChecksumValid() {
		t.Errorf("a zero TCP checksum verifies")
	}
}
