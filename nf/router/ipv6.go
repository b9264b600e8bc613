package router

import (
	"encoding/binary"

	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

const (
	icmp6DestUnreach  = 1
	icmp6BeyondScope  = 2 // destination unreachable: beyond scope of source address
	icmp6TimeExceeded = 3
	icmp6EchoRequest  = 128
	icmp6EchoReply    = 129
	icmp6NS           = 135
	icmp6NA           = 136
)

// ipv6 routes one IPv6 packet and serves NDP and ping for our addresses.
func (r *Router) ipv6(p *packet.Packet, now int64) bool {
	if p.Flags&packet.FlagBad != 0 {
		p.SetDrop(packet.DropMalformed)
		return false
	}
	h := p.IPv6()
	dst := h.Dst()
	if p.Flags&packet.FlagICMPv6 != 0 {
		switch p.ICMP().Type() {
		case icmp6NS:
			r.neighborSolicit(p, now)
			return false
		case icmp6NA:
			r.neighborAdvert(p, now)
			return false
		}
	}
	if dst[0] == 0xff {
		// Multicast is not routed; what is scoped to the link or the
		// site must never be (RFC 4291 2.7).
		p.SetDrop(packet.DropConsumed)
		if dst[1]&0x0f <= 5 {
			r.ctr.scopedMulticast.Add(1)
		} else {
			r.ctr.local.Add(1)
		}
		return false
	}
	src := h.Src()
	if m := packet.Martian6(&src, &dst); m != packet.MartianNone {
		r.ctr.martian[m].Add(1)
		p.SetDrop(packet.DropMartian)
		return false
	}
	if r.isLocal6(dst) {
		r.local6Packet(p)
		return false
	}
	if linkLocal(&dst) {
		r.ctr.scopeDstLinkLocal.Add(1)
		p.SetDrop(packet.DropMartian)
		return false
	}
	if linkLocal(&src) {
		// RFC 4291 2.5.6: a link-local source must not leave its link;
		// RFC 4443 3.1 code 2 says why.
		r.ctr.scopeSrcLinkLocal.Add(1)
		r.icmp6Error(p, icmp6DestUnreach, icmp6BeyondScope, packet.DropMartian, r.ctr.unreachable)
		return false
	}
	if h.HopLimit() <= 1 {
		r.ctr.ttl.Add(1)
		r.icmp6Error(p, icmp6TimeExceeded, 0, packet.DropTTL, r.ctr.timeExceeded)
		return false
	}
	hash := binary.BigEndian.Uint32(src[12:]) ^ uint32(p.SrcPort())<<16 ^ uint32(p.DstPort())
	id, ok := r.fib.LookupFlow6(dst, hash)
	if !ok {
		r.ctr.noRoute.Add(1)
		r.icmp6Error(p, icmp6DestUnreach, 0, packet.DropNoRoute, r.ctr.unreachable)
		return false
	}
	nh := r.fib.NextHop(id)
	out := r.iface(nh.Port)
	if out == nil {
		p.SetDrop(packet.DropNoPort)
		return false
	}
	if out.MTU > 0 && packet.IPv6Len+int(h.PayloadLen()) > out.MTU {
		// RFC 8200 5: routers never fragment; the source learns the MTU.
		r.ctr.tooBig.Add(1)
		r.icmp6Answer(p, packet.ICMPv6PacketTooBig, 0, uint32(max(out.MTU, 1280)), packet.DropTooBig, r.ctr.fragNeeded)
		return false
	}
	target := dst
	if nh.Gateway.IsValid() {
		target = nh.Gateway.As16()
	}
	mac, ok := r.neighbor(nh.Port, target, now)
	if !ok {
		r.resolve6(p, out, target, now)
		return false
	}
	p.DecTTL()
	p.SetSrcMAC(out.MAC)
	p.SetDstMAC(mac)
	p.SetForward(nh.Port)
	return true
}

func linkLocal(a *[16]byte) bool { return a[0] == 0xfe && a[1]&0xc0 == 0x80 }

// icmp6Sum computes the ICMPv6 checksum of body between src and dst.
func icmp6Sum(src, dst [16]byte, body []byte) uint16 {
	return ^packet.Sum(body, packet.PseudoHeaderSumIPv6(src, dst, packet.ProtoICMPv6, uint32(len(body))))
}

// writeIPv6 writes a fixed IPv6 header for an ICMPv6 message at d.
func writeIPv6(d []byte, payload int, hop uint8, src, dst [16]byte) {
	packet.IPv6(d).Encode(&packet.IPv6Fields{PayloadLen: uint16(payload), NextHeader: packet.ProtoICMPv6,
		HopLimit: hop, Src: src, Dst: dst})
}

// writeND writes a 32-byte neighbor solicitation or advertisement (typ)
// at m, sent from src to dst: flags, target, and one link-layer address
// option (opt 1 source, 2 target) carrying mac.
func writeND(m []byte, typ, flags uint8, target [16]byte, opt uint8, mac [6]byte, src, dst [16]byte) {
	m = m[:32]
	clear(m)
	m[0] = typ
	m[4] = flags
	copy(m[8:24], target[:])
	m[24], m[25] = opt, 1
	copy(m[26:32], mac[:])
	binary.BigEndian.PutUint16(m[2:4], icmp6Sum(src, dst, m))
}

// source6 picks the address of in to send to peer from: one of the same
// scope (link-local for a link-local peer, RFC 4291 2.5.6), else any.
func (r *Router) source6(in *iface, peer [16]byte) ([16]byte, bool) {
	ll := linkLocal(&peer)
	for _, a := range in.v6 {
		if a.Addr().IsLinkLocalUnicast() == ll {
			return a.Addr().As16(), true
		}
	}
	if len(in.v6) > 0 {
		return in.v6[0].Addr().As16(), true
	}
	return [16]byte{}, false
}

// local6Packet serves IPv6 packets addressed to the router: it refuses
// routing headers with segments left, answers echo requests and absorbs
// the rest.
func (r *Router) local6Packet(p *packet.Packet) {
	if p.RoutingOff != 0 && p.Data[p.RoutingOff+3] != 0 {
		// The router is the routing header's current destination, with
		// segments left to visit, and processes no routing type: type 0
		// is deprecated and must be treated as unrecognized (RFC 5095
		// 3), and an unrecognized type with segments left is answered
		// with parameter problem code 0 pointing at the routing type
		// field (RFC 8200 4.4), never forwarded to the next segment.
		r.ctr.routingHeader.Add(1)
		r.icmp6Answer(p, packet.ICMPv6ParamProblem, 0, uint32(int(p.RoutingOff)-int(p.L3Off)+2), packet.DropUnsupported, r.ctr.paramProblem)
		return
	}
	in := r.iface(p.InPort)
	if in == nil || p.Flags&packet.FlagICMPv6 == 0 || p.ICMP().Type() != icmp6EchoRequest {
		r.ctr.local.Add(1)
		p.SetDrop(packet.DropConsumed)
		return
	}
	h := p.IPv6()
	ic := p.ICMP()
	ic[0] = icmp6EchoReply
	// Swapping addresses leaves the pseudo-header sum unchanged.
	ic.SetChecksum(packet.ChecksumUpdate16(ic.Checksum(), uint16(icmp6EchoRequest)<<8, uint16(icmp6EchoReply)<<8))
	src, dst := h.Src(), h.Dst()
	h.SetSrc(dst)
	h.SetDst(src)
	h.SetHopLimit(64)
	answer(p, in, r.ctr.echo)
}

// icmp6Error turns p into an ICMPv6 error about itself (RFC 4443), quoting
// as much of it as fits in the minimum MTU. p has passed ipv6's martian
// check (packet.Martian6): its source is neither multicast nor
// unspecified, so it can be answered.
func (r *Router) icmp6Error(p *packet.Packet, typ, code uint8, reason packet.DropReason, sent *pipeline.Counter) {
	r.icmp6Answer(p, typ, code, 0, reason, sent)
}

// icmp6Answer is icmp6Error for any type, with rest as the error's second
// word when it has one: a packet too big's MTU, a parameter problem's
// pointer.
func (r *Router) icmp6Answer(p *packet.Packet, typ, code uint8, rest uint32, reason packet.DropReason, sent *pipeline.Counter) {
	in := r.iface(p.InPort)
	src := p.IPv6().Src()
	var from [16]byte
	ok := in != nil
	if ok {
		from, ok = r.source6(in, src)
	}
	if !ok || (p.Flags&packet.FlagICMPv6 != 0 && p.ICMP().IsError(true)) || !r.allowICMP() {
		p.SetDrop(reason)
		return
	}
	switch typ {
	case packet.ICMPv6PacketTooBig:
		ok = p.ToICMPv6PacketTooBig(rest, from)
	case packet.ICMPv6ParamProblem:
		ok = p.ToICMPv6ParamProblem(code, rest, from)
	default:
		ok = p.ToICMPv6Error(typ, code, from)
	}
	if !ok {
		p.SetDrop(reason)
		return
	}
	answer(p, in, sent)
}

// ndValid reports whether the neighbor solicitation or advertisement p
// may be acted on (RFC 4861 7.1.1, 7.1.2): hop limit 255, so it was sent
// on the link (a router on the way would have lowered it, and one from
// off the link could teach the table any MAC); code 0; at least 24 bytes;
// a valid checksum; a target and a source that are not multicast; and
// options that each have a length and fit. Anything else is discarded.
func ndValid(p *packet.Packet) bool {
	ic := p.ICMP()
	h := p.IPv6()
	if len(ic) < 24 || ic[1] != 0 || h.HopLimit() != 255 || ic[8] == 0xff || h[8] == 0xff || !p.L4ChecksumValid() {
		return false
	}
	for opts := ic[24:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return false
		}
		opts = opts[int(opts[1])*8:]
	}
	return true
}

