package packet

import "encoding/binary"

// IsICMPError reports whether an ICMP (v6 false) or ICMPv6 message of type
// typ is an error: a message that quotes the packet which caused it, and
// that no error may ever answer (RFC 1122 3.2.2, RFC 4443 2.4 e.1). For
// ICMP these are destination unreachable (3), source quench (4), redirect
// (5), time exceeded (11) and parameter problem (12), as Linux's
// icmp_is_err counts them; for ICMPv6 every type below 128 (RFC 4443 2.1).
func IsICMPError(typ uint8, v6 bool) bool {
	if v6 {
		return typ < 128
	}
	switch typ {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

// IsError reports whether the message is an ICMP error (IsICMPError); v6
// says whether it is ICMPv6.
func (h ICMP) IsError(v6 bool) bool { return IsICMPError(h[0], v6) }

// IPv4Fields are the header fields IPv4.Encode writes.
type IPv4Fields struct {
	TotalLen     uint16
	DontFragment bool
	TTL          uint8
	Protocol     uint8
	Src, Dst     [4]byte
}

// Encode writes a 20-byte IPv4 header without options from f over the
// first IPv4MinLen bytes of h: TOS, identification and fragment offset
// zero, the header checksum computed.
func (h IPv4) Encode(f *IPv4Fields) {
	h = h[:IPv4MinLen]
	clear(h)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:4], f.TotalLen)
	if f.DontFragment {
		binary.BigEndian.PutUint16(h[6:8], ipv4FlagDF)
	}
	h[8] = f.TTL
	h[9] = f.Protocol
	copy(h[12:16], f.Src[:])
	copy(h[16:20], f.Dst[:])
	h.SetChecksum(Checksum(h))
}

// IPv6Fields are the header fields IPv6.Encode writes.
type IPv6Fields struct {
	PayloadLen uint16
	NextHeader uint8
	HopLimit   uint8
	Src, Dst   [16]byte
}

// Encode writes a fixed IPv6 header from f over the first IPv6Len bytes of
// h, traffic class and flow label zero.
func (h IPv6) Encode(f *IPv6Fields) {
	h = h[:IPv6Len]
	clear(h[:8])
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:6], f.PayloadLen)
	h[6] = f.NextHeader
	h[7] = f.HopLimit
	copy(h[8:24], f.Src[:])
	copy(h[24:40], f.Dst[:])
}

// ICMP errors. A router or firewall answers a packet it will not deliver
// by turning the packet's own frame into the error, so the answer costs no
// frame and no copy to another buffer: the error's IP and ICMP headers go
// where the IP header was, and the start of the packet moves behind them
// as the quote. The quote is the IPv4 header and 8 bytes of what follows
// (RFC 792), or for IPv6 as much as keeps the error within the minimum MTU
// of 1280 bytes (RFC 4443 2.4 c). The TTL or hop limit is 64.

// ipv6MinMTU is the IPv6 minimum link MTU (RFC 8200 5).
const ipv6MinMTU = 1280

// icmpErrorQuote returns how much of the IP packet an error about p quotes.
func (p *Packet) icmpErrorQuote() int {
	q := int(p.L3End) - int(p.L3Off)
	if p.Flags&FlagIPv4 != 0 {
		return min(q, p.IPv4().HeaderLen()+8)
	}
	return min(q, ipv6MinMTU-IPv6Len-ICMPLen)
}

// ICMPErrorLen returns the IP length of the ICMP error ToICMPv4Error or
// ToICMPv6Error would make of p: the frame needs L3Off plus this many bytes
// of capacity. p must be IPv4 or IPv6.
func (p *Packet) ICMPErrorLen() int {
	ipLen := IPv6Len
	if p.Flags&FlagIPv4 != 0 {
		ipLen = IPv4MinLen
	}
	return ipLen + ICMPLen + p.icmpErrorQuote()
}

// ToICMPv4Error rewrites the IPv4 packet p into an ICMP error of typ and
// code about itself, from src to p's source, and parses the result. The
// Ethernet header is left for the caller to address. It reports false,
// changing nothing, when p is not IPv4 or its frame lacks room (see
// ICMPErrorLen). Whether p may be answered at all (IsICMPError, addresses,
// fragments) is the caller's to decide.
func (p *Packet) ToICMPv4Error(typ, code uint8, src [4]byte, dontFragment bool) bool {
	return p.toICMPv4Error(typ, code, 0, src, dontFragment)
}

