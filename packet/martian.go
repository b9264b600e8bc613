package packet

// Martian names why an address pair must never be routed: a source or
// destination RFC 1812 5.3.7 forbids (the ones Linux's ip_route_input
// calls martian), or its IPv6 equivalent (RFC 4291 2.5.2, 2.5.3, 2.7).
type Martian uint8

const (
	MartianNone         Martian = iota
	MartianSrcZero              // source in 0.0.0.0/8, or ::
	MartianSrcLoopback          // source in 127.0.0.0/8, or ::1
	MartianSrcMulticast         // source in 224.0.0.0/4, or ff00::/8
	MartianSrcBroadcast         // source 255.255.255.255
	MartianDstZero              // destination in 0.0.0.0/8, or ::
	MartianDstLoopback          // destination in 127.0.0.0/8, or ::1

	NumMartians = iota // one more than the last kind, for arrays indexed by Martian
)

// Martian4 says whether a packet from src to dst is a martian, and why
// (the first reason, sources before destinations). Multicast, broadcast
// and class E destinations are not martians: they are not routed as
// unicast, which is the caller's business; class E sources pass, as on
// Linux.
func Martian4(src, dst [4]byte) Martian {
	switch {
	case src[0] == 0:
		return MartianSrcZero
	case src[0] == 127:
		return MartianSrcLoopback
	case src[0]&0xf0 == 224:
		return MartianSrcMulticast
	case src == [4]byte{255, 255, 255, 255}:
		return MartianSrcBroadcast
	case dst[0] == 0:
		return MartianDstZero
	case dst[0] == 127:
		return MartianDstLoopback
	}
	return MartianNone
}

var ipv6Loopback = [16]byte{15: 1}

// Martian6 is Martian4 for IPv6: an unspecified, loopback or multicast
// source, or an unspecified or loopback destination. Link-local scope is
// not judged here: a link-local address is sound on its link.
func Martian6(src, dst *[16]byte) Martian {
	switch {
	case src[0] == 0xff:
		return MartianSrcMulticast
	case *src == [16]byte{}:
		return MartianSrcZero
	case *src == ipv6Loopback:
		return MartianSrcLoopback
	case *dst == [16]byte{}:
		return MartianDstZero
	case *dst == ipv6Loopback:
		return MartianDstLoopback
	}
	return MartianNone
}
