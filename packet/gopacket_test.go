package packet

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

type decoded struct {
	eth *layers.Ethernet
	ip4 *layers.IPv4
	ip6 *layers.IPv6
	tcp *layers.TCP
	udp *layers.UDP
}

func decodeGopacket(t testing.TB, frame []byte) decoded {
	t.Helper()
	gp := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	var d decoded
	d.eth, _ = gp.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	d.ip4, _ = gp.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	d.ip6, _ = gp.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	d.tcp, _ = gp.Layer(layers.LayerTypeTCP).(*layers.TCP)
	d.udp, _ = gp.Layer(layers.LayerTypeUDP).(*layers.UDP)
	return d
}

// TestParseAgreesWithGopacket compares what both parsers find: layers,
// ports, payloads and addresses; for fragments the IP layer and addresses
// only (gopacket does not parse L4 in fragments).
func TestParseAgreesWithGopacket(t *testing.T) {
	for _, f := range validFrames {
		t.Run(f.name, func(t *testing.T) {
			frame := f.build(t)
			p := Packet{Data: frame}
			p.Parse()
			d := decodeGopacket(t, frame)
			if p.Flags&FlagFragment != 0 {
				d.tcp, d.udp = nil, nil
				p.Flags &^= FlagTCP | FlagUDP
			}
			if (d.ip4 != nil) != (p.Flags&FlagIPv4 != 0) || (d.ip6 != nil) != (p.Flags&FlagIPv6 != 0) ||
				(d.tcp != nil) != (p.Flags&FlagTCP != 0) || (d.udp != nil) != (p.Flags&FlagUDP != 0) {
				t.Fatalf("layers differ: ours %v, gopacket ip4 %v ip6 %v tcp %v udp %v", p.Flags, d.ip4 != nil, d.ip6 != nil, d.tcp != nil, d.udp != nil)
			}
			k := p.FlowKey()
			switch {
			case d.tcp != nil:
				if k.SrcPort != uint16(d.tcp.SrcPort) || k.DstPort != uint16(d.tcp.DstPort) || string(p.Payload()) != string(d.tcp.Payload) {
					t.Errorf("TCP differs: %d>%d %q, gopacket %d>%d %q", k.SrcPort, k.DstPort, p.Payload(), d.tcp.SrcPort, d.tcp.DstPort, d.tcp.Payload)
				}
			case d.udp != nil:
				if k.SrcPort != uint16(d.udp.SrcPort) || k.DstPort != uint16(d.udp.DstPort) || string(p.Payload()) != string(d.udp.Payload) {
					t.Errorf("UDP differs: %d>%d %q, gopacket %d>%d %q", k.SrcPort, k.DstPort, p.Payload(), d.udp.SrcPort, d.udp.DstPort, d.udp.Payload)
				}
			}
			if d.ip4 != nil && (k.SrcAddr().String() != d.ip4.SrcIP.String() || k.DstAddr().String() != d.ip4.DstIP.String()) {
				t.Errorf("IPv4 addresses differ: %v %v, gopacket %v %v", k.SrcAddr(), k.DstAddr(), d.ip4.SrcIP, d.ip4.DstIP)
			}
			if d.ip6 != nil && (k.SrcAddr().String() != d.ip6.SrcIP.String() || k.DstAddr().String() != d.ip6.DstIP.String()) {
				t.Errorf("IPv6 addresses differ: %v %v, gopacket %v %v", k.SrcAddr(), k.DstAddr(), d.ip6.SrcIP, d.ip6.DstIP)
			}
		})
	}
}
