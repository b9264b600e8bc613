package packet

import "encoding/binary"

// Fragment describes an IP fragment: which datagram it belongs to and
// which bytes of that datagram's fragmentable part it carries.
//
// The fragmentable part is what follows the IPv4 header, or for IPv6 what
// follows the fragment header (RFC 8200 4.5): the first fragment carries
// its start, the upper-layer header included, and Offset counts from it.
type Fragment struct {
	// ID is the identification shared by the datagram's fragments: the
	// IPv4 header's 16 bits, or the IPv6 fragment header's 32.
	ID uint32
	// Offset is where this fragment's data starts in the fragmentable
	// part, in bytes (a multiple of 8); 0 for the first fragment.
	Offset int
	// Len is how many bytes of the fragmentable part this fragment
	// carries, from Offset.
	Len int
	// More is the more-fragments flag: false on the last fragment.
	More bool
	// Next is the protocol of the fragmentable part: the IPv4 protocol,
	// or the IPv6 fragment header's next header, which every fragment of
	// the datagram carries alike (the first fragment's L4Proto may be a
	// header further on, after destination options for instance).
	Next uint8
	// HeaderOff is the offset of the IPv6 fragment header in Data; 0 for
	// IPv4.
	HeaderOff int
	// ChainCut is set on the first fragment of an IPv6 datagram whose
	// header chain does not fit in it: an extension header after the
	// fragment header, or the upper-layer header (TCP's 20 bytes and its
	// options, UDP's 8, ICMPv6's 4), runs past the fragment's end. RFC
	// 7112 forbids such first fragments: the ports are not there to
	// filter on.
	ChainCut bool
}

// Fragment returns what p's IP header says about the fragment p is, and
// false when p is not a fragment (FlagFragment unset). For IPv6 it walks
// the extension headers again to find the fragment header, at most
// MaxIPv6ExtHeaders of them, as Parse does; it works on a first fragment
// whose header chain Parse found cut (RFC 7112). An IPv6 "atomic"
// fragment (offset 0, no more fragments: RFC 6946) is a fragment here
// with More false and Offset 0, a datagram in one piece. It does not
// allocate.
func (p *Packet) Fragment() (f Fragment, ok bool) {
	if p.Flags&FlagFragment == 0 {
		return f, false
	}
	data := p.Data
	off := int(p.L3Off)
	end := int(p.L3End)
	if p.Flags&FlagIPv4 != 0 {
		h := data[off:]
		fo := binary.BigEndian.Uint16(h[6:8])
		hl := int(h[0]&0x0f) * 4
		f.ID = uint32(binary.BigEndian.Uint16(h[4:6]))
		f.Offset = int(fo&ipv4OffsetMask) * 8
		f.Len = end - off - hl
		f.More = fo&ipv4FlagMF != 0
		f.Next = h[9]
		return f, true
	}
	if p.Flags&FlagIPv6 == 0 {
		return f, false
	}
	// Find the fragment header: in a later fragment it ends where Parse
	// put PayloadOff; otherwise walk to it.
	pos := -1
	if p.Flags&FlagLaterFragment != 0 && int(p.PayloadOff) >= off+IPv6Len+ipv6FragLen {
		pos = int(p.PayloadOff) - ipv6FragLen
	} else {
		next := data[off+6]
		at := off + IPv6Len
		for count := 0; count < MaxIPv6ExtHeaders && at+ipv6ExtMinLen <= end; count++ {
			if next == ProtoFragment {
				pos = at
				break
			}
			n, ok := extLen(next, data[at+1])
			if !ok || at+n > end {
				break
			}
			next = data[at]
			at += n
		}
	}
	if pos < 0 || pos+ipv6FragLen > end {
		return Fragment{}, false
	}
	om := binary.BigEndian.Uint16(data[pos+2 : pos+4])
	f.ID = binary.BigEndian.Uint32(data[pos+4 : pos+8])
	f.Offset = int(om &^ 7)
	f.Len = end - pos - ipv6FragLen
	f.More = om&1 != 0
	f.Next = data[pos]
	f.HeaderOff = pos
	if f.Offset == 0 && f.More {
		f.ChainCut = chainCut(data, f.Next, pos+ipv6FragLen, end, MaxIPv6ExtHeaders)
	}
	return f, true
}

// extLen returns the length of an IPv6 extension header of type next whose
// second byte is lenByte, and false if next is not an extension header.
func extLen(next, lenByte uint8) (int, bool) {
	switch next {
	case ProtoHopByHop, ProtoRouting, ProtoDstOpts:
		return (int(lenByte) + 1) * 8, true
	case ProtoAH:
		return (int(lenByte) + 2) * 4, true
	case ProtoFragment:
		return ipv6FragLen, true
	}
	return 0, false
}

// chainCut walks the headers of a first fragment's fragmentable part,
// from at (of type next) to end, and reports whether one runs past end
// before the upper-layer header is whole.
func chainCut(data []byte, next uint8, at, end, budget int) bool {
	for ; budget > 0; budget-- {
		switch next {
		case ProtoTCP:
			if end-at < TCPMinLen {
				return true
			}
			return at+int(data[at+12]>>4)*4 > end
		case ProtoUDP:
			return end-at < UDPLen
		case ProtoICMPv6:
			return end-at < 4
		}
		if end-at < ipv6ExtMinLen {
			_, ext := extLen(next, 0)
			return ext
		}
		n, ext := extLen(next, data[at+1])
		if !ext {
			return false // ESP, no next header, or a protocol whose header we do not know
		}
		if at+n > end {
			return true
		}
		next = data[at]
		at += n
	}
	return false
}
