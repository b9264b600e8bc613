package afxdp

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ZeroCopy is the zero-copy policy of a socket.
type ZeroCopy int

const (
	// ZeroCopyAuto asks for zero-copy and falls back to copy mode when the
	// driver lacks it (Socket.ZeroCopy says which was granted).
	ZeroCopyAuto ZeroCopy = iota
	// ZeroCopyRequire fails when the driver lacks zero-copy.
	ZeroCopyRequire
	// ZeroCopyOff binds in copy mode.
	ZeroCopyOff
)

func (z ZeroCopy) String() string {
	switch z {
	case ZeroCopyAuto:
		return "auto"
	case ZeroCopyRequire:
		return "require"
	case ZeroCopyOff:
		return "off"
	}
	return fmt.Sprintf("ZeroCopy(%d)", int(z))
}

// BusyPoll sets the socket's busy-poll options (SO_PREFER_BUSY_POLL,
// SO_BUSY_POLL, SO_BUSY_POLL_BUDGET), with which Socket.BusyPoll runs the
// queue's NAPI receive loop in the caller's syscall. They pay only with
// the device's NAPI deferred (Device.PreferBusyPoll); otherwise the
// kernel keeps scheduling the same work on its own.
type BusyPoll struct {
	Timeout time.Duration // SO_BUSY_POLL, in microseconds granularity (default 20us)
	Budget  int           // SO_BUSY_POLL_BUDGET: frames per poll (default 64)
}

// SocketConfig configures one AF_XDP socket. Ring sizes must be powers of
// two; zero picks the default (2048 each).
type SocketConfig struct {
	RXSize, TXSize, FillSize, CompletionSize int
	ZeroCopy                                 ZeroCopy
	// NoNeedWakeup turns XDP_USE_NEED_WAKEUP off (it is on by default: the
	// kernel tells us when a syscall is needed, saving most of them).
	NoNeedWakeup bool
	// TXBudget raises XDP_MAX_TX_SKB_BUDGET, the number of frames one
	// copy-mode sendto moves (kernel default 32). 0 picks min(TXSize, 256);
	// kernels without the option keep 32 (Socket.TXBudget says).
	TXBudget int
	BusyPoll *BusyPoll
}

func (c *SocketConfig) setDefaults() {
	for _, p := range []*int{&c.RXSize, &c.TXSize, &c.FillSize, &c.CompletionSize} {
		if *p == 0 {
			*p = 2048
		}
	}
}

func (c SocketConfig) validate() error {
	for _, r := range []struct {
		name string
		v    int
	}{{"RX", c.RXSize}, {"TX", c.TXSize}, {"fill", c.FillSize}, {"completion", c.CompletionSize}} {
		if r.v <= 0 || r.v&(r.v-1) != 0 || r.v > 1<<20 {
			return fmt.Errorf("afxdp: %s ring size %d: must be a power of two between 1 and 1048576", r.name, r.v)
		}
	}
	return nil
}

// Socket is one AF_XDP socket bound to an (interface, queue), with its own
// RX, TX, fill and completion rings over a (possibly shared) UMEM.
//
// Frames flow fill -> (kernel) -> RX -> application -> TX -> (kernel) ->
// completion. Every batch call takes a caller-owned slice and allocates
// nothing. A Socket is used by one goroutine at a time; Counters may be read
// from any goroutine.
type Socket struct {
	fd       int
	umem     *UMEM
	slot     uint8
	ifname   string
	ifindex  int
	queue    int
	zeroCopy bool
	wakeup   bool
	busyPoll bool
	txBudget int

	rx, tx     descRing
	fill, comp addrRing
	maps       [4][]byte
	pollfd     [1]unix.PollFd

	// Tallies for the accounting cross-check (owning goroutine only).
	filled, received, transmitted, completed uint64

	counters socketCounters
	closed   bool
}

type socketCounters struct {
	rxPackets, rxBytes, txPackets, txBytes atomic.Uint64
	txKicks, txKickErrors, fillWakeups     atomic.Uint64
	txRingFull, fillRingFull               atomic.Uint64
	busyPolls                              atomic.Uint64
}

