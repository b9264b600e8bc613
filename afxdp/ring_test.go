package afxdp

import (
	"math/rand/v2"
	"testing"
	"unsafe"
)

// memRing builds a ring over ordinary memory with the kernel's layout, so the
// index arithmetic runs under the race detector and can start anywhere,
// including just below 2^32.
type memRing struct {
	mem []uint64 // 8-byte aligned backing store
}

func newMemRings(size uint32, start uint32) (prod descRing, cons descRing, mem *memRing) {
	m := &memRing{mem: make([]uint64, 64+int(size)*2)}
	base := unsafe.Pointer(&m.mem[0])
	off := ringOffsets{Producer: 0, Consumer: 128, Flags: 196, Desc: 320}
	*(*uint32)(unsafe.Add(base, off.Producer)) = start
	*(*uint32)(unsafe.Add(base, off.Consumer)) = start
	return newDescRing(base, off, size, true), newDescRing(base, off, size, false), m
}

// produce copies up to len(in) descriptors into a producer ring and
// publishes them; it returns how many fit. It and consume drive the index
// arithmetic Socket's batch calls share, without the UMEM's checks.
func (r *descRing) produce(in []Desc) int {
	n := r.producerFree(uint32(len(in)))
	if n > uint32(len(in)) {
		n = uint32(len(in))
	}
	for i := uint32(0); i < n; i++ {
		r.descs[(r.local+i)&r.mask] = in[i]
	}
	r.local += n
	if n > 0 {
		r.publish()
	}
	return int(n)
}

// consume copies up to len(out) descriptors out of a consumer ring and
// releases their slots.
func (r *descRing) consume(out []Desc) int {
	n := r.consumerAvail(uint32(len(out)))
	if n > uint32(len(out)) {
		n = uint32(len(out))
	}
	for i := uint32(0); i < n; i++ {
		out[i] = r.descs[(r.local+i)&r.mask]
	}
	r.local += n
	if n > 0 {
		r.release()
	}
	return int(n)
}

func TestRingIndicesWrapAround2To32(t *testing.T) {
	for _, start := range []uint32{0, 1 << 31, ^uint32(0) - 100, ^uint32(0)} {
		p, c, _ := newMemRings(16, start)
		in := make([]Desc, 7)
		out := make([]Desc, 16)
		var next, want uint64
		for round := 0; round < 200; round++ {
			for i := range in {
				in[i] = Desc{Addr: next, Len: uint32(next)}
				next++
			}
			n := p.produce(in[:rand.IntN(len(in))+1])
			next -= uint64(len(in)) - uint64(n)
			if free := p.producerFree(16); free+(p.local-c.local) != 16 {
				t.Fatalf("start %#x round %d: free %d + used %d != size", start, round, free, p.local-c.local)
			}
			got := c.consume(out[:rand.IntN(len(out))+1])
			for i := 0; i < got; i++ {
				if out[i].Addr != want {
					t.Fatalf("start %#x round %d: consumed addr %d, want %d", start, round, out[i].Addr, want)
				}
				want++
			}
		}
		// Drain and check nothing was lost or duplicated.
		for {
			got := c.consume(out)
			if got == 0 {
				break
			}
			for i := 0; i < got; i++ {
				if out[i].Addr != want {
					t.Fatalf("start %#x drain: consumed %d, want %d", start, out[i].Addr, want)
				}
				want++
			}
		}
		if want != next {
			t.Errorf("start %#x: consumed %d descriptors, produced %d", start, want, next)
		}
	}
}

func TestRingRefusesToOverfill(t *testing.T) {
	p, c, _ := newMemRings(8, ^uint32(0)-3)
	in := make([]Desc, 12)
	if n := p.produce(in); n != 8 {
		t.Fatalf("produced %d into an 8-slot ring, want 8", n)
	}
	if n := p.produce(in); n != 0 {
		t.Fatalf("produced %d into a full ring, want 0", n)
	}
	out := make([]Desc, 3)
	if n := c.consume(out); n != 3 {
		t.Fatalf("consumed %d, want 3", n)
	}
	if n := p.produce(in); n != 3 {
		t.Fatalf("produced %d after 3 were consumed, want 3", n)
	}
}

func TestRingOpsAllocateNothing(t *testing.T) {
	p, c, _ := newMemRings(256, 0)
	in := make([]Desc, 64)
	out := make([]Desc, 64)
	if a := testing.AllocsPerRun(100, func() { p.produce(in); c.consume(out) }); a != 0 {
		t.Errorf("produce+consume allocates %.1f times per batch", a)
	}
}

func BenchmarkRing(b *testing.B) {
	for _, batch := range []int{1, 16, 64, 256} {
		b.Run(itoa(batch), func(b *testing.B) {
			p, c, _ := newMemRings(2048, 0)
			in := make([]Desc, batch)
			out := make([]Desc, batch)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.produce(in)
				c.consume(out)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/desc")
		})
	}
}

func itoa(n int) string {
	s := ""
	for {
		s = string(rune('0'+n%10)) + s
		n /= 10
		if n == 0 {
			return "batch=" + s
		}
	}
}
