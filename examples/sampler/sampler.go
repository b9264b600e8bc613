package main

import (
	"io"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

// Sampler copies 1 in Every packets of its flows into a bounded queue;
// a goroutine writes them to a pcapng file. The data path never waits: a
// sample that finds the queue full is counted (lagged) and skipped.
type Sampler struct {
	pipeline.Counters
	cfg                      Config
	seen                     uint64 // this worker's matching packets
	free                     chan []byte
	queue                    chan sample
	done                     chan error // the writer's result, once the queue is closed
	closed                   bool
	matched, sampled, lagged *pipeline.Counter
	Written                  atomic.Uint64 // samples in the file (read by tests)
}

type sample struct {
	data []byte // a buffer from free, len = bytes kept
	wire int    // the packet's length
	when time.Time
}

// New makes the stage and starts its writer on out (none when out is
// nil: a configuration check).
func New(c Config, out io.Writer) (*Sampler, error) {
	if c.Every <= 0 {
		c.Every = 1
	}
	if c.Queue <= 0 {
		c.Queue = 1024
	}
	if c.Snaplen <= 0 {
		c.Snaplen = 256
	}
	if err := c.compile(); err != nil {
		return nil, err
	}
	s := &Sampler{cfg: c, free: make(chan []byte, c.Queue), queue: make(chan sample, c.Queue)}
	for range c.Queue {
		s.free <- make([]byte, c.Snaplen)
	}
	s.matched, s.sampled, s.lagged = s.Counter("matched"), s.Counter("sampled"), s.Counter("lagged")
	s.done = make(chan error, 1)
	if out != nil {
		go func() { s.done <- s.write(out) }()
	} else {
		s.done <- nil
	}
	return s, nil
}

// Close stops the writer once it has written every queued sample, and
// closes the output if it is a file. The service calls it after the
// workers have stopped: Process must not run again.
func (s *Sampler) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.queue)
	return <-s.done
}

func (s *Sampler) Name() string { return "sampler" }

func (s *Sampler) Process(b *packet.Batch) {
	var matched, sampled, lagged uint64
	var now time.Time // one clock read per batch, and only if it samples
	for i := range b.Slice() {
		p := &b.Packets[i]
		if !s.match(p) {
			continue
		}
		matched++
		if s.seen++; s.seen%uint64(s.cfg.Every) != 0 {
			continue
		}
		select {
		case buf := <-s.free:
			if now.IsZero() {
				now = time.Now()
			}
			n := copy(buf[:cap(buf)], p.Data)
			s.queue <- sample{data: buf[:n], wire: len(p.Data), when: now} // never blocks: as many buffers as slots
			sampled++
		default:
			lagged++ // the writer is behind: skip, never wait
		}
	}
	s.matched.Add(matched)
	s.sampled.Add(sampled)
	s.lagged.Add(lagged)
}

// match tries the cheap fields first; addresses are read only for flows
// that name a prefix.
func (s *Sampler) match(p *packet.Packet) bool {
	if len(s.cfg.Flows) == 0 {
		return true
	}
	v4 := p.Has(packet.FlagIPv4)
	if !v4 && !p.Has(packet.FlagIPv6) {
		return false
	}
	proto, sport, dport := p.L4Proto, p.SrcPort(), p.DstPort()
	for i := range s.cfg.Flows {
		f := &s.cfg.Flows[i]
		if (f.proto != 0 && f.proto != proto) || (f.SPort != 0 && f.SPort != sport) || (f.DPort != 0 && f.DPort != dport) {
			continue
		}
		if f.src.IsValid() && !f.src.Contains(addr(p, v4, true)) || f.dst.IsValid() && !f.dst.Contains(addr(p, v4, false)) {
			continue
		}
		return true
	}
	return false
}

func addr(p *packet.Packet, v4, src bool) netip.Addr {
	switch {
	case v4 && src:
		return netip.AddrFrom4(p.IPv4().Src())
	case v4:
		return netip.AddrFrom4(p.IPv4().Dst())
	case src:
		return netip.AddrFrom16(p.IPv6().Src())
	}
	return netip.AddrFrom16(p.IPv6().Dst())
}

// write runs on its own goroutine: it writes samples as they come and
// flushes whenever the queue is empty, so the file is whole while idle.
func (s *Sampler) write(out io.Writer) error {
	w, err := pcapgo.NewNgWriter(out, layers.LinkTypeEthernet)
	if err == nil {
		err = w.Flush() // a valid, empty capture until the first sample
	}
	for smp := range s.queue {
		if err == nil {
			err = w.WritePacket(gopacket.CaptureInfo{Timestamp: smp.when, CaptureLength: len(smp.data), Length: smp.wire}, smp.data)
			if len(s.queue) == 0 && err == nil {
				err = w.Flush()
			}
		}
		if err == nil {
			s.Written.Add(1)
		}
		s.free <- smp.data
	}
	if err == nil {
		err = w.Flush()
	}
	if c, ok := out.(io.Closer); ok {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
