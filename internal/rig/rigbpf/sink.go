package rigbpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// SinkConfig configures LoadSinkWith.
type SinkConfig struct {
	// DstPort, when set, counts only IPv4/IPv6 UDP frames to this port
	// (the generator's DstPort); the rest are counted as Other.
	DstPort uint16
	// Pass gives every frame to the kernel instead of dropping it: a
	// counting XDP_PASS program, for a forwarder's ingress.
	Pass bool
	// CheckIPv4 verifies the header checksum of every counted IPv4 frame
	// with a 20-byte header and counts failures (BadChecksum).
	CheckIPv4 bool
	// Latency records the age of every timestamped frame
	// (GeneratorConfig.Timestamp) in a histogram (Sink.Latency), whether
	// or not it matches DstPort. Frames without the marker cost one
	// comparison.
	Latency bool
}

// Sink is a loaded (not attached) XDP program that counts frames and
// drops them (or passes them, with SinkConfig.Pass).
type Sink struct {
	Program *ebpf.Program
	stats   *ebpf.Map
	lat     *ebpf.Map
	cfg     SinkConfig
}

// SinkCounters are a sink's totals over all CPUs.
type SinkCounters struct {
	// Packets and Bytes count the frames that matched (all, without a
	// DstPort); bytes are frame lengths from the Ethernet header, no FCS.
	Packets, Bytes uint64
	// Other counts frames that did not match DstPort.
	Other uint64
	// BadChecksum counts counted IPv4 frames whose header checksum is
	// wrong (with SinkConfig.CheckIPv4).
	BadChecksum uint64
}

// Sub returns c - o, for counting over a window.
func (c SinkCounters) Sub(o SinkCounters) SinkCounters {
	return SinkCounters{c.Packets - o.Packets, c.Bytes - o.Bytes, c.Other - o.Other, c.BadChecksum - o.BadChecksum}
}

// LoadSink loads a sink that counts every frame and drops it.
func LoadSink() (*Sink, error) { return LoadSinkWith(SinkConfig{}) }

// LoadSinkWith loads a sink with a marker port and/or the pass verdict.
func LoadSinkWith(cfg SinkConfig) (*Sink, error) {
	spec, err := loadSink()
	if err != nil {
		return nil, fmt.Errorf("rigbpf: reading embedded object: %w", err)
	}
	verdict := uint32(1) // XDP_DROP
	if cfg.Pass {
		verdict = 2 // XDP_PASS
	}
	if err := errors.Join(
		spec.Variables[sinkVarMatchDport].Set(uint32(cfg.DstPort)),
		spec.Variables[sinkVarVerdict].Set(verdict),
		spec.Variables[sinkVarCheckIpv4].Set(b2u(cfg.CheckIPv4)),
		spec.Variables[sinkVarLatency].Set(b2u(cfg.Latency)),
	); err != nil {
		return nil, fmt.Errorf("rigbpf: configuring sink: %w", err)
	}
	var objs sinkObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, loadError("sink", err)
	}
	return &Sink{Program: objs.XnfSink, stats: objs.SinkStats, lat: objs.LatHist, cfg: cfg}, nil
}

// Config is the configuration the sink was loaded with.
func (s *Sink) Config() SinkConfig { return s.cfg }

// Stats sums the per-CPU counters.
func (s *Sink) Stats() (SinkCounters, error) {
	var per []sinkSinkStats
	if err := s.stats.Lookup(uint32(0), &per); err != nil {
		return SinkCounters{}, fmt.Errorf("rigbpf: reading sink counters: %w", err)
	}
	var c SinkCounters
	for _, p := range per {
		c.Packets += p.Pkts
		c.Bytes += p.Bytes
		c.Other += p.Other
		c.BadChecksum += p.BadCsum
	}
	return c, nil
}

// Counters returns the matched packets and bytes so far.
func (s *Sink) Counters() (pkts, bytes uint64, err error) {
	c, err := s.Stats()
	return c.Packets, c.Bytes, err
}

// Close unloads the sink (an attached link keeps the program alive until
// the link closes too).
func (s *Sink) Close() error {
	return errors.Join(s.Program.Close(), s.stats.Close(), s.lat.Close())
}

// Latency sums the per-CPU latency histograms (all zero unless the sink
// was loaded with SinkConfig.Latency). Subtract two readings to get a
// window's.
func (s *Sink) Latency() (LatencyHistogram, error) {
	var per []sinkLatHist
	if err := s.lat.Lookup(uint32(0), &per); err != nil {
		return LatencyHistogram{}, fmt.Errorf("rigbpf: reading latency histogram: %w", err)
	}
	h := LatencyHistogram{Buckets: make([]uint64, LatencyBuckets)}
	for _, p := range per {
		h.Count += p.Count
		h.SumNs += p.SumNs
		h.Bad += p.Bad
		for i, n := range p.Buckets {
			h.Buckets[i] += n
		}
	}
	return h, nil
}
