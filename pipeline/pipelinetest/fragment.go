package pipelinetest

import (
	"encoding/binary"
	"fmt"

	"github.com/xnfdev/xnf/packet"
)

// Fragments cuts the IP datagram of frame (an untagged Ethernet frame of
// IPv4, or of IPv6 without extension headers, as the builders make) into
// fragments, the way a sending host does (RFC 791, RFC 8200 4.5): each
// carries at most size bytes of the datagram's fragmentable part (size a
// positive multiple of 8), all share identification id (for IPv4 its low
// 16 bits, replacing the header's) and come in order; reverse the slice
// for another order.
//
//	for _, f := range pipelinetest.Fragments(pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:53", big), 1480, 7) { ... }
//
// IPv4 fragments get their header checksum recomputed; the L4 checksum,
// in the first fragment, stays the whole datagram's. It panics on a frame
// it cannot cut.
func Fragments(frame []byte, size int, id uint32) [][]byte {
	if size <= 0 || size%8 != 0 {
		panic(fmt.Sprintf("pipelinetest: fragment size %d: expected a positive multiple of 8", size))
	}
	var p packet.Packet
	p.Reset(frame, 0, 0)
	if p.Parse() != packet.ErrNone || p.VLANCount != 0 || p.Flags&packet.FlagFragment != 0 ||
		p.Flags&(packet.FlagIPv4|packet.FlagIPv6) == 0 || p.Flags&packet.FlagIPv6ExtHeaders != 0 {
		panic("pipelinetest: Fragments takes an untagged IPv4 frame, or IPv6 without extension headers, not already a fragment")
	}
	l3, end := int(p.L3Off), int(p.L3End)
	hdrLen := packet.IPv6Len
	if p.Flags&packet.FlagIPv4 != 0 {
		hdrLen = packet.IPv4(frame[l3:]).HeaderLen()
	}
	body := frame[l3+hdrLen : end]
	var out [][]byte
	for off := 0; off < len(body) || off == 0; off += size {
		last := min(off+size, len(body))
		more := last < len(body)
		f := append([]byte(nil), frame[:l3+hdrLen]...)
		if p.Flags&packet.FlagIPv4 != 0 {
			h := packet.IPv4(f[l3:])
			binary.BigEndian.PutUint16(h[2:4], uint16(hdrLen+last-off))
			binary.BigEndian.PutUint16(h[4:6], uint16(id))
			fo := binary.BigEndian.Uint16(h[6:8])&0x4000 | uint16(off/8)
			if more {
				fo |= 0x2000
			}
			binary.BigEndian.PutUint16(h[6:8], fo)
			h.SetChecksum(0)
			h.SetChecksum(h.ComputeChecksum())
		} else {
			h := f[l3:]
			next := h[6]
			h[6] = packet.ProtoFragment
			binary.BigEndian.PutUint16(h[4:6], uint16(8+last-off))
			om := uint16(off)
			if more {
				om |= 1
			}
			fh := make([]byte, 8)
			fh[0] = next
			binary.BigEndian.PutUint16(fh[2:4], om)
			binary.BigEndian.PutUint32(fh[4:8], id)
			f = append(f, fh...)
		}
		out = append(out, append(f, body[off:last]...))
		if !more {
			break
		}
	}
	return out
}
