package main

import (
	"encoding/binary"
	"fmt"

	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

func init() { config.Register("example/vlan", build) }

// Config is the stage's YAML: what to do with frames by ingress port.
//
//   - type: example/vlan
//     ports:
//   - {port: in, push: 100}  # access port: tag what comes in
//   - {port: out, pop: 100}  # trunk: untag VLAN 100, drop the rest
type Config struct {
	Ports []struct {
		Port string `yaml:"port"`
		Push uint16 `yaml:"push"` // VLAN ID to push (1-4094)
		PCP  uint8  `yaml:"pcp"`  // priority of pushed tags (0-7)
		Pop  uint16 `yaml:"pop"`  // VLAN ID to pop; other frames are dropped
	} `yaml:"ports"`
}

// Action is what the stage does to frames received on one port.
type Action struct {
	Push, Pop uint16 // at most one is set
	PCP       uint8
}

// VLAN pushes and pops 802.1Q tags by ingress port.
type VLAN struct {
	pipeline.Counters
	actions   []Action // by ingress port index
	frameSize int
	pushed    *pipeline.Counter
	popped    *pipeline.Counter
	foreign   *pipeline.Counter // not tagged with the VLAN to pop: dropped
	noRoom    *pipeline.Counter // no headroom nor tailroom for a tag: dropped
}

// New makes the stage. frameSize is the frame size of the pool the
// packets come from (umem.frame_size), to find their headroom.
func New(actions []Action, frameSize int) *VLAN {
	s := &VLAN{actions: actions, frameSize: frameSize}
	s.pushed, s.popped = s.Counter("pushed"), s.Counter("popped")
	s.foreign, s.noRoom = s.Counter("foreign"), s.Counter("no_room")
	return s
}

func build(ctx *config.BuildContext, sc *config.StageConfig) (pipeline.Stage, error) {
	var c Config
	if err := sc.Decode(&c); err != nil {
		return nil, err
	}
	actions := make([]Action, len(ctx.File.Ports))
	for i, p := range c.Ports {
		at := fmt.Sprintf("ports[%d]", i)
		idx, err := ctx.Port(p.Port)
		if err != nil {
			return nil, sc.Errorf(at+".port", "%v", err)
		}
		switch {
		case (p.Push == 0) == (p.Pop == 0):
			return nil, sc.Errorf(at, "expected one of push or pop")
		case p.Push > 4094 || p.Pop > 4094:
			return nil, sc.Errorf(at, "VLAN IDs are 1-4094")
		case p.PCP > 7:
			return nil, sc.Errorf(at+".pcp", "%d: expected 0-7", p.PCP)
		}
		actions[idx] = Action{Push: p.Push, Pop: p.Pop, PCP: p.PCP}
	}
	fs := ctx.File.UMEM.FrameSize
	if fs == 0 {
		fs = 4096 // the UMEM's default
	}
	return New(actions, fs), nil
}

func (s *VLAN) Name() string { return "vlan" }

func (s *VLAN) Process(b *packet.Batch) {
	var pushed, popped, foreign, noRoom uint64
	for i := range b.Slice() {
		p := &b.Packets[i]
		if int(p.InPort) >= len(s.actions) {
			continue
		}
		switch a := s.actions[p.InPort]; {
		case a.Push != 0:
			// Room for 4 bytes in front: the MACs move back, the tag goes
			// between them and the old ethertype.
			if !pipeline.PushFront(p, packet.VLANTagLen, s.frameSize) {
				p.SetDrop(packet.DropFull)
				noRoom++
				continue
			}
			d := p.Data
			copy(d[:12], d[4:16])
			binary.BigEndian.PutUint16(d[12:], packet.EtherTypeVLAN)
			binary.BigEndian.PutUint16(d[14:], uint16(a.PCP)<<13|a.Push)
			p.Parse()
			pushed++
		case a.Pop != 0:
			d := p.Data
			if p.VLANCount == 0 || binary.BigEndian.Uint16(d[12:]) != packet.EtherTypeVLAN || p.VLANTags[0]&0xfff != a.Pop {
				p.SetDrop(packet.DropPolicy)
				foreign++
				continue
			}
			copy(d[4:16], d[:12])
			pipeline.PopFront(p, packet.VLANTagLen)
			p.Parse()
			popped++
		}
	}
	s.pushed.Add(pushed)
	s.popped.Add(popped)
	s.foreign.Add(foreign)
	s.noRoom.Add(noRoom)
}
