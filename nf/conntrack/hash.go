package conntrack

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"

	"github.com/xnfdev/xnf/packet"
)

// hasher is a seeded hash of flow keys in the style of wyhash: the key's
// 37 bytes as five words, folded by 64x64->128 multiplications with
// per-table random secrets. The secrets keep an outsider from choosing
// keys that share a bucket chain; they are drawn from the runtime's
// ChaCha8 source, fresh for every table.
type hasher struct{ s [6]uint64 }

func newHasher() hasher {
	var h hasher
	for i := range h.s {
		h.s[i] = rand.Uint64() | 1
	}
	return h
}

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func (h *hasher) sum(k *packet.FlowKey) uint32 {
	a := binary.LittleEndian.Uint64(k.Src[0:8])
	b := binary.LittleEndian.Uint64(k.Src[8:16])
	c := binary.LittleEndian.Uint64(k.Dst[0:8])
	d := binary.LittleEndian.Uint64(k.Dst[8:16])
	e := uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32
	x := mum(a^h.s[0], b^h.s[1])
	y := mum(c^h.s[2], d^h.s[3])
	z := mum(x^e^h.s[4], y^h.s[5])
	return uint32(z) ^ uint32(z>>32)
}
