package pipeline

// MemPool is a FramePool in ordinary memory, for ports that need no kernel
// ring: pcap files, the test kit's memory ports. It keeps the same
// ownership rules as a UMEM: frames come from a free stack and must all
// come back, and a free of a frame not taken is refused and counted.
type MemPool struct {
	mem       []byte
	frameSize int
	free      []uint64
	inUse     []bool
	// stamps holds the capture metadata of frames received from pcap
	// ports (nil until one asks); Free clears a frame's entry, so a frame
	// never inherits another's timestamp.
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

// Alloc takes up to len(addrs) frames and returns how many it took.
func (p *MemPool) Alloc(addrs []uint64) int {
	n := min(len(addrs), len(p.free))
	top := len(p.free)
	for i := range n {
		a := p.free[top-1-i]
		addrs[i] = a
		p.inUse[a/uint64(p.frameSize)] = true
	}
	p.free = p.free[:top-n]
	return n
}

// Free returns frames.
func (p *MemPool) Free(addrs []uint64) {
	for _, addr := range addrs {
		i := addr / uint64(p.frameSize)
		if i >= uint64(len(p.inUse)) || !p.inUse[i] {
			p.Violations++
			continue
		}
		p.inUse[i] = false
		if p.stamps != nil {
			p.stamps[i] = FrameStamp{}
		}
		p.free = append(p.free, addr-addr%uint64(p.frameSize))
	}
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
func (p *MemPool) Frame(addr uint64, n uint32) []byte {
	base := addr - addr%uint64(p.frameSize)
	return p.mem[addr : addr+uint64(n) : base+uint64(p.frameSize)]
}

// FrameSize is the size of one frame.
func (p *MemPool) FrameSize() int { return p.frameSize }

// Available is the number of free frames.
func (p *MemPool) Available() int { return len(p.free) }

// Total is the number of frames.
func (p *MemPool) Total() int { return len(p.inUse) }

// Stamper is implemented by frame pools that keep a capture stamp per
// frame, cleared whenever the frame is freed (MemPool). A port that knows
// when a frame was captured (a pcap input) records it there for another
// port (a pcap output) to read back. A UMEM keeps none: frames come back
// from the kernel without passing through Free.
type Stamper interface {
	Stamp(addr uint64) *FrameStamp
}

// FrameStamp is what a capture input knows about a frame it filled.
type FrameStamp struct {
	NS  int64  // capture timestamp, Unix nanoseconds
	Cut uint32 // bytes of the packet the capture's snap length left out
	OK  bool
}

var _ FramePool = (*MemPool)(nil)
