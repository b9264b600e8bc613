package pcap

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

// PcapPort is a port over a capture file: it receives the packets of a
// pcap or pcapng capture (OpenPcapReader, OpenPcapFile) or transmits into a
// new pcap capture (NewPcapWriter, CreatePcapFile). It is for offline work
// (replaying a capture through a chain, recording what a chain emits) and
// for tests whose input and expected output are captures.
//
// Frames live in a MemPool shared by every port of the worker, like
// MemPort's: Receive copies each captured frame into a pool frame, Transmit
// writes the frame out and frees it, so a chain forwards from a pcap input
// to a pcap output by handing frames over.
//
// Timestamps: a frame received from a pcap input keeps its capture
// timestamp (and how many bytes the capture's snap length cut off) in its
// pool, one entry per frame, cleared whenever the frame is freed by any
// port; a pcap output writes the frame with them. A frame that did not come
// from a pcap input (a MemPort's, say) is written with a fake clock: one
// microsecond after the previous packet written by this port, starting at
// the Unix epoch, so the output is deterministic and its timestamps never
// go backwards.
//
// A PcapPort is not safe for concurrent use; like every port it belongs to
// its worker's goroutine. Its counters are plain integers for the same
// reason: read them after the worker stops, or from its goroutine.
type PcapPort struct {
	name   string
	pool   *pipeline.MemPool
	closer io.Closer // the file, for ports made by OpenPcapFile and CreatePcapFile

	src  pcapSource // nil for an output port
	done bool

	w       *pcapgo.Writer // nil for an input port
	bw      *bufio.Writer
	snaplen int
	last    time.Time // timestamp of the last packet written (the fake clock)

	err                      error
	received, sent, oversize uint64
}

// pcapSource is what pcapgo's Reader and NgReader have in common.
type pcapSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	LinkType() layers.LinkType
}

// PcapWriterOptions tune NewPcapWriter. The zero value is a classic pcap
// with microsecond timestamps, readable by every tool.
//
// The link type is always Ethernet: the worker only forwards frames with an
// Ethernet header.
type PcapWriterOptions struct {
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

// OpenPcapReader makes an input port that receives the packets of the pcap
// or pcapng capture read from r (gzip-compressed or not), copying each
// into a frame of pool. name names the port and the capture in every error.
// The capture must be Ethernet (link type 1).
func OpenPcapReader(name string, r io.Reader, pool *pipeline.MemPool) (*PcapPort, error) {
	if pool == nil {
		return nil, fmt.Errorf("pipeline: pcap %s: no frame pool", name)
	}
	br := bufio.NewReader(r)
	magic, err := br.Peek(4)
	if len(magic) == 4 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, gerr := gzip.NewReader(br)
		if gerr != nil {
			return nil, fmt.Errorf("pipeline: pcap %s: gzip: %w", name, gerr)
		}
		br = bufio.NewReader(gz)
		magic, err = br.Peek(4)
	}
	if len(magic) < 4 {
		if err == nil || err == io.EOF {
			return nil, fmt.Errorf("pipeline: pcap %s: not a pcap or pcapng capture: only %d bytes", name, len(magic))
		}
		return nil, fmt.Errorf("pipeline: pcap %s: %w", name, err)
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
		return nil, fmt.Errorf("pipeline: pcap %s: not a pcap or pcapng capture (starts with %x)", name, magic)
	}
	if err != nil {
		return nil, fmt.Errorf("pipeline: pcap %s: reading the capture header: %w", name, err)
	}
	if lt := src.LinkType(); lt != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("pipeline: pcap %s: link type %d (%s) is not Ethernet (1)", name, uint32(lt), lt)
	}
	return &PcapPort{name: name, pool: pool, src: src}, nil
}

// OpenPcapFile is OpenPcapReader over the file at path, which names the
// port. Close closes the file.
func OpenPcapFile(path string, pool *pipeline.MemPool) (*PcapPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pipeline: pcap %s: %w", path, err)
	}
	p, err := OpenPcapReader(path, f, pool)
	if err != nil {
		f.Close()
		return nil, err
	}
	p.closer = f
	return p, nil
}

// NewPcapWriter makes an output port that writes the packets it transmits
// to w as a pcap capture, and writes the capture's header at once. Output
// is buffered: Flush (which the worker calls every loop) or Close pushes it
// into w. name names the port and the capture in every error.
func NewPcapWriter(name string, w io.Writer, pool *pipeline.MemPool, opts PcapWriterOptions) (*PcapPort, error) {
	if pool == nil {
		return nil, fmt.Errorf("pipeline: pcap %s: no frame pool", name)
	}
	if opts.Snaplen == 0 {
		opts.Snaplen = 65535
	}
	if opts.Snaplen < 0 {
		return nil, fmt.Errorf("pipeline: pcap %s: snap length %d", name, opts.Snaplen)
	}
	p := &PcapPort{name: name, pool: pool, done: true,
		bw: bufio.NewWriterSize(w, 64<<10), snaplen: opts.Snaplen, last: time.Unix(0, 0)}
	if opts.Nanoseconds {
		p.w = pcapgo.NewWriterNanos(p.bw)
	} else {
		p.w = pcapgo.NewWriter(p.bw)
	}
	if err := p.w.WriteFileHeader(uint32(opts.Snaplen), layers.LinkTypeEthernet); err != nil {
		return nil, fmt.Errorf("pipeline: pcap %s: writing the capture header: %w", name, err)
	}
	return p, nil
}

