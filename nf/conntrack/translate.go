package conntrack

import (
	"encoding/binary"

	"github.com/xnfdev/xnf/packet"
)

// TranslateError translates an ICMP error related to flow f (Track's or
// LookupPacket's StateRelated result), travelling in direction d (the
// Result's Dir for an error), for a stage that rewrites f's packets into
// the other direction's tuple reversed (NAT, a load balancer): the outer
// IPv4 header as a packet of direction d would be translated (only the
// addresses the flow's translation changes in that direction, as Linux's
// nf_nat_icmp_reply_translation does, so an error from a router on the
// path keeps its source), and the quoted packet, which travelled the
// other way, back to the form it had before it was translated: quoted
// addresses, ports or echo identifier, the quoted IPv4 header checksum,
// the quoted L4 checksum when the quote holds it (UDP: always, unless
// zero; TCP: when at least 18 bytes of its header are quoted; ICMP echo:
// always), and the outer ICMP checksum, which covers all of it. All
// updates are incremental (RFC 1624), so an error that arrived with a bad
// checksum leaves with one. It reports false, changing nothing, when p is
// not an IPv4 ICMP error with a quote it can read. It does not allocate.
func TranslateError(p *packet.Packet, f *Flow, d Dir) bool {
	if p.Flags&packet.FlagIPv4 == 0 || p.Flags&packet.FlagICMP == 0 {
		return false
	}
	_, off, ok := QuotedKey(p)
	if !ok {
		return false
	}
	cur, tgt := f.Key(d), f.Key(1-d).Reverse()
	if cur.Src != tgt.Src {
		p.SetIPv4Src([4]byte(tgt.Src[12:]))
	}
	if cur.Dst != tgt.Dst {
		p.SetIPv4Dst([4]byte(tgt.Dst[12:]))
	}
	m := p.Data[p.L4Off:p.L3End] // the ICMP message
	cs := binary.BigEndian.Uint16(m[2:4])
	io := off - int(p.L4Off) // the quoted IPv4 header, 8
	ihl := int(m[io]&0x0f) * 4
	proto := m[io+9]
	l4 := io + ihl
	// The quoted packet's tuple is cur reversed; it becomes tgt reversed.
	newSrc, newDst := [4]byte(tgt.Dst[12:]), [4]byte(tgt.Src[12:])
	oldSrc, oldDst := [4]byte(m[io+12:io+16]), [4]byte(m[io+16:io+20])
	ipcs := binary.BigEndian.Uint16(m[io+10:])
	var l4delta [2][2]uint32 // address changes for the L4 pseudo-header: {from, to}
	na := 0
	for _, a := range [2]struct {
		at       int
		old, new [4]byte
	}{{io + 12, oldSrc, newSrc}, {io + 16, oldDst, newDst}} {
		if a.old == a.new {
			continue
		}
		from, to := binary.BigEndian.Uint32(a.old[:]), binary.BigEndian.Uint32(a.new[:])
		set32(m, a.at, to, &cs)
		ipcs = packet.ChecksumUpdate32(ipcs, from, to)
		l4delta[na] = [2]uint32{from, to}
		na++
	}
	set16(m, io+10, ipcs, &cs)

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
		for _, a := range l4delta[:na] {
			l4cs = packet.ChecksumUpdate32(l4cs, a[0], a[1])
		}
		l4cs = packet.ChecksumUpdate16(l4cs, oldSP, newSP)
		l4cs = packet.ChecksumUpdate16(l4cs, oldDP, newDP)
		if proto == packet.ProtoUDP && l4cs == 0 {
			l4cs = 0xffff
		}
		set16(m, field, l4cs, &cs)
	case packet.ProtoICMP:
		// An echo: QuotedKey let nothing else through. A request's key
		// is (id, 0), a reply's (0, id).
		oldID := binary.BigEndian.Uint16(m[l4+4:])
		newID := tgt.DstPort
		if m[l4] == packet.ICMPEchoReply {
			newID = tgt.SrcPort
		}
		if newID != oldID {
			set16(m, l4+4, newID, &cs)
			set16(m, l4+2, packet.ChecksumUpdate16(binary.BigEndian.Uint16(m[l4+2:]), oldID, newID), &cs)
		}
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

func set32(m []byte, at int, v uint32, cs *uint16) {
	old := binary.BigEndian.Uint32(m[at:])
	if old == v {
		return
	}
	binary.BigEndian.PutUint32(m[at:], v)
	*cs = packet.ChecksumUpdate32(*cs, old, v)
}
