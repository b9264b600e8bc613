package pcap

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

// Port is a port over a capture file: it receives the packets of a
// pcap or pcapng capture (OpenReader, OpenFile) or transmits into a new
// pcap capture (NewWriter, CreateFile).
//
// Frames live in the worker's pipeline.FramePool, shared by every port of
// the worker: Receive copies each captured frame into a pool frame,
// Transmit writes the frame out and frees it, so a chain forwards from a
// pcap input to a pcap output (or an AF_XDP port) by handing frames over.
//
// Timestamps: over a pool that keeps stamps (pipeline.Stamper, as
// pipeline.MemPool does) a frame received from a pcap input keeps its
// capture timestamp (and how many bytes the capture's snap length cut
// off), one entry per frame, cleared whenever the frame is freed by any
// port; a pcap output writes the frame with them. A frame that did not come
// from a pcap input (a memory port's, say), or any frame over a pool
// without stamps (a UMEM), is written with a fake clock: one microsecond
// after the previous packet written by this port, starting at the Unix
// epoch, so the output is deterministic and its timestamps never go
// backwards.
//
// A Port is not safe for concurrent use; like every port it belongs to
// its worker's goroutine. Its counters are plain integers for the same
// reason: read them after the worker stops, or from its goroutine.
type Port struct {
	name   string
	pool   pipeline.FramePool
	stamps pipeline.Stamper        // nil when the pool keeps none
	addrs  [packet.MaxBurst]uint64 // scratch: one pool call per burst
	closer io.Closer               // the file, for ports made by OpenFile and CreateFile

	src  pcapSource // nil for an output port
	done bool

	// A split input (Split): where each packet goes, and the packet read
	// ahead that belongs to another port than the one receiving.
	route func(Packet) (int, error)
	ahead struct {
		ok    bool
		to    int
		addr  uint64
		frame []byte
		now   int64
	}

	w       *pcapgo.Writer // nil for an input port
	bw      *bufio.Writer
	snaplen int
	last    time.Time // timestamp of the last packet written (the fake clock)

	err                      error
	received, sent, oversize uint64
	now                      int64 // capture time of the last packet received, Unix ns
}

// pcapSource is what pcapgo's Reader and NgReader have in common.
type pcapSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	LinkType() layers.LinkType
}

// WriterOptions tune NewWriter. The zero value is a classic pcap
// with microsecond timestamps, readable by every tool.
//
// The link type is always Ethernet: the worker only forwards frames with an
// Ethernet header.
type WriterOptions struct {
	// Snaplen is the most bytes of a frame written (default 65535); longer
	// frames are cut, keeping their original length in the record.
	Snaplen int
	// Nanoseconds writes nanosecond timestamps (magic a1b23c4d) instead of
	// microsecond ones.
	Nanoseconds bool
}

const (
	pcapMagicMicro      = 0xa1b2c3d4
	pcapMagicNano       = 0xa1b23c4d
	pcapngSectionHeader = 0x0a0d0d0a
)

// OpenReader makes an input port that receives the packets of the pcap
// or pcapng capture read from r (gzip-compressed or not), copying each
// into a frame of pool. name names the port and the capture in every error.
// The capture must be Ethernet (link type 1).
func OpenReader(name string, r io.Reader, pool pipeline.FramePool) (*Port, error) {
	if pool == nil {
		return nil, fmt.Errorf("pcap %s: no frame pool", name)
	}
	br := bufio.NewReader(r)
	magic, err := br.Peek(4)
	if len(magic) == 4 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, gerr := gzip.NewReader(br)
		if gerr != nil {
			return nil, fmt.Errorf("pcap %s: gzip: %w", name, gerr)
		}
		br = bufio.NewReader(gz)
		magic, err = br.Peek(4)
	}
	if len(magic) < 4 {
		if err == nil || err == io.EOF {
			return nil, fmt.Errorf("pcap %s: not a pcap or pcapng capture: only %d bytes", name, len(magic))
		}
		return nil, fmt.Errorf("pcap %s: %w", name, err)
	}
	// pcapgo wraps br in a bufio.Reader of its own, which is br itself: no
	// second copy of the input.
	var src pcapSource
	le, be := binary.LittleEndian.Uint32(magic), binary.BigEndian.Uint32(magic)
	switch {
	case le == pcapngSectionHeader:
		src, err = pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
	case le == pcapMagicMicro || be == pcapMagicMicro || le == pcapMagicNano || be == pcapMagicNano:
		src, err = pcapgo.NewReader(br)
	default:
		return nil, fmt.Errorf("pcap %s: not a pcap or pcapng capture (starts with %x)", name, magic)
	}
	if err != nil {
		return nil, fmt.Errorf("pcap %s: reading the capture header: %w", name, err)
	}
	if lt := src.LinkType(); lt != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("pcap %s: link type %d (%s) is not Ethernet (1)", name, uint32(lt), lt)
	}
	p := &Port{name: name, pool: pool, src: src}
	p.stamps, _ = pool.(pipeline.Stamper)
	return p, nil
}

