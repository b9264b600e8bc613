package conntrack

import (
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/packet"
)

func echo4(t *testing.T, src, dst net.IP, typ uint8, id uint16) *packet.Packet {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: src, DstIP: dst},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	p := &packet.Packet{Data: buf.Bytes()}
	p.Parse()
	return p
}

// A ping from the far side with the identifier of a ping the near side
// sent is a new flow, not that ping's reply: a firewall that lets replies
// in must not let it through as one.
func TestEchoRequestFromTheFarSideIsNotAReply(t *testing.T) {
	tb, err := New(Config{MaxFlows: 64})
	if err != nil {
		t.Fatal(err)
	}
	near, far := net.IP{198, 18, 0, 1}, net.IP{198, 18, 1, 2}
	if r := tb.Track(echo4(t, near, far, 8, 77), 1); r.State != StateNew {
		t.Fatalf("near request: %v", r.State)
	}
	if r := tb.Track(echo4(t, far, near, 0, 77), 2); r.State != StateEstablished || r.Dir != Reply {
		t.Fatalf("reply: %v %v", r.State, r.Dir)
	}
	if r := tb.Track(echo4(t, far, near, 8, 77), 3); r.State != StateNew || r.Dir != Original {
		t.Fatalf("far request with the same id: %v %v, want a new flow", r.State, r.Dir)
	}
	if tb.Len() != 2 {
		t.Errorf("%d flows, want 2", tb.Len())
	}
}
