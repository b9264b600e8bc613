package nat

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/packet"
)

// Benchmark traffic: UDP flow i runs from 10.0.0.0+i (low 24 bits) port
// 40000 to 198.19.0.0+i (low 16 bits) port 53+(i>>16), masqueraded behind
// natX keeping its port (every flow has its own destination, so none
// collide). Packets are one parsed template per batch slot, rewritten in
// place with flow i's tuple before each batch (a few ns per packet,
// included in the figures), so the working set is the table, not frames.
// Batches of 64 packets of random flows; figures are ns per packet.

const burst = 64

func flowTuple(i uint32) (src, dst [4]byte, sport, dport uint16) {
	binary.BigEndian.PutUint32(src[:], 10<<24|i&0xffffff)
	binary.BigEndian.PutUint32(dst[:], 198<<24|19<<16|i&0xffff)
	return src, dst, 40000, uint16(53 + i>>16)
}

// setTuple writes addresses and ports into an Ethernet/IPv4(20)/UDP frame
// (checksums are left as they are: NAT updates them incrementally either
// way, and nothing here checks them).
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

func newBenchBatch(tb testing.TB) *benchBatch {
	bb := &benchBatch{}
	f := udpFrame(tb, ap(inA, 40000), ap(srvB, 53), "0123456789abcdef")
	bb.tmpl.Reset(f, 0, 0)
	if bb.tmpl.Parse() != packet.ErrNone {
		tb.Fatal("template")
	}
	for i := range bb.bufs {
		bb.bufs[i] = append([]byte(nil), f...)
	}
	return bb
}

// fill sets slot j to flow idx(j)'s packet in direction out (inside to
// outside) or back (outside to the NAT address).
func (bb *benchBatch) fill(out bool, idx func(j int) uint32) {
	for j := range burst {
		src, dst, sport, dport := flowTuple(idx(j))
		p := &bb.b.Packets[j]
		*p = bb.tmpl
		p.Data = bb.bufs[j]
		if out {
			setTuple(p.Data, src, dst, sport, dport)
			p.InPort = portIn
		} else {
			setTuple(p.Data, dst, natX.As4(), dport, sport)
			p.InPort = portOut
		}
	}
	bb.b.Len = burst
}

func benchStage(tb testing.TB, maxFlows int, to conntrack.Timeouts) *Stage {
	ct, err := conntrack.New(conntrack.Config{MaxFlows: maxFlows, Timeouts: to})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := NewStage(Config{Inside: []uint16{portIn}, Outside: []uint16{portOut}, Pool: []netip.Addr{natX}}, ct)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// populate creates flows 0..n-1 (a packet out and its answer back each).
func populate(tb testing.TB, s *Stage, bb *benchBatch, n int, now int64) {
	for base := 0; base < n; base += burst {
		idx := func(j int) uint32 { return uint32(min(base+j, n-1)) }
		bb.fill(true, idx)
		s.ProcessAt(&bb.b, now)
		bb.fill(false, idx)
		s.ProcessAt(&bb.b, now)
	}
	if st := s.Counters(); st.SNATFlows != uint64(n) || st.PortsKept != uint64(n) {
		tb.Fatalf("populate: %+v", st)
	}
}

var benchSizes = []int{1_000, 1_000_000}

// BenchmarkEstablished: translation of packets of random established
// flows, inside to outside (out) and back (in).
func BenchmarkEstablished(b *testing.B) {
	long := conntrack.Timeouts{UDP: time.Hour, UDPStream: time.Hour}
	for _, n := range benchSizes {
		s := benchStage(b, n, long)
		bb := newBenchBatch(b)
		now := int64(time.Second)
		populate(b, s, bb, n, now)
		for _, dir := range []string{"out", "in"} {
			b.Run(fmt.Sprintf("flows=%d/%s", n, dir), func(b *testing.B) {
				x := xorshift(0x9e3779b97f4a7c15)
				idx := func(int) uint32 { return x.below(uint32(n)) }
				before := s.Counters().Translated
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					bb.fill(dir == "out", idx)
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

// BenchmarkNewFlow: the first packet of a flow (a TCP SYN): conntrack
// entry, the translation chosen and installed, the packet rewritten, in a
// table already holding n established UDP flows. "kept": the original
// port is free; "allocated": it is taken (a long-lived TCP flow holds it
// towards the same server), so the port comes from the cursor. New flows
// cycle through 2048 tuples; SYN-sent flows time out after 1ms and the
// clock moves 1ms per batch of 64, so each SYN finds its tuple's previous
// flow expired (the lookup frees it) and starts a new one.
func BenchmarkNewFlow(b *testing.B) {
	to := conntrack.Timeouts{UDP: 24 * time.Hour, UDPStream: 24 * time.Hour,
		TCPSynSent: time.Millisecond, TCPEstablished: 24 * time.Hour}
	const cycle = 2048
	srv := [4]byte{198, 19, 255, 254}
	for _, n := range benchSizes {
		s := benchStage(b, n+2*cycle+2*burst, to) // kept leaves its cycle expired, not yet freed
		bb := newBenchBatch(b)
		populate(b, s, bb, n, int64(time.Second))
		// The holder: inA:40000 > srv:80 established, translated keeping
		// its port.
		now := int64(2 * time.Second)
		held := netip.AddrFrom4(srv)
		for _, f := range [][]byte{
			tcpFrame(b, ap(inA, 40000), ap(held, 80), packet.TCPSyn),
		} {
			run(b, s, portIn, f, now)
		}
		run(b, s, portOut, tcpFrame(b, ap(held, 80), ap(natX, 40000), packet.TCPSyn|packet.TCPAck), now)
		run(b, s, portIn, tcpFrame(b, ap(inA, 40000), ap(held, 80), packet.TCPAck), now)
		syn := newBenchBatch(b)
		f := tcpFrame(b, ap(inA, 40000), ap(held, 80), packet.TCPSyn)
		syn.tmpl.Reset(f, 0, 0)
		syn.tmpl.Parse()
		for i := range syn.bufs {
			syn.bufs[i] = append([]byte(nil), f...)
		}
		for _, mode := range []string{"kept", "allocated"} {
			b.Run(fmt.Sprintf("flows=%d/%s", n, mode), func(b *testing.B) {
				var next uint32
				before := s.Counters()
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					for j := range burst {
						q := &syn.b.Packets[j]
						*q = syn.tmpl
						q.Data = syn.bufs[j]
						q.InPort = portIn
						k := next % cycle
						next++
						// Sources 10.255.x.y, never a resident's.
						src := [4]byte{10, 255, byte(k >> 8), byte(k)}
						dst := [4]byte{198, 19, 254, byte(k)}
						if mode == "allocated" {
							dst = srv
						}
						setTuple(q.Data, src, dst, 40000, 80)
					}
					syn.b.Len = burst
					now += int64(time.Millisecond)
					s.ProcessAt(&syn.b, now)
				}
				b.StopTimer()
				st := s.Counters()
				if st.Exhausted != before.Exhausted || st.TableFull != before.TableFull ||
					st.SNATFlows-before.SNATFlows != uint64(b.N*burst) {
					b.Fatalf("stats %+v after %d new flows (before %+v)", st, b.N*burst, before)
				}
				kept := st.PortsKept - before.PortsKept
				if (mode == "kept") != (kept == uint64(b.N*burst)) || (mode == "allocated" && kept != 0) {
					b.Fatalf("%s: %d of %d kept their port", mode, kept, b.N*burst)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/packet")
			})
		}
	}
}
