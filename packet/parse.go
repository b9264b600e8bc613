package packet

import "encoding/binary"

// MaxIPv6ExtHeaders and MaxIPv6ExtBytes bound the IPv6 extension header
// walk, so a packet made of nothing but extension headers costs a bounded
// time to parse: at most 16 headers, each starting within the first 256
// bytes after the fixed header, whichever limit comes first. RFC 7045
// asks forwarding nodes to pass what they can parse; chains this long are
// already far beyond what real traffic carries (RFC 7112 wants the whole
// chain in the first fragment). A longer chain is ErrIPv6ExtHeaderLimit.
const (
	MaxIPv6ExtHeaders = 16
	MaxIPv6ExtBytes   = 256
)

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// Parse walks the headers of p.Data once and fills the parsed fields: Flags,
// Err, VLANCount, VLANTags, EtherType, L3Off, L3End, L4Proto, L4Off and
// PayloadOff. It returns p.Err: ErrNone for a sound packet. It never panics,
// never reads past len(Data) and never allocates. Calling it again re-parses
// from scratch (after a rewrite that changes lengths, for instance).
func (p *Packet) Parse() ErrorKind {
	p.Flags, p.Err, p.VLANCount, p.L4Proto = 0, ErrNone, 0, 0
	p.VLANTags, p.RoutingOff = [2]uint16{}, 0
	p.EtherType, p.L3Off, p.L3End, p.L4Off, p.PayloadOff = 0, 0, 0, 0, 0

	data := p.Data
	n := len(data)
	if n > MaxFrameLen {
		return p.fail(ErrFrameTooLong)
	}
	if n < EthernetLen {
		return p.fail(ErrEthernetTruncated)
	}
	p.Flags = FlagEthernet
	etherType := be16(data[12:14])
	off := EthernetLen
	for etherType == EtherTypeVLAN || etherType == EtherTypeQinQ {
		if p.VLANCount == maxVLANTags {
			p.EtherType, p.L3Off, p.L3End = etherType, uint16(off), uint16(n)
			return p.fail(ErrVLANDepth)
		}
		if n-off < VLANTagLen {
			return p.fail(ErrVLANTruncated)
		}
		p.VLANTags[p.VLANCount] = be16(data[off : off+2])
		etherType = be16(data[off+2 : off+4])
		p.VLANCount++
		off += VLANTagLen
		if p.VLANCount == 1 {
			p.Flags |= FlagVLAN
		} else {
			p.Flags |= FlagQinQ
		}
	}
	p.EtherType, p.L3Off, p.L3End = etherType, uint16(off), uint16(n)

	switch etherType {
	case EtherTypeIPv4:
		return p.parseIPv4(off)
	case EtherTypeIPv6:
		return p.parseIPv6(off)
	case EtherTypeARP:
		return p.parseARP(off)
	}
	return ErrNone
}

func (p *Packet) fail(e ErrorKind) ErrorKind {
	p.Err = e
	p.Flags |= e.Flag()
	return e
}

// setL3End records where the L3 packet ends and whether padding follows.
func (p *Packet) setL3End(end int) {
	p.L3End = uint16(end)
	if end < len(p.Data) {
		p.Flags |= FlagPadding
	}
}

func (p *Packet) parseARP(off int) ErrorKind {
	data := p.Data
	if len(data)-off < arpFixedLen {
		return p.fail(ErrARPTruncated)
	}
	end := off + arpFixedLen + 2*(int(data[off+4])+int(data[off+5]))
	if end > len(data) {
		return p.fail(ErrARPTruncated)
	}
	p.Flags |= FlagARP
	p.setL3End(end)
	return ErrNone
}