// OpenFile is OpenReader over the file at path, which names the
// port. Close closes the file.
func OpenFile(path string, pool pipeline.FramePool) (*Port, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pcap %s: %w", path, err)
	}
	p, err := OpenReader(path, f, pool)
	if err != nil {
		f.Close()
		return nil, err
	}
	p.closer = f
	return p, nil
}

// NewWriter makes an output port that writes the packets it transmits
// to w as a pcap capture, and writes the capture's header at once. Output
// is buffered: Flush (which the worker calls every loop) or Close pushes it
// into w. name names the port and the capture in every error.
func NewWriter(name string, w io.Writer, pool pipeline.FramePool, opts WriterOptions) (*Port, error) {
	if pool == nil {
		return nil, fmt.Errorf("pcap %s: no frame pool", name)
	}
	if opts.Snaplen == 0 {
		opts.Snaplen = 65535
	}
	if opts.Snaplen < 0 {
		return nil, fmt.Errorf("pcap %s: snap length %d", name, opts.Snaplen)
	}
	p := &Port{name: name, pool: pool, done: true,
		bw: bufio.NewWriterSize(w, 64<<10), snaplen: opts.Snaplen, last: time.Unix(0, 0)}
	p.stamps, _ = pool.(pipeline.Stamper)
	if opts.Nanoseconds {
		p.w = pcapgo.NewWriterNanos(p.bw)
	} else {
		p.w = pcapgo.NewWriter(p.bw)
	}
	if err := p.w.WriteFileHeader(uint32(opts.Snaplen), layers.LinkTypeEthernet); err != nil {
		return nil, fmt.Errorf("pcap %s: writing the capture header: %w", name, err)
	}
	return p, nil
}

// CreateFile is NewWriter with default options over a new file at
// path (truncated if it exists), which names the port. Close flushes and
// closes the file; its error says whether the capture is complete.
func CreateFile(path string, pool pipeline.FramePool) (*Port, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("pcap %s: %w", path, err)
	}
	p, err := NewWriter(path, f, pool, WriterOptions{})
	if err != nil {
		f.Close()
		return nil, err
	}
	p.closer = f
	return p, nil
}

func (p *Port) Name() string { return p.name }

// Receive appends up to max captured packets to b, in capture order. Frames
// that do not fit a pool frame (or packet.MaxFrameLen) are skipped and
// counted by Oversize. At the end of the capture it returns io.EOF, and at
// the first read error that error (also kept for Err); either way the port
// is Done and receives nothing more. A writer receives nothing; a split
// input receives through the ports Split made.
func (p *Port) Receive(b *packet.Batch, max int) (int, error) {
	if p.src == nil || p.route != nil {
		return 0, nil
	}
	return p.receive(b, max, -1)
}

