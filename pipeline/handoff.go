package pipeline

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/packet"
)

// Steering names the worker that owns each packet, for chains whose
// stages keep per-worker state about flows (conntrack, NAT): a worker
// with a Steering and a Handoff runs only the packets it owns and hands
// the others to their owners (see Handoff). nf/conntrack's Steering is
// one.
type Steering interface {
	// Owners writes the owning worker of pkts[i] into owners[i], for
	// every packet (parsed, InPort set); self is the calling worker,
	// which is the answer for packets any worker may run. It runs on
	// every worker's goroutine at once and must not allocate.
	Owners(pkts []packet.Packet, self uint8, owners []uint8)
}

// MaxHandoffWorkers is the most workers a Handoff joins (owners are
// bytes).
const MaxHandoffWorkers = 256

// Handoff joins the workers of one service so that each packet runs on
// the worker that owns it (VPP's worker hand-off): after parsing a
// received batch, a worker with a Steering asks it for every packet's
// owner, copies each packet it does not own (its bytes, its parsed
// headers, its ingress port) into a slot of the ring it shares with the
// owner, releases the frame at once and runs the chain on the rest. The
// owner drains its inbound rings in Poll like a port: it takes frames
// from its own FramePool (Config.Pool), copies the packets in and runs
// them through the chain as received on their original port, with that
// port's default output.
//
// Rings: one per ordered pair of workers, single producer and single
// consumer, lock-free: the producer's and the consumer's indices are
// atomics on cache lines of their own, each side keeps a cached copy of
// the other's, and both publish once per batch. A full ring drops the
// packet (WorkerCounters.HandoffFull, and a DropFull against its port);
// an empty FramePool on the owner drops it there
// (WorkerCounters.HandoffNoFrame). No frame ever crosses workers: a ring
// holds copies, so every UMEM's accounting stays its own worker's.
//
// Waking: each worker has an eventfd in its poll set. A worker about to
// block announces it, looks at its inbound rings once more, and sleeps; a
// producer that publishes to a ring whose consumer announced sleep writes
// its eventfd (the need_wakeup idea: no syscall while the owner is busy).
// Go's atomics are sequentially consistent, so either the sleeper sees
// the packets or the producer sees the announcement.
//
// Memory: workers*(workers-1) rings of Slots frames each (DefaultSlots
// keeps about 1024 slots inbound per worker). Packets in a ring when its
// consumer stops are lost (they hold no frame).
type Handoff struct {
	n         int
	slots     int
	frameSize int
	rings     []*ring // rings[from*n+to]; nil on the diagonal
	wake      []wakeup
}

// wakeup is a worker's eventfd and its announcement, on a line of its own.
type wakeup struct {
	sleeping atomic.Uint32
	fd       int
	_        [56]byte
}

// DefaultSlots is the ring size NewHandoff picks for n workers: about 1024
// packets inbound per worker, at least 64 per ring, a power of two.
func DefaultSlots(n int) int {
	if n < 2 {
		return 64
	}
	s := 1 << (bits.Len(uint(1024/(n-1))) - 1)
	if 1024/(n-1) == 0 || s < 64 {
		return 64
	}
	return s
}

