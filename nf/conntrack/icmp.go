package conntrack

import (
	"encoding/binary"

	"github.com/xnfdev/xnf/packet"
)

// ICMP message classes that matter to tracking.
const (
	icmpOther = iota
	icmpEchoRequest
	icmpEchoReply
	icmpError
)

// icmpClass sorts ICMP (v6 false) and ICMPv6 types. The errors are the
// messages that quote the packet which caused them (packet.IsICMPError):
// for IPv4 types 3, 4, 5, 11 and 12, for IPv6 every type below 128, as in
// Linux.
func icmpClass(typ uint8, v6 bool) int {
	switch {
	case packet.IsICMPError(typ, v6):
		return icmpError
	case typ == packet.ICMPEchoRequest && !v6, typ == packet.ICMPv6EchoRequest && v6:
		return icmpEchoRequest
	case typ == packet.ICMPEchoReply && !v6, typ == packet.ICMPv6EchoReply && v6:
		return icmpEchoReply
	}
	return icmpOther
}

var v4Mapped = [12]byte{10: 0xff, 11: 0xff}

// QuotedKey returns the tuple of the packet that an ICMP or ICMPv6 error
// quotes (the IP header and at least 8 bytes of L4 header after the ICMP
// header), with off the offset in p.Data of the quoted IP header, as NAT
// needs to rewrite it. ok is false when p is not an ICMP error or the
// quote is cut short, of the wrong IP version, a later fragment, or an
// ICMP message other than an echo (an error about an error is never sent).
// The quoted packet travelled the other way: its tuple reversed is the
// tuple of the error's own direction in the flow. It does not allocate.
func QuotedKey(p *packet.Packet) (k packet.FlowKey, off int, ok bool) {
	k, off, _, ok = quotedKey(p)
	return k, off, ok
}

// quotedKey is QuotedKey that also returns the offset in p.Data of the
// quoted L4 header.
func quotedKey(p *packet.Packet) (k packet.FlowKey, off, l4off int, ok bool) {
	v6 := p.Flags&packet.FlagICMPv6 != 0
	if p.Flags&(packet.FlagICMP|packet.FlagICMPv6) == 0 || p.Flags&packet.FlagBad != 0 {
		return k, 0, 0, false
	}
	if icmpClass(p.Data[p.L4Off], v6) != icmpError {
		return k, 0, 0, false
	}
	start := int(p.L4Off) + packet.ICMPLen
	in := p.Data[start:p.L3End]
	var l4 []byte
	if v6 {
		l4, ok = quotedIPv6(in, &k)
	} else {
		l4, ok = quotedIPv4(in, &k)
	}
	if !ok {
		return k, 0, 0, false
	}
	switch k.Proto {
	case packet.ProtoTCP, packet.ProtoUDP:
		k.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		k.DstPort = binary.BigEndian.Uint16(l4[2:4])
	case packet.ProtoICMP, packet.ProtoICMPv6:
		if (k.Proto == packet.ProtoICMPv6) != v6 {
			return k, 0, 0, false
		}
		switch icmpClass(l4[0], v6) {
		case icmpEchoRequest: // keys as Track builds them: (id, 0)
			k.SrcPort, k.DstPort = binary.BigEndian.Uint16(l4[4:6]), 0
		case icmpEchoReply: // and (0, id)
			k.SrcPort, k.DstPort = 0, binary.BigEndian.Uint16(l4[4:6])
		default:
			return k, 0, 0, false
		}
	}
	return k, start, int(p.L3End) - len(l4), true
}

// quotedIPv4 fills the addresses and protocol of k from the IPv4 header at
// the start of in and returns the 8 or more bytes of L4 header after it.
func quotedIPv4(in []byte, k *packet.FlowKey) ([]byte, bool) {
	if len(in) < packet.IPv4MinLen || in[0]>>4 != 4 {
		return nil, false
	}
	ihl := int(in[0]&0x0f) * 4
	if ihl < packet.IPv4MinLen || len(in) < ihl+8 {
		return nil, false
	}
	if binary.BigEndian.Uint16(in[6:8])&0x1fff != 0 {
		return nil, false // a later fragment: no L4 header to match
	}
	copy(k.Src[:12], v4Mapped[:])
	copy(k.Dst[:12], v4Mapped[:])
	copy(k.Src[12:], in[12:16])
	copy(k.Dst[12:], in[16:20])
	k.Proto = in[9]
	return in[ihl:], true
}

// quotedIPv6 is quotedIPv4 for an IPv6 header, walking the same extension
// headers as packet.Parse (at most packet.MaxIPv6ExtHeaders of them).
func quotedIPv6(in []byte, k *packet.FlowKey) ([]byte, bool) {
	if len(in) < packet.IPv6Len || in[0]>>4 != 6 {
		return nil, false
	}
	nh, off := in[6], packet.IPv6Len
	for n := 0; ; n++ {
		var hlen int
		switch nh {
		case packet.ProtoHopByHop, packet.ProtoRouting, packet.ProtoDstOpts:
			if len(in) < off+8 {
				return nil, false
			}
			hlen = (int(in[off+1]) + 1) * 8
		case packet.ProtoFragment:
			if len(in) < off+8 {
				return nil, false
			}
			if binary.BigEndian.Uint16(in[off+2:off+4])&^7 != 0 {
				return nil, false // a later fragment
			}
			hlen = 8
		case packet.ProtoAH:
			if len(in) < off+8 {
				return nil, false
			}
			hlen = (int(in[off+1]) + 2) * 4
		default:
			if len(in) < off+8 {
				return nil, false
			}
			copy(k.Src[:], in[8:24])
			copy(k.Dst[:], in[24:40])
			k.Proto = nh
			return in[off:], true
		}
		if n == packet.MaxIPv6ExtHeaders {
			return nil, false
		}
		nh = in[off]
		off += hlen
	}
}
