package lb

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/packet"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

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

// Stage benchmarks: UDP flow i runs from 10.0.0.0+i (low 24 bits) port
// 40000 to the VIP 198.18.1.100:53, balanced over 4 equal backends
// (port 8053). Packets are one parsed template per batch slot, rewritten
// in place with flow i's tuple before each batch (a few ns per packet,
// included in the figures), so the working set is the conntrack table,
// not frames. Batches of 64 packets of random flows; ns per packet,
// conntrack's TrackBatch included.

const burst = 64

func benchTuple(i uint32) (src [4]byte) {
	binary.BigEndian.PutUint32(src[:], 10<<24|i&0xffffff)
	return src
}

// setTuple writes addresses and ports into an Ethernet/IPv4(20)/L4 frame
// (checksums are left as they are: the stage updates them incrementally
// either way, and nothing here checks them).
func setTuple(d []byte, src, dst [4]byte, sport, dport uint16) {
	copy(d[14+12:], src[:])
	copy(d[14+16:], dst[:])
	binary.BigEndian.PutUint16(d[34:], sport)
	binary.BigEndian.PutUint16(d[36:], dport)
}

type xorshift uint64

func (x *xorshift) below(n uint32) uint32 {
	*x ^= *x << 13
	*x ^= *x >> 7
	*x ^= *x << 17
	return uint32((uint64(uint32(*x>>32)) * uint64(n)) >> 32)
}

type benchBatch struct {
	b    packet.Batch
	tmpl packet.Packet
	bufs [burst][]byte
}

func newBenchBatch(f []byte) *benchBatch {
	bb := &benchBatch{}
	bb.tmpl.Reset(f, 0, 0)
	if bb.tmpl.Parse() != packet.ErrNone {
		panic("template")
	}
	for i := range bb.bufs {
		bb.bufs[i] = append([]byte(nil), f...)
	}
	return bb
}

// fill sets slot j of the batch to tuple(j)'s packet.
func (bb *benchBatch) fill(tuple func(j int) (src, dst [4]byte, sport, dport uint16)) {
	for j := range burst {
		p := &bb.b.Packets[j]
		*p = bb.tmpl
		p.Data = bb.bufs[j]
		src, dst, sport, dport := tuple(j)
		setTuple(p.Data, src, dst, sport, dport)
	}
	bb.b.Len = burst
}

var (
	benchVIP = [4]byte{198, 18, 1, 100}
	benchBEs = []string{"198.18.2.10:8053", "198.18.2.11:8053", "198.18.2.12:8053", "198.18.2.13:8053"}
)

