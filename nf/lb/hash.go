package lb

import (
	"encoding/binary"
	"math/bits"

	"github.com/xnfdev/xnf/packet"
)

// flowSecrets are FlowHash's keys: fixed forever (the first digits of
// pi's fractional part in hex, odd), so that every process on every
// machine hashes a flow alike. They defend nothing: a table's entries are
// public in effect, since anyone can find which client ports land on a
// backend by trying them.
var flowSecrets = [6]uint64{
	0x243f6a8885a308d3, 0x13198a2e03707345, 0xa4093822299f31d1,
	0x082efa98ec4e6c89, 0x452821e638d01377, 0xbe5466cf34e90c6d,
}

// FlowHash returns the hash of a flow's 5-tuple that the lb stage looks a
// backend up with (Table.Lookup): well mixed, and the same for the same
// key in every process on every machine, unlike conntrack's per-table
// seeded hash, so that instances behind one ECMP route, and a restarted
// one, choose the same backend for a flow. It is wyhash's folded
// multiply over the key's five words (addresses, then ports and protocol)
// with fixed secrets. It does not allocate.
func FlowHash(k *packet.FlowKey) uint64 {
	le := binary.LittleEndian
	a := le.Uint64(k.Src[0:8])
	b := le.Uint64(k.Src[8:16])
	c := le.Uint64(k.Dst[0:8])
	d := le.Uint64(k.Dst[8:16])
	e := uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32
	s := &flowSecrets
	x := mum(a^s[0], b^s[1])
	y := mum(c^s[2], d^s[3])
	return mum(x^e^s[4], y^s[5])
}

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}
