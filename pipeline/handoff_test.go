package pipeline_test

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// byDstPort owns a UDP packet by its destination port modulo the workers;
// anything else stays where it arrived.
type byDstPort struct{ n int }

func (s byDstPort) Owners(pkts []packet.Packet, self uint8, owners []uint8) {
	for i := range pkts {
		owners[i] = self
		if p := &pkts[i]; p.Has(packet.FlagUDP) {
			owners[i] = uint8(int(p.DstPort()) % s.n)
		}
	}
}

// seen is what a worker's recorder stage saw of a packet.
type seen struct {
	worker    int
	in, out   uint16
	dstPort   uint16
	payloadOK bool
}

// recorder notes every packet its worker runs, by the id in its payload.
type recorder struct {
	worker int
	seen   map[uint32][]seen
}

func (r *recorder) Name() string { return "recorder" }
func (r *recorder) Process(b *packet.Batch) {
	for i := range b.Slice() {
		p := &b.Packets[i]
		if !p.Has(packet.FlagUDP) {
			continue
		}
		pl := p.Data[p.PayloadOff:p.L3End]
		id := binary.BigEndian.Uint32(pl)
		r.seen[id] = append(r.seen[id], seen{worker: r.worker, in: p.InPort, out: p.OutPort, dstPort: p.DstPort(),
			payloadOK: strings.HasSuffix(string(pl), "-payload")})
	}
}

// idFrame is a UDP frame carrying id, to destination port dport.
func idFrame(id uint32, dport uint16) []byte {
	pl := binary.BigEndian.AppendUint32(nil, id)
	pl = append(pl, "-payload"...)
	return pipelinetest.UDP4("198.18.0.1:1000", fmt.Sprintf("198.19.0.2:%d", dport), pl)
}

// pair is two workers over memory ports, each with a pool of its own,
// joined by a hand-off.
type pair struct {
	h     *pipeline.Handoff
	w     [2]*pipeline.Worker
	pools [2]*pipeline.MemPool
	ports [2][2]*pipelinetest.MemPort
	rec   [2]*recorder
}

func newPair(t testing.TB, slots int, frames [2]int) *pair {
	t.Helper()
	h, err := pipeline.NewHandoff(2, 2048, slots)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	x := &pair{h: h}
	for i := range 2 {
		x.pools[i] = pipeline.NewMemPool(frames[i], 2048)
		x.rec[i] = &recorder{worker: i, seen: map[uint32][]seen{}}
		for j := range 2 {
			x.ports[i][j] = pipelinetest.NewMemPort(fmt.Sprintf("p%d/w%d", j, i), x.pools[i])
			x.ports[i][j].Headroom = pipelinetest.DefaultHeadroom
		}
		w, err := pipeline.NewWorker(pipeline.Config{Ports: []pipeline.Port{x.ports[i][0], x.ports[i][1]},
			Stages: []pipeline.Stage{x.rec[i]}, CPU: -1, Steering: byDstPort{2}, Handoff: h, Index: i, Pool: x.pools[i]})
		if err != nil {
			t.Fatal(err)
		}
		x.w[i] = w
	}
	return x
}