func benchLB(tb testing.TB, maxFlows int, to conntrack.Timeouts, full bool) *Stage {
	cfg := Config{Services: []Service{
		svcOf(packet.ProtoUDP, "198.18.1.100:53", servers(nil, benchBEs...)),
		svcOf(packet.ProtoTCP, "198.18.1.100:80", servers(nil, benchBEs...)),
	}}
	if full {
		cfg.SNAT = []netip.Addr{netip.MustParseAddr(snat)}
	}
	b, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ct, err := conntrack.New(conntrack.Config{MaxFlows: maxFlows, Timeouts: to})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := NewStage(b, ct)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// populate balances UDP flows 0..n-1 (a query each, then its answer) and
// returns each flow's backend, as the answers come from it.
func populate(tb testing.TB, s *Stage, n int, now int64) (be [][4]byte, port []uint16) {
	q := newBenchBatch(pt.UDP4("10.0.0.1:40000", "198.18.1.100:53", "0123456789abcdef"))
	be, port = make([][4]byte, n), make([]uint16, n)
	for base := 0; base < n; base += burst {
		idx := func(j int) uint32 { return uint32(min(base+j, n-1)) }
		q.fill(func(j int) ([4]byte, [4]byte, uint16, uint16) { return benchTuple(idx(j)), benchVIP, 40000, 53 })
		s.ProcessAt(&q.b, now)
		for j := range burst {
			p := &q.b.Packets[j]
			be[idx(j)], port[idx(j)] = p.IPv4().Dst(), p.DstPort()
		}
		q.fill(func(j int) ([4]byte, [4]byte, uint16, uint16) {
			return be[idx(j)], benchTuple(idx(j)), port[idx(j)], 40000
		})
		s.ProcessAt(&q.b, now)
	}
	if c := s.Counters(); c.Flows != uint64(n) || c.Conflicts != 0 {
		tb.Fatalf("populate: %+v", c)
	}
	return be, port
}

var benchSizes = []int{1_000, 1_000_000}

// BenchmarkStageEstablished: translation of packets of random balanced
// flows, client to VIP (in) and backend to client (out).
func BenchmarkStageEstablished(b *testing.B) {
	long := conntrack.Timeouts{UDP: time.Hour, UDPStream: time.Hour}
	for _, n := range benchSizes {
		s := benchLB(b, n, long, false)
		now := int64(time.Second)
		be, port := populate(b, s, n, now)
		bb := newBenchBatch(pt.UDP4("10.0.0.1:40000", "198.18.1.100:53", "0123456789abcdef"))
		for _, dir := range []string{"in", "out"} {
			b.Run(fmt.Sprintf("flows=%d/%s", n, dir), func(b *testing.B) {
				x := xorshift(0x9e3779b97f4a7c15)
				var flows [burst]uint32
				tuple := func(j int) ([4]byte, [4]byte, uint16, uint16) {
					i := flows[j]
					if dir == "in" {
						return benchTuple(i), benchVIP, 40000, 53
					}
					return be[i], benchTuple(i), port[i], 40000
				}
				before := s.Counters().Translated
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					for j := range flows {
						flows[j] = x.below(uint32(n))
					}
					bb.fill(tuple)
					s.ProcessAt(&bb.b, now)
				}
				b.StopTimer()
				if got := s.Counters().Translated - before; got != uint64(b.N)*burst {
					b.Fatalf("translated %d of %d", got, b.N*burst)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/packet")
			})
		}
	}
}

// BenchmarkStageNewFlow: the first packet of a flow (a TCP SYN to the
// VIP): conntrack entry, the flow hash, the Maglev lookup, the
// translated tuple installed, the packet rewritten, in a table already
// holding n balanced UDP flows; dnat keeps the client's address, snat
// translates it too (the client's port is free). New flows cycle through
// 2048 tuples; SYN-sent flows time out after 1ms and the clock moves 1ms
// per batch of 64, so each SYN finds its tuple's previous flow expired
// (the lookup frees it) and starts a new one. snat runs at 1k resident
// flows only: one SNAT address holds at most 64512 flows per backend,
// so a million resident flows cannot all be balanced through one.
func BenchmarkStageNewFlow(b *testing.B) {
	to := conntrack.Timeouts{UDP: 24 * time.Hour, UDPStream: 24 * time.Hour, TCPSynSent: time.Millisecond}
	const cycle = 2048
	for _, n := range benchSizes {
		for _, mode := range []string{"dnat", "snat"} {
			if mode == "snat" && n > 100_000 {
				continue
			}
			s := benchLB(b, n+2*cycle+2*burst, to, mode == "snat")
			now := int64(time.Second)
			populate(b, s, n, now)
			syn := newBenchBatch(pt.TCP4("10.255.0.1:40000", "198.18.1.100:80", "", pt.TCPFlags(packet.TCPSyn)))
			b.Run(fmt.Sprintf("flows=%d/%s", n, mode), func(b *testing.B) {
				var next uint32
				tuple := func(int) ([4]byte, [4]byte, uint16, uint16) {
					k := next % cycle
					next++
					// Sources 10.255.x.y, never a resident's.
					return [4]byte{10, 255, byte(k >> 8), byte(k)}, benchVIP, 40000, 80
				}
				before := s.Counters()
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					syn.fill(tuple)
					now += int64(time.Millisecond)
					s.ProcessAt(&syn.b, now)
				}
				b.StopTimer()
				c := s.Counters()
				if c.Flows-before.Flows != uint64(b.N*burst) || c.Conflicts != before.Conflicts || c.TableFull != before.TableFull {
					b.Fatalf("counters %+v after %d new flows (before %+v)", c, b.N*burst, before)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/packet")
			})
		}
	}
}

// BenchmarkStageLoop is the stage in a worker over memory ports
// (pipelinetest.Benchmark): established UDP packets both ways, the whole
// loop per packet (ns/pkt) and the stage alone (stage-ns/pkt).
func BenchmarkStageLoop(b *testing.B) {
	s := benchLB(b, 4096, conntrack.Timeouts{UDP: time.Hour, UDPStream: time.Hour}, false)
	now := time.Now().UnixNano()
	var frames [][]byte
	for i := range 32 {
		q := pt.UDP4(fmt.Sprintf("10.0.0.%d:40000", i+1), "198.18.1.100:53", "0123456789abcdef")
		p := run(s, now, q)[0]
		a := pt.UDP4(netip.AddrPortFrom(p.IPv4().DstAddr(), p.DstPort()).String(), fmt.Sprintf("10.0.0.%d:40000", i+1), "0123456789abcdef")
		run(s, now, a)
		frames = append(frames, q, a)
	}
	pt.Benchmark(b, s, frames...)
}
