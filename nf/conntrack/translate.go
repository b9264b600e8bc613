package conntrack

import (
	"encoding/binary"

	"github.com/xnfdev/xnf/packet"
)

// TranslateError translates an ICMP or ICMPv6 error related to flow f
// (Track's or LookupPacket's StateRelated result), travelling in
// direction d (the Result's Dir for an error), for a stage that rewrites
// f's packets into the other direction's tuple reversed (NAT, a load
// balancer): the outer IP header as a packet of direction d would be
// translated (only the addresses the flow's translation changes in that
// direction, as Linux's nf_nat_icmp_reply_translation does, so an error
// from a router on the path keeps its source), and the quoted packet,
// which travelled the other way, back to the form it had before it was
// translated: quoted addresses, ports or echo identifier, the quoted IPv4
// header checksum, the quoted L4 checksum when the quote holds it (UDP:
// always, unless zero; TCP: when at least 18 bytes of its header are
// quoted; ICMP and ICMPv6 echo: always; for IPv6 the address change of
// its pseudo-header included), and the outer ICMP or ICMPv6 checksum,
// which covers all of it (and for ICMPv6 the outer addresses too). All
// updates are incremental (RFC 1624), so an error that arrived with a bad
// checksum leaves with one. It reports false, changing nothing, when p is
// not an ICMP error with a quote it can read (QuotedKey). It does not
// allocate.
func TranslateError(p *packet.Packet, f *Flow, d Dir) bool {
	v6 := p.Flags&packet.FlagIPv6 != 0
	if v6 && p.Flags&packet.FlagICMPv6 == 0 || !v6 && p.Flags&(packet.FlagIPv4|packet.FlagICMP) != packet.FlagIPv4|packet.FlagICMP {
		return false
	}
	_, off, l4off, ok := quotedKey(p)
	if !ok {
		return false
	}
	cur, tgt := f.Key(d), f.Key(1-d).Reverse()
	// The outer header first: for ICMPv6 the pseudo-header's change goes
	// into the checksum read below.
	if v6 {
		if cur.Src != tgt.Src {
			p.SetIPv6Src(tgt.Src)
		}
		if cur.Dst != tgt.Dst {
			p.SetIPv6Dst(tgt.Dst)
		}
	} else {
		if cur.Src != tgt.Src {
			p.SetIPv4Src([4]byte(tgt.Src[12:]))
		}
		if cur.Dst != tgt.Dst {
			p.SetIPv4Dst([4]byte(tgt.Dst[12:]))
		}
	}
	m := p.Data[p.L4Off:p.L3End] // the ICMP message
	cs := binary.BigEndian.Uint16(m[2:4])
	io := off - int(p.L4Off) // the quoted IP header, 8
	l4 := l4off - int(p.L4Off)
	proto := m[io+9]
	n, srcAt, dstAt := 4, io+12, io+16
	if v6 {
		proto = f.Proto() // the quote's next header may be an extension header
		n, srcAt, dstAt = 16, io+8, io+24
	}
	// The quoted packet's tuple is cur reversed; it becomes tgt reversed.
	var old, new [2][16]byte
	copy(old[0][:n], m[srcAt:])
	copy(old[1][:n], m[dstAt:])
	copy(new[0][:n], tgt.Dst[16-n:])
	copy(new[1][:n], tgt.Src[16-n:])
	changed := [2]bool{old[0] != new[0], old[1] != new[1]}
	for i, at := range [2]int{srcAt, dstAt} {
		if changed[i] {
			setBytes(m, at, new[i][:n], &cs)
		}
	}
	// pseudo updates an L4 checksum for the quoted addresses' change.
	pseudo := func(c uint16) uint16 {
		for i := range changed {
			if changed[i] {
				c = packet.ChecksumUpdateBytes(c, old[i][:n], new[i][:n])
			}
		}
		return c
	}
	if !v6 {
		set16(m, io+10, pseudo(binary.BigEndian.Uint16(m[io+10:])), &cs)
	}

	switch proto {
	case packet.ProtoTCP, packet.ProtoUDP:
		oldSP, oldDP := binary.BigEndian.Uint16(m[l4:]), binary.BigEndian.Uint16(m[l4+2:])
		newSP, newDP := tgt.DstPort, tgt.SrcPort
		set16(m, l4, newSP, &cs)
		set16(m, l4+2, newDP, &cs)
		field := l4 + 6
		if proto == packet.ProtoTCP {
			field = l4 + 16
		}
		if field+2 > len(m) {
			break // the quote stops before the checksum
		}
		l4cs := binary.BigEndian.Uint16(m[field:])
		if proto == packet.ProtoUDP && l4cs == 0 {
			break // no checksum: stays none
		}
		l4cs = pseudo(l4cs)
		l4cs = packet.ChecksumUpdate16(l4cs, oldSP, newSP)
		l4cs = packet.ChecksumUpdate16(l4cs, oldDP, newDP)
		if proto == packet.ProtoUDP && l4cs == 0 {
			l4cs = 0xffff
		}
		set16(m, field, l4cs, &cs)
	case packet.ProtoICMP, packet.ProtoICMPv6:
		// An echo: QuotedKey let nothing else through. A request's key
		// is (id, 0), a reply's (0, id). ICMP's checksum covers no
		// addresses, ICMPv6's covers the pseudo-header.
		oldID := binary.BigEndian.Uint16(m[l4+4:])
		newID := tgt.DstPort
		if m[l4] == packet.ICMPEchoReply && !v6 || m[l4] == packet.ICMPv6EchoReply && v6 {
			newID = tgt.SrcPort
		}
		ecs := binary.BigEndian.Uint16(m[l4+2:])
		if v6 {
			ecs = pseudo(ecs)
		}
		if newID != oldID {
			set16(m, l4+4, newID, &cs)
			ecs = packet.ChecksumUpdate16(ecs, oldID, newID)
		}
		set16(m, l4+2, ecs, &cs)
	}
	binary.BigEndian.PutUint16(m[2:4], cs)
	return true
}

// set16 writes v at m[at:] (an even offset of the ICMP message) and
// updates the ICMP checksum cs for the change.
func set16(m []byte, at int, v uint16, cs *uint16) {
	old := binary.BigEndian.Uint16(m[at:])
	if old == v {
		return
	}
	binary.BigEndian.PutUint16(m[at:], v)
	*cs = packet.ChecksumUpdate16(*cs, old, v)
}

// setBytes is set16 for an address (4 or 16 bytes).
func setBytes(m []byte, at int, v []byte, cs *uint16) {
	var old [16]byte
	o := old[:len(v)]
	copy(o, m[at:])
	copy(m[at:], v)
	*cs = packet.ChecksumUpdateBytes(*cs, o, v)
}