// Counters are a socket's own counters (XDP_STATISTICS are in Stats).
type Counters struct {
	RXPackets, RXBytes, TXPackets, TXBytes uint64
	// TXKicks is the number of sendto wakeups; TXKickErrors those that failed.
	TXKicks, TXKickErrors uint64
	// FillWakeups counts wakeups because the fill ring asked for one.
	FillWakeups uint64
	// TXRingFull and FillRingFull count calls that could not place every
	// frame because the ring was full.
	TXRingFull, FillRingFull uint64
	// BusyPolls counts Socket.BusyPoll syscalls.
	BusyPolls uint64
}

// Counters reads the socket's counters; safe from any goroutine.
func (s *Socket) Counters() Counters {
	c := &s.counters
	return Counters{
		RXPackets: c.rxPackets.Load(), RXBytes: c.rxBytes.Load(),
		TXPackets: c.txPackets.Load(), TXBytes: c.txBytes.Load(),
		TXKicks: c.txKicks.Load(), TXKickErrors: c.txKickErrors.Load(),
		FillWakeups: c.fillWakeups.Load(),
		TXRingFull:  c.txRingFull.Load(), FillRingFull: c.fillRingFull.Load(),
		BusyPolls: c.busyPolls.Load(),
	}
}

func (s *Socket) String() string { return fmt.Sprintf("%s/q%d", s.ifname, s.queue) }

// FD is the socket's file descriptor (for the XSKMAP and poll).
func (s *Socket) FD() int { return s.fd }

// Queue is the queue the socket is bound to.
func (s *Socket) Queue() int { return s.queue }

// Interface is the name of the interface the socket is bound to.
func (s *Socket) Interface() string { return s.ifname }

// ZeroCopy reports whether the kernel granted zero-copy mode.
func (s *Socket) ZeroCopy() bool { return s.zeroCopy }

// NeedWakeup reports whether XDP_USE_NEED_WAKEUP is in force.
func (s *Socket) NeedWakeup() bool { return s.wakeup }

// TXBudget is the number of frames one copy-mode sendto moves.
func (s *Socket) TXBudget() int { return s.txBudget }

// UMEM is the socket's packet memory.
func (s *Socket) UMEM() *UMEM { return s.umem }

// OpenSocket creates a socket on (ifname, queue) over u and binds it. The
// first socket of a UMEM registers it; later ones share it (XDP_SHARED_UMEM)
// and inherit its copy/zero-copy and need_wakeup mode, as the kernel
// requires. The socket is created in the calling thread's network namespace.
//
// No frames are on the fill ring yet: call FillFromFree.
func OpenSocket(u *UMEM, ifname string, queue int, cfg SocketConfig) (*Socket, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	slot, ok := u.freeSlot()
	if !ok {
		return nil, fmt.Errorf("afxdp: a UMEM serves at most %d open sockets", maxSockets)
	}
	ifi, err := interfaceIndex(ifname)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if perr := permission("creating AF_XDP socket", err); perr != nil {
			return nil, perr
		}
		if errors.Is(err, unix.EAFNOSUPPORT) {
			return nil, fmt.Errorf("afxdp: %w: AF_XDP sockets are not available (kernel built without CONFIG_XDP_SOCKETS?)", ErrKernelTooOld)
		}
		return nil, fmt.Errorf("afxdp: creating AF_XDP socket: %w", err)
	}
	s := &Socket{fd: fd, umem: u, ifname: ifname, ifindex: ifi, queue: queue, slot: slot}
	if err := s.setup(cfg); err != nil {
		s.unmap()
		unix.Close(fd)
		return nil, err
	}
	if int(slot) == len(u.sockets) {
		u.sockets = append(u.sockets, s)
	} else {
		u.sockets[slot] = s
	}
	return s, nil
}

// maxSockets bounds the sockets open at once on one UMEM: a frame's owner
// is a socket slot in a byte.
const maxSockets = 255

