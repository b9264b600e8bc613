package packet

import "encoding/binary"

// Rewrite helpers. Each changes one field in place and keeps the IPv4 header
// checksum and the L4 checksum right with RFC 1624 updates, so the cost does
// not grow with the packet. They report false, changing nothing, when the
// header they need is absent. The L4 checksum is updated whenever a TCP, UDP,
// ICMP or ICMPv6 header was parsed, first fragments included: its checksum
// covers the whole datagram, and an incremental update stays right for it.
// A zero UDP checksum means "none" and stays zero; an update that computes
// zero writes 0xffff.

// SetSrcMAC writes the source MAC address.
func (p *Packet) SetSrcMAC(mac [6]byte) bool {
	if p.Flags&FlagEthernet == 0 {
		return false
	}
	copy(p.Data[6:12], mac[:])
	return true
}

// SetDstMAC writes the destination MAC address.
func (p *Packet) SetDstMAC(mac [6]byte) bool {
	if p.Flags&FlagEthernet == 0 {
		return false
	}
	copy(p.Data[0:6], mac[:])
	return true
}

// SetIPv4Src writes the IPv4 source address.
func (p *Packet) SetIPv4Src(addr [4]byte) bool { return p.setIPv4Addr(12, addr) }

// SetIPv4Dst writes the IPv4 destination address.
func (p *Packet) SetIPv4Dst(addr [4]byte) bool { return p.setIPv4Addr(16, addr) }

func (p *Packet) setIPv4Addr(fieldOff int, addr [4]byte) bool {
	if p.Flags&FlagIPv4 == 0 {
		return false
	}
	h := p.Data[int(p.L3Off):]
	from := binary.BigEndian.Uint32(h[fieldOff : fieldOff+4])
	to := binary.BigEndian.Uint32(addr[:])
	binary.BigEndian.PutUint32(h[fieldOff:fieldOff+4], to)
	ip := IPv4(h)
	ip.SetChecksum(ChecksumUpdate32(ip.Checksum(), from, to))
	// ICMP (v4) has no pseudo-header: its checksum does not cover addresses.
	if p.Flags&(FlagTCP|FlagUDP) != 0 {
		if c, sum, ok := p.l4ChecksumToUpdate(); ok {
			p.putL4Checksum(c, ChecksumUpdate32(sum, from, to))
		}
	}
	return true
}

// SetIPv6Src writes the IPv6 source address.
func (p *Packet) SetIPv6Src(addr [16]byte) bool { return p.setIPv6Addr(8, addr) }

// SetIPv6Dst writes the IPv6 destination address.
func (p *Packet) SetIPv6Dst(addr [16]byte) bool { return p.setIPv6Addr(24, addr) }

func (p *Packet) setIPv6Addr(fieldOff int, addr [16]byte) bool {
	if p.Flags&FlagIPv6 == 0 {
		return false
	}
	field := p.Data[int(p.L3Off)+fieldOff : int(p.L3Off)+fieldOff+16]
	var from [16]byte
	copy(from[:], field)
	copy(field, addr[:])
	if p.Flags&(FlagTCP|FlagUDP|FlagICMPv6) != 0 {
		if c, sum, ok := p.l4ChecksumToUpdate(); ok {
			p.putL4Checksum(c, ChecksumUpdateBytes(sum, from[:], addr[:]))
		}
	}
	return true
}

// SetSrcPort writes the TCP or UDP source port.
func (p *Packet) SetSrcPort(port uint16) bool { return p.setPort(0, port) }

// SetDstPort writes the TCP or UDP destination port.
func (p *Packet) SetDstPort(port uint16) bool { return p.setPort(2, port) }

func (p *Packet) setPort(fieldOff int, port uint16) bool {
	if p.Flags&(FlagTCP|FlagUDP) == 0 {
		return false
	}
	field := p.Data[int(p.L4Off)+fieldOff : int(p.L4Off)+fieldOff+2]
	from := binary.BigEndian.Uint16(field)
	binary.BigEndian.PutUint16(field, port)
	if c, sum, ok := p.l4ChecksumToUpdate(); ok {
		p.putL4Checksum(c, ChecksumUpdate16(sum, from, port))
	}
	return true
}

// SetICMPEchoID writes the identifier of an ICMP or ICMPv6 echo request or
// reply, as NAT does for ping.
func (p *Packet) SetICMPEchoID(id uint16) bool {
	if p.Flags&(FlagICMP|FlagICMPv6) == 0 {
		return false
	}
	h := ICMP(p.Data[p.L4Off:p.L3End])
	if !h.IsEcho(p.Flags&FlagICMPv6 != 0) {
		return false
	}
	from := h.ID()
	h.SetID(id)
	h.SetChecksum(ChecksumUpdate16(h.Checksum(), from, id))
	return true
}

// DecTTL decrements the IPv4 TTL (updating the header checksum) or the IPv6
// hop limit. It reports false, changing nothing, when there is no IP header
// or the TTL is 0 or 1: a router must not forward such a packet.
func (p *Packet) DecTTL() bool {
	switch {
	case p.Flags&FlagIPv4 != 0:
		h := IPv4(p.Data[p.L3Off:p.L3End])
		ttl := h[8]
		if ttl <= 1 {
			return false
		}
		// TTL is the high byte of the word it shares with the protocol.
		from := uint16(ttl)<<8 | uint16(h[9])
		h[8] = ttl - 1
		h.SetChecksum(ChecksumUpdate16(h.Checksum(), from, from-0x100))
		return true
	case p.Flags&FlagIPv6 != 0:
		h := p.Data[p.L3Off:p.L3End]
		if h[7] <= 1 {
			return false
		}
		h[7]--
		return true
	}
	return false
}

// l4ChecksumPtr returns the two bytes of the L4 checksum field.
func (p *Packet) l4ChecksumPtr() []byte {
	off := int(p.L4Off) + p.l4ChecksumField()
	return p.Data[off : off+2]
}

// l4ChecksumToUpdate returns the L4 checksum field of a packet known to
// have one and the checksum in it; ok is false for a zero UDP checksum,
// which means none and stays zero.
func (p *Packet) l4ChecksumToUpdate() (field []byte, sum uint16, ok bool) {
	field = p.l4ChecksumPtr()
	sum = binary.BigEndian.Uint16(field)
	return field, sum, sum != 0 || p.Flags&FlagUDP == 0
}

// putL4Checksum writes an updated L4 checksum into field; for UDP a
// computed zero is written as 0xffff, zero meaning none.
func (p *Packet) putL4Checksum(field []byte, sum uint16) {
	if sum == 0 && p.Flags&FlagUDP != 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(field, sum)
}
