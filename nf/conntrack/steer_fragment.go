package conntrack

import (
	"encoding/binary"

	"github.com/xnfdev/xnf/packet"
)

// Steering fragments. A later fragment carries no ports, so no flow key
// names its owner; its first fragment's does. A NIC hashes every
// fragment of a datagram by its addresses alone (the ports are not in
// all of them) and veth picks the queue by the sending CPU, so all the
// fragments of a datagram reach one worker, which steers them all. That
// worker remembers, for each first fragment it steered, the owner it
// chose, and sends the datagram's later fragments the same way: there
// the table's fragment tracker knows the datagram.

// fragSteerSlots is the size of each worker's memory of first fragments:
// direct-mapped by a seeded hash of the datagram's key, so a newer
// datagram takes an older one's slot. Fragments of one datagram follow
// one another within microseconds; 256 datagrams in flight at once on
// one worker is far beyond what they need.
const fragSteerSlots = 256

type fragSteer struct {
	slot [fragSteerSlots]struct {
		key   uint64 // hash of the datagram's key; 0: empty
		owner uint8
	}
	_ [64]byte // no false sharing with the next worker's
}

// fragmentOwner steers an IP fragment: a first fragment by its flow, and
// remembered; a later one to where its first fragment went, or, unknown,
// the receiving worker (self). Only worker self's memory is touched.
func (s *Steering) fragmentOwner(p *packet.Packet, self uint8) uint8 {
	fr, ok := p.Fragment()
	if !ok || fr.Offset == 0 && !fr.More || int(self) >= len(s.frags) {
		return s.owner(p, self) // an atomic fragment is a packet; a caller that is no worker remembers nothing
	}
	var k packet.FlowKey
	addrKey(p, &k)
	h := mum(mum(binary.LittleEndian.Uint64(k.Src[0:8])^s.k[0], binary.LittleEndian.Uint64(k.Src[8:16])^s.k[1])^
		mum(binary.LittleEndian.Uint64(k.Dst[0:8])^s.k[2], binary.LittleEndian.Uint64(k.Dst[8:16])^s.k[3]),
		(uint64(fr.ID)<<32|uint64(fr.Next)<<16|uint64(p.InPort))^s.k[4]) | 1
	e := &s.frags[self].slot[(h>>32)%fragSteerSlots]
	if fr.Offset == 0 {
		o := s.owner(p, self)
		e.key, e.owner = h, o
		return o
	}
	if e.key == h {
		return e.owner
	}
	return self
}
