package afxdp

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// HugePages chooses whether the UMEM is backed by huge pages.
type HugePages int

const (
	// HugePagesOff uses ordinary pages (the default).
	HugePagesOff HugePages = iota
	// HugePagesTry uses huge pages when the system has them free, else
	// ordinary pages; UMEM.HugePages says which.
	HugePagesTry
	// HugePagesRequire fails when huge pages cannot be had.
	HugePagesRequire
)

// UMEMConfig sizes a UMEM.
type UMEMConfig struct {
	// FrameSize is 2048 or 4096 (aligned chunks; default 4096). A 2048
	// chunk carries at most 2048-256-Headroom bytes of frame.
	FrameSize int
	// FrameCount is the number of frames (default 4096).
	FrameCount int
	// Headroom is reserved in front of every received frame, after the
	// kernel's own 256 bytes (default 0).
	Headroom  int
	HugePages HugePages
}

func (c *UMEMConfig) setDefaults() {
	if c.FrameSize == 0 {
		c.FrameSize = 4096
	}
	if c.FrameCount == 0 {
		c.FrameCount = 4096
	}
}

func (c UMEMConfig) validate() error {
	if c.FrameSize != 2048 && c.FrameSize != 4096 {
		return fmt.Errorf("afxdp: UMEM frame size %d: must be 2048 or 4096 (aligned chunks)", c.FrameSize)
	}
	if c.FrameCount <= 0 || c.FrameCount > 1<<24 {
		return fmt.Errorf("afxdp: UMEM frame count %d: must be between 1 and 16777216", c.FrameCount)
	}
	if c.Headroom < 0 || c.Headroom > c.FrameSize-unix.XDP_PACKET_HEADROOM-128 {
		return fmt.Errorf("afxdp: UMEM headroom %d: must be between 0 and %d for %d-byte frames",
			c.Headroom, c.FrameSize-unix.XDP_PACKET_HEADROOM-128, c.FrameSize)
	}
	return nil
}

// Where a frame is. Every frame is in exactly one place; the transitions are
// checked, so a frame can never be handed to two places at once.
const (
	placeFree uint8 = iota // on the UMEM's free stack
	placeApp               // held by the application (received, allocated or completed)
	placeFill              // on a socket's fill ring, or in the kernel waiting for a packet
	placeTX                // on a socket's TX ring, or in the kernel until completion
)

// UMEM is the packet memory shared by a worker's sockets: one mmapped area
// cut into equal frames, registered with the kernel by the first socket and
// shared (XDP_SHARED_UMEM) by the others, so a frame received on one device
// can be transmitted on another by moving its descriptor.
//
// A UMEM and its sockets belong to one goroutine at a time (a pipeline
// worker); only the counters read by Stats-style methods are safe to read
// concurrently.
type UMEM struct {
	cfg        UMEMConfig
	mem        []byte
	huge       bool
	free       []uint64 // stack of free frame base addresses
	place      []uint8  // per frame: place*
	owner      []uint8  // per frame: socket slot, when on a fill or TX ring
	counts     [4]int
	sockets    []*Socket // by slot; nil once closed
	ownerFD    int       // socket that registered the UMEM, -1 before
	frameMask  uint64
	frameShift uint // log2(FrameSize): frame index = addr >> frameShift

	// violations counts frame operations refused because the frame was not
	// where the caller claimed (double free, transmit of a frame not held, ...).
	violations atomic.Uint64
}

// ErrHugePages means huge pages were required but none could be mapped.
var ErrHugePages = errors.New("afxdp: huge pages required but not available (see /proc/sys/vm/nr_hugepages)")