// freeSlot returns the slot a new socket takes: the first one a closed
// socket left (Close gave back every frame that slot owned on a ring), or
// a new one.
func (u *UMEM) freeSlot() (uint8, bool) {
	for i, o := range u.sockets {
		if o == nil {
			return uint8(i), true
		}
	}
	if len(u.sockets) >= maxSockets {
		return 0, false
	}
	return uint8(len(u.sockets)), true
}

func setsockopt(fd, opt int, p unsafe.Pointer, size uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), size, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockopt(fd, opt int, p unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}

func (s *Socket) setup(cfg SocketConfig) error {
	u := s.umem
	shared := u.ownerFD >= 0
	if !shared {
		reg := unix.XDPUmemReg{
			Addr:     uint64(uintptr(unsafe.Pointer(&u.mem[0]))),
			Len:      uint64(len(u.mem)),
			Size:     uint32(u.cfg.FrameSize),
			Headroom: uint32(u.cfg.Headroom),
		}
		if err := setsockopt(s.fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
			if perr := permission("registering UMEM", err); perr != nil {
				return perr
			}
			return fmt.Errorf("afxdp: registering UMEM (%d frames of %d bytes): %w", u.cfg.FrameCount, u.cfg.FrameSize, err)
		}
	}
	for _, o := range []struct {
		opt  int
		size int
		name string
	}{
		{unix.XDP_UMEM_FILL_RING, cfg.FillSize, "fill"},
		{unix.XDP_UMEM_COMPLETION_RING, cfg.CompletionSize, "completion"},
		{unix.XDP_RX_RING, cfg.RXSize, "RX"},
		{unix.XDP_TX_RING, cfg.TXSize, "TX"},
	} {
		v := uint32(o.size)
		if err := setsockopt(s.fd, o.opt, unsafe.Pointer(&v), 4); err != nil {
			return fmt.Errorf("afxdp: %s: sizing the %s ring to %d: %w", s, o.name, o.size, err)
		}
	}
	var off unix.XDPMmapOffsets
	if err := getsockopt(s.fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return fmt.Errorf("afxdp: %s: reading ring offsets: %w", s, err)
	}
	type mapping struct {
		pgoff   int64
		off     unix.XDPRingOffset
		entries int
		esize   int
	}
	ms := [4]mapping{
		{unix.XDP_PGOFF_RX_RING, off.Rx, cfg.RXSize, 16},
		{unix.XDP_PGOFF_TX_RING, off.Tx, cfg.TXSize, 16},
		{unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, cfg.FillSize, 8},
		{unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, cfg.CompletionSize, 8},
	}
	for i, m := range ms {
		b, err := unix.Mmap(s.fd, m.pgoff, int(m.off.Desc)+m.entries*m.esize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("afxdp: %s: mapping ring %d: %w", s, i, err)
		}
		s.maps[i] = b
	}
	ro := func(o unix.XDPRingOffset) ringOffsets { return ringOffsets{o.Producer, o.Consumer, o.Desc, o.Flags} }
	s.rx = newDescRing(unsafe.Pointer(&s.maps[0][0]), ro(off.Rx), uint32(cfg.RXSize), false)
	s.tx = newDescRing(unsafe.Pointer(&s.maps[1][0]), ro(off.Tx), uint32(cfg.TXSize), true)
	s.fill = newAddrRing(unsafe.Pointer(&s.maps[2][0]), ro(off.Fr), uint32(cfg.FillSize), true)
	s.comp = newAddrRing(unsafe.Pointer(&s.maps[3][0]), ro(off.Cr), uint32(cfg.CompletionSize), false)

	if err := s.bind(cfg, shared); err != nil {
		return err
	}
	if !shared {
		u.ownerFD = s.fd
	}
	s.pollfd[0] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN}

	// Raise the copy-mode TX budget where the kernel has the option.
	s.txBudget = 32
	if !s.zeroCopy {
		b := cfg.TXBudget
		if b == 0 {
			b = min(cfg.TXSize, 256)
		}
		if b > 32 {
			v := uint32(b)
			if err := setsockopt(s.fd, unix.XDP_MAX_TX_SKB_BUDGET, unsafe.Pointer(&v), 4); err == nil {
				s.txBudget = b
			} else if cfg.TXBudget != 0 && !errors.Is(err, unix.ENOPROTOOPT) {
				return fmt.Errorf("afxdp: %s: TX budget %d: %w (must be between 32 and the TX ring size)", s, b, err)
			}
		}
	}
	if cfg.BusyPoll != nil {
		if err := s.SetBusyPoll(*cfg.BusyPoll); err != nil {
			return err
		}
	}
	return nil
}