// ndOption finds the link-layer address option (type 1 source, 2 target)
// in the options of an NDP message ndValid accepted.
func ndOption(opts []byte, typ uint8) ([6]byte, bool) {
	for len(opts) >= 8 {
		if opts[0] == typ {
			return [6]byte(opts[2:8]), true
		}
		opts = opts[int(opts[1])*8:]
	}
	return [6]byte{}, false
}

// solicitedNode reports whether a is a solicited-node multicast address,
// ff02::1:ffXX:XXXX (RFC 4291 2.7.1).
func solicitedNode(a *[16]byte) bool {
	return a[0] == 0xff && a[1] == 0x02 && [9]byte(a[2:11]) == [9]byte{} && a[11] == 1 && a[12] == 0xff
}

// owns6 reports whether a is one of in's addresses.
func owns6(in *iface, a [16]byte) bool {
	for _, p := range in.v6 {
		if p.Addr().As16() == a {
			return true
		}
	}
	return false
}

// learn6 records what an NDP message says about addr's MAC, unless addr
// is the router's own: a node claiming it is a conflict, never a
// neighbor.
func (r *Router) learn6(port uint16, addr [16]byte, mac [6]byte, now int64) {
	if r.isLocal6(addr) {
		r.ctr.ndpConflicts.Add(1)
		return
	}
	r.neigh.learn(port, addr, mac, now)
	r.ctr.learned.Add(1)
}