// NewUMEM maps and initialises the frames; all start on the free stack.
func NewUMEM(cfg UMEMConfig) (*UMEM, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	size := cfg.FrameSize * cfg.FrameCount
	flags := unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_POPULATE
	var mem []byte
	var err error
	huge := false
	if cfg.HugePages != HugePagesOff {
		const huge2M = 2 << 20
		hsize := (size + huge2M - 1) &^ (huge2M - 1)
		mem, err = unix.Mmap(-1, 0, hsize, unix.PROT_READ|unix.PROT_WRITE, flags|unix.MAP_HUGETLB)
		if err == nil {
			huge = true
			mem = mem[:size]
		} else if cfg.HugePages == HugePagesRequire {
			return nil, fmt.Errorf("%w: mmap %d bytes: %v", ErrHugePages, hsize, err)
		}
	}
	if mem == nil {
		mem, err = unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, flags)
		if err != nil {
			return nil, fmt.Errorf("afxdp: mapping %d bytes of UMEM: %w", size, err)
		}
	}
	u := &UMEM{
		cfg:        cfg,
		mem:        mem,
		huge:       huge,
		free:       make([]uint64, cfg.FrameCount),
		place:      make([]uint8, cfg.FrameCount),
		owner:      make([]uint8, cfg.FrameCount),
		ownerFD:    -1,
		frameMask:  ^uint64(cfg.FrameSize - 1),
		frameShift: uint(bits.TrailingZeros(uint(cfg.FrameSize))),
	}
	// Lowest addresses on top of the stack: the first fills are contiguous.
	for i := range u.free {
		u.free[i] = uint64(cfg.FrameCount-1-i) * uint64(cfg.FrameSize)
	}
	u.counts[placeFree] = cfg.FrameCount
	return u, nil
}

// FrameSize is the size of one frame (chunk).
func (u *UMEM) FrameSize() int { return u.cfg.FrameSize }

// FrameCount is the number of frames.
func (u *UMEM) FrameCount() int { return u.cfg.FrameCount }

// HugePages reports whether the UMEM is backed by huge pages.
func (u *UMEM) HugePages() bool { return u.huge }

// Headroom is the offset of received data from the frame start:
// the kernel's 256 bytes plus the configured headroom.
func (u *UMEM) Headroom() int { return unix.XDP_PACKET_HEADROOM + u.cfg.Headroom }

// MaxFrameLen is the largest frame a received chunk can carry.
func (u *UMEM) MaxFrameLen() int { return u.cfg.FrameSize - u.Headroom() }

// Frame returns the bytes of a frame at addr (a descriptor address, which may
// point past the chunk start) of length n, with capacity up to the chunk end.
// The slice is a view into the UMEM: it is dead once the frame goes back to
// the kernel (fill or TX ring) or to the free stack.
func (u *UMEM) Frame(addr uint64, n uint32) []byte {
	end := (addr & u.frameMask) + uint64(u.cfg.FrameSize)
	return u.mem[addr : addr+uint64(n) : end]
}

// index returns the frame index of a descriptor address, or -1 if the
// address is outside the UMEM.
func (u *UMEM) index(addr uint64) int {
	i := addr >> u.frameShift
	if i >= uint64(len(u.place)) {
		return -1
	}
	return int(i)
}

// move checks that the frame at addr is in place from (and, for rings, owned
// by slot) and moves it to place to. It reports false, counting a violation,
// when the frame is not where the caller says. The running tallies are left
// to the caller, once per batch (tally).
func (u *UMEM) move(addr uint64, from, to, fromOwner, toOwner uint8) bool {
	i := u.index(addr)
	if i < 0 || u.place[i] != from || ((from == placeFill || from == placeTX) && u.owner[i] != fromOwner) {
		u.violations.Add(1)
		return false
	}
	u.place[i] = to
	u.owner[i] = toOwner
	return true
}

// tally records that n frames moved from one place to another.
func (u *UMEM) tally(from, to uint8, n int) {
	u.counts[from] -= n
	u.counts[to] += n
}

// Alloc takes up to len(addrs) frames off the free stack for the
// application (to build frames to transmit) and returns how many it took.
func (u *UMEM) Alloc(addrs []uint64) int {
	n := min(len(addrs), len(u.free))
	top := len(u.free)
	for i := 0; i < n; i++ {
		a := u.free[top-1-i]
		addrs[i] = a
		u.place[a>>u.frameShift] = placeApp
	}
	u.free = u.free[:top-n]
	u.tally(placeFree, placeApp, n)
	return n
}

// Free returns frames the application holds to the free stack. Frames it
// does not hold are refused and counted (Violations), never freed twice.
func (u *UMEM) Free(addrs []uint64) {
	top := len(u.free)
	for _, a := range addrs {
		if u.move(a, placeApp, placeFree, 0, 0) {
			u.free = append(u.free, a&u.frameMask)
		}
	}
	u.tally(placeApp, placeFree, len(u.free)-top)
}