func (s *Socket) bind(cfg SocketConfig, shared bool) error {
	sa := &unix.SockaddrXDP{Ifindex: uint32(s.ifindex), QueueID: uint32(s.queue)}
	if shared {
		// Mode flags are inherited from the UMEM's first socket (EINVAL otherwise).
		sa.Flags = unix.XDP_SHARED_UMEM
		sa.SharedUmemFD = uint32(s.umem.ownerFD)
		first := s.umem.socketByFD(s.umem.ownerFD)
		err := bindRetry(s.fd, sa)
		if err != nil {
			return s.bindError(err, cfg, "shared UMEM")
		}
		s.zeroCopy, s.wakeup = first.zeroCopy, first.wakeup
		return nil
	}
	var wake uint16
	if !cfg.NoNeedWakeup {
		wake = unix.XDP_USE_NEED_WAKEUP
	}
	switch cfg.ZeroCopy {
	case ZeroCopyRequire, ZeroCopyAuto:
		sa.Flags = unix.XDP_ZEROCOPY | wake
		err := bindRetry(s.fd, sa)
		if err == nil {
			s.zeroCopy, s.wakeup = true, wake != 0
			return nil
		}
		if cfg.ZeroCopy == ZeroCopyRequire || !errors.Is(err, unix.EOPNOTSUPP) {
			return s.bindError(err, cfg, "zero-copy")
		}
		fallthrough // auto: the driver has no zero-copy, use copy mode
	case ZeroCopyOff:
		sa.Flags = unix.XDP_COPY | wake
		if err := bindRetry(s.fd, sa); err != nil {
			return s.bindError(err, cfg, "copy mode")
		}
		s.wakeup = wake != 0
		return nil
	}
	return fmt.Errorf("afxdp: unknown zero-copy policy %d", cfg.ZeroCopy)
}