func (p *Packet) parseIPv4(off int) ErrorKind {
	data := p.Data
	n := len(data)
	if n-off < IPv4MinLen {
		return p.fail(ErrIPv4Truncated)
	}
	h := data[off:]
	if h[0]>>4 != 4 {
		return p.fail(ErrIPv4Version)
	}
	headerLen := int(h[0]&0x0f) * 4
	if headerLen < IPv4MinLen {
		return p.fail(ErrIPv4HeaderLength)
	}
	if n-off < headerLen {
		return p.fail(ErrIPv4Truncated)
	}
	totalLen := int(be16(h[2:4]))
	if totalLen < headerLen {
		return p.fail(ErrIPv4TotalLength)
	}
	p.Flags |= FlagIPv4
	if headerLen > IPv4MinLen {
		p.Flags |= FlagIPv4Options
	}
	p.L4Proto = h[9]
	if totalLen > n-off {
		return p.fail(ErrIPv4Truncated)
	}
	end := off + totalLen
	p.setL3End(end)
	l4Off := off + headerLen

	frag := be16(h[6:8])
	fragment := frag&(ipv4FlagMF|ipv4OffsetMask) != 0
	if fragment {
		p.Flags |= FlagFragment
		fragLen := totalLen - headerLen
		// Every fragment but the last carries a multiple of 8 bytes, and no
		// fragment may reach past the largest datagram (the ping of death).
		if frag&ipv4FlagMF != 0 && fragLen%8 != 0 ||
			int(frag&ipv4OffsetMask)*8+fragLen > 0xffff {
			return p.fail(ErrFragmentLength)
		}
		if frag&ipv4OffsetMask != 0 {
			p.Flags |= FlagLaterFragment
			p.PayloadOff = uint16(l4Off)
			return ErrNone
		}
	}
	return p.parseL4(l4Off, end, false, fragment)
}

func (p *Packet) parseIPv6(off int) ErrorKind {
	data := p.Data
	n := len(data)
	if n-off < IPv6Len {
		return p.fail(ErrIPv6Truncated)
	}
	h := data[off:]
	if h[0]>>4 != 6 {
		return p.fail(ErrIPv6Version)
	}
	p.Flags |= FlagIPv6
	next := h[6]
	p.L4Proto = next // follows the walk below
	end := off + IPv6Len + int(be16(h[4:6]))
	if end > n {
		return p.fail(ErrIPv6Truncated)
	}
	p.setL3End(end)

	pos := off + IPv6Len
	fragment := false
	for count := 0; ; count++ {
		switch next {
		case ProtoHopByHop, ProtoRouting, ProtoDstOpts, ProtoFragment, ProtoAH:
		default:
			return p.parseL4(pos, end, true, fragment)
		}
		if next == ProtoHopByHop && pos != off+IPv6Len {
			return p.fail(ErrIPv6HopByHopOrder)
		}
		if count == MaxIPv6ExtHeaders || pos-(off+IPv6Len) >= MaxIPv6ExtBytes {
			return p.fail(ErrIPv6ExtHeaderLimit)
		}
		if end-pos < ipv6ExtMinLen {
			return p.fail(ErrIPv6ExtHeader)
		}
		var headerLen int
		switch next {
		case ProtoFragment:
			headerLen = ipv6FragLen
		case ProtoAH:
			headerLen = (int(data[pos+1]) + 2) * 4
		default:
			headerLen = (int(data[pos+1]) + 1) * 8
		}
		if end-pos < headerLen {
			return p.fail(ErrIPv6ExtHeader)
		}
		p.Flags |= FlagIPv6ExtHeaders
		if next == ProtoRouting && p.RoutingOff == 0 {
			p.RoutingOff = uint16(pos)
		}
		if next == ProtoFragment {
			fragment = true
			p.Flags |= FlagFragment
			offsetAndM := be16(data[pos+2 : pos+4])
			fragLen := end - pos - ipv6FragLen
			if offsetAndM&1 != 0 && fragLen%8 != 0 ||
				int(offsetAndM&^7)+fragLen > 0xffff {
				p.L4Proto = data[pos]
				return p.fail(ErrFragmentLength)
			}
			if offsetAndM&^7 != 0 {
				// What follows is the middle of the fragmentable part:
				// no header to walk.
				p.Flags |= FlagLaterFragment
				p.L4Proto = data[pos]
				p.PayloadOff = uint16(pos + headerLen)
				return ErrNone
			}
		}
		next = data[pos]
		p.L4Proto = next
		pos += headerLen
	}
}

