package conntrack

import (
	"errors"
	"net/netip"
	"strconv"
	"time"
	"unsafe"

	"github.com/xnfdev/xnf/packet"
)

// State is what the table concluded about one packet, the thing a firewall
// matches. The values are single bits equal to nf/firewall's State
// constants (new 1, established 2, related 4, invalid 8, 0 for a packet that
// was not tracked), so firewall.State(r.State) is the whole conversion.
type State uint8

const (
	// StateUntracked: the table did not look at the packet (not IP, a
	// later fragment whose datagram has no flow, an ICMP message that is
	// neither echo nor error) or it was dropped before the table saw it.
	// No entry.
	StateUntracked State = 0
	// StateNew: the packet travels in the original direction of a flow
	// that has not yet seen a reply, the first packet included.
	StateNew State = 1 << 0
	// StateEstablished: the flow has seen traffic in both directions, or
	// the packet is itself in the reply direction.
	StateEstablished State = 1 << 1
	// StateRelated: an ICMP or ICMPv6 error (destination unreachable, time
	// exceeded, packet too big, parameter problem; for IPv4 also source
	// quench and redirect) quoting a packet of a tracked flow.
	StateRelated State = 1 << 2
	// StateInvalid: a packet that must not pass as part of a flow: it did
	// not parse cleanly, has a TCP flag combination no stack sends, cannot
	// start a flow (a TCP segment other than SYN, an echo reply, an ICMP
	// error, a packet from an address and port to themselves) and matches
	// none, breaks the TCP state machine of its flow,
	// or would start a flow while the table is full and may not evict.
	StateInvalid State = 1 << 3
)