// bindRetry binds, retrying EBUSY for a while: a queue stays busy after
// its previous socket closed until the kernel's deferred pool release has
// run (a workqueue item: milliseconds when idle, over 200 ms seen on a
// loaded 2-CPU machine). A queue another socket really holds costs its
// caller this second before the error.
func bindRetry(fd int, sa *unix.SockaddrXDP) error {
	deadline := time.Now().Add(time.Second)
	for {
		err := unix.Bind(fd, sa)
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (s *Socket) bindError(err error, cfg SocketConfig, mode string) error {
	switch {
	case permission("", err) != nil:
		return fmt.Errorf("afxdp: binding %s: %w (%v)", s, ErrPermission, err)
	case errors.Is(err, unix.EOPNOTSUPP) && mode == "zero-copy":
		return fmt.Errorf("afxdp: binding %s: %w by %s (EOPNOTSUPP): use zero-copy auto or off for copy mode", s, ErrZeroCopyUnsupported, driverName(s.ifname))
	case errors.Is(err, unix.EOPNOTSUPP) && mode == "shared UMEM":
		return fmt.Errorf("afxdp: binding %s to a shared UMEM: the UMEM's first socket chose zero-copy, which %s lacks (EOPNOTSUPP): use zero-copy off for every port sharing this UMEM", s, driverName(s.ifname))
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("afxdp: binding %s: %w: another AF_XDP socket holds this queue", s, ErrBusy)
	case errors.Is(err, unix.EINVAL):
		if n, qerr := rxQueueCount(s.ifname); qerr == nil && s.queue >= n {
			return fmt.Errorf("afxdp: binding %s: %w: %s has %d RX queues (0..%d)", s, ErrQueueRange, s.ifname, n, n-1)
		}
		return fmt.Errorf("afxdp: binding %s (%s): %w", s, mode, err)
	}
	return fmt.Errorf("afxdp: binding %s (%s): %w", s, mode, err)
}

// Fill puts frames the application holds on the fill ring for the kernel to
// receive into, and returns how many fit.
func (s *Socket) Fill(addrs []uint64) int {
	n := s.fill.producerFree(uint32(len(addrs)))
	if int(n) < len(addrs) {
		s.counters.fillRingFull.Add(1)
	} else {
		n = uint32(len(addrs))
	}
	u := s.umem
	k := uint32(0)
	for _, a := range addrs[:n] {
		if u.move(a, placeApp, placeFill, 0, s.slot) {
			s.fill.addrs[(s.fill.local+k)&s.fill.mask] = a & u.frameMask
			k++
		}
	}
	s.fill.local += k
	s.filled += uint64(k)
	u.tally(placeApp, placeFill, int(k))
	if k > 0 {
		s.fill.publish()
		s.wakeFill()
	}
	return int(n)
}

// FillFromFree moves up to n frames from the UMEM's free stack straight to
// the fill ring and returns how many it moved.
func (s *Socket) FillFromFree(n int) int {
	u := s.umem
	free := s.fill.producerFree(uint32(n))
	if free < uint32(n) {
		n = int(free)
	}
	n = min(n, len(u.free))
	top := len(u.free)
	for i := 0; i < n; i++ {
		a := u.free[top-1-i]
		j := a >> u.frameShift
		u.place[j] = placeFill
		u.owner[j] = s.slot
		s.fill.addrs[(s.fill.local+uint32(i))&s.fill.mask] = a
	}
	u.free = u.free[:top-n]
	u.tally(placeFree, placeFill, n)
	s.fill.local += uint32(n)
	s.filled += uint64(n)
	if n > 0 {
		s.fill.publish()
		s.wakeFill()
	}
	return n
}

// FillLevel is how many frames are on the fill ring or in the kernel
// waiting for packets.
func (s *Socket) FillLevel() int { return int(s.filled - s.received) }

func (s *Socket) wakeFill() {
	if s.wakeup && s.fill.needWakeup() {
		s.counters.fillWakeups.Add(1)
		unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	}
}

// Receive takes up to len(descs) received frames off the RX ring; the
// application holds them until it transmits, fills or frees them.
func (s *Socket) Receive(descs []Desc) int {
	n := s.rx.consumerAvail(uint32(len(descs)))
	if n > uint32(len(descs)) {
		n = uint32(len(descs))
	}
	if n == 0 {
		return 0
	}
	u := s.umem
	var bytes uint64
	k := 0
	for i := uint32(0); i < n; i++ {
		d := s.rx.descs[(s.rx.local+i)&s.rx.mask]
		// A descriptor for a frame we never filled would be a kernel or
		// accounting bug: refuse it (counted as a violation) rather than
		// hand one frame to two owners.
		if u.move(d.Addr, placeFill, placeApp, s.slot, 0) {
			descs[k] = d
			bytes += uint64(d.Len)
			k++
		}
	}
	s.rx.local += n
	s.rx.release()
	s.received += uint64(n)
	u.tally(placeFill, placeApp, k)
	s.counters.rxPackets.Add(uint64(k))
	s.counters.rxBytes.Add(bytes)
	return k
}

// Transmit puts frames the application holds on the TX ring, wakes the
// kernel if it asked for it (always, in copy mode), and returns how many
// were queued. Frames not queued (ring full) stay with the application.
// Descriptors of frames the application does not hold are refused
// (counted in UMEM.Violations) and reported as queued, so the caller does
// not retry them.
func (s *Socket) Transmit(descs []Desc) int {
	n := s.tx.producerFree(uint32(len(descs)))
	if int(n) < len(descs) {
		s.counters.txRingFull.Add(1)
	} else {
		n = uint32(len(descs))
	}
	u := s.umem
	var bytes uint64
	k := uint32(0)
	for i := uint32(0); i < n; i++ {
		d := descs[i]
		if u.move(d.Addr, placeApp, placeTX, 0, s.slot) {
			s.tx.descs[(s.tx.local+k)&s.tx.mask] = d
			bytes += uint64(d.Len)
			k++
		}
	}
	if k > 0 {
		s.tx.local += k
		s.tx.publish()
		s.transmitted += uint64(k)
		u.tally(placeApp, placeTX, int(k))
		s.counters.txPackets.Add(uint64(k))
		s.counters.txBytes.Add(bytes)
	}
	s.Kick()
	return int(n)
}

// Kick asks the kernel to send what is on the TX ring, when it needs asking.
// In copy mode one sendto moves at most TXBudget frames and answers EAGAIN
// while more remain, so it repeats (bounded) until the ring is drained.
func (s *Socket) Kick() {
	if s.tx.pending() == 0 || (s.wakeup && !s.tx.needWakeup()) {
		return
	}
	for try := 0; try < 64; try++ {
		s.counters.txKicks.Add(1)
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
		case unix.EAGAIN, unix.EBUSY, unix.ENOBUFS:
			// More to send, or the completion ring is full: the caller's
			// next Complete makes room.
		default:
			s.counters.txKickErrors.Add(1)
			return
		}
		if s.tx.pending() == 0 {
			return
		}
		if e == unix.EBUSY || e == unix.ENOBUFS {
			return
		}
	}
}

// TXOutstanding is how many transmitted frames have not come back through
// the completion ring yet.
func (s *Socket) TXOutstanding() int { return int(s.transmitted - s.completed) }

// TXPending is how many frames on the TX ring the kernel has not taken.
func (s *Socket) TXPending() int { return int(s.tx.pending()) }

// TXFree is how many descriptors Transmit would take now: the room on the
// TX ring.
func (s *Socket) TXFree() int { return int(s.tx.producerFree(s.tx.size)) }

// Complete takes up to len(addrs) transmitted frames off the completion
// ring; the application holds them again.
func (s *Socket) Complete(addrs []uint64) int {
	return s.complete(addrs, uint32(len(addrs)), placeApp)
}

// CompleteToFree moves every completed frame straight to the free stack
// and returns how many.
func (s *Socket) CompleteToFree() int {
	u := s.umem
	top := len(u.free)
	// The free stack's capacity is the frame count, so it has room for
	// every frame this socket has in flight.
	k := s.complete(u.free[top:cap(u.free)], s.comp.size, placeFree)
	u.free = u.free[:top+k]
	return k
}

// complete takes up to want frames off the completion ring, moves those
// this socket transmitted to place to and writes their addresses to out,
// which must have room for them.
func (s *Socket) complete(out []uint64, want uint32, to uint8) int {
	n := s.comp.consumerAvail(want)
	if n > want {
		n = want
	}
	u := s.umem
	k := 0
	for i := uint32(0); i < n; i++ {
		a := s.comp.addrs[(s.comp.local+i)&s.comp.mask]
		if u.move(a, placeTX, to, s.slot, 0) {
			out[k] = a & u.frameMask
			k++
		}
	}
	s.comp.local += n
	if n > 0 {
		s.comp.release()
	}
	s.completed += uint64(n)
	u.tally(placeTX, to, k)
	return k
}

// Poll waits up to timeout for received frames (negative: forever). It
// returns true when the RX ring has frames.
func (s *Socket) Poll(timeout time.Duration) (bool, error) {
	if s.rx.consumerAvail(1) > 0 {
		return true, nil
	}
	ms := int(timeout / time.Millisecond)
	if timeout < 0 {
		ms = -1
	}
	_, err := unix.Poll(s.pollfd[:], ms)
	if err != nil && !errors.Is(err, unix.EINTR) {
		return false, err
	}
	return s.rx.consumerAvail(1) > 0, nil
}

// SetBusyPoll sets the socket's busy-poll options (see BusyPoll); from
// then on Socket.BusyPoll polls.
func (s *Socket) SetBusyPoll(bp BusyPoll) error {
	budget, timeout := bp.Budget, bp.Timeout
	if budget == 0 {
		budget = 64
	}
	if timeout == 0 {
		timeout = 20 * time.Microsecond
	}
	for _, o := range []struct {
		opt  int
		name string
		v    int
	}{{unix.SO_PREFER_BUSY_POLL, "SO_PREFER_BUSY_POLL", 1}, {unix.SO_BUSY_POLL, "SO_BUSY_POLL", int(timeout / time.Microsecond)}, {unix.SO_BUSY_POLL_BUDGET, "SO_BUSY_POLL_BUDGET", budget}} {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, o.opt, o.v); err != nil {
			return fmt.Errorf("afxdp: %s: busy polling: %s=%d: %w", s, o.name, o.v, err)
		}
	}
	s.busyPoll = true
	return nil
}