// NewHandoff makes the rings and wake-ups for n workers whose FramePools
// have frames of frameSize bytes, with slots slots per ring (rounded up
// to a power of two; 0: DefaultSlots(n)). Close releases the eventfds.
func NewHandoff(n, frameSize, slots int) (*Handoff, error) {
	if n < 1 || n > MaxHandoffWorkers {
		return nil, fmt.Errorf("pipeline: hand-off between %d workers: expected 1 to %d", n, MaxHandoffWorkers)
	}
	if frameSize < 64 || frameSize > 1<<16 {
		return nil, fmt.Errorf("pipeline: hand-off of %d-byte frames: expected 64 to 65536", frameSize)
	}
	if slots == 0 {
		slots = DefaultSlots(n)
	}
	if slots < 1 || slots > 1<<20 {
		return nil, fmt.Errorf("pipeline: hand-off rings of %d slots: expected 1 to %d", slots, 1<<20)
	}
	slots = 1 << bits.Len(uint(slots-1))
	h := &Handoff{n: n, slots: slots, frameSize: frameSize, rings: make([]*ring, n*n), wake: make([]wakeup, n)}
	for i := range h.wake {
		h.wake[i].fd = -1
	}
	for i := range h.wake {
		fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("pipeline: hand-off eventfd: %w", err)
		}
		h.wake[i].fd = fd
	}
	for from := range n {
		for to := range n {
			if from != to {
				h.rings[from*n+to] = newRing(slots, frameSize)
			}
		}
	}
	return h, nil
}

// Workers is the number of workers joined.
func (h *Handoff) Workers() int { return h.n }

// Slots is the size of each ring.
func (h *Handoff) Slots() int { return h.slots }

// Close releases the eventfds, once no worker runs.
func (h *Handoff) Close() error {
	var errs []error
	for i := range h.wake {
		if fd := h.wake[i].fd; fd >= 0 {
			errs = append(errs, unix.Close(fd))
			h.wake[i].fd = -1
		}
	}
	return errors.Join(errs...)
}

// ring returns the ring from worker from to worker to.
func (h *Handoff) ring(from, to int) *ring { return h.rings[from*h.n+to] }

// notify wakes worker to if it announced that it sleeps.
func (h *Handoff) notify(to int) {
	wk := &h.wake[to]
	if wk.sleeping.Load() != 0 && wk.sleeping.Swap(0) != 0 {
		var one = [8]byte{1}
		unix.Write(wk.fd, one[:])
	}
}

// slotMeta is what a slot holds besides the bytes: the packet as parsed
// (Data nil, Addr its offset in its frame) and its length.
type slotMeta struct {
	pkt packet.Packet
	n   uint32
}

// ring is a single-producer single-consumer ring of packet copies.
type ring struct {
	head atomic.Uint64 // written by the producer
	_    [56]byte
	tail atomic.Uint64 // written by the consumer
	_    [56]byte
	// The producer's: its next slot and its copy of tail.
	phead, ptail uint64
	_            [48]byte
	// The consumer's: its next slot and its copy of head.
	ctail, chead uint64
	_            [48]byte
	mask         uint64
	size         uint64 // bytes of one slot
	meta         []slotMeta
	data         []byte
}

func newRing(slots, size int) *ring {
	return &ring{mask: uint64(slots - 1), size: uint64(size), meta: make([]slotMeta, slots), data: make([]byte, slots*size)}
}

// put copies p into the next slot, reporting false when the ring is full.
// The consumer sees it after publish.
func (r *ring) put(p *packet.Packet, frameSize uint64) bool {
	if r.phead-r.ptail > r.mask {
		r.ptail = r.tail.Load()
		if r.phead-r.ptail > r.mask {
			return false
		}
	}
	i := r.phead & r.mask
	m := &r.meta[i]
	m.pkt = *p
	m.pkt.Data = nil
	m.pkt.Addr = p.Addr % frameSize
	m.n = uint32(copy(r.data[i*r.size:(i+1)*r.size], p.Data))
	r.phead++
	return true
}

// publish makes the slots put so far visible to the consumer.
func (r *ring) publish() { r.head.Store(r.phead) }

// pending is the number of slots the consumer may take, refreshing its
// copy of head when it has seen them all.
func (r *ring) pending() uint64 {
	if r.chead == r.ctail {
		r.chead = r.head.Load()
	}
	return r.chead - r.ctail
}

// slot returns the i-th pending slot.
func (r *ring) slot(i uint64) (*slotMeta, []byte) {
	j := (r.ctail + i) & r.mask
	m := &r.meta[j]
	return m, r.data[j*r.size : j*r.size+uint64(m.n)]
}

