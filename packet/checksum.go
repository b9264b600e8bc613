package packet

import (
	"encoding/binary"
	"math/bits"
)

// Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//
// Sum returns the ones'-complement sum, folded to 16 bits and not
// complemented, so sums of pieces can be chained or combined; a checksum
// field carries the complement of the sum (Checksum). Because 2^16 is 1
// modulo 2^16-1, summing big-endian 64-bit words and folding at the end
// gives the same result as summing 16-bit words, four times fewer additions.

// Sum returns the ones'-complement sum of b added to initial. An odd final
// byte counts as the high byte of a word padded with zero. To chain sums over
// consecutive pieces, every piece but the last must have an even length.
func Sum(b []byte, initial uint16) uint16 {
	acc := uint64(initial)
	var carry uint64
	for len(b) >= 32 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[8:16]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[16:24]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[24:32]), carry)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), carry)
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, carry = bits.Add64(acc, uint64(binary.BigEndian.Uint32(b[0:4])), carry)
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, carry = bits.Add64(acc, uint64(binary.BigEndian.Uint16(b[0:2])), carry)
		b = b[2:]
	}
	if len(b) == 1 {
		acc, carry = bits.Add64(acc, uint64(b[0])<<8, carry)
	}
	// End-around carry: after adding the last carry, acc is 0 whenever a new
	// carry comes out, so adding that one cannot overflow again.
	acc, carry = bits.Add64(acc, 0, carry)
	acc += carry
	return fold64(acc)
}

func fold64(acc uint64) uint16 {
	s := acc>>32 + acc&0xffffffff // < 2^33
	s = s>>32 + s&0xffffffff      // < 2^32
	s = s>>16 + s&0xffff          // < 2^17
	s = s>>16 + s&0xffff          // < 2^16 + 1
	s = s>>16 + s&0xffff
	return uint16(s)
}

// Combine returns the ones'-complement sum of two sums.
func Combine(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s>>16 + s&0xffff)
}

// Checksum returns the Internet checksum of b: the complement of its sum.
func Checksum(b []byte) uint16 { return ^Sum(b, 0) }

// ChecksumUpdate16 returns checksum updated for one 16-bit word (at an even
// offset of the covered data) changed from "from" to "to": RFC 1624 eqn. 3,
// HC' = ~(~HC + ~m + m').
func ChecksumUpdate16(checksum, from, to uint16) uint16 {
	return ^Combine(Combine(^checksum, ^from), to)
}

// ChecksumUpdate32 is ChecksumUpdate16 for a 32-bit word such as an IPv4
// address.
func ChecksumUpdate32(checksum uint16, from, to uint32) uint16 {
	s := uint64(^checksum) + uint64(^from) + uint64(to)
	return ^fold64(s)
}

// ChecksumUpdateBytes returns checksum updated for the bytes from replaced by
// to. Both must have the same length and start at an even offset of the
// covered data.
func ChecksumUpdateBytes(checksum uint16, from, to []byte) uint16 {
	return ^Combine(Combine(^checksum, ^Sum(from, 0)), Sum(to, 0))
}

// PseudoHeaderSumIPv4 returns the sum of the IPv4 pseudo-header (RFC 793,
// RFC 768): source, destination, protocol and the L4 length.
func PseudoHeaderSumIPv4(src, dst [4]byte, proto uint8, length uint16) uint16 {
	s := uint64(binary.BigEndian.Uint32(src[:])) + uint64(binary.BigEndian.Uint32(dst[:])) +
		uint64(proto) + uint64(length)
	return fold64(s)
}

// PseudoHeaderSumIPv6 returns the sum of the IPv6 pseudo-header (RFC 8200
// section 8.1): source, destination, upper-layer length and next header.
func PseudoHeaderSumIPv6(src, dst [16]byte, proto uint8, length uint32) uint16 {
	var acc, carry uint64
	acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(src[0:8]), carry)
	acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(src[8:16]), carry)
	acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(dst[0:8]), carry)
	acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(dst[8:16]), carry)
	acc, carry = bits.Add64(acc, uint64(length)+uint64(proto), carry)
	acc, carry = bits.Add64(acc, 0, carry)
	acc += carry
	return fold64(acc)
}