// neighborSolicit learns the solicitor and answers for our addresses:
// with a solicited advertisement to the solicitor, or, for a node doing
// duplicate address detection on one of them (the unspecified source),
// with an advertisement to all nodes that defends it (RFC 4861 7.2.4,
// RFC 4862 5.4.3).
func (r *Router) neighborSolicit(p *packet.Packet, now int64) {
	in := r.iface(p.InPort)
	if in == nil || !ndValid(p) {
		p.SetDrop(packet.DropMalformed)
		return
	}
	ic := p.ICMP()
	h := p.IPv6()
	target := [16]byte(ic[8:24])
	src, dst := h.Src(), h.Dst()
	mac, sll := ndOption(ic[24:], 1)
	dad := src == [16]byte{}
	if dad && (sll || !solicitedNode(&dst)) {
		// RFC 4861 7.1.1: a probe goes to the solicited-node address
		// and has no link-layer address to tell.
		p.SetDrop(packet.DropMalformed)
		return
	}
	if r.isLocal6(src) {
		// Another node using our address: never answered nor learned.
		r.ctr.ndpConflicts.Add(1)
		p.SetDrop(packet.DropConsumed)
		return
	}
	if sll {
		r.learn6(p.InPort, src, mac, now)
	}
	l3 := int(p.L3Off)
	n := l3 + 40 + 32
	if !owns6(in, target) || cap(p.Data) < n {
		p.SetDrop(packet.DropConsumed) // not ours
		return
	}
	// Router, solicited, override; the target link-layer address. A
	// defence is not solicited and goes to all nodes (ff02::1).
	to, toMAC, flags := src, packet.Ethernet(p.Data).Src(), uint8(0xe0)
	if dad {
		r.ctr.ndpConflicts.Add(1)
		to = [16]byte{0: 0xff, 1: 0x02, 15: 1}
		toMAC, flags = [6]byte{0x33, 0x33, 0, 0, 0, 1}, 0xa0
	}
	d := p.Data[:n]
	e := packet.Ethernet(d)
	e.SetDst(toMAC)
	e.SetSrc(in.MAC)
	writeIPv6(d[l3:], 32, 255, target, to)
	writeND(d[l3+40:], icmp6NA, flags, target, 2, in.MAC, target, to)
	p.Data = d
	p.Parse()
	p.SetBounce()
	r.ctr.ndpAdverts.Add(1)
}

