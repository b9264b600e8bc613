package nat

import (
	"encoding/binary"

	"github.com/xnfdev/xnf/packet"
)

// fragEntry remembers how the first fragment of one IPv4 datagram was
// translated: later fragments carry no ports, so their flow is unknown to
// conntrack, but they share the first fragment's addresses, protocol and
// IP identification, and need only its address translation (the ports
// and the L4 checksum live in the first fragment).
type fragEntry struct {
	src, dst       [4]byte // as the fragments arrive
	newSrc, newDst [4]byte
	expires        int64
	id             uint16
	proto          uint8
	inPort         uint16
}

func fragHash(src, dst [4]byte, id uint16, proto uint8) uint32 {
	h := binary.BigEndian.Uint32(src[:])*0x9e3779b1 ^ binary.BigEndian.Uint32(dst[:])*0x85ebca6b ^
		(uint32(id)<<8|uint32(proto))*0xc2b2ae35
	return h ^ h>>15
}

// rememberFragment records a first fragment's translation (src, dst as it
// arrived; the packet as it leaves). A later first fragment hashing to the
// same slot replaces it.
func (s *Stage) rememberFragment(p *packet.Packet, src, dst [4]byte, now int64) {
	if s.frags == nil || p.Flags&packet.FlagLaterFragment != 0 {
		return
	}
	ip := p.IPv4()
	e := &s.frags[fragHash(src, dst, ip.ID(), ip.Protocol())&s.fragMask]
	*e = fragEntry{src: src, dst: dst, newSrc: ip.Src(), newDst: ip.Dst(),
		expires: now + s.fragTTL, id: ip.ID(), proto: ip.Protocol(), inPort: p.InPort}
}

// laterFragment translates a fragment other than the first the way its
// datagram's first fragment was, or drops it (DropFragment) when the first
// fragment was not seen (it arrived later, or its slot was reused).
func (s *Stage) laterFragment(p *packet.Packet, now int64) {
	ip := p.IPv4()
	src, dst, id, proto := ip.Src(), ip.Dst(), ip.ID(), ip.Protocol()
	if s.frags != nil {
		e := &s.frags[fragHash(src, dst, id, proto)&s.fragMask]
		if e.expires > now && e.src == src && e.dst == dst && e.id == id && e.proto == proto && e.inPort == p.InPort {
			if e.newSrc != src {
				p.SetIPv4Src(e.newSrc)
			}
			if e.newDst != dst {
				p.SetIPv4Dst(e.newDst)
			}
			s.local[cFragmentsKept]++
			return
		}
	}
	p.SetDrop(packet.DropFragment)
	s.local[cFragmentsDropped]++
}