// settle polls both workers until neither moves a packet.
func (x *pair) settle() {
	for quiet := 0; quiet < 2; {
		if x.w[0].Poll()+x.w[1].Poll() == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
}

// balance checks the counters add up over both workers, with no packet
// left in a ring.
func balance(t *testing.T, ws ...*pipeline.Worker) (handed, received, full, noFrame uint64) {
	t.Helper()
	var rx, tx, dropped uint64
	for _, w := range ws {
		for _, pc := range w.PortCounters() {
			rx += pc.RX
			tx += pc.TX
			dropped += pc.DroppedTotal()
		}
		c := w.Counters()
		handed += c.HandedOff
		received += c.ReceivedHandoff
		full += c.HandoffFull
		noFrame += c.HandoffNoFrame
		if c.HandoffDropped != c.HandoffFull+c.HandoffNoFrame {
			t.Errorf("HandoffDropped %d != full %d + no frame %d", c.HandoffDropped, c.HandoffFull, c.HandoffNoFrame)
		}
	}
	if rx+received != tx+dropped+handed {
		t.Errorf("rx %d + received %d != tx %d + dropped %d + handed off %d", rx, received, tx, dropped, handed)
	}
	if handed != received+noFrame {
		t.Errorf("handed off %d != received %d + no frame %d", handed, received, noFrame)
	}
	return
}

func TestHandoffRunsEachPacketOnItsOwnerOnce(t *testing.T) {
	x := newPair(t, 0, [2]int{512, 512})
	var want = map[uint32]uint16{} // id -> port it was received on
	id := uint32(0)
	for round := range 3 {
		for w := range 2 {
			for in := range 2 {
				var frames [][]byte
				for k := range 40 + round {
					id++
					frames = append(frames, idFrame(id, uint16(2000+k)))
					want[id] = uint16(in)
				}
				x.ports[w][in].Inject(frames...)
			}
		}
		x.settle()
	}
	for id, in := range want {
		var all []seen
		for w := range 2 {
			all = append(all, x.rec[w].seen[id]...)
		}
		if len(all) != 1 {
			t.Fatalf("packet %d ran %d times: %+v", id, len(all), all)
		}
		s := all[0]
		if s.worker != int(s.dstPort)%2 || s.in != in || s.out != in^1 || !s.payloadOK {
			t.Errorf("packet %d: %+v, want worker %d, in %d, out %d and its payload", id, s, s.dstPort%2, in, in^1)
		}
	}
	var out int
	for w := range 2 {
		for p := range 2 {
			out += len(x.ports[w][p].Output())
		}
		if a, n := x.pools[w].Available(), x.pools[w].Total(); a != n || x.pools[w].Violations != 0 {
			t.Errorf("worker %d: %d of %d frames free, %d violations", w, a, n, x.pools[w].Violations)
		}
	}
	if out != len(want) {
		t.Errorf("%d frames out, want %d", out, len(want))
	}
	handed, received, full, noFrame := balance(t, x.w[0], x.w[1])
	if handed == 0 || handed != received || full != 0 || noFrame != 0 {
		t.Errorf("handed %d received %d full %d no frame %d", handed, received, full, noFrame)
	}
}

func TestHandoffFullRingDropsAndCounts(t *testing.T) {
	x := newPair(t, 16, [2]int{512, 512})
	var frames [][]byte
	for i := range 64 {
		frames = append(frames, idFrame(uint32(i), 2001)) // all owned by worker 1
	}
	x.ports[0][0].Inject(frames...)
	x.w[0].Poll()
	c := x.w[0].Counters()
	if c.HandedOff != 16 || c.HandoffFull != 48 || c.HandoffDropped != 48 {
		t.Fatalf("worker 0: %+v, want 16 handed off and 48 dropped on a full ring", c)
	}
	if d := x.w[0].PortCounters()[0].Dropped[packet.DropFull]; d != 48 {
		t.Errorf("port 0 of worker 0 counts %d full drops, want 48", d)
	}
	x.settle()
	if n := len(x.ports[1][1].Output()); n != 16 {
		t.Errorf("worker 1 sent %d, want 16", n)
	}
	balance(t, x.w[0], x.w[1])
	// The ring has room again.
	x.ports[0][0].Inject(frames[:10]...)
	x.settle()
	if n := len(x.ports[1][1].Output()); n != 10 {
		t.Errorf("worker 1 sent %d after the ring emptied, want 10", n)
	}
}

func TestHandoffEmptyPoolDropsAndCounts(t *testing.T) {
	x := newPair(t, 64, [2]int{512, 8})
	var frames [][]byte
	for i := range 20 {
		frames = append(frames, idFrame(uint32(i), 2001))
	}
	x.ports[0][0].Inject(frames...)
	x.w[0].Poll()
	x.w[1].Poll()
	c := x.w[1].Counters()
	if c.ReceivedHandoff != 8 || c.HandoffNoFrame != 12 || c.HandoffDropped != 12 {
		t.Fatalf("worker 1: %+v, want 8 received and 12 dropped for want of a frame", c)
	}
	x.settle()
	balance(t, x.w[0], x.w[1])
	if a, n := x.pools[1].Available(), x.pools[1].Total(); a != n {
		t.Errorf("worker 1: %d of %d frames free", a, n)
	}
}

func TestHandoffAllocatesNothing(t *testing.T) {
	x := newPair(t, 0, [2]int{1024, 1024})
	var frames [][]byte
	for i := range 64 {
		frames = append(frames, idFrame(uint32(i), uint16(2000+i)))
	}
	for w := range 2 {
		x.ports[w][0].Loop = true
		for p := range 2 {
			x.ports[w][p].Discard = true
		}
		x.ports[w][0].Inject(frames...)
		x.w[w] = mustWorker(t, pipeline.Config{Ports: []pipeline.Port{x.ports[w][0], x.ports[w][1]}, CPU: -1,
			Steering: byDstPort{2}, Handoff: x.h, Index: w, Pool: x.pools[w]})
	}
	step := func() { x.w[0].Poll(); x.w[1].Poll() }
	for range 4 {
		step()
	}
	if n := testing.AllocsPerRun(200, step); n != 0 {
		t.Fatalf("%v allocations per loop of both workers", n)
	}
	if c := x.w[0].Counters(); c.HandedOff == 0 || c.ReceivedHandoff == 0 {
		t.Fatalf("no hand-off happened: %+v", c)
	}
}

func mustWorker(t testing.TB, c pipeline.Config) *pipeline.Worker {
	t.Helper()
	w, err := pipeline.NewWorker(c)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestHandoffConfigErrors(t *testing.T) {
	h, err := pipeline.NewHandoff(2, 2048, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.Slots() != 1024 {
		t.Errorf("default slots for 2 workers: %d", h.Slots())
	}
	pool := pipeline.NewMemPool(8, 2048)
	ports := []pipeline.Port{pipelinetest.NewMemPort("a", pool)}
	for name, c := range map[string]pipeline.Config{
		"steering without rings": {Steering: byDstPort{2}},
		"rings without steering": {Handoff: h, Pool: pool},
		"index out of range":     {Steering: byDstPort{2}, Handoff: h, Index: 2, Pool: pool},
		"no pool":                {Steering: byDstPort{2}, Handoff: h},
		"other frame size":       {Steering: byDstPort{2}, Handoff: h, Pool: pipeline.NewMemPool(8, 4096)},
	} {
		c.Ports, c.CPU = ports, -1
		if _, err := pipeline.NewWorker(c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for _, bad := range [][3]int{{0, 2048, 0}, {257, 2048, 0}, {2, 10, 0}, {2, 2048, -1}} {
		if h, err := pipeline.NewHandoff(bad[0], bad[1], bad[2]); err == nil {
			h.Close()
			t.Errorf("NewHandoff%v: no error", bad)
		}
	}
	for n, want := range map[int]int{1: 64, 2: 1024, 3: 512, 5: 256, 16: 64, 200: 64} {
		if got := pipeline.DefaultSlots(n); got != want {
			t.Errorf("DefaultSlots(%d) = %d, want %d", n, got, want)
		}
	}
}

// feedPort is a memory port that another goroutine feeds, pollable: its
// eventfd is readable while frames wait.
type feedPort struct {
	name  string
	pool  *pipeline.MemPool
	efd   int
	mu    sync.Mutex
	in    [][]byte
	sent  int
	addrs [packet.MaxBurst]uint64
}

func newFeedPort(t testing.TB, name string, pool *pipeline.MemPool) *feedPort {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	return &feedPort{name: name, pool: pool, efd: fd}
}

func (p *feedPort) Feed(frames ...[]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.in = append(p.in, frames...)
	unix.Write(p.efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
}

func (p *feedPort) Sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

func (p *feedPort) Name() string { return p.name }
func (p *feedPort) PollFD() int  { return p.efd }
func (p *feedPort) Flush() error { return nil }
func (p *feedPort) Close() error { return unix.Close(p.efd) }

func (p *feedPort) Receive(b *packet.Batch, max int) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.pool.Alloc(p.addrs[:min(max, b.Free(), len(p.in))])
	for _, a := range p.addrs[:n] {
		f := p.pool.Frame(a+256, uint32(len(p.in[0])))
		copy(f, p.in[0])
		b.Append(f, a+256, 0)
		p.in = p.in[1:]
	}
	if len(p.in) == 0 {
		var buf [8]byte
		unix.Read(p.efd, buf[:])
	}
	return n, nil
}

func (p *feedPort) Transmit(pkts []*packet.Packet) (int, error) {
	p.mu.Lock()
	p.sent += len(pkts)
	p.mu.Unlock()
	p.Release(pkts)
	return len(pkts), nil
}

func (p *feedPort) Release(pkts []*packet.Packet) {
	for i, pk := range pkts {
		p.addrs[i] = pk.Addr
	}
	p.pool.Free(p.addrs[:len(pkts)])
}

// Two workers on goroutines of their own, both asleep in poll(2) between
// bursts: a burst fed to one worker and owned by the other must wake the
// owner through its eventfd (the poll timeout is far longer than the
// test waits), and every packet runs once, on its owner.
func TestHandoffWakesASleepingOwner(t *testing.T) {
	h, err := pipeline.NewHandoff(2, 2048, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var ports [2][2]*feedPort
	var ws [2]*pipeline.Worker
	var recs [2]*recorder
	for i := range 2 {
		pool := pipeline.NewMemPool(1024, 2048)
		recs[i] = &recorder{worker: i, seen: map[uint32][]seen{}}
		for j := range 2 {
			ports[i][j] = newFeedPort(t, fmt.Sprintf("p%d/w%d", j, i), pool)
			defer ports[i][j].Close()
		}
		ws[i] = mustWorker(t, pipeline.Config{Ports: []pipeline.Port{ports[i][0], ports[i][1]}, Stages: []pipeline.Stage{recs[i]},
			CPU: -1, Idle: pipeline.Idle{Spin: 2, PollTimeout: 20 * time.Second},
			Steering: byDstPort{2}, Handoff: h, Index: i, Pool: pool})
		if err := ws[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		for _, w := range ws {
			start := time.Now()
			if err := w.Stop(); err != nil {
				t.Error(err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Stop took %v: the worker was not woken", d)
			}
		}
	}
	defer stop()
	// A worker that has blocked more often than before the last burst
	// is asleep again (or about to be: it blocks after Spin empty loops).
	var polls [2]uint64
	sent := func() (n int) {
		for i := range 2 {
			for j := range 2 {
				n += ports[i][j].Sent()
			}
		}
		return n
	}
	id, total := uint32(0), 0
	for burst := range 20 {
		deadline := time.Now().Add(5 * time.Second)
		for ws[0].Counters().Polls <= polls[0] || ws[1].Counters().Polls <= polls[1] {
			if time.Now().After(deadline) {
				t.Fatalf("burst %d: the workers never went to sleep", burst)
			}
			time.Sleep(time.Millisecond)
		}
		polls = [2]uint64{ws[0].Counters().Polls, ws[1].Counters().Polls}
		time.Sleep(2 * time.Millisecond) // into poll(2)
		// Fed to worker (burst&1) on port (burst>>1&1), owned by the other.
		w, in := burst&1, burst>>1&1
		var frames [][]byte
		for k := range 30 {
			id++
			frames = append(frames, idFrame(id, uint16(2*k+1-w)))
		}
		total += len(frames)
		ports[w][in].Feed(frames...)
		for sent() < total {
			if time.Now().After(deadline) {
				t.Fatalf("burst %d: %d of %d packets out after 5s: the owner was not woken (%+v, %+v)", burst, sent(), total, ws[0].Counters(), ws[1].Counters())
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	stop()
	for i := uint32(1); i <= id; i++ {
		all := append(recs[0].seen[i], recs[1].seen[i]...)
		if len(all) != 1 || all[0].worker != int(all[0].dstPort)%2 {
			t.Fatalf("packet %d: %+v", i, all)
		}
	}
	handed, received, _, _ := balance(t, ws[0], ws[1])
	if handed != uint64(total) || received != uint64(total) {
		t.Errorf("handed off %d, received %d, want %d", handed, received, total)
	}
}

// BenchmarkHandoff runs bursts of 64 UDP packets received by worker 0
// through an empty chain, owned by worker 0 itself (local) or by worker
// 1 (handed off: copied into the ring, taken into worker 1's pool). The
// difference per packet is what a hand-off costs.
func BenchmarkHandoff(b *testing.B) {
	for _, owner := range []string{"local", "handed-off"} {
		b.Run("owner="+owner, func(b *testing.B) {
			x := newPair(b, 0, [2]int{1024, 1024})
			var frames [][]byte
			for i := range 64 {
				d := uint16(2000 + 2*i)
				if owner != "local" {
					d++
				}
				frames = append(frames, idFrame(uint32(i), d))
			}
			x.ports[0][0].Loop = true
			for w := range 2 {
				for p := range 2 {
					x.ports[w][p].Discard = true
				}
				x.w[w] = mustWorker(b, pipeline.Config{Ports: []pipeline.Port{x.ports[w][0], x.ports[w][1]}, CPU: -1,
					Steering: byDstPort{2}, Handoff: x.h, Index: w, Pool: x.pools[w]})
			}
			x.ports[0][0].Inject(frames...)
			b.ReportAllocs()
			pkts := 0
			for b.Loop() {
				pkts += x.w[0].Poll()
				x.w[1].Poll()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pkts), "ns/pkt")
		})
	}
}