// neighborAdvert learns the advertised address.
func (r *Router) neighborAdvert(p *packet.Packet, now int64) {
	if !ndValid(p) {
		p.SetDrop(packet.DropMalformed)
		return
	}
	ic := p.ICMP()
	if dst := p.IPv6().Dst(); dst[0] == 0xff && ic[4]&0x40 != 0 {
		// RFC 4861 7.1.2: an advertisement to a multicast address is
		// never a solicited one.
		p.SetDrop(packet.DropMalformed)
		return
	}
	if mac, ok := ndOption(ic[24:], 2); ok {
		r.learn6(p.InPort, [16]byte(ic[8:24]), mac, now)
	}
	p.SetDrop(packet.DropConsumed)
}

// resolve6 turns p into a neighbor solicitation for target.
func (r *Router) resolve6(p *packet.Packet, out *iface, target [16]byte, now int64) {
	r.ctr.noNeighbor.Add(1)
	from, ok := r.source6(out, target)
	n := 14 + 40 + 32
	if !ok || cap(p.Data) < n || !r.neigh.shouldResolve(out.Port, target, now) {
		p.SetDrop(packet.DropNoNeighbor)
		return
	}
	// Solicited-node multicast: ff02::1:ffXX:XXXX.
	var sn [16]byte
	sn[0], sn[1], sn[11], sn[12] = 0xff, 0x02, 0x01, 0xff
	copy(sn[13:], target[13:])
	d := p.Data[:n]
	e := packet.Ethernet(d)
	e.SetDst([6]byte{0x33, 0x33, 0xff, target[13], target[14], target[15]})
	e.SetSrc(out.MAC)
	e.SetType(packet.EtherTypeIPv6)
	writeIPv6(d[14:], 32, 255, from, sn)
	writeND(d[54:], icmp6NS, 0, target, 1, out.MAC, from, sn) // the source link-layer address
	p.Data = d
	p.Parse()
	p.SetForward(out.Port)
	r.ctr.resolutions.Add(1)
}
