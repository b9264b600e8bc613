package lb

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/xnfdev/xnf/packet"
)

func flowKey(src, dst string, proto uint8) packet.FlowKey {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	return packet.FlowKey{Src: s.Addr().As16(), Dst: d.Addr().As16(), SrcPort: s.Port(), DstPort: d.Port(), Proto: proto}
}

// The hash is a function of the key alone, fixed forever: these values
// must never change, or instances of different versions behind one ECMP
// route (and a restarted one) would send a flow to different backends.
func TestFlowHashIsFixed(t *testing.T) {
	for _, c := range []struct {
		k    packet.FlowKey
		want uint64
	}{
		{flowKey("198.18.0.1:40000", "198.18.1.100:80", packet.ProtoTCP), 0xbfa921709dc335c0},
		{flowKey("198.18.0.1:40001", "198.18.1.100:80", packet.ProtoTCP), 0x8076de26afde5f23},
		{flowKey("198.18.0.1:40000", "198.18.1.100:80", packet.ProtoUDP), 0x226f96beb38bff62},
		{flowKey("[2001:db8::1]:40000", "[2001:db8:100::100]:80", packet.ProtoTCP), 0x4aa150b61031a0ca},
	} {
		if got := FlowHash(&c.k); got != c.want {
			t.Errorf("FlowHash(%v) = %#x, want %#x", c.k, got, c.want)
		}
	}
}

// Flows that differ in one field only (the client port, counted up as a
// client's kernel picks them) spread over a weighted table as the
// weights say: the hash is mixed enough for Lookup's fold to 32 bits.
func TestFlowHashSpreadsSequentialPorts(t *testing.T) {
	tb := build(t, DefaultSize, weighted(1, 2, 3))
	for _, base := range []packet.FlowKey{
		flowKey("198.18.0.1:0", "198.18.1.100:80", packet.ProtoTCP),
		flowKey("[2001:db8::1]:0", "[2001:db8:100::100]:443", packet.ProtoUDP),
	} {
		var got [3]int
		const n = 60000
		for i := range n {
			k := base
			k.SrcPort = uint16(1024 + i)
			got[tb.Lookup(FlowHash(&k))]++
		}
		for i, w := range []float64{1, 2, 3} {
			share := float64(got[i]) / n
			if want := w / 6; math.Abs(share-want) > 0.01 {
				t.Errorf("%v: backend %d has %.4f of the flows, want %.4f +- 0.01", base.DstAddr(), i, share, want)
			}
		}
	}
}

// Every bit of the key reaches the hash: flipping one input bit flips
// about half the output bits, for each of the key's 37 bytes.
func TestFlowHashAvalanche(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for bit := range 37 * 8 {
		flips := 0
		const tries = 200
		for range tries {
			var k packet.FlowKey
			for i := range k.Src {
				k.Src[i], k.Dst[i] = byte(r.Uint32()), byte(r.Uint32())
			}
			k.SrcPort, k.DstPort, k.Proto = uint16(r.Uint32()), uint16(r.Uint32()), uint8(r.Uint32())
			h := FlowHash(&k)
			flipBit(&k, bit)
			flips += popcount(h ^ FlowHash(&k))
		}
		if avg := float64(flips) / tries; avg < 28 || avg > 36 {
			t.Errorf("bit %d of the key flips %.1f of 64 hash bits on average, want about 32", bit, avg)
		}
	}
}

func flipBit(k *packet.FlowKey, bit int) {
	switch i := bit / 8; {
	case i < 16:
		k.Src[i] ^= 1 << (bit % 8)
	case i < 32:
		k.Dst[i-16] ^= 1 << (bit % 8)
	case i < 34:
		k.SrcPort ^= 1 << (bit - 32*8)
	case i < 36:
		k.DstPort ^= 1 << (bit - 34*8)
	default:
		k.Proto ^= 1 << (bit - 36*8)
	}
}

func popcount(x uint64) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

func TestFlowHashAllocatesNothing(t *testing.T) {
	k := flowKey("198.18.0.1:40000", "198.18.1.100:80", packet.ProtoTCP)
	var sink uint64
	if a := testing.AllocsPerRun(100, func() { sink += FlowHash(&k) }); a != 0 {
		t.Errorf("%v allocations", a)
	}
}

func BenchmarkFlowHash(b *testing.B) {
	k := flowKey("198.18.0.1:40000", "198.18.1.100:80", packet.ProtoTCP)
	var sink uint64
	for b.Loop() {
		k.SrcPort++
		sink += FlowHash(&k)
	}
	if sink == 1 {
		b.Fatal(sink)
	}
}