// BusyPoll runs the queue's NAPI receive loop once, up to the busy-poll
// budget, in this call (recvfrom with MSG_DONTWAIT), when the socket was
// opened with SocketConfig.BusyPoll (or SetBusyPoll); it does nothing
// otherwise. Since Linux 6.13 the kernel polls only for zero-copy sockets
// (CopyModeBusyPollBroken).
func (s *Socket) BusyPoll() {
	if s.busyPoll {
		s.counters.busyPolls.Add(1)
		unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	}
}

// BusyPolling reports whether the socket busy-polls (SocketConfig.BusyPoll).
func (s *Socket) BusyPolling() bool { return s.busyPoll }

// RXAvailable is how many received frames wait on the RX ring.
func (s *Socket) RXAvailable() int { return int(s.rx.consumerAvail(s.rx.size)) }

// Stats are the kernel's XDP_STATISTICS for the socket.
type Stats struct {
	// RXDropped: frames dropped for want of a fill buffer or too big for a chunk.
	RXDropped uint64
	// RXInvalidDescs, TXInvalidDescs: descriptors the kernel rejected.
	RXInvalidDescs, TXInvalidDescs uint64
	// RXRingFull: frames dropped because the RX ring was full (application too slow).
	RXRingFull uint64
	// RXFillRingEmpty: times the kernel found the fill ring empty.
	RXFillRingEmpty uint64
	// TXRingEmpty: times the kernel found nothing to send (usually harmless).
	TXRingEmpty uint64
}

