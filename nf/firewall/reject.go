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

// rejectLimiter is a token bucket refilled once per batch.
type rejectLimiter struct {
	rate, burst float64
	tokens      float64
	last        int64
}

func (l *rejectLimiter) refill(now int64) {
	if l.last != 0 && now > l.last {
		l.tokens = min(l.burst, l.tokens+l.rate*float64(now-l.last)/1e9)
	}
	l.last = now
}

func (l *rejectLimiter) take() bool {
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	return false
}

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
	case p.Flags&packet.FlagICMP != 0:
		switch p.ICMP().Type() {
		case 3, 4, 5, 11, 12: // errors
			return false
		}
	case p.Flags&packet.FlagICMPv6 != 0:
		if p.ICMP().Type() < 128 { // errors
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
	l3 := int(p.L3Off)
	ipLen := 40
	if p.Flags&packet.FlagIPv4 != 0 {
		ipLen = 20
	}
	if p.Flags&packet.FlagTCP != 0 {
		return ipLen + 20
	}
	return ipLen + 8 + quoteLen(p, l3)
}

// quoteLen is how much of p an ICMP answer quotes: its IPv4 header and 8
// bytes (RFC 792), or as much as keeps the answer within the IPv6
// minimum MTU (RFC 4443).
func quoteLen(p *packet.Packet, l3 int) int {
	q := int(p.L3End) - l3
	if p.Flags&packet.FlagIPv4 != 0 {
		return min(q, p.IPv4().HeaderLen()+8)
	}
	return min(q, 1280-40-8)
}

// rejectAnswer rewrites p into its answer and bounces it. The frame must
// have room for it (rejectFits).
func rejectAnswer(p *packet.Packet) {
	l3 := int(p.L3Off)
	v4 := p.Flags&packet.FlagIPv4 != 0
	ipLen := 40
	if v4 {
		ipLen = 20
	}
	var src, dst [16]byte // the answer's
	if v4 {
		h := p.IPv4()
		s, d := h.Src(), h.Dst()
		copy(src[12:], d[:])
		copy(dst[12:], s[:])
	} else {
		h := p.IPv6()
		src, dst = h.Dst(), h.Src()
	}

	n := answerLen(p)
	if p.Flags&packet.FlagTCP != 0 {
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
		d := p.Data[:l3+n]
		tcp := d[l3+ipLen:]
		clear(tcp[:20])
		binary.BigEndian.PutUint16(tcp[0:2], dport)
		binary.BigEndian.PutUint16(tcp[2:4], sport)
		binary.BigEndian.PutUint32(tcp[4:8], seq)
		binary.BigEndian.PutUint32(tcp[8:12], ack)
		tcp[12] = 5 << 4
		tcp[13] = rflags
		writeIP(d[l3:], v4, packet.ProtoTCP, 20, src, dst)
		var pseudo uint16
		if v4 {
			pseudo = packet.PseudoHeaderSumIPv4([4]byte(src[12:]), [4]byte(dst[12:]), packet.ProtoTCP, 20)
		} else {
			pseudo = packet.PseudoHeaderSumIPv6(src, dst, packet.ProtoTCP, 20)
		}
		binary.BigEndian.PutUint16(tcp[16:18], ^packet.Sum(tcp[:20], pseudo))
		p.Data = d
	} else {
		q := quoteLen(p, l3)
		d := p.Data[:l3+n]
		copy(d[l3+ipLen+8:], d[l3:l3+q]) // copy handles the overlap
		icmp := d[l3+ipLen : l3+n]
		clear(icmp[:8])
		if v4 {
			icmp[0], icmp[1] = 3, 3 // destination unreachable, port unreachable
			writeIP(d[l3:], true, packet.ProtoICMP, 8+q, src, dst)
			binary.BigEndian.PutUint16(icmp[2:4], packet.Checksum(icmp))
		} else {
			icmp[0], icmp[1] = 1, 4 // destination unreachable, port unreachable
			writeIP(d[l3:], false, packet.ProtoICMPv6, 8+q, src, dst)
			pseudo := packet.PseudoHeaderSumIPv6(src, dst, packet.ProtoICMPv6, uint32(8+q))
			binary.BigEndian.PutUint16(icmp[2:4], ^packet.Sum(icmp, pseudo))
		}
		p.Data = d
	}
	e := packet.Ethernet(p.Data)
	s, d := e.Src(), e.Dst()
	e.SetSrc(d)
	e.SetDst(s)
	p.Parse()
	p.SetBounce()
}

// writeIP writes a fixed IPv4 or IPv6 header at d (addresses in the low
// 4 bytes of src and dst for IPv4), TTL or hop limit 64.
func writeIP(d []byte, v4 bool, proto uint8, payload int, src, dst [16]byte) {
	if v4 {
		h := d[:20]
		clear(h)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:4], uint16(20+payload))
		binary.BigEndian.PutUint16(h[6:8], 0x4000) // DF
		h[8] = 64
		h[9] = proto
		copy(h[12:16], src[12:])
		copy(h[16:20], dst[12:])
		binary.BigEndian.PutUint16(h[10:12], packet.Checksum(h))
		return
	}
	h := d[:40]
	clear(h[:8])
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:6], uint16(payload))
	h[6] = proto
	h[7] = 64
	copy(h[8:24], src[:])
	copy(h[24:40], dst[:])
}
