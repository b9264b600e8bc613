package firewall

import (
	"encoding/binary"
	"net/netip"

	"github.com/xnfdev/xnf/packet"
)

// Rejected packets are answered as the Linux kernel's nftables "reject"
// answers them: a TCP segment gets a RST, anything else an ICMP (type 3)
// or ICMPv6 (type 1) port unreachable, sent from the address the packet
// was for. The answer is written over the packet's own frame (MACs
// swapped) and bounced back out of its ingress port, so it costs no
// frame and no copy to another buffer.
//
// Nothing answers a RST, an ICMP error, a later fragment, a frame sent to
// an Ethernet broadcast or multicast address, a packet from or to a
// multicast, broadcast, unspecified or loopback address (RFC 1122 3.2.2,
// RFC 4443 2.4), or a packet whose IPv4 header or TCP/UDP checksum is
// wrong (as Linux's nf_reject: the answer would be to a corrupted
// packet). Answers are rate-limited per stage (a token bucket,
// DefaultRejectRate a second and DefaultRejectBurst at once unless
// SetRejectLimit says otherwise) so that a flood of rejected packets
// cannot turn the firewall into a reflector. Unanswered packets are
// dropped.

// Default reject answer limits of a Stage.
const (
	DefaultRejectRate  = 1000
	DefaultRejectBurst = 100
)

// answer is what became of a rejected packet.
type answer uint8

const (
	answerNone    answer = iota // may not be answered, or no room: dropped
	answerLimited               // over the rate limit: dropped
	answerSent                  // rewritten into its answer and bounced
)

// rejectAnswerable reports whether p may be answered at all.
func rejectAnswerable(p *packet.Packet) bool {
	if p.Flags&packet.FlagLaterFragment != 0 || p.Data[0]&1 != 0 { // group destination MAC
		return false
	}
	switch {
	case p.Flags&packet.FlagTCP != 0:
		if p.TCP().Flags()&packet.TCPRst != 0 || !p.L4ChecksumValid() {
			return false
		}
	case p.Flags&packet.FlagUDP != 0:
		if !p.L4ChecksumValid() {
			return false
		}
	case p.Flags&(packet.FlagICMP|packet.FlagICMPv6) != 0:
		if p.ICMP().IsError(p.Flags&packet.FlagICMPv6 != 0) {
			return false
		}
	}
	if p.Flags&packet.FlagIPv4 != 0 {
		h := p.IPv4()
		ok := func(a [4]byte) bool { return a[0] != 0 && a[0] != 127 && a[0] < 224 }
		return ok(h.Src()) && ok(h.Dst()) && h.ChecksumValid()
	}
	h := p.IPv6()
	ok := func(a [16]byte) bool {
		na := netip.AddrFrom16(a)
		return a[0] != 0xff && !na.IsUnspecified() && !na.IsLoopback()
	}
	return ok(h.Src()) && ok(h.Dst())
}

// rejectFits reports whether p's frame has room for its answer.
func rejectFits(p *packet.Packet) bool {
	return int(p.L3Off)+answerLen(p) <= cap(p.Data)
}

// answerLen is the L3 length of p's answer.
func answerLen(p *packet.Packet) int {
	if p.Flags&packet.FlagTCP == 0 {
		return p.ICMPErrorLen()
	}
	if p.Flags&packet.FlagIPv4 != 0 {
		return packet.IPv4MinLen + packet.TCPMinLen
	}
	return packet.IPv6Len + packet.TCPMinLen
}

// rejectAnswer rewrites p into its answer and bounces it. The frame must
// have room for it (rejectFits).
func rejectAnswer(p *packet.Packet) {
	v4 := p.Flags&packet.FlagIPv4 != 0
	switch {
	case p.Flags&packet.FlagTCP != 0:
		rejectTCP(p, v4)
	case v4:
		h := p.IPv4()
		p.ToICMPv4Error(3, 3, h.Dst(), true) // destination unreachable, port unreachable
	default:
		h := p.IPv6()
		p.ToICMPv6Error(1, 4, h.Dst()) // destination unreachable, port unreachable
	}
	e := packet.Ethernet(p.Data)
	s, d := e.Src(), e.Dst()
	e.SetSrc(d)
	e.SetDst(s)
	p.SetBounce()
}

// rejectTCP rewrites the TCP segment p into a RST from its destination to
// its source and parses the result.
func rejectTCP(p *packet.Packet, v4 bool) {
	l3 := int(p.L3Off)
	t := p.TCP()
	sport, dport := t.SrcPort(), t.DstPort()
	flags := t.Flags()
	seg := uint32(int(p.L3End) - int(p.L4Off) - t.HeaderLen())
	if flags&packet.TCPSyn != 0 {
		seg++
	}
	if flags&packet.TCPFin != 0 {
		seg++
	}
	// RFC 9293 3.10.7.1: answer an ACK with its ack number as our
	// sequence; anything else with an ACK of what it carried.
	var seq, ack uint32
	rflags := uint8(packet.TCPRst)
	if flags&packet.TCPAck != 0 {
		seq = t.Ack()
	} else {
		ack = t.Seq() + seg
		rflags |= packet.TCPAck
	}
	d := p.Data[:l3+answerLen(p)]
	var pseudo uint16
	var tcp []byte
	if v4 {
		h := p.IPv4()
		src, dst := h.Dst(), h.Src()
		packet.IPv4(d[l3:]).Encode(&packet.IPv4Fields{TotalLen: packet.IPv4MinLen + packet.TCPMinLen,
			DontFragment: true, TTL: 64, Protocol: packet.ProtoTCP, Src: src, Dst: dst})
		pseudo = packet.PseudoHeaderSumIPv4(src, dst, packet.ProtoTCP, packet.TCPMinLen)
		tcp = d[l3+packet.IPv4MinLen:]
	} else {
		h := p.IPv6()
		src, dst := h.Dst(), h.Src()
		packet.IPv6(d[l3:]).Encode(&packet.IPv6Fields{PayloadLen: packet.TCPMinLen,
			NextHeader: packet.ProtoTCP, HopLimit: 64, Src: src, Dst: dst})
		pseudo = packet.PseudoHeaderSumIPv6(src, dst, packet.ProtoTCP, packet.TCPMinLen)
		tcp = d[l3+packet.IPv6Len:]
	}
	tcp = tcp[:packet.TCPMinLen]
	clear(tcp)
	binary.BigEndian.PutUint16(tcp[0:2], dport)
	binary.BigEndian.PutUint16(tcp[2:4], sport)
	binary.BigEndian.PutUint32(tcp[4:8], seq)
	binary.BigEndian.PutUint32(tcp[8:12], ack)
	tcp[12] = 5 << 4
	tcp[13] = rflags
	packet.TCP(tcp).SetChecksum(^packet.Sum(tcp, pseudo))
	p.Data = d
	p.Parse()
}