// Stats reads XDP_STATISTICS.
func (s *Socket) Stats() (Stats, error) {
	var st unix.XDPStatistics
	if err := getsockopt(s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st)); err != nil {
		return Stats{}, fmt.Errorf("afxdp: %s: XDP_STATISTICS: %w", s, err)
	}
	return Stats{st.Rx_dropped, st.Rx_invalid_descs, st.Tx_invalid_descs, st.Rx_ring_full, st.Rx_fill_ring_empty_descs, st.Tx_ring_empty_descs}, nil
}

func (s *Socket) unmap() {
	for i, m := range s.maps {
		if m != nil {
			unix.Munmap(m)
			s.maps[i] = nil
		}
	}
}

// Close closes the socket and returns to the UMEM's free stack every frame
// it had on its fill or TX rings (the kernel lets go of them on close).
// Frames the application holds stay held.
func (s *Socket) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	err := unix.Close(s.fd)
	s.unmap()
	u := s.umem
	for i, p := range u.place {
		if (p == placeFill || p == placeTX) && u.owner[i] == s.slot {
			u.place[i] = placeFree
			u.tally(p, placeFree, 1)
			u.free = append(u.free, uint64(i)<<u.frameShift)
		}
	}
	u.sockets[s.slot] = nil
	if u.ownerFD == s.fd {
		// Still registered through the other sockets' references; new
		// sockets can share through any open one.
		u.ownerFD = -1
		for _, o := range u.sockets {
			if o != nil {
				u.ownerFD = o.fd
				break
			}
		}
	}
	return err
}
