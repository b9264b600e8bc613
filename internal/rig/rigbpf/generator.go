package rigbpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/bpf"
)

// Frame size limits of the generator: Ethernet frames without FCS, so 60 is
// the 64-byte minimum frame on the wire and 1514 a full 1500-byte MTU.
const (
	MinFrameSize = 60
	MaxFrameSize = 1514
)

// GeneratorConfig describes the IPv4/UDP frames the generator sends.
type GeneratorConfig struct {
	SrcMAC, DstMAC net.HardwareAddr
	// SrcIP and DstIP must be IPv4 addresses.
	SrcIP, DstIP netip.Addr
	// SrcPort is the first UDP source port (default 1024); flow i uses
	// SrcPort+i.
	SrcPort uint16
	// DstPort is the UDP destination port (default 9, discard), which a
	// sink can use as a marker.
	DstPort uint16
	// FrameSize is the Ethernet frame length without FCS, 60..1514
	// (default 60, a 64-byte frame on the wire).
	FrameSize int
	// Flows is the number of distinct UDP source ports, used round robin
	// per CPU (default 1).
	Flows uint32
	// TTL of the IPv4 header (default 64).
	TTL uint8
	// Queue is the sending device's queue named in the context (default 0);
	// it must be below the device's RX queue count.
	Queue uint32
	// BatchSize is the kernel's live-frames batch (0: the kernel's 64;
	// at most 256).
	BatchSize uint32
	// Timestamp makes every frame a latency probe: the payload starts
	// with the marker LatencyMagic (frame offset 42) and carries the
	// kernel's monotonic clock (bpf_ktime_get_ns, 8 bytes in host order)
	// at offset 48, taken as the frame is built. A sink loaded with
	// SinkConfig.Latency records now - stamp.
	Timestamp bool
}

// LatencyMagic is the marker of a timestamped frame: payload bytes 0..3
// (frame offset 42); the stamp follows at offset 48.
var LatencyMagic = [4]byte{'x', 'n', 'f', 'T'}

func (c GeneratorConfig) withDefaults() GeneratorConfig {
	if c.SrcPort == 0 {
		c.SrcPort = 1024
	}
	if c.DstPort == 0 {
		c.DstPort = 9
	}
	if c.FrameSize == 0 {
		c.FrameSize = MinFrameSize
	}
	if c.Flows == 0 {
		c.Flows = 1
	}
	if c.TTL == 0 {
		c.TTL = 64
	}
	return c
}

// Frame returns the frame the generator starts from: Ethernet, IPv4 (with
// its checksum), UDP (checksum 0, none) and a zero payload, FrameSize bytes
// long, with the first flow's source port. Every frame the generator sends
// has these bytes except the UDP source port, the stamp at 48..55 with
// Timestamp (and, after reuse of a page-pool buffer, whatever a receiver
// wrote past the first 48 bytes).
func (c GeneratorConfig) Frame() ([]byte, error) {
	c = c.withDefaults()
	if len(c.SrcMAC) != 6 || len(c.DstMAC) != 6 {
		return nil, fmt.Errorf("rigbpf: generator needs 6-byte source and destination MACs, got %q and %q", c.SrcMAC, c.DstMAC)
	}
	if !c.SrcIP.Is4() || !c.DstIP.Is4() {
		return nil, fmt.Errorf("rigbpf: generator needs IPv4 source and destination addresses, got %v and %v", c.SrcIP, c.DstIP)
	}
	if c.FrameSize < MinFrameSize || c.FrameSize > MaxFrameSize {
		return nil, fmt.Errorf("rigbpf: generator frame size %d outside %d..%d", c.FrameSize, MinFrameSize, MaxFrameSize)
	}
	if uint32(c.SrcPort)+c.Flows-1 > 0xffff {
		return nil, fmt.Errorf("rigbpf: %d flows from source port %d run past 65535", c.Flows, c.SrcPort)
	}
	f := make([]byte, c.FrameSize)
	copy(f[0:6], c.DstMAC)
	copy(f[6:12], c.SrcMAC)
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(c.FrameSize-14))
	binary.BigEndian.PutUint16(ip[6:8], 0x4000) // DF
	ip[8] = c.TTL
	ip[9] = 17
	src, dst := c.SrcIP.As4(), c.DstIP.As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:12], ipv4Checksum(ip))
	udp := f[34:42]
	binary.BigEndian.PutUint16(udp[0:2], c.SrcPort)
	binary.BigEndian.PutUint16(udp[2:4], c.DstPort)
	binary.BigEndian.PutUint16(udp[4:6], uint16(c.FrameSize-34))
	if c.Timestamp {
		copy(f[42:46], LatencyMagic[:])
	}
	return f, nil
}

