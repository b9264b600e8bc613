package packet

import (
	"fmt"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// go test -run XXX -bench . -benchtime=200ms ./packet

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct {
		name  string
		frame func(testing.TB) []byte
	}{
		{"eth-ipv4-udp", frameIPv4UDP},
		{"eth-ipv6-tcp", frameIPv6TCP},
		{"eth-vlan-vlan-ipv6-tcp", frameVLANVLANIPv6TCP},
		{"eth-ipv6-ext-tcp", frameIPv6ExtTCP},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := Packet{Data: bc.frame(b)}
			b.ReportAllocs()
			for b.Loop() {
				p.Parse()
			}
		})
	}
}

// BenchmarkParseGopacket is the reference point: gopacket's
// DecodingLayerParser into preallocated layers, the fastest way it offers.
func BenchmarkParseGopacket(b *testing.B) {
	var (
		eth layers.Ethernet
		ip4 layers.IPv4
		udp layers.UDP
		pl  gopacket.Payload
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &udp, &pl)
	decoded := make([]gopacket.LayerType, 0, 4)
	frame := frameIPv4UDP(b)
	b.Run("eth-ipv4-udp", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = parser.DecodeLayers(frame, &decoded)
		}
	})
}

// BenchmarkBatchParse parses whole batches of distinct frames, as a worker
// does, and reports the cost per packet at several burst sizes.
func BenchmarkBatchParse(b *testing.B) {
	frames := make([][]byte, MaxBurst)
	for i := range frames {
		frames[i] = frameIPv4UDP(b)
	}
	batch := new(Batch)
	for _, burst := range []int{16, 64, 256} {
		b.Run(fmt.Sprint(burst), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				batch.Reset()
				for i := range burst {
					batch.Append(frames[i], uint64(i), 0)
				}
				for i := range batch.Slice() {
					p := &batch.Packets[i]
					p.Parse()
					if p.Has(FlagUDP) {
						p.SetForward(1)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/packet")
		})
	}
}

func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{64, 1500} {
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			var sink uint16
			for b.Loop() {
				sink += Checksum(buf)
			}
			_ = sink
		})
		b.Run(fmt.Sprintf("%d-by-16-bit-words", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			var sink uint16
			for b.Loop() {
				sink += ^referenceSum(buf)
			}
			_ = sink
		})
	}
}

func BenchmarkSetIPv4Src(b *testing.B) {
	for _, bc := range []struct {
		name  string
		frame func(testing.TB) []byte
	}{
		{"udp", frameIPv4UDP},
		{"tcp", frameIPv4TCPOptions},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := Packet{Data: bc.frame(b)}
			p.Parse()
			addrs := [2][4]byte{{10, 0, 0, 1}, {192, 0, 2, 7}}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.SetIPv4Src(addrs[i&1])
				i++
			}
		})
	}
}

func BenchmarkFlowKey(b *testing.B) {
	p := Packet{Data: frameIPv6TCP(b)}
	p.Parse()
	b.ReportAllocs()
	var sink uint16
	for b.Loop() {
		sink += p.FlowKey().SrcPort
	}
	_ = sink
}
