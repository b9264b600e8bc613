package pipeline

import (
	"errors"
	"time"

	"github.com/xnfdev/xnf/packet"
)

// Port is where packets enter and leave a worker: one queue of a device
// (port/xdp), a capture file (port/pcap), a memory port in tests
// (pipelinetest). Its shape follows wireguard-go's tun.Device: batched
// Receive and Transmit that return errors, and Close.
//
// All ports of one worker share one FramePool (a UMEM when any of them is
// AF_XDP), so a packet received on one port is transmitted on another by
// handing over its frame, never by copying it.
//
// Errors: Receive returns io.EOF when the port will never receive again
// (a capture that ended); the worker stops receiving from it and carries
// on. Any other error from Receive, Transmit or Flush means the port cannot
// go on: the worker stops, and Worker.Stop and Worker.Err return the
// error. Conditions a port recovers from by itself (a full ring, a kick
// the kernel refused for now) are not errors: ports count them.
//
// A port belongs to its worker's goroutine; only Close may be called from
// elsewhere, and only after the worker has stopped.
type Port interface {
	// Name identifies the port in counters and logs ("in0/q0").
	Name() string
	// Receive appends up to max packets (and at most b.Free()) to b, each
	// Reset with its frame, and returns how many it appended. The worker
	// sets InPort.
	Receive(b *packet.Batch, max int) (int, error)
	// Transmit queues the packets for sending and returns how many it took;
	// their frames now belong to the port. The caller still owns pkts[n:]
	// (n < len(pkts) with a nil error means the TX ring is full).
	Transmit(pkts []*packet.Packet) (int, error)
	// Release returns the frames of packets that will not be sent.
	Release(pkts []*packet.Packet)
	// Flush does the per-loop housekeeping: recycle completed
	// transmissions, refill receive buffers, push out pending frames.
	Flush() error
	// Close releases what the port holds (a socket, a file) and returns
	// the port's first error, if any. It is called once the worker has
	// stopped; a closed port receives and transmits nothing.
	Close() error
}

// ErrClosed is returned by ports used after Close.
var ErrClosed = errors.New("pipeline: port closed")

// FramePool is the memory all ports of a worker share: an AF_XDP UMEM
// (afxdp.UMEM) or ordinary memory (MemPool). Frames are addressed by
// offsets into the pool; a frame is in exactly one place at a time, and
// every frame taken with Alloc comes back through Free (or through a port
// that hands it to the kernel and back). The methods are batch-shaped so a
// port makes one call per burst, not per packet.
type FramePool interface {
	// FrameSize is the size of every frame; frames start at multiples of it.
	FrameSize() int
	// Alloc takes up to len(addrs) free frames, writes their start
	// addresses into addrs and returns how many it took.
	Alloc(addrs []uint64) int
	// Free returns frames; an address anywhere inside a frame names it.
	// Frames not taken are refused and counted, never freed twice.
	Free(addrs []uint64)
	// Frame is the n bytes at addr, with capacity up to the frame's end.
	// The slice is dead once the frame is freed or handed to the kernel.
	Frame(addr uint64, n uint32) []byte
}

// Poller is implemented by ports the worker can block on when idle.
type Poller interface {
	// PollFD is a descriptor that becomes readable when packets arrive.
	PollFD() int
}

// Drainer is implemented by ports that hold frames in flight (TX rings) and
// can say when all of them have come back.
type Drainer interface {
	// Drained reports whether nothing is in flight, after pushing it out.
	Drained() bool
}

// Idle is the worker's policy when a loop finds no packets.
type Idle struct {
	// Spin is the number of empty loops before the worker blocks in
	// poll(2) (default 256). A forwarder that shares its core with the
	// kernel's receive work must yield it; one with a core of its own loses
	// little by spinning briefly.
	Spin int
	// Busy never blocks: the worker spins on its rings (a core at 100%).
	Busy bool
	// PollTimeout bounds one blocking poll (default 100ms), so Stop is
	// seen promptly.
	PollTimeout time.Duration
}