func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// Generator is a loaded traffic generator: an XDP program run through
// BPF_PROG_TEST_RUN with live frames, which transmits the frames it builds
// out of the device named in each Run. It is never attached.
type Generator struct {
	// Program is the generator; run it without live frames to see the
	// frames it builds.
	Program *ebpf.Program
	stats   *ebpf.Map
	conf    *ebpf.Map
	cfg     GeneratorConfig
	frame   []byte
	ctx     xdpMD
}

// xdpMD is struct xdp_md, the context BPF_PROG_TEST_RUN takes.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// LoadGenerator loads the generator for frames described by cfg.
func LoadGenerator(cfg GeneratorConfig) (*Generator, error) {
	cfg = cfg.withDefaults()
	frame, err := cfg.Frame()
	if err != nil {
		return nil, err
	}
	if cfg.BatchSize > 256 {
		return nil, fmt.Errorf("rigbpf: generator batch size %d above the kernel's 256", cfg.BatchSize)
	}
	spec, err := loadTrafficgen()
	if err != nil {
		return nil, fmt.Errorf("rigbpf: reading embedded object: %w", err)
	}
	var tmpl [48]byte
	copy(tmpl[:], frame)
	if err := errors.Join(
		spec.Variables[trafficgenVarTmpl].Set(tmpl),
		spec.Variables[trafficgenVarSportBase].Set(uint32(cfg.SrcPort)),
		spec.Variables[trafficgenVarFlows].Set(cfg.Flows),
		spec.Variables[trafficgenVarStamp].Set(b2u(cfg.Timestamp)),
	); err != nil {
		return nil, fmt.Errorf("rigbpf: configuring generator: %w", err)
	}
	var objs trafficgenObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, loadError("generator", err)
	}
	g := &Generator{Program: objs.XnfGen, stats: objs.GenStats, conf: objs.GenConf, cfg: cfg, frame: frame}
	g.ctx = xdpMD{DataEnd: uint32(len(frame)), RxQueueIndex: cfg.Queue}
	return g, nil
}

// Config is the configuration the generator was loaded with, defaults filled in.
func (g *Generator) Config() GeneratorConfig { return g.cfg }

// Frame returns a copy of the initial frame (the template).
func (g *Generator) Frame() []byte { return append([]byte(nil), g.frame...) }

// GeneratorStats are the generator's totals over all CPUs.
type GeneratorStats struct {
	// Sent frames were built and handed to the device with XDP_TX. The
	// device may still drop them (a veth whose peer has neither XDP nor
	// GRO drops them all, counted as xdp_xmit_errors).
	Sent uint64
	// Short frames were under 48 bytes and dropped (never with Run).
	Short uint64
	// Skipped runs sent nothing: they came before their pacing slot or
	// after the CPU's limit (see SetRate and SetLimit).
	Skipped uint64
}

// Runs is the number of times the program ran.
func (s GeneratorStats) Runs() uint64 { return s.Sent + s.Short + s.Skipped }

// Stats sums the per-CPU counters.
func (g *Generator) Stats() (GeneratorStats, error) {
	var per []trafficgenGenStats
	if err := g.stats.Lookup(uint32(0), &per); err != nil {
		return GeneratorStats{}, fmt.Errorf("rigbpf: reading generator counters: %w", err)
	}
	var s GeneratorStats
	for _, p := range per {
		s.Sent += p.Pkts
		s.Short += p.ShortFrames
		s.Skipped += p.Skipped
	}
	return s, nil
}

// SetRate paces the generator to pps frames per second on each CPU it
// runs on (0: as fast as it can). Runs before their time slot send
// nothing, so the kernel's loop keeps the core busy while frames leave
// evenly spaced (to the nanosecond: 3 Mpps becomes 1e9/333 pps). A CPU
// that falls more than 64 intervals behind (preempted, or slower than
// pps) starts afresh: the offered rate is then below pps, never bursty.
func (g *Generator) SetRate(pps float64) error {
	var c trafficgenGenConf
	if pps < 0 {
		return fmt.Errorf("rigbpf: generator rate %v pps", pps)
	}
	if pps > 0 {
		c.IntervalNs = max(1, uint64(1e9/pps+0.5))
		c.MaxLagNs = 64 * c.IntervalNs
	}
	if err := g.conf.Put(uint32(0), &c); err != nil {
		return fmt.Errorf("rigbpf: setting generator rate: %w", err)
	}
	return nil
}