// release gives n slots back to the producer.
func (r *ring) release(n uint64) {
	r.ctail += n
	r.tail.Store(r.ctail)
}

// handOff asks the steering for the owner of every packet of b, copies
// the packets other workers own into their rings, releases their frames
// and leaves b with the packets this worker owns, in order.
func (w *Worker) handOff(b *packet.Batch) {
	pkts := b.Packets[:b.Len]
	owners := w.owners[:len(pkts)]
	w.cfg.Steering.Owners(pkts, w.self, owners)
	h, self, n := w.cfg.Handoff, int(w.self), uint8(w.cfg.Handoff.n)
	fs := uint64(w.cfg.Pool.FrameSize())
	gone, full := w.handed[:0], w.drops[:0]
	var touched uint64 // rings written, for workers 0-63; above that, all
	for i := range pkts {
		o := owners[i]
		if int(o) == self || o >= n {
			owners[i] = w.self
			continue
		}
		p := &pkts[i]
		if h.ring(self, int(o)).put(p, fs) {
			gone = append(gone, p)
			touched |= 1 << (o & 63)
		} else {
			p.SetDrop(packet.DropFull)
			full = append(full, p)
		}
	}
	if len(gone) == 0 && len(full) == 0 {
		return
	}
	for o := range int(n) {
		if o != self && (touched&(1<<(o&63)) != 0) {
			h.ring(self, o).publish()
			h.notify(o)
		}
	}
	if len(gone) > 0 {
		w.wc.handedOff.Add(uint64(len(gone)))
		w.release(gone)
	}
	if len(full) > 0 {
		w.wc.handoffFull.Add(uint64(len(full)))
		w.countDrops(full, nil)
		w.release(full)
	}
	j := 0
	for i := range pkts {
		if owners[i] != w.self {
			continue
		}
		if i != j {
			pkts[j] = pkts[i]
		}
		j++
	}
	b.Len = j
}

// takeHandoffs runs what the other workers handed to this one: up to a
// burst from each inbound ring, in frames of this worker's pool. It
// returns how many packets it took off the rings.
func (w *Worker) takeHandoffs() int {
	h := w.cfg.Handoff
	if h == nil {
		return 0
	}
	total := 0
	nports := uint16(len(w.cfg.Ports))
	for from := range h.n {
		if from == int(w.self) {
			continue
		}
		r := h.ring(from, int(w.self))
		k := min(r.pending(), uint64(w.cfg.Burst))
		if k == 0 {
			continue
		}
		total += int(k)
		got := uint64(w.cfg.Pool.Alloc(w.allocs[:k]))
		b := &w.batch
		b.Reset()
		lost := k - got
		for i := range got {
			m, data := r.slot(i)
			if m.pkt.InPort >= nports {
				lost++
				w.freeOne[0] = w.allocs[i]
				w.cfg.Pool.Free(w.freeOne[:])
				continue
			}
			addr := w.allocs[i] + m.pkt.Addr
			p := &b.Packets[b.Len]
			*p = m.pkt
			p.Data = w.cfg.Pool.Frame(addr, m.n)
			copy(p.Data, data)
			p.Addr = addr
			p.OutPort = w.cfg.DefaultOut[p.InPort]
			b.Len++
		}
		r.release(k)
		if lost > 0 {
			w.wc.handoffNoFrame.Add(lost)
		}
		if b.Len == 0 {
			continue
		}
		w.wc.receivedHandoff.Add(uint64(b.Len))
		w.wc.batches.Add(1)
		b.Now = w.now()
		w.chain(b)
	}
	return total
}

// handoffWaiting reports whether any inbound ring has packets.
func (w *Worker) handoffWaiting() bool {
	h := w.cfg.Handoff
	for from := range h.n {
		if from != int(w.self) && h.ring(from, int(w.self)).pending() > 0 {
			return true
		}
	}
	return false
}
