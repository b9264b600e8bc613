package pipeline

import (
	"fmt"
	"testing"

	"github.com/xnfdev/xnf/packet"
)

func TestLiveSkipsDroppedPackets(t *testing.T) {
	var b packet.Batch
	for i := range 6 {
		b.Append(make([]byte, 60), uint64(i), 0)
	}
	b.Packets[1].SetDrop(packet.DropPolicy)
	b.Packets[4].SetDrop(packet.DropPolicy)
	var seen []int
	for i, p := range Live(&b) {
		if p != &b.Packets[i] {
			t.Fatal("Live yields a copy, not the packet")
		}
		seen = append(seen, i)
		if i == 3 {
			break
		}
	}
	if fmt.Sprint(seen) != "[0 2 3]" {
		t.Errorf("Live yielded %v, want [0 2 3] (stopping at 3)", seen)
	}
	if a := testing.AllocsPerRun(100, func() {
		for _, p := range Live(&b) {
			p.OutPort++
		}
	}); a != 0 {
		t.Errorf("Live allocates %.1f times", a)
	}
}

type counted struct {
	Counters
	hits, misses *Counter
}

func (*counted) Name() string          { return "counted" }
func (*counted) Process(*packet.Batch) {}

func TestCountersAreStageMetrics(t *testing.T) {
	s := &counted{}
	s.hits, s.misses = s.Counter("hits"), s.Counter("misses")
	s.hits.Add(3)
	var st Stage = s
	m, ok := st.(StageMetrics)
	if !ok {
		t.Fatal("a stage embedding Counters does not implement StageMetrics")
	}
	if got := fmt.Sprint(m.StageMetrics()); got != "map[hits:3 misses:0]" {
		t.Errorf("StageMetrics = %s", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("registering hits twice did not panic")
		}
	}()
	s.Counter("hits")
}

func TestPushFrontAndPopFront(t *testing.T) {
	pool := NewMemPool(4, 512)
	for _, tc := range []struct {
		name     string
		headroom int
		wantOff  uint64 // Addr's offset in the frame after pushing 4 bytes
	}{
		{"into the headroom", 256, 252},
		{"shifted without headroom", 0, 0},
		{"shifted with too little headroom", 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := alloc(t, pool)
			defer pool.Free([]uint64{a})
			addr := a + uint64(tc.headroom)
			p := &packet.Packet{Data: pool.Frame(addr, 6), Addr: addr}
			copy(p.Data, "abcdef")
			if !PushFront(p, 4, 512) {
				t.Fatal("no room")
			}
			if p.Addr != a+tc.wantOff || string(p.Data[4:]) != "abcdef" || len(p.Data) != 10 {
				t.Fatalf("after PushFront: Addr %d (want %d), Data %q", p.Addr, a+tc.wantOff, p.Data)
			}
			if &p.Data[0] != &pool.Frame(p.Addr, 1)[0] {
				t.Fatal("Data does not start at Addr")
			}
			if !PopFront(p, 4) || p.Addr != a+tc.wantOff+4 || string(p.Data) != "abcdef" || &p.Data[0] != &pool.Frame(p.Addr, 1)[0] {
				t.Fatalf("after PopFront: Addr %d, Data %q", p.Addr, p.Data)
			}
		})
	}
	a := alloc(t, pool)
	defer pool.Free([]uint64{a})
	p := &packet.Packet{Data: pool.Frame(a, 510), Addr: a}
	if PushFront(p, 4, 512) || len(p.Data) != 510 || p.Addr != a {
		t.Error("PushFront without headroom or tailroom changed the packet")
	}
	if PopFront(p, 510) {
		t.Error("PopFront of the whole frame")
	}
}

// Stage-shaped functions, not inlined into the benchmark: inside a closure
// of b.Run the comparison measures closure captures instead.
//
//go:noinline
func markIndexed(b *packet.Batch) {
	for i := range b.Slice() {
		if p := &b.Packets[i]; p.Verdict != packet.Drop {
			p.OutPort++
		}
	}
}

//go:noinline
func markLive(b *packet.Batch) {
	for _, p := range Live(b) {
		p.OutPort++
	}
}

// BenchmarkLive shows Live costs what an indexed loop costs: both compile
// to the same loop (go tool objdump -s markLive).
func BenchmarkLive(b *testing.B) {
	batch := new(packet.Batch)
	for i := range 64 {
		batch.Append(make([]byte, 60), uint64(i), 0)
		if i%4 == 0 {
			batch.Packets[i].SetDrop(packet.DropPolicy)
		}
	}
	for _, bc := range []struct {
		name string
		fn   func(*packet.Batch)
	}{{"indexed", markIndexed}, {"Live", markLive}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				bc.fn(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/pkt")
		})
	}
}

// alloc takes one frame of pool.
func alloc(t *testing.T, pool *MemPool) uint64 {
	t.Helper()
	a := make([]uint64, 1)
	if pool.Alloc(a) != 1 {
		t.Fatal("the pool is empty")
	}
	return a[0]
}
