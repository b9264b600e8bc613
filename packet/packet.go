package packet

import (
	"strconv"
	"time"
)

// Verdict is what the pipeline does with a packet once the chain has run.
//
// The zero value is Forward: a freshly reset packet flows on to OutPort
// unless a stage decides otherwise, so stages that only ever drop or
// bounce need not touch the verdict of the packets they let through.
type Verdict uint8

const (
	Forward Verdict = iota // transmit on OutPort
	Drop                   // return the frame to the free stack; Reason says why
	Bounce                 // transmit back out of InPort
)

func (v Verdict) String() string {
	switch v {
	case Forward:
		return "forward"
	case Drop:
		return "drop"
	case Bounce:
		return "bounce"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// DropReason says why a packet was dropped. Values from DropUserBase up are
// free for stages written by users; their String is "user(N)".
type DropReason uint8

const (
	DropNone        DropReason = iota // not dropped
	DropMalformed                     // headers failed to parse
	DropPolicy                        // a rule said so
	DropNoRoute                       // no route to the destination
	DropTTL                           // TTL or hop limit expired
	DropNoPort                        // the egress port does not exist or is down
	DropFull                          // a table or a ring was full
	DropUnsupported                   // a protocol or feature we do not handle
	DropFragment                      // a fragment we cannot or will not handle
	DropOther                         // none of the above
	DropConsumed                      // a stage absorbed it (an ARP reply learned, a frame for the NF itself)
	DropNoNeighbor                    // the next hop's link-layer address is not known yet (resolution sent)
	DropMartian                       // an address no router forwards (RFC 1812 5.3.7), or one used beyond its scope (RFC 4291)
	DropTooBig                        // larger than the egress MTU (answered with fragmentation needed / packet too big where the RFCs say)

	// DropUserBase is the first reason free for user-defined stages.
	DropUserBase DropReason = 128
)

var dropReasonNames = [...]string{
	DropNone:        "none",
	DropMalformed:   "malformed",
	DropPolicy:      "policy",
	DropNoRoute:     "no-route",
	DropTTL:         "ttl",
	DropNoPort:      "no-port",
	DropFull:        "full",
	DropUnsupported: "unsupported",
	DropFragment:    "fragment",
	DropOther:       "other",
	DropConsumed:    "consumed",
	DropNoNeighbor:  "no-neighbor",
	DropMartian:     "martian",
	DropTooBig:      "too-big",
}

func (r DropReason) String() string {
	if int(r) < len(dropReasonNames) {
		return dropReasonNames[r]
	}
	if r >= DropUserBase {
		return "user(" + strconv.Itoa(int(r)) + ")"
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// MaxBurst is the capacity of a Batch: the most frames a worker moves
// through the chain in one go. Workers may use smaller bursts; this only
// bounds them. A Packet is one 64-byte cache line, so a full Batch is 16 KiB
// and stays in L1/L2 while every stage walks it; the larger the burst, the
// more packets share the per-batch costs (ring index publication, one
// interface call per stage). Parsing alone does not decide it: on the
// shared 2-core VM, go test -run XXX -bench BatchParse -benchtime=200ms
// ./packet gives 13-19 ns/packet at bursts of 16, 64 and 256 with no stable
// order between runs. The pipeline benchmark will settle the default burst;
// a capacity of 256 leaves it room.
const MaxBurst = 256

// Packet is one frame and what the pipeline knows and decided about it.
// The parsed fields are filled by Parse and are zero before it.
type Packet struct {
	Data    []byte // the frame; len(Data) is the frame length. A view into UMEM in production.
	Addr    uint64 // UMEM address of the frame; opaque to this package, set by ports
	InPort  uint16 // index of the ingress port in the chain
	OutPort uint16 // egress port index, meaningful when Verdict == Forward
	Verdict Verdict
	Reason  DropReason // why, when Verdict == Drop

	// Filled by Parse.
	Flags      Flags
	Err        ErrorKind // first problem found, ErrNone for a sound packet
	VLANCount  uint8     // 802.1Q/802.1ad tags present, 0 to 2
	L4Proto    uint8     // IP protocol after IPv6 extension headers; 0 when not IP
	VLANTags   [2]uint16 // tag control information (PCP, DEI, VLAN ID), outer tag first
	EtherType  uint16    // the ethertype after the VLAN tags
	L3Off      uint16    // offset of the header after Ethernet and VLAN tags
	L3End      uint16    // end of the L3 packet; for IP, from its length field (bytes after it are padding)
	L4Off      uint16    // offset of the L4 header (or what stopped the IPv6 walk); 0 when none
	PayloadOff uint16    // offset of the L4 payload; 0 when no L4 header was parsed
	RoutingOff uint16    // offset of the first IPv6 routing header; 0 when none
}

// Reset points p at a new frame and clears everything else, so a Batch slot
// can be reused without allocating.
func (p *Packet) Reset(data []byte, addr uint64, inPort uint16) {
	*p = Packet{Data: data, Addr: addr, InPort: inPort}
}

// SetDrop marks p to be dropped for reason.
func (p *Packet) SetDrop(reason DropReason) {
	p.Verdict = Drop
	p.Reason = reason
}

// SetForward marks p to be transmitted on port.
func (p *Packet) SetForward(port uint16) {
	p.Verdict = Forward
	p.OutPort = port
	p.Reason = DropNone
}

// SetBounce marks p to be transmitted back out of its ingress port.
func (p *Packet) SetBounce() {
	p.Verdict = Bounce
	p.Reason = DropNone
}

// Has reports whether all of f are set in p.Flags.
func (p *Packet) Has(f Flags) bool { return p.Flags&f == f }

// Batch is a fixed-capacity vector of packets, allocated once per worker and
// reused for ever. Only Packets[:Len] are live.
type Batch struct {
	Packets [MaxBurst]Packet
	Len     int
	// Now is when the batch was received, in nanoseconds on the worker's
	// clock (Unix time unless pipeline.Config.Clock says otherwise: a
	// replay runs on its capture's clock); 0 when nobody set it. Stages
	// take their time from Time, once per batch.
	Now int64
}

// Time is the batch's clock: Now, or the wall clock when it is 0 (a
// batch built by hand).
func (b *Batch) Time() int64 {
	if b.Now != 0 {
		return b.Now
	}
	return time.Now().UnixNano()
}

// Reset empties the batch. The slots keep their old contents until reused.
func (b *Batch) Reset() { b.Len = 0 }

// Slice returns the live packets, Packets[:Len].
func (b *Batch) Slice() []Packet { return b.Packets[:b.Len] }

// Full reports whether no slot is left.
func (b *Batch) Full() bool { return b.Len >= MaxBurst }

// Free returns the number of slots left.
func (b *Batch) Free() int { return MaxBurst - b.Len }

// Append resets the next free slot to the frame and returns it, or returns
// nil when the batch is full.
func (b *Batch) Append(data []byte, addr uint64, inPort uint16) *Packet {
	if b.Len >= MaxBurst {
		return nil
	}
	p := &b.Packets[b.Len]
	p.Reset(data, addr, inPort)
	b.Len++
	return p
}
