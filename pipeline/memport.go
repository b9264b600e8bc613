package pipeline

import (
	"fmt"

	"github.com/xnfdev/xnf/packet"
)

// MemPool is a frame pool in ordinary memory, shared by the memory and pcap
// ports of one worker. It keeps the same ownership rules as a UMEM: frames
// come from a free stack and must all come back.
type MemPool struct {
	mem       []byte
	frameSize int
	free      []uint64
	inUse     []bool
	// stamps holds the capture metadata of frames received from pcap
	// ports (nil until one is opened over the pool); Free clears a
	// frame's entry, so a frame never inherits another's timestamp.
	stamps []FrameStamp
	// Violations counts frees of frames not in use (bugs).
	Violations int
}

// NewMemPool makes count frames of size bytes each.
func NewMemPool(count, size int) *MemPool {
	p := &MemPool{mem: make([]byte, count*size), frameSize: size, free: make([]uint64, count), inUse: make([]bool, count)}
	for i := range p.free {
		p.free[i] = uint64(count-1-i) * uint64(size)
	}
	return p
}

// Alloc takes a frame, or reports false when none is free.
func (p *MemPool) Alloc() (uint64, bool) {
	if len(p.free) == 0 {
		return 0, false
	}
	a := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	p.inUse[a/uint64(p.frameSize)] = true
	return a, true
}

// Free returns a frame.
func (p *MemPool) Free(addr uint64) {
	i := addr / uint64(p.frameSize)
	if i >= uint64(len(p.inUse)) || !p.inUse[i] {
		p.Violations++
		return
	}
	p.inUse[i] = false
	if p.stamps != nil {
		p.stamps[i] = FrameStamp{}
	}
	p.free = append(p.free, addr-addr%uint64(p.frameSize))
}

// Stamp returns the capture metadata slot of the frame at addr, creating
// the table on first use.
func (p *MemPool) Stamp(addr uint64) *FrameStamp {
	if p.stamps == nil {
		p.stamps = make([]FrameStamp, len(p.inUse))
	}
	return &p.stamps[addr/uint64(p.frameSize)]
}

// Frame is the frame at addr with length n.
func (p *MemPool) Frame(addr uint64, n int) []byte {
	base := addr - addr%uint64(p.frameSize)
	return p.mem[addr : addr+uint64(n) : base+uint64(p.frameSize)]
}

// FrameSize is the size of one frame.
func (p *MemPool) FrameSize() int { return p.frameSize }

// Available is the number of free frames.
func (p *MemPool) Available() int { return len(p.free) }

// Total is the number of frames.
func (p *MemPool) Total() int { return len(p.inUse) }

// MemPort is a port in memory for unit tests of stages: frames are injected
// (copied into pool frames on Receive) and transmitted frames are captured
// (copied out, frame freed). It never stands in for the kernel in an
// end-to-end test.
type MemPort struct {
	name string
	pool *MemPool
	in   [][]byte
	next int
	// Loop replays the injected frames for ever (benchmarks).
	Loop bool
	// Discard counts transmitted frames without capturing them.
	Discard bool
	out     [][]byte
	sent    uint64
}

// NewMemPort makes a memory port over pool.
func NewMemPort(name string, pool *MemPool) *MemPort { return &MemPort{name: name, pool: pool} }

func (m *MemPort) Name() string { return m.name }

// Inject queues frames to be received.
func (m *MemPort) Inject(frames ...[]byte) {
	for _, f := range frames {
		if len(f) > m.pool.frameSize {
			panic(fmt.Sprintf("pipeline: injected frame of %d bytes exceeds the pool's %d-byte frames", len(f), m.pool.frameSize))
		}
		m.in = append(m.in, f)
	}
}

// Pending is the number of injected frames not yet received.
func (m *MemPort) Pending() int { return len(m.in) - m.next }

// Output returns the captured transmitted frames and forgets them.
func (m *MemPort) Output() [][]byte {
	o := m.out
	m.out = nil
	return o
}

// Sent is the number of frames transmitted.
func (m *MemPort) Sent() uint64 { return m.sent }

func (m *MemPort) Receive(b *packet.Batch, inPort uint16, max int) int {
	n := 0
	for b.Len < packet.MaxBurst && n < max {
		if m.next >= len(m.in) {
			if !m.Loop || len(m.in) == 0 {
				break
			}
			m.next = 0
		}
		a, ok := m.pool.Alloc()
		if !ok {
			break
		}
		src := m.in[m.next]
		m.next++
		f := m.pool.Frame(a, len(src))
		copy(f, src)
		b.Append(f, a, inPort)
		n++
	}
	if !m.Loop && m.next == len(m.in) {
		m.in, m.next = m.in[:0], 0
	}
	return n
}

func (m *MemPort) Transmit(pkts []*packet.Packet) int {
	for _, p := range pkts {
		if !m.Discard {
			m.out = append(m.out, append([]byte(nil), p.Data...))
		}
		m.pool.Free(p.Addr)
	}
	m.sent += uint64(len(pkts))
	return len(pkts)
}

func (m *MemPort) Release(pkts []*packet.Packet) {
	for _, p := range pkts {
		m.pool.Free(p.Addr)
	}
}

func (m *MemPort) Flush() {}

// FrameStamp is what a pcap input knows about a frame it filled.
type FrameStamp struct {
	NS  int64  // capture timestamp, Unix nanoseconds
	Cut uint32 // bytes of the packet the capture's snap length left out
	OK  bool
}
