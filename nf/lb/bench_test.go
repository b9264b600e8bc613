package lb

import "testing"

// BenchmarkMaglevLookup looks up independent flows, as a batch's are, in a
// default-size table of 100 backends.
func BenchmarkMaglevLookup(b *testing.B) {
	tb := build(b, DefaultSize, pool(100))
	hs := flowHashes(1 << 16) // 512 KiB read in order; the entries hit at random
	sink := 0
	b.ResetTimer()
	for i := range b.N {
		sink += tb.Lookup(hs[i&(len(hs)-1)])
	}
	b.StopTimer()
	if sink < 0 {
		b.Fatal(sink)
	}
}

// BenchmarkMaglevLookupDependent chains the lookups, each choosing the
// next hash: the latency of a lookup (plus the load of the hash), where
// BenchmarkMaglevLookup measures independent ones, as a batch's are.
func BenchmarkMaglevLookupDependent(b *testing.B) {
	tb := build(b, DefaultSize, pool(100))
	hs := flowHashes(1 << 16)
	r := 0
	b.ResetTimer()
	for i := range b.N {
		r = tb.Lookup(hs[(i+r)&(len(hs)-1)])
	}
	b.StopTimer()
	if r < 0 {
		b.Fatal(r)
	}
}

func BenchmarkMaglevBuild(b *testing.B) {
	for _, c := range []struct {
		name string
		bs   []Backend
	}{
		{"100-equal", pool(100)},
		{"100-weights-1-10", func() []Backend {
			bs := pool(100)
			for i := range bs {
				bs[i].Weight = uint32(i%10 + 1)
			}
			return bs
		}()},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(DefaultSize, c.bs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