// receive is Receive for the packets routed to port want (any when -1):
// it stops at the first packet for another port and keeps it for that
// port's next call, so the split ports together receive in capture order.
func (p *Port) receive(b *packet.Batch, max int, want int) (int, error) {
	n := 0
	if p.ahead.ok {
		if p.ahead.to != want || b.Free() == 0 || max <= 0 {
			return 0, nil
		}
		b.Append(p.ahead.frame, p.ahead.addr, 0)
		p.ahead.ok = false
		p.now = p.ahead.now
		p.received++
		n++
	}
	if p.done {
		return n, p.endErr()
	}
	limit := min(p.pool.FrameSize(), packet.MaxFrameLen)
	// Take the frames before reading, so a packet is never read without a
	// frame to put it in; the ones left over go back in one call.
	take := min(max, b.Free()) - n
	if take < 0 {
		take = 0
	}
	have := p.pool.Alloc(p.addrs[:take])
	used := 0
	for used < have {
		a := p.addrs[used]
		data, ci, err := p.src.ZeroCopyReadPacketData()
		if err != nil {
			p.done = true
			if err != io.EOF {
				p.fail(fmt.Errorf("pcap %s: reading packet %d: %w", p.name, p.read()+1, err))
			}
			break
		}
		if len(data) > limit {
			p.oversize++
			continue
		}
		to := -1
		if p.route != nil {
			if to, err = p.route(Packet{N: p.read() + 1, Interface: ci.InterfaceIndex, Name: p.interfaceName(ci.InterfaceIndex), Data: data}); err != nil {
				p.done = true
				p.fail(fmt.Errorf("pcap %s: packet %d: %w", p.name, p.read()+1, err))
				break
			}
		}
		used++
		f := p.pool.Frame(a, uint32(len(data)))
		copy(f, data)
		if p.stamps != nil {
			st := pipeline.FrameStamp{NS: ci.Timestamp.UnixNano(), OK: true}
			if ci.Length > len(data) {
				st.Cut = uint32(ci.Length - len(data))
			}
			*p.stamps.Stamp(a) = st
		}
		if to != want {
			p.ahead.ok, p.ahead.to, p.ahead.addr, p.ahead.frame, p.ahead.now = true, to, a, f, ci.Timestamp.UnixNano()
			break
		}
		b.Append(f, a, 0)
		n++
		p.received++
		p.now = ci.Timestamp.UnixNano()
	}
	if used < have {
		// In reverse, so the pool's free stack is as if they had never
		// been taken.
		slices.Reverse(p.addrs[used:have])
		p.pool.Free(p.addrs[used:have])
	}
	if p.done && !p.ahead.ok {
		return n, p.endErr()
	}
	return n, nil
}

// read is the number of packets read from the capture so far.
func (p *Port) read() uint64 {
	n := p.received + p.oversize
	if p.ahead.ok {
		n++
	}
	return n
}

// Packet is what a split's route sees of a captured packet.
type Packet struct {
	N         uint64 // its number in the capture, from 1
	Interface int    // its pcapng interface (0 in a classic pcap)
	Name      string // that interface's name, if the capture gives one
	Data      []byte // the frame, valid during the call
}

// interfaceName is the name a pcapng capture gives interface i ("" for
// none, and in a classic pcap).
func (p *Port) interfaceName(i int) string {
	if ng, ok := p.src.(*pcapgo.NgReader); ok {
		if ifc, err := ng.Interface(i); err == nil {
			return ifc.Name
		}
	}
	return ""
}

// Split makes n input ports over p's capture: each packet is received by
// port route(packet) of them, in capture order across them, as a chain
// with several ports would have received it live. A route error stops
// the input with that error, naming the packet. p itself receives
// nothing after Split; close it (not the split ports) when done.
func (p *Port) Split(n int, route func(Packet) (int, error)) []pipeline.Port {
	p.route = func(pk Packet) (int, error) {
		i, err := route(pk)
		if err == nil && (i < 0 || i >= n) {
			err = fmt.Errorf("routed to port %d of %d", i, n)
		}
		return i, err
	}
	ports := make([]pipeline.Port, n)
	for i := range ports {
		ports[i] = &splitPort{p: p, i: i}
	}
	return ports
}

// splitPort is one port of a Split: it receives its packets and
// transmits nothing.
type splitPort struct {
	p *Port
	i int
}

