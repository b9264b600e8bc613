package pipeline

import (
	"time"

	"github.com/xnfdev/xnf/packet"
)

// Port is where packets enter and leave a worker: one queue of a device
// (XDPPort), a memory port for unit tests of stages, or a pcap file.
//
// All ports of one worker share one frame pool (a UMEM, or a MemPool for
// memory and pcap ports), so a packet received on one port is transmitted
// on another by handing over its frame, never by copying it.
type Port interface {
	// Name identifies the port in counters and logs ("in0/q0").
	Name() string
	// Receive appends up to max packets (and at most b.Free()) to b, each
	// Reset with its frame and inPort, and returns how many it appended.
	Receive(b *packet.Batch, inPort uint16, max int) int
	// Transmit queues the packets for sending and returns how many it took;
	// their frames now belong to the port. The caller still owns pkts[n:].
	Transmit(pkts []*packet.Packet) int
	// Release returns the frames of packets that will not be sent.
	Release(pkts []*packet.Packet)
	// Flush does the per-loop housekeeping: recycle completed
	// transmissions, refill receive buffers, push out pending frames.
	Flush()
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