func (s State) String() string {
	switch s {
	case StateUntracked:
		return "untracked"
	case StateNew:
		return "new"
	case StateEstablished:
		return "established"
	case StateRelated:
		return "related"
	case StateInvalid:
		return "invalid"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Dir is the direction of a packet relative to its flow.
type Dir uint8

const (
	// Original is the direction of the packet that created the flow, the
	// one its Orig tuple describes.
	Original Dir = 0
	// Reply is the other direction, described by the Reply tuple.
	Reply Dir = 1
)

func (d Dir) String() string {
	switch d {
	case Original:
		return "original"
	case Reply:
		return "reply"
	}
	return "dir(" + strconv.Itoa(int(d)) + ")"
}

// TCPState is the state of a TCP flow's compact state machine, after Linux's
// nf_conntrack_proto_tcp without its sequence-number window checks. Each
// state has its own timeout (Timeouts).
type TCPState uint8

const (
	TCPNone        TCPState = iota // not a TCP flow
	TCPSynSent                     // SYN seen in the original direction
	TCPSynRecv                     // SYN-ACK seen in reply
	TCPEstablished                 // handshake completed (or picked up mid-stream)
	TCPFinWait                     // FIN seen in one direction
	TCPCloseWait                   // that FIN acknowledged by the other side
	TCPLastAck                     // FIN seen in both directions
	TCPTimeWait                    // last FIN acknowledged
	TCPClose                       // RST seen
	numTCPStates
)

var tcpStateNames = [numTCPStates]string{"none", "syn_sent", "syn_recv", "established", "fin_wait", "close_wait", "last_ack", "time_wait", "close"}

func (s TCPState) String() string {
	if s < numTCPStates {
		return tcpStateNames[s]
	}
	return "tcpstate(" + strconv.Itoa(int(s)) + ")"
}

// FullPolicy says what happens to a new flow when the table holds MaxFlows
// entries and none of the ones examined has expired.
type FullPolicy uint8

const (
	// Refuse leaves the table alone: the packet is StateInvalid, has no
	// entry, and Counters.Full counts it (Linux drops such packets).
	Refuse FullPolicy = iota
	// EvictOldest frees one live entry to make room; Counters.Evicted
	// counts it. The victim is, among Config.EvictScan entries examined
	// from the clock hand on, the one whose timeout falls first, never
	// one already in a result of the same TrackBatch (so those results
	// stay valid). If all were, the flow is refused as under Refuse.
	EvictOldest
)

// Timeouts are idle timeouts: a flow expires when this long has passed
// since the last packet that moved it. Zero fields take the value of
// DefaultTimeouts.
type Timeouts struct {
	TCPSynSent     time.Duration
	TCPSynRecv     time.Duration
	TCPEstablished time.Duration
	TCPFinWait     time.Duration
	TCPCloseWait   time.Duration
	TCPLastAck     time.Duration
	TCPTimeWait    time.Duration
	TCPClose       time.Duration
	UDP            time.Duration // no reply seen yet
	UDPStream      time.Duration // replied
	ICMP           time.Duration // echo
	Generic        time.Duration // any other IP protocol, tracked by addresses only
}

// DefaultTimeouts are Linux's (net.netfilter.nf_conntrack_*_timeout) but for
// TCPEstablished, which is 2h15m instead of 5 days: long enough that a
// connection kept alive only by TCP keepalives (first probe after 2h idle,
// then up to 9 probes 75s apart) survives, short enough that flows whose
// end we missed leave the table the same day.
var DefaultTimeouts = Timeouts{
	TCPSynSent:     120 * time.Second,
	TCPSynRecv:     60 * time.Second,
	TCPEstablished: 2*time.Hour + 15*time.Minute,
	TCPFinWait:     120 * time.Second,
	TCPCloseWait:   60 * time.Second,
	TCPLastAck:     30 * time.Second,
	TCPTimeWait:    120 * time.Second,
	TCPClose:       10 * time.Second,
	UDP:            30 * time.Second,
	UDPStream:      120 * time.Second,
	ICMP:           30 * time.Second,
	Generic:        600 * time.Second,
}

// Config sizes and tunes a Table. The zero value is usable: every zero field
// takes its documented default.
type Config struct {
	// MaxFlows bounds the number of entries (default 65536, at most
	// 1<<30). Memory is reserved for all of them at New; see
	// Table.MemoryBytes.
	MaxFlows int
	// Full says what to do with a new flow when the table is full
	// (default Refuse).
	Full FullPolicy
	// EvictScan is how many entries a new flow examines, from the clock
	// hand on, when the table is full: the expired ones among them are
	// freed, and under EvictOldest one victim is chosen from them
	// (default 8).
	EvictScan int
	// ExpireScan is how many slab entries the clock hand visits per
	// tracked packet, freeing those that have expired (default 2). The
	// hand goes round the whole table every MaxFlows/ExpireScan packets;
	// entries that expired in between are invisible anyway (lookups treat
	// them as absent and free them when they meet them).
	ExpireScan int
	// TCPPickup lets a TCP segment other than SYN (an ACK without
	// SYN, FIN or RST) start a flow in TCPEstablished, as Linux's
	// nf_conntrack_tcp_loose does, so connections that predate the table
	// survive a restart. Off by default: without it such a segment is
	// StateInvalid.
	TCPPickup bool
	// Timeouts; zero fields take DefaultTimeouts.
	Timeouts Timeouts
	// Fragments sizes the table's fragment tracker (see the package doc,
	// "Fragments"); Datagrams -1 turns it off.
	Fragments FragmentConfig
}

// Counters are a table's totals since New.
type Counters struct {
	Found     uint64 // packets that matched a live entry and moved it (New or Established)
	New       uint64 // entries created by Track
	Created   uint64 // entries created by Create
	Related   uint64 // ICMP errors that quoted a tracked flow
	Invalid   uint64 // packets found StateInvalid (Full ones included)
	Untracked uint64 // packets the table did not look at
	Expired   uint64 // entries freed because their timeout had passed
	Evicted   uint64 // live entries freed to make room (EvictOldest)
	Full      uint64 // new flows refused because the table was full
	Deleted   uint64 // entries freed by Delete
}

// Result is what Track says about one packet.
type Result struct {
	// Flow is the packet's entry: for New, Established and Related
	// always, for Invalid when the packet matched an entry whose state
	// machine rejected it; nil otherwise. It points into the table's slab
	// and stays valid until the next call on the table that can free an
	// entry (Track, TrackBatch, Expire, Create, SetReply, Delete); within
	// one TrackBatch every result stays valid until the batch's end (but a
	// SYN that reopens a closed TCP flow replaces that flow, in its slot).
	// Later the slot may hold another flow.
	Flow  *Flow
	State State
	// Dir is the packet's direction in Flow. For Related it is the
	// direction of the ICMP error itself: Reply for an error sent back to
	// the flow's originator about its own packet.
	Dir Dir
	// Fragment is what the table's fragment tracker made of the packet
	// (FragmentNone for a packet that is not a fragment); a stage drops
	// the packet when Fragment.Drop() (packet.DropFragment). A later
	// fragment that followed its first has that fragment's flow, if it
	// made one. LookupPacket sets it for later fragments only.
	Fragment FragmentVerdict
}

// Errors of Create and SetReply.
var (
	ErrExists   = errors.New("conntrack: a flow with that tuple exists")
	ErrFull     = errors.New("conntrack: table full")
	ErrMismatch = errors.New("conntrack: original and reply tuples of different protocols or families")
)

// Flow is one entry: a flow's two tuples, its protocol state and its
// timer. A *Flow points into the table's slab (see Result for how long it
// stays valid). Only User may be written; the tuples change through
// Table.SetReply.
//
// Layout: one cache line per direction. The first holds the original tuple
// and everything a packet updates (state, timer), so a packet in the
// original direction touches one line; the second holds the reply tuple
// and User.
type Flow struct {
	orig    tuple
	tcp     TCPState
	status  uint8
	gen     uint16 // Table.gen of the last Track or TrackBatch that returned it
	expires int64  // now value at which the flow expires
	reply   tuple
	_       [4]byte
	// User is a slot for the stage that owns the flow, zero when the
	// entry is created. NAT may keep its bookkeeping here (which rule
	// translated the flow); the translation itself needs no slot: it is
	// the difference between the tuples (see the package doc).
	User uint64
}

// tuple is one direction of a flow: its key and its place in the index.
type tuple struct {
	key  packet.FlowKey
	hash uint32 // hasher.sum(&key)
	next uint32 // next reference of key's chain (0: end); orig.next links the free list
	pkts uint32 // packets accepted in this direction (wrapping)
}

// tupleOff is the distance from a Flow's original tuple to its reply tuple.
const tupleOff = unsafe.Offsetof(Flow{}.reply)

// tuple returns the tuple of direction d, without a branch.
func (f *Flow) tuple(d Dir) *tuple {
	return (*tuple)(unsafe.Add(unsafe.Pointer(f), uintptr(d&1)*tupleOff))
}

const (
	stLive      = 1 << iota // holds a flow (else on the free list or never used)
	stReplied               // a packet in the reply direction was accepted
	stFinOrig               // FIN seen in the original direction
	stFinReply              // FIN seen in the reply direction
	stLastFinRe             // of the two FINs, the reply's came second
)

// Orig returns the original tuple: the first packet's 5-tuple.
func (f *Flow) Orig() packet.FlowKey { return f.orig.key }

// Reply returns the reply tuple: the 5-tuple of packets in the reply
// direction as they reach the table. It is Orig().Reverse() unless the flow
// was made by Create or changed by SetReply (NAT).
func (f *Flow) Reply() packet.FlowKey { return f.reply.key }

// Key returns the tuple of direction d.
func (f *Flow) Key(d Dir) packet.FlowKey { return f.tuple(d).key }

// Proto returns the IP protocol of the flow.
func (f *Flow) Proto() uint8 { return f.orig.key.Proto }

// TCPState returns the TCP state, TCPNone for other protocols.
func (f *Flow) TCPState() TCPState { return f.tcp }

// Replied reports whether a packet in the reply direction has been seen.
func (f *Flow) Replied() bool { return f.status&stReplied != 0 }

// Expires returns the time (on the caller's clock, see Table.Track) at
// which the flow expires unless another packet moves it.
func (f *Flow) Expires() int64 { return f.expires }

// Packets returns the packets accepted in direction d; the count wraps at
// 2^32.
func (f *Flow) Packets(d Dir) uint32 { return f.tuple(d).pkts }

// String formats the flow for logs and tools; it allocates.
func (f *Flow) String() string {
	o, r := f.orig.key, f.reply.key
	s := protoName(o.Proto) + " " + endpoints(o)
	if r != o.Reverse() {
		s += " reply " + endpoints(r)
	}
	if f.tcp != TCPNone {
		s += " " + f.tcp.String()
	}
	if !f.Replied() {
		s += " unreplied"
	}
	return s
}

func endpoints(k packet.FlowKey) string {
	return netip.AddrPortFrom(k.SrcAddr(), k.SrcPort).String() + " > " + netip.AddrPortFrom(k.DstAddr(), k.DstPort).String()
}

func protoName(p uint8) string {
	switch p {
	case packet.ProtoTCP:
		return "tcp"
	case packet.ProtoUDP:
		return "udp"
	case packet.ProtoICMP:
		return "icmp"
	case packet.ProtoICMPv6:
		return "icmpv6"
	}
	return "proto " + strconv.Itoa(int(p))
}
