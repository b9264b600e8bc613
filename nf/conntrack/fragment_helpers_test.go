package conntrack

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/xnfdev/xnf/packet"
)

// Fragments for tests, written byte by byte from RFC 791 and RFC 8200 4.5
// (gopacket does not fragment).

// fragFrame is Ethernet and an IPv4 header, or an IPv6 header and a
// fragment header, from src to dst, carrying data at offset off of a
// datagram whose fragmentable part starts with protocol next,
// identification id.
func fragFrame(t testing.TB, src, dst netip.Addr, next uint8, id uint32, off int, more bool, data []byte) []byte {
	t.Helper()
	if off%8 != 0 {
		t.Fatalf("fragment offset %d: not a multiple of 8", off)
	}
	f := make([]byte, 14, 14+48+len(data))
	copy(f[0:6], []byte{2, 0, 0, 0, 0, 0xb})
	copy(f[6:12], []byte{2, 0, 0, 0, 0, 0xa})
	if src.Is4() {
		binary.BigEndian.PutUint16(f[12:14], packet.EtherTypeIPv4)
		h := make([]byte, 20)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:4], uint16(20+len(data)))
		binary.BigEndian.PutUint16(h[4:6], uint16(id))
		fo := uint16(off / 8)
		if more {
			fo |= 0x2000
		}
		binary.BigEndian.PutUint16(h[6:8], fo)
		h[8], h[9] = 64, next
		s, d := src.As4(), dst.As4()
		copy(h[12:16], s[:])
		copy(h[16:20], d[:])
		packet.IPv4(h).SetChecksum(packet.IPv4(h).ComputeChecksum())
		return append(append(f, h...), data...)
	}
	binary.BigEndian.PutUint16(f[12:14], packet.EtherTypeIPv6)
	h := make([]byte, 48)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:6], uint16(8+len(data)))
	h[6], h[7] = packet.ProtoFragment, 64
	s, d := src.As16(), dst.As16()
	copy(h[8:24], s[:])
	copy(h[24:40], d[:])
	h[40] = next
	om := uint16(off)
	if more {
		om |= 1
	}
	binary.BigEndian.PutUint16(h[42:44], om)
	binary.BigEndian.PutUint32(h[44:48], id)
	return append(append(f, h...), data...)
}

// udpDatagram is a UDP header and n bytes of payload: the fragmentable
// part of a UDP datagram. The checksum is not computed (nothing here
// checks it) but is not 0, which IPv6 forbids.
func udpDatagram(src, dst uint16, n int) []byte {
	b := make([]byte, 8+n)
	binary.BigEndian.PutUint16(b[0:2], src)
	binary.BigEndian.PutUint16(b[2:4], dst)
	binary.BigEndian.PutUint16(b[4:6], uint16(8+n))
	binary.BigEndian.PutUint16(b[6:8], 0x1234)
	for i := range n {
		b[8+i] = byte(i)
	}
	return b
}

// split cuts a fragmentable part into fragments of size bytes (a multiple
// of 8), in order.
func split(t testing.TB, src, dst netip.Addr, next uint8, id uint32, dgram []byte, size int) [][]byte {
	t.Helper()
	var out [][]byte
	for off := 0; off < len(dgram); off += size {
		end := min(off+size, len(dgram))
		out = append(out, fragFrame(t, src, dst, next, id, off, end < len(dgram), dgram[off:end]))
	}
	return out
}

// pkt parses f, failing unless it is sound.
func pkt(t testing.TB, f []byte) *packet.Packet { t.Helper(); return parsed(t, f) }

// check verifies the tracker's invariants: every entry's spans are sorted,
// disjoint and not adjacent, a complete entry is one span covering its
// end, and the in-progress count matches.
func (f *Fragments) check(tb testing.TB) {
	tb.Helper()
	live := 0
	for i := range f.e {
		e := &f.e[i]
		if e.state == 0 {
			if *e != (fragEntry{}) || f.tags[i] != 0 {
				tb.Fatalf("entry %d: free but not zero (tag %#x)", i, f.tags[i])
			}
			continue
		}
		if f.tags[i] != e.hash|1 {
			tb.Fatalf("entry %d: tag %#x, hash %#x", i, f.tags[i], e.hash)
		}
		if e.state&fsLive == 0 {
			tb.Fatalf("entry %d: state %#x without live", i, e.state)
		}
		if int(e.n) > len(e.spans) {
			tb.Fatalf("entry %d: %d spans", i, e.n)
		}
		for j := 0; j < int(e.n); j++ {
			s := e.spans[j]
			if s.lo >= s.hi || j > 0 && e.spans[j-1].hi >= s.lo {
				tb.Fatalf("entry %d: spans %v not sorted, disjoint and apart", i, e.spans[:e.n])
			}
			if e.state&fsLast != 0 && s.hi > e.end {
				tb.Fatalf("entry %d: span %v past the end %d", i, s, e.end)
			}
		}
		if int(e.hash&f.mask) != i/fragWays {
			tb.Fatalf("entry %d in the wrong bucket", i)
		}
		if e.state&fsComplete != 0 {
			if e.state&fsLast == 0 || e.n != 1 || e.spans[0] != (fragSpan{0, e.end}) {
				tb.Fatalf("entry %d: complete with spans %v, end %d", i, e.spans[:e.n], e.end)
			}
			continue
		}
		live++
	}
	if live != f.live {
		tb.Fatalf("%d datagrams in progress, counted %d", live, f.live)
	}
}
