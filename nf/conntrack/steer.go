package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/xnfdev/xnf/packet"
)

// MaxWorkers is the most workers a Steering spreads flows over: owners
// are bytes.
const MaxWorkers = 256

// SteeringConfig says how a Steering picks the owner of a packet.
type SteeringConfig struct {
	// Workers is the number of workers flows are spread over, 1 to
	// MaxWorkers.
	Workers int
	// NAT keys IPv4 flows by their outside endpoint, for chains that
	// translate addresses (see Steering). Without it every flow is keyed
	// by its 5-tuple, endpoints sorted.
	NAT bool
	// Outside lists the NAT's outside ports. Every other port is keyed as
	// an inside port.
	Outside []uint16
	// Except lists the destinations the NAT reaches without translation
	// (nat.Config.Except): IPv4 flows between an inside host and one of
	// them are keyed by their sorted 5-tuple, as both directions may
	// arrive on ports of the same side.
	Except []netip.Prefix
	// Forwarded lists the endpoints of the NAT's port forwards, the public
	// one and the inside target, so that a forwarded flow is keyed by its
	// outside endpoint even when its client is in Except.
	Forwarded []PortRange
}

// PortRange is an IPv4 address with a range of ports of one protocol.
type PortRange struct {
	Proto    uint8
	Addr     netip.Addr
	Min, Max uint16
}

// Steering maps each packet to the worker that owns its flow, so that
// per-worker tables see both directions of every flow: a worker hands a
// packet it does not own to its owner (pipeline.Handoff) before the chain
// runs. The owner is a hash of a key that every packet of a flow shares,
// in both directions and before and after translation, modulo the number
// of workers:
//
//   - Without NAT: the 5-tuple with its endpoints sorted, so a packet and
//     its reply (the reverse tuple) have one key.
//   - With NAT (IPv4): the flow's outside endpoint, the one a NAT never
//     rewrites: for a packet received on an outside port its source, on
//     any other port its destination. SNAT maps A:a > B:b to X:x > B:b,
//     whose reply B:b > X:x arrives outside: B:b both ways. DNAT maps
//     C:c > V:v to C:c > S:s, whose reply S:s > C:c arrives inside: C:c
//     both ways. A flow between an inside host and a destination in
//     Except is not translated and may come back through a port of the
//     same side (routing between inside networks), so it is keyed by its
//     sorted 5-tuple; so are IPv6 flows, which the NAT never translates.
//   - ICMP and ICMPv6 errors: the packet they quote, reversed (a packet
//     of the error's own direction in the flow the quote belongs to),
//     keyed as above; Track finds their flow the same way. Echo requests
//     and replies: packet.FlowKey's conventions, the identifier in place
//     of a port.
//   - Later IPv4 and IPv6 fragments, which carry no ports: the owner
//     their datagram's first fragment went to, which the receiving worker
//     remembers (the last 256 datagrams it steered), so the table's
//     fragment tracker there knows them; the receiving worker when it
//     steered no first fragment of theirs (they came before it: the
//     tracker drops them anyway). Every fragment of a datagram reaches
//     one worker: a NIC hashes fragments by their addresses alone, veth
//     by the sending CPU.
//   - Packets no table tracks (non-IP, ARP, ICMP messages that are
//     neither echo nor error, unsound packets): the worker that received
//     them, which hands nothing off.
//
// Known limits: a NIC configured to hash fragments of one datagram
// apart (none does by default) would leave later fragments where they
// land, without their first fragment's tracker entry. With NAT, a
// flow that is neither translated nor excepted and whose two directions
// both enter on outside ports (routed from outside to outside), or both on
// inside ports with a destination outside Except, has two keys.
//
// A Steering is safe for concurrent use by every worker, each calling
// with its own self (the memory of first fragments is per worker); all
// of them must use the same one (its hash is seeded at random when it is
// made).
type Steering struct {
	n         uint64
	nat       bool
	outside   []bool // by port index
	except    []prefix4
	forwarded []range4
	k         [5]uint64
	frags     []fragSteer // per worker: where its first fragments went (steer_fragment.go)
}

type prefix4 struct{ addr, mask uint32 }

type range4 struct {
	addr     uint32
	min, max uint16
	proto    uint8
}