// l4Checksum locates the L4 checksum: the covered bytes, the offset of the
// checksum field in them, and the pseudo-header sum. ok is false when there
// is no TCP, UDP, ICMP or ICMPv6 header, or for a fragment, whose checksum
// covers the whole datagram.
func (p *Packet) l4Checksum() (seg []byte, fieldOff int, pseudo uint16, ok bool) {
	if p.Flags&FlagFragment != 0 || p.Flags&(FlagTCP|FlagUDP|FlagICMP|FlagICMPv6) == 0 {
		return nil, 0, 0, false
	}
	seg = p.Data[p.L4Off:p.L3End]
	fieldOff = p.l4ChecksumField()
	if p.Flags&FlagUDP != 0 {
		// Parse checked the length, but a stage may have rewritten it since.
		length := int(be16(seg[4:6]))
		if length < UDPLen || length > len(seg) {
			return nil, 0, 0, false
		}
		seg = seg[:length]
	}
	if p.Flags&FlagICMP != 0 {
		return seg, fieldOff, 0, true
	}
	if p.Flags&FlagIPv4 != 0 {
		ip := IPv4(p.Data[p.L3Off:p.L3End])
		pseudo = PseudoHeaderSumIPv4(ip.Src(), ip.Dst(), p.L4Proto, uint16(len(seg)))
	} else {
		ip := IPv6(p.Data[p.L3Off:p.L3End])
		pseudo = PseudoHeaderSumIPv6(ip.Src(), ip.Dst(), p.L4Proto, uint32(len(seg)))
	}
	return seg, fieldOff, pseudo, true
}

// ComputeL4Checksum returns the checksum the TCP, UDP, ICMP or ICMPv6 header
// should carry (a computed zero is returned as 0xffff for UDP, whose zero
// means "no checksum"). ok is false when there is no such header or for a
// fragment. With an IPv6 routing header the pseudo-header uses the
// destination in the IPv6 header, not the final one.
func (p *Packet) ComputeL4Checksum() (checksum uint16, ok bool) {
	seg, fieldOff, pseudo, ok := p.l4Checksum()
	if !ok {
		return 0, false
	}
	checksum = ^Sum(seg[fieldOff+2:], Sum(seg[:fieldOff], pseudo))
	if checksum == 0 && p.Flags&FlagUDP != 0 {
		checksum = 0xffff
	}
	return checksum, true
}

// SetL4Checksum computes the L4 checksum and writes it, and reports whether
// there was one to write.
func (p *Packet) SetL4Checksum() bool {
	c, ok := p.ComputeL4Checksum()
	if ok {
		binary.BigEndian.PutUint16(p.Data[int(p.L4Off)+p.l4ChecksumField():], c)
	}
	return ok
}

// L4ChecksumValid reports whether the L4 checksum is right. A zero UDP
// checksum over IPv4 means none and counts as valid. It is false when
// ComputeL4Checksum's ok would be.
func (p *Packet) L4ChecksumValid() bool {
	seg, fieldOff, pseudo, ok := p.l4Checksum()
	if !ok {
		return false
	}
	if p.Flags&(FlagUDP|FlagIPv4) == FlagUDP|FlagIPv4 && be16(seg[fieldOff:]) == 0 {
		return true
	}
	return Sum(seg, pseudo) == 0xffff
}

// l4ChecksumField returns the offset of the checksum field in the L4 header.
func (p *Packet) l4ChecksumField() int {
	switch {
	case p.Flags&FlagTCP != 0:
		return 16
	case p.Flags&FlagUDP != 0:
		return 6
	}
	return 2
}