// ToICMPv4FragNeeded is ToICMPv4Error for a destination unreachable,
// fragmentation needed and DF set (type 3 code 4), carrying the next-hop
// MTU (RFC 1191 4).
func (p *Packet) ToICMPv4FragNeeded(mtu uint16, src [4]byte) bool {
	return p.toICMPv4Error(3, 4, uint32(mtu), src, false)
}

// toICMPv4Error writes the error with rest as its second 32-bit word (the
// next-hop MTU of fragmentation needed in its low half).
func (p *Packet) toICMPv4Error(typ, code uint8, rest uint32, src [4]byte, dontFragment bool) bool {
	if p.Flags&FlagIPv4 == 0 {
		return false
	}
	dst := p.IPv4().Src()
	d, icmp, ok := p.makeICMPError(IPv4MinLen, typ, code)
	if !ok {
		return false
	}
	l3 := int(p.L3Off)
	IPv4(d[l3:]).Encode(&IPv4Fields{TotalLen: uint16(len(d) - l3), DontFragment: dontFragment,
		TTL: 64, Protocol: ProtoICMP, Src: src, Dst: dst})
	binary.BigEndian.PutUint32(icmp[4:8], rest)
	ICMP(icmp).SetChecksum(Checksum(icmp))
	p.Data = d
	p.Parse()
	return true
}

// makeICMPError lays out the ICMP error about p in p's frame: it moves
// the quote (icmpErrorQuote) behind room for an IP header of ipLen bytes
// and an ICMP header, which it writes with typ and code and the rest of
// its words zero, checksum included. It returns the frame through the
// error's end and the ICMP message; the IP header is the caller's to
// write at L3Off. It reports false, changing nothing, when the frame
// lacks room.
func (p *Packet) makeICMPError(ipLen int, typ, code uint8) (d, icmp []byte, ok bool) {
	l3, n := int(p.L3Off), p.ICMPErrorLen()
	if l3+n > cap(p.Data) {
		return nil, nil, false
	}
	d = p.Data[:l3+n]
	copy(d[l3+ipLen+ICMPLen:], d[l3:l3+n-ipLen-ICMPLen]) // copy handles the overlap
	icmp = d[l3+ipLen:]
	clear(icmp[:ICMPLen])
	icmp[0], icmp[1] = typ, code
	return d, icmp, true
}

// ToICMPv6Error is ToICMPv4Error for an IPv6 packet and an ICMPv6 error.
func (p *Packet) ToICMPv6Error(typ, code uint8, src [16]byte) bool {
	return p.toICMPv6Error(typ, code, 0, src)
}

// ICMPv6ParamProblem is the ICMPv6 parameter problem type (RFC 4443 3.4).
const ICMPv6ParamProblem = 4

// ICMPv6PacketTooBig is the ICMPv6 packet too big type (RFC 4443 3.2).
const ICMPv6PacketTooBig = 2

// ToICMPv6PacketTooBig is ToICMPv6Error for a packet too big carrying the
// MTU of the next-hop link (RFC 4443 3.2, RFC 8201).
func (p *Packet) ToICMPv6PacketTooBig(mtu uint32, src [16]byte) bool {
	return p.toICMPv6Error(ICMPv6PacketTooBig, 0, mtu, src)
}

// ToICMPv6ParamProblem is ToICMPv6Error for a parameter problem of code
// about p, whose pointer is the offset in p's IPv6 packet (from its fixed
// header) of the field in error.
func (p *Packet) ToICMPv6ParamProblem(code uint8, pointer uint32, src [16]byte) bool {
	return p.toICMPv6Error(ICMPv6ParamProblem, code, pointer, src)
}

// toICMPv6Error writes the error with rest as its second 32-bit word (the
// pointer of a parameter problem, the MTU of a packet too big).
func (p *Packet) toICMPv6Error(typ, code uint8, rest uint32, src [16]byte) bool {
	if p.Flags&FlagIPv6 == 0 {
		return false
	}
	dst := p.IPv6().Src()
	d, icmp, ok := p.makeICMPError(IPv6Len, typ, code)
	if !ok {
		return false
	}
	body := uint16(len(icmp))
	IPv6(d[p.L3Off:]).Encode(&IPv6Fields{PayloadLen: body, NextHeader: ProtoICMPv6, HopLimit: 64, Src: src, Dst: dst})
	binary.BigEndian.PutUint32(icmp[4:8], rest)
	ICMP(icmp).SetChecksum(^Sum(icmp, PseudoHeaderSumIPv6(src, dst, ProtoICMPv6, uint32(body))))
	p.Data = d
	p.Parse()
	return true
}