// parseL4 parses the header at off of an L3 packet that ends at end. In a
// first fragment the UDP length describes the whole datagram, so only the
// header itself must fit.
func (p *Packet) parseL4(off, end int, v6, fragment bool) ErrorKind {
	data := p.Data
	p.L4Off = uint16(off)
	room := end - off
	switch p.L4Proto {
	case ProtoTCP:
		if room < TCPMinLen {
			return p.fail(ErrTCPHeaderLength)
		}
		headerLen := int(data[off+12]>>4) * 4
		if headerLen < TCPMinLen || headerLen > room {
			return p.fail(ErrTCPHeaderLength)
		}
		p.Flags |= FlagTCP
		p.PayloadOff = uint16(off + headerLen)
	case ProtoUDP:
		if room < UDPLen {
			return p.fail(ErrUDPLength)
		}
		length := int(be16(data[off+4 : off+6]))
		if length < UDPLen || !fragment && length > room {
			return p.fail(ErrUDPLength)
		}
		p.Flags |= FlagUDP
		p.PayloadOff = uint16(off + UDPLen)
	case ProtoICMP, ProtoICMPv6:
		// ICMP in IPv6 or ICMPv6 in IPv4 means nothing: leave it unparsed.
		if v6 != (p.L4Proto == ProtoICMPv6) {
			return ErrNone
		}
		if room < ICMPLen {
			return p.fail(ErrICMPLength)
		}
		if v6 {
			p.Flags |= FlagICMPv6
		} else {
			p.Flags |= FlagICMP
		}
		p.PayloadOff = uint16(off + ICMPLen)
	}
	return ErrNone
}

// Header views over p.Data. Each returns nil unless Parse found the header.

// Ethernet returns the Ethernet header (without VLAN tags).
func (p *Packet) Ethernet() Ethernet {
	if p.Flags&FlagEthernet == 0 {
		return nil
	}
	return Ethernet(p.Data[:EthernetLen])
}

// ARP returns the ARP packet.
func (p *Packet) ARP() ARP {
	if p.Flags&FlagARP == 0 {
		return nil
	}
	return ARP(p.Data[p.L3Off:p.L3End])
}

// IPv4 returns the IPv4 packet, header to L3End.
func (p *Packet) IPv4() IPv4 {
	if p.Flags&FlagIPv4 == 0 {
		return nil
	}
	return IPv4(p.Data[p.L3Off:p.L3End])
}

// IPv6 returns the IPv6 packet, fixed header to L3End.
func (p *Packet) IPv6() IPv6 {
	if p.Flags&FlagIPv6 == 0 {
		return nil
	}
	return IPv6(p.Data[p.L3Off:p.L3End])
}

// TCP returns the TCP segment, header to L3End.
func (p *Packet) TCP() TCP {
	if p.Flags&FlagTCP == 0 {
		return nil
	}
	return TCP(p.Data[p.L4Off:p.L3End])
}

// UDP returns the UDP datagram, header to L3End (the UDP length may be
// shorter; in a first fragment it is longer).
func (p *Packet) UDP() UDP {
	if p.Flags&FlagUDP == 0 {
		return nil
	}
	return UDP(p.Data[p.L4Off:p.L3End])
}

// ICMP returns the ICMP or ICMPv6 message.
func (p *Packet) ICMP() ICMP {
	if p.Flags&(FlagICMP|FlagICMPv6) == 0 {
		return nil
	}
	return ICMP(p.Data[p.L4Off:p.L3End])
}

// L4 returns the bytes from the L4 header (or from the header that stopped
// the IPv6 walk, such as ESP) to L3End, or nil when there is none.
func (p *Packet) L4() []byte {
	if p.L4Off == 0 {
		return nil
	}
	return p.Data[p.L4Off:p.L3End]
}

// Payload returns the L4 payload, or for a later fragment the fragment's
// data, or nil.
func (p *Packet) Payload() []byte {
	if p.PayloadOff == 0 {
		return nil
	}
	return p.Data[p.PayloadOff:p.L3End]
}

// SrcPort and DstPort return the TCP or UDP ports, 0 when there is no TCP
// or UDP header.
func (p *Packet) SrcPort() uint16 {
	if p.Flags&(FlagTCP|FlagUDP) == 0 {
		return 0
	}
	return be16(p.Data[p.L4Off : p.L4Off+2])
}

func (p *Packet) DstPort() uint16 {
	if p.Flags&(FlagTCP|FlagUDP) == 0 {
		return 0
	}
	return be16(p.Data[p.L4Off+2 : p.L4Off+4])
}