func (s *splitPort) Name() string { return fmt.Sprintf("%s#%d", s.p.name, s.i) }
func (s *splitPort) Receive(b *packet.Batch, max int) (int, error) {
	return s.p.receive(b, max, s.i)
}
func (s *splitPort) Transmit([]*packet.Packet) (int, error) { return 0, nil }
func (s *splitPort) Release(pkts []*packet.Packet)          { s.p.freeFrames(pkts) }
func (s *splitPort) Flush() error                           { return nil }
func (s *splitPort) Close() error                           { return nil }

// endErr is what Receive returns once the input is done.
func (p *Port) endErr() error {
	if p.err != nil {
		return p.err
	}
	return io.EOF
}

// Transmit writes the packets to the capture, with their capture
// timestamps (or the fake clock, see Port), and frees their frames. An
// input port takes nothing (the worker counts the packets as TXFull
// drops); after a write error the port takes nothing and returns the error.
func (p *Port) Transmit(pkts []*packet.Packet) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	if p.w == nil {
		return 0, nil
	}
	sent := 0
	for _, pk := range pkts {
		var st pipeline.FrameStamp
		if p.stamps != nil {
			st = *p.stamps.Stamp(pk.Addr)
		}
		ts := p.last.Add(time.Microsecond)
		if st.OK {
			ts = time.Unix(0, st.NS).UTC()
		}
		data := pk.Data
		wire := len(data) + int(st.Cut)
		if len(data) > p.snaplen {
			data = data[:p.snaplen]
		}
		if err := p.w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: wire}, data); err != nil {
			p.fail(fmt.Errorf("pcap %s: writing packet %d: %w", p.name, p.sent+1, err))
			p.freeFrames(pkts[:sent])
			return sent, p.err
		}
		p.last = ts
		sent++
		p.sent++
	}
	p.freeFrames(pkts)
	return sent, nil
}

// Release frees the frames of packets that will not be sent.
func (p *Port) Release(pkts []*packet.Packet) { p.freeFrames(pkts) }

// freeFrames returns the packets' frames to the pool, a burst per call.
func (p *Port) freeFrames(pkts []*packet.Packet) {
	for i := 0; i < len(pkts); i += len(p.addrs) {
		chunk := pkts[i:min(i+len(p.addrs), len(pkts))]
		for j, pk := range chunk {
			p.addrs[j] = pk.Addr
		}
		p.pool.Free(p.addrs[:len(chunk)])
	}
}

// Flush pushes buffered output into the writer; its error is the port's
// first.
func (p *Port) Flush() error {
	if p.bw != nil && p.err == nil && p.bw.Buffered() > 0 {
		if err := p.bw.Flush(); err != nil {
			p.fail(fmt.Errorf("pcap %s: %w", p.name, err))
			return p.err
		}
	}
	return nil
}

// Close flushes an output port and closes the file of a port made by
// OpenFile or CreateFile (not a reader or writer passed in). It
// returns the port's first error, if any.
func (p *Port) Close() error {
	p.Flush()
	p.done = true
	if p.ahead.ok {
		p.ahead.ok = false
		p.pool.Free([]uint64{p.ahead.addr})
	}
	if p.closer != nil {
		if err := p.closer.Close(); err != nil {
			p.fail(fmt.Errorf("pcap %s: %w", p.name, err))
		}
		p.closer = nil
	}
	return p.err
}

// Done reports whether an input port has nothing more to receive: its
// capture ended or could not be read further (see Err). An output port is
// always done.
func (p *Port) Done() bool { return p.done && !p.ahead.ok }

// Err is the first error reading or writing the capture, as the call that
// met it returned; the end of an input capture is not an error.
func (p *Port) Err() error { return p.err }

// Received is the number of packets received.
func (p *Port) Received() uint64 { return p.received }

// Sent is the number of packets written.
func (p *Port) Sent() uint64 { return p.sent }

// Now is the capture time of the last packet received (Unix nanoseconds;
// 0 before the first): the clock a replay's stages run on
// (pipeline.Config.Clock).
func (p *Port) Now() int64 { return p.now }

// Oversize is the number of captured packets skipped because they do not
// fit a pool frame.
func (p *Port) Oversize() uint64 { return p.oversize }

func (p *Port) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

var _ pipeline.Port = (*Port)(nil)
