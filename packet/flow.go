package packet

import (
	"encoding/binary"
	"net/netip"
)

// FlowKey identifies a flow by its 5-tuple, for conntrack and NAT. IPv4
// addresses are stored IPv4-mapped (::ffff:a.b.c.d) so IPv4 and IPv6 keys
// never collide. For ICMP and ICMPv6 echo requests and replies the
// identifier is both SrcPort and DstPort, so a reply's key is the reverse of
// its request's; other ICMP messages and later fragments have zero ports.
// FlowKey is comparable and can key a Go map.
type FlowKey struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
}

var v4InV6Prefix = [12]byte{10: 0xff, 11: 0xff}

// FlowKey returns the flow key of an IP packet, or the zero key when Parse
// found no IPv4 or IPv6 header.
func (p *Packet) FlowKey() (k FlowKey) {
	switch {
	case p.Flags&FlagIPv4 != 0:
		h := p.Data[p.L3Off:]
		copy(k.Src[:], v4InV6Prefix[:])
		copy(k.Dst[:], v4InV6Prefix[:])
		copy(k.Src[12:], h[12:16])
		copy(k.Dst[12:], h[16:20])
	case p.Flags&FlagIPv6 != 0:
		h := p.Data[p.L3Off:]
		copy(k.Src[:], h[8:24])
		copy(k.Dst[:], h[24:40])
	default:
		return k
	}
	k.Proto = p.L4Proto
	switch {
	case p.Flags&(FlagTCP|FlagUDP) != 0:
		l4 := p.Data[p.L4Off:]
		k.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		k.DstPort = binary.BigEndian.Uint16(l4[2:4])
	case p.Flags&(FlagICMP|FlagICMPv6) != 0:
		h := ICMP(p.Data[p.L4Off:])
		v6 := p.Flags&FlagICMPv6 != 0
		if h.IsEcho(v6) {
			// (id, 0) for a request, (0, id) for a reply: a reply's key is
			// its request's reversed, and a request from the other side
			// is not mistaken for a reply.
			if t := h.Type(); t == ICMPEchoRequest || (v6 && t == ICMPv6EchoRequest) {
				k.SrcPort = h.ID()
			} else {
				k.DstPort = h.ID()
			}
		}
	}
	return k
}

// Reverse returns the key of the other direction.
func (k FlowKey) Reverse() FlowKey {
	return FlowKey{Src: k.Dst, Dst: k.Src, SrcPort: k.DstPort, DstPort: k.SrcPort, Proto: k.Proto}
}

// IsIPv4 reports whether the key is of an IPv4 flow.
func (k FlowKey) IsIPv4() bool { return [12]byte(k.Src[:12]) == v4InV6Prefix }

// SrcAddr and DstAddr return the addresses, IPv4 unmapped.
func (k FlowKey) SrcAddr() netip.Addr { return netip.AddrFrom16(k.Src).Unmap() }
func (k FlowKey) DstAddr() netip.Addr { return netip.AddrFrom16(k.Dst).Unmap() }