// SetLimit lets CPU cpu send at most n more frames, then skip every run
// (n 0: no limit). Paced runs send fewer frames than runs, so an exact
// count needs this; set it while no run is under way.
func (g *Generator) SetLimit(cpu int, n uint64) error {
	var per []trafficgenGenStats
	if err := g.stats.Lookup(uint32(0), &per); err != nil {
		return fmt.Errorf("rigbpf: reading generator counters: %w", err)
	}
	if cpu < 0 || cpu >= len(per) {
		return fmt.Errorf("rigbpf: CPU %d out of range (%d possible CPUs)", cpu, len(per))
	}
	if n == 0 {
		per[cpu].Limit = 0
	} else {
		per[cpu].Limit = per[cpu].Pkts + n
	}
	if err := g.stats.Update(uint32(0), per, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("rigbpf: setting generator limit: %w", err)
	}
	return nil
}

// Sent is Stats().Sent.
func (g *Generator) Sent() (uint64, error) {
	s, err := g.Stats()
	return s.Sent, err
}

// Run runs the program repeat times with live frames out of the device
// ifindex (queue Config().Queue), in one BPF_PROG_TEST_RUN call: without
// a rate or limit set, that transmits exactly repeat frames. The calling
// thread must be in the device's network namespace: the kernel resolves
// ifindex there (lab.NS.Do does that). The call returns when all frames
// are handed to the device; repeat 0 counts as 1.
//
// If a signal interrupts the call, Run reads the counters and runs only
// what is still missing, where cilium/ebpf's Program.Run would start the
// whole repeat again.
func (g *Generator) Run(ifindex, repeat uint32) error {
	if repeat == 0 {
		repeat = 1
	}
	for repeat > 0 {
		done, err := g.run(ifindex, repeat)
		if err != nil {
			return err
		}
		repeat -= done
	}
	return nil
}

// run makes one call and returns how many frames it sent.
func (g *Generator) run(ifindex, n uint32) (uint32, error) {
	ctx := g.ctx
	ctx.IngressIfindex = ifindex
	attr := progRunAttr{
		progFD:     uint32(g.Program.FD()),
		dataSizeIn: uint32(len(g.frame)),
		dataIn:     uint64(uintptr(unsafe.Pointer(&g.frame[0]))),
		repeat:     n,
		ctxSizeIn:  uint32(unsafe.Sizeof(ctx)),
		ctxIn:      uint64(uintptr(unsafe.Pointer(&ctx))),
		flags:      unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		batchSize:  g.cfg.BatchSize,
	}
	var before uint64
	if n > 1 {
		st, err := g.Stats()
		if err != nil {
			return 0, err
		}
		before = st.Runs()
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(g)
	runtime.KeepAlive(&ctx)
	switch {
	case errno == 0:
		return n, nil
	case errno == unix.EINTR && n > 1:
		st, err := g.Stats()
		if err != nil {
			return 0, err
		}
		done := st.Runs() - before
		if done > uint64(n) { // someone else ran it meanwhile: be conservative
			done = uint64(n)
		}
		return uint32(done), nil
	case errno == unix.EINTR:
		// Repeat 1: the frame was sent before the signal check.
		return n, nil
	case errno == unix.EPERM:
		return 0, fmt.Errorf("rigbpf: running generator: %w: %v", bpf.ErrPermission, errno)
	case errno == unix.EINVAL:
		return 0, fmt.Errorf("rigbpf: running generator on ifindex %d queue %d: %w (is the thread in the device's namespace, and the queue below its RX queue count?)", ifindex, g.cfg.Queue, errno)
	}
	return 0, fmt.Errorf("rigbpf: running generator on ifindex %d: %w", ifindex, errno)
}

// progRunAttr is the BPF_PROG_TEST_RUN member of union bpf_attr.
type progRunAttr struct {
	progFD      uint32
	retval      uint32
	dataSizeIn  uint32
	dataSizeOut uint32
	dataIn      uint64
	dataOut     uint64
	repeat      uint32
	duration    uint32
	ctxSizeIn   uint32
	ctxSizeOut  uint32
	ctxIn       uint64
	ctxOut      uint64
	flags       uint32
	cpu         uint32
	batchSize   uint32
	_           uint32
}

// Close unloads the generator.
func (g *Generator) Close() error {
	return errors.Join(g.Program.Close(), g.stats.Close(), g.conf.Close())
}