// CreatePcapFile is NewPcapWriter with default options over a new file at
// path (truncated if it exists), which names the port. Close flushes and
// closes the file; its error says whether the capture is complete.
func CreatePcapFile(path string, pool *pipeline.MemPool) (*PcapPort, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("pipeline: pcap %s: %w", path, err)
	}
	p, err := NewPcapWriter(path, f, pool, PcapWriterOptions{})
	if err != nil {
		f.Close()
		return nil, err
	}
	p.closer = f
	return p, nil
}

func (p *PcapPort) Name() string { return p.name }

// Receive appends up to max captured packets to b, in capture order. Frames
// that do not fit a pool frame (or packet.MaxFrameLen) are skipped and
// counted by Oversize. At the end of the capture, or at the first read
// error (kept for Err), the port is Done and receives nothing more. A
// writer receives nothing.
func (p *PcapPort) Receive(b *packet.Batch, inPort uint16, max int) int {
	if p.src == nil || p.done {
		return 0
	}
	limit := min(p.pool.FrameSize(), packet.MaxFrameLen)
	n := 0
	for n < max && b.Free() > 0 {
		// Take the frame before reading, so a packet is never read
		// without a frame to put it in.
		a, ok := p.pool.Alloc()
		if !ok {
			break
		}
		data, ci, err := p.src.ZeroCopyReadPacketData()
		if err != nil {
			p.pool.Free(a)
			p.done = true
			if err != io.EOF {
				p.fail(fmt.Errorf("pipeline: pcap %s: reading packet %d: %w", p.name, p.received+p.oversize+1, err))
			}
			break
		}
		if len(data) > limit {
			p.pool.Free(a)
			p.oversize++
			continue
		}
		f := p.pool.Frame(a, len(data))
		copy(f, data)
		st := pipeline.FrameStamp{NS: ci.Timestamp.UnixNano(), OK: true}
		if ci.Length > len(data) {
			st.Cut = uint32(ci.Length - len(data))
		}
		*p.pool.Stamp(a) = st
		b.Append(f, a, inPort)
		n++
		p.received++
	}
	return n
}

// Transmit writes the packets to the capture, with their capture
// timestamps (or the fake clock, see PcapPort), and frees their frames. An
// input port, and an output port after a write error, take nothing: the
// worker counts the packets as TXFull drops.
func (p *PcapPort) Transmit(pkts []*packet.Packet) int {
	if p.w == nil || p.err != nil {
		return 0
	}
	for i, pk := range pkts {
		st := *p.pool.Stamp(pk.Addr)
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
			p.fail(fmt.Errorf("pipeline: pcap %s: writing packet %d: %w", p.name, p.sent+1, err))
			return i
		}
		p.last = ts
		p.pool.Free(pk.Addr)
		p.sent++
	}
	return len(pkts)
}

// Release frees the frames of packets that will not be sent.
func (p *PcapPort) Release(pkts []*packet.Packet) {
	for _, pk := range pkts {
		p.pool.Free(pk.Addr)
	}
}

// Flush pushes buffered output into the writer.
func (p *PcapPort) Flush() {
	if p.bw != nil && p.err == nil && p.bw.Buffered() > 0 {
		if err := p.bw.Flush(); err != nil {
			p.fail(fmt.Errorf("pipeline: pcap %s: %w", p.name, err))
		}
	}
}

// Close flushes an output port and closes the file of a port made by
// OpenPcapFile or CreatePcapFile (not a reader or writer passed in). It
// returns the port's first error, if any.
func (p *PcapPort) Close() error {
	p.Flush()
	p.done = true
	if p.closer != nil {
		if err := p.closer.Close(); err != nil {
			p.fail(fmt.Errorf("pipeline: pcap %s: %w", p.name, err))
		}
		p.closer = nil
	}
	return p.err
}

// Done reports whether an input port has nothing more to receive: its
// capture ended or could not be read further (see Err). An output port is
// always done.
func (p *PcapPort) Done() bool { return p.done }

// Err is the first error reading or writing the capture; the end of an
// input capture is not an error.
func (p *PcapPort) Err() error { return p.err }

// Received is the number of packets received.
func (p *PcapPort) Received() uint64 { return p.received }

// Sent is the number of packets written.
func (p *PcapPort) Sent() uint64 { return p.sent }

// Oversize is the number of captured packets skipped because they do not
// fit a pool frame.
func (p *PcapPort) Oversize() uint64 { return p.oversize }

func (p *PcapPort) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

var _ pipeline.Port = (*PcapPort)(nil)
