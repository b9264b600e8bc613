package afxdp

import (
	"sync/atomic"
	"unsafe"
)

// Desc is one RX or TX descriptor, laid out as the kernel's struct xdp_desc.
// Addr is a UMEM offset; Len the frame length.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// ringIndex is the shared state of one ring. The producer and consumer words
// live in memory shared with the kernel, so they are only touched with
// sync/atomic (plain accesses may be hoisted by the compiler or reordered on
// weakly ordered CPUs). Our own index and a cached copy of the other side's
// are plain fields: we read the kernel's word only when the cache says the
// ring is full (or empty), and publish ours once per batch, since an atomic
// store on amd64 is a full-barrier XCHG.
type ringIndex struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	mask     uint32
	size     uint32
	local    uint32 // our index: producer for fill/TX, consumer for RX/completion
	cached   uint32 // last seen index of the other side
}

// Indices are free-running u32s: differences are taken modulo 2^32, so they
// stay right across the wrap (tested near 2^32).

// producerFree returns how many slots are free, reading the consumer word
// only if the cache shows fewer than want.
func (r *ringIndex) producerFree(want uint32) uint32 {
	free := r.size - (r.local - r.cached)
	if free < want {
		r.cached = atomic.LoadUint32(r.consumer)
		free = r.size - (r.local - r.cached)
	}
	return free
}

// publish makes produced entries visible to the kernel.
func (r *ringIndex) publish() { atomic.StoreUint32(r.producer, r.local) }

// consumerAvail returns how many entries are ready, reading the producer
// word only if the cache shows fewer than want.
func (r *ringIndex) consumerAvail(want uint32) uint32 {
	avail := r.cached - r.local
	if avail < want {
		r.cached = atomic.LoadUint32(r.producer)
		avail = r.cached - r.local
	}
	return avail
}

// release hands consumed slots back to the kernel.
func (r *ringIndex) release() { atomic.StoreUint32(r.consumer, r.local) }

// needWakeup reports the kernel's XDP_RING_NEED_WAKEUP flag.
func (r *ringIndex) needWakeup() bool { return atomic.LoadUint32(r.flags)&1 != 0 }

// pending is how many produced entries the kernel has not consumed yet.
func (r *ringIndex) pending() uint32 { return r.local - atomic.LoadUint32(r.consumer) }

// descRing is an RX or TX ring.
type descRing struct {
	ringIndex
	descs []Desc
}

// addrRing is a fill or completion ring.
type addrRing struct {
	ringIndex
	addrs []uint64
}

// initRing points a ring at memory laid out as the kernel describes it:
// producer, consumer and flags words at their offsets, entries at desc.
func initRing(r *ringIndex, base unsafe.Pointer, prodOff, consOff, flagsOff uint64, size uint32, producerSide bool) {
	r.producer = (*uint32)(unsafe.Add(base, prodOff))
	r.consumer = (*uint32)(unsafe.Add(base, consOff))
	r.flags = (*uint32)(unsafe.Add(base, flagsOff))
	r.size = size
	r.mask = size - 1
	if producerSide {
		r.local = atomic.LoadUint32(r.producer)
		r.cached = atomic.LoadUint32(r.consumer)
	} else {
		r.local = atomic.LoadUint32(r.consumer)
		r.cached = atomic.LoadUint32(r.producer)
	}
}

func newDescRing(base unsafe.Pointer, off ringOffsets, size uint32, producerSide bool) descRing {
	var r descRing
	initRing(&r.ringIndex, base, off.Producer, off.Consumer, off.Flags, size, producerSide)
	r.descs = unsafe.Slice((*Desc)(unsafe.Add(base, off.Desc)), size)
	return r
}

func newAddrRing(base unsafe.Pointer, off ringOffsets, size uint32, producerSide bool) addrRing {
	var r addrRing
	initRing(&r.ringIndex, base, off.Producer, off.Consumer, off.Flags, size, producerSide)
	r.addrs = unsafe.Slice((*uint64)(unsafe.Add(base, off.Desc)), size)
	return r
}

type ringOffsets struct{ Producer, Consumer, Desc, Flags uint64 }
