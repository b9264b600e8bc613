package pipeline

import (
	"sync/atomic"

	"github.com/xnfdev/xnf/packet"
)

// counterSet is in/out plus drops by reason, written once per batch by the
// worker and read by anyone.
type counterSet struct {
	in, out atomic.Uint64
	drops   [256]atomic.Uint64
}

// dropped reads drop counters by reason into a map of the reasons seen.
func dropped(drops *[256]atomic.Uint64) map[packet.DropReason]uint64 {
	m := map[packet.DropReason]uint64{}
	for r := range drops {
		if v := drops[r].Load(); v != 0 {
			m[packet.DropReason(r)] = v
		}
	}
	return m
}

// PortCounters are one port's totals as the worker saw them.
type PortCounters struct {
	Name string
	// RX counts packets received; TX packets queued for transmission.
	RX, TX uint64
	// TXFull counts packets dropped because the TX ring was full.
	TXFull uint64
	// Dropped counts packets received on this port and dropped, by reason
	// (parse errors, stages, no such output port, TX ring full).
	Dropped map[packet.DropReason]uint64
}

// DroppedTotal sums Dropped.
func (c PortCounters) DroppedTotal() uint64 { return sumDrops(c.Dropped) }

func sumDrops(m map[packet.DropReason]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

type portCounters struct {
	rx, tx, txFull atomic.Uint64
	drops          [256]atomic.Uint64
}

// WorkerCounters are one worker's totals.
type WorkerCounters struct {
	// Loops is the number of loop iterations; Idle those that found nothing.
	Loops, Idle uint64
	// Polls counts the times the worker blocked in poll(2).
	Polls uint64
	// Batches processed and Packets in them.
	Batches, Packets uint64
	// PortErrors counts errors ports returned (the first stops the worker).
	PortErrors uint64
	// Hand-off (see Handoff). HandedOff counts packets this worker
	// received and put on another worker's ring, ReceivedHandoff those it
	// took off its own rings and ran. HandoffDropped counts packets lost
	// on the way: HandoffFull here because the owner's ring was full
	// (also a DropFull of their port), HandoffNoFrame here because this
	// worker's pool had no frame to take them into. Summed over workers,
	// HandedOff = ReceivedHandoff + HandoffNoFrame + packets in the rings.
	HandedOff, ReceivedHandoff, HandoffDropped uint64
	HandoffFull, HandoffNoFrame                uint64
}

type workerCounters struct {
	loops, idle, polls, batches, packets, portErrors        atomic.Uint64
	handedOff, receivedHandoff, handoffFull, handoffNoFrame atomic.Uint64
}