// NewSteering makes a Steering; an unusable configuration is an error.
func NewSteering(c SteeringConfig) (*Steering, error) {
	if c.Workers < 1 || c.Workers > MaxWorkers {
		return nil, fmt.Errorf("conntrack: steering over %d workers: expected 1 to %d", c.Workers, MaxWorkers)
	}
	s := &Steering{n: uint64(c.Workers), nat: c.NAT}
	if c.Workers > 1 {
		s.frags = make([]fragSteer, c.Workers)
	}
	for i := range s.k {
		s.k[i] = rand.Uint64() | 1
	}
	for _, o := range c.Outside {
		for int(o) >= len(s.outside) {
			s.outside = append(s.outside, false)
		}
		s.outside[o] = true
	}
	for _, p := range c.Except {
		if !p.Addr().Is4() {
			continue // the NAT translates only IPv4: IPv6 is keyed symmetrically anyway
		}
		p = p.Masked()
		var mask uint32
		if p.Bits() > 0 {
			mask = ^uint32(0) << (32 - p.Bits())
		}
		s.except = append(s.except, prefix4{binary.BigEndian.Uint32(p.Addr().AsSlice()), mask})
	}
	for _, r := range c.Forwarded {
		if !r.Addr.Is4() || r.Min > r.Max {
			return nil, errors.New("conntrack: a forwarded range needs an IPv4 address and min <= max")
		}
		s.forwarded = append(s.forwarded, range4{binary.BigEndian.Uint32(r.Addr.AsSlice()), r.Min, r.Max, r.Proto})
	}
	return s, nil
}

// Workers is the number of workers flows are spread over.
func (s *Steering) Workers() int { return int(s.n) }

// Owners writes the owner of each packet of pkts (parsed, InPort set)
// into out[i], self for packets of no flow: the worker calling, which
// received them. It does not allocate. Its signature is
// pipeline.Steering's.
func (s *Steering) Owners(pkts []packet.Packet, self uint8, out []uint8) {
	out = out[:len(pkts)]
	for i := range pkts {
		out[i] = s.Owner(&pkts[i], self)
	}
}

// Owner is the owner of one packet (see Owners).
func (s *Steering) Owner(p *packet.Packet, self uint8) uint8 {
	if s.n == 1 {
		return 0
	}
	if p.Flags&packet.FlagFragment != 0 {
		return s.fragmentOwner(p, self)
	}
	return s.owner(p, self)
}

// owner is Owner by the packet's flow key.
func (s *Steering) owner(p *packet.Packet, self uint8) uint8 {
	var k packet.FlowKey
	if classify(p, &k) < kindTCP {
		return self
	}
	var h uint64
	if s.nat && p.Flags&packet.FlagIPv4 != 0 && !s.excepted(&k, p.InPort) {
		if s.isOutside(p.InPort) {
			h = s.endpoint(&k.Src, k.SrcPort, k.Proto)
		} else {
			h = s.endpoint(&k.Dst, k.DstPort, k.Proto)
		}
	} else {
		h = mum(s.endpoint(&k.Src, k.SrcPort, k.Proto)+s.endpoint(&k.Dst, k.DstPort, k.Proto), s.k[4])
	}
	return uint8((uint64(uint32(h^h>>32)) * s.n) >> 32)
}

func (s *Steering) isOutside(port uint16) bool {
	return int(port) < len(s.outside) && s.outside[port]
}

// excepted reports whether an IPv4 flow is keyed symmetrically in NAT
// mode: its far end (the destination of a packet received inside, the
// source of one received outside) is in Except, and it is not a packet
// of a port forward.
func (s *Steering) excepted(k *packet.FlowKey, port uint16) bool {
	if len(s.except) == 0 {
		return false
	}
	far, near, nearPort := &k.Dst, &k.Src, k.SrcPort
	if s.isOutside(port) {
		far, near, nearPort = &k.Src, &k.Dst, k.DstPort
	}
	a := binary.BigEndian.Uint32(far[12:16])
	hit := false
	for _, e := range s.except {
		if a&e.mask == e.addr {
			hit = true
			break
		}
	}
	if !hit {
		return false
	}
	// The near end of a forwarded flow: its public endpoint (a packet
	// received outside) or its inside target (received inside).
	n := binary.BigEndian.Uint32(near[12:16])
	for _, f := range s.forwarded {
		if f.addr == n && f.proto == k.Proto && nearPort >= f.min && nearPort <= f.max {
			return false
		}
	}
	return true
}

// endpoint hashes an address and port of a protocol.
func (s *Steering) endpoint(a *[16]byte, port uint16, proto uint8) uint64 {
	x := mum(binary.LittleEndian.Uint64(a[0:8])^s.k[0], binary.LittleEndian.Uint64(a[8:16])^s.k[1])
	return mum(x^s.k[2], (uint64(port)|uint64(proto)<<16)^s.k[3])
}