// FreeDescs is Free for descriptors (dropped packets).
func (u *UMEM) FreeDescs(descs []Desc) {
	top := len(u.free)
	for i := range descs {
		a := descs[i].Addr
		if u.move(a, placeApp, placeFree, 0, 0) {
			u.free = append(u.free, a&u.frameMask)
		}
	}
	u.tally(placeApp, placeFree, len(u.free)-top)
}

// Violations counts frame operations refused because the frame was not
// where the caller claimed. Anything but zero is a bug in the caller.
func (u *UMEM) Violations() uint64 { return u.violations.Load() }

// Accounting says where every frame is.
type Accounting struct {
	Total int
	Free  int // on the free stack
	App   int // held by the application (batches in flight, allocated)
	Fill  int // on fill rings or in the kernel awaiting packets
	TX    int // on TX rings or in the kernel awaiting completion
	// Problems lists inconsistencies found by the cross-checks; empty when
	// the books balance.
	Problems []string
}

// Balanced reports whether every frame is in exactly one place and the
// cross-checks found nothing wrong.
func (a Accounting) Balanced() bool {
	return len(a.Problems) == 0 && a.Free+a.App+a.Fill+a.TX == a.Total
}

func (a Accounting) String() string {
	s := fmt.Sprintf("total %d = free %d + app %d + fill %d + tx %d", a.Total, a.Free, a.App, a.Fill, a.TX)
	for _, p := range a.Problems {
		s += "; " + p
	}
	return s
}

// Accounting counts frames by place from the per-frame states and
// cross-checks the counts against the free stack, the running tallies and
// each socket's ring indices. Call it from the goroutine that owns the UMEM
// (or when it is stopped).
func (u *UMEM) Accounting() Accounting {
	a := Accounting{Total: u.cfg.FrameCount}
	perSlotFill := make(map[uint8]int)
	perSlotTX := make(map[uint8]int)
	for i, p := range u.place {
		switch p {
		case placeFree:
			a.Free++
		case placeApp:
			a.App++
		case placeFill:
			a.Fill++
			perSlotFill[u.owner[i]]++
		case placeTX:
			a.TX++
			perSlotTX[u.owner[i]]++
		}
	}
	if a.Free != len(u.free) {
		a.Problems = append(a.Problems, fmt.Sprintf("free stack holds %d frames but %d are marked free", len(u.free), a.Free))
	}
	for p, want := range []int{a.Free, a.App, a.Fill, a.TX} {
		if u.counts[p] != want {
			a.Problems = append(a.Problems, fmt.Sprintf("running tally of place %d is %d, states say %d", p, u.counts[p], want))
		}
	}
	for slot, s := range u.sockets {
		if s == nil {
			continue
		}
		if got := int(s.filled - s.received); got != perSlotFill[uint8(slot)] {
			a.Problems = append(a.Problems, fmt.Sprintf("socket %s: %d frames filled and not received, %d marked on its fill ring", s, got, perSlotFill[uint8(slot)]))
		}
		if got := int(s.transmitted - s.completed); got != perSlotTX[uint8(slot)] {
			a.Problems = append(a.Problems, fmt.Sprintf("socket %s: %d frames transmitted and not completed, %d marked on its TX ring", s, got, perSlotTX[uint8(slot)]))
		}
	}
	if v := u.violations.Load(); v != 0 {
		a.Problems = append(a.Problems, fmt.Sprintf("%d refused frame operations (frames not where the caller said)", v))
	}
	return a
}

func (u *UMEM) socketByFD(fd int) *Socket {
	for _, s := range u.sockets {
		if s != nil && s.fd == fd {
			return s
		}
	}
	return nil
}

// Close unmaps the UMEM. Every socket on it must be closed first.
func (u *UMEM) Close() error {
	for _, s := range u.sockets {
		if s != nil {
			return fmt.Errorf("afxdp: UMEM still has open socket %s; close sockets first", s)
		}
	}
	if u.mem == nil {
		return nil
	}
	full := u.mem[:cap(u.mem)]
	u.mem = nil
	return unix.Munmap(full)
}
