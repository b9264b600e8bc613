package main

import (
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

// TTLFloor drops IP packets that arrive with a TTL (or IPv6 hop limit)
// below Min: traffic that has wandered too far, or a traceroute probing
// what sits behind us. It is the custom stage of this example; any type
// with Name and Process is a stage.
type TTLFloor struct {
	pipeline.Counters // exported as xnf_stage_events_total{event=...}
	Min               uint8
	low               *pipeline.Counter
}

// NewTTLFloor makes the stage for one worker.
func NewTTLFloor(minTTL uint8) *TTLFloor {
	s := &TTLFloor{Min: minTTL}
	s.low = s.Counter("low_ttl")
	return s
}

func (s *TTLFloor) Name() string { return "ttlfloor" }

func (s *TTLFloor) Process(b *packet.Batch) {
	low := uint64(0) // counted locally, added once per batch
	for _, p := range pipeline.Live(b) {
		var ttl uint8
		switch {
		case p.Has(packet.FlagIPv4):
			ttl = p.IPv4().TTL()
		case p.Has(packet.FlagIPv6):
			ttl = p.IPv6().HopLimit()
		default:
			continue // ARP and the rest: not ours to judge
		}
		if ttl < s.Min {
			p.SetDrop(packet.DropPolicy)
			low++
		}
	}
	if low > 0 {
		s.low.Add(low)
	}
}
