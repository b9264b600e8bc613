package lb

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/packet"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// The test network: clients reach VIPs on port 0 of the harness, backends
// answer on port 1 (the stage does not care which side is which).
const (
	client  = "198.18.0.1"
	client2 = "198.18.0.2"
	vip     = "198.18.1.100"
	snat    = "198.18.2.1"
	router  = "198.18.0.254" // a router on the client's path
	client6 = "2001:db8::1"
	vip6    = "2001:db8:100::100"
	snat6   = "2001:db8:2::1"
	router6 = "2001:db8::fe"
)

var (
	backends  = []string{"198.18.2.10:8080", "198.18.2.11:8080", "198.18.2.12:8080"}
	backends6 = []string{"[2001:db8:2::10]:8080", "[2001:db8:2::11]:8080", "[2001:db8:2::12]:8080"}
)

func servers(weights []uint32, addrs ...string) []Server {
	out := make([]Server, len(addrs))
	for i, a := range addrs {
		out[i] = Server{Addr: netip.MustParseAddrPort(a), Weight: 1}
		if i < len(weights) {
			out[i].Weight = weights[i]
		}
	}
	return out
}

func svcOf(proto uint8, vipPort string, ss []Server) Service {
	return Service{Proto: proto, VIP: netip.MustParseAddrPort(vipPort), Backends: ss}
}

// newLB makes a balancer of cfg and a stage tracking its own table.
func newLB(t testing.TB, cfg Config) *Stage {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := conntrack.New(conntrack.Config{MaxFlows: 8192})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStage(b, ct)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// chosen is the backend the stage's table gives a new flow.
func chosen(t testing.TB, s *Stage, proto uint8, from, to string) netip.AddrPort {
	t.Helper()
	f, d := netip.MustParseAddrPort(from), netip.MustParseAddrPort(to)
	k := packet.FlowKey{Src: f.Addr().As16(), Dst: d.Addr().As16(), SrcPort: f.Port(), DstPort: d.Port(), Proto: proto}
	svc := s.lb.cur.Load().services[svcKey{addr: k.Dst, port: k.DstPort, proto: proto}]
	if svc == nil || svc.table == nil {
		t.Fatalf("no table for %v", d)
	}
	be := svc.servers[svc.table.Lookup(FlowHash(&k))]
	return netip.AddrPortFrom(netip.AddrFrom16(be.addr).Unmap(), be.port)
}

// icmpError is an ICMP (or ICMPv6, by family) error from src to dst of
// type typ and code, with rest in the four bytes after the checksum (the
// MTU of a fragmentation needed or packet too big), quoting the IP packet
// of frame quoted.
func icmpError(src, dst string, typ, code uint8, rest uint32, quoted []byte) []byte {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	eth := &layers.Ethernet{SrcMAC: mac(pt.DefaultSrcMAC), DstMAC: mac(pt.DefaultDstMAC)}
	q := quoted[14:]
	if s.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: uint16(rest >> 16), Seq: uint16(rest)}
		return pt.Frame(eth, ip, icmp, gopacket.Payload(q))
	}
	eth.EthernetType = layers.EthernetTypeIPv6
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	icmp.SetNetworkLayerForChecksum(ip)
	body := append([]byte{byte(rest >> 24), byte(rest >> 16), byte(rest >> 8), byte(rest)}, q...)
	return pt.Frame(eth, ip, icmp, gopacket.Payload(body))
}

func mac(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }

// run passes frames (copies) through s at time now, one batch, arriving
// on port 0, and returns the packets.
func run(s *Stage, now int64, frames ...[]byte) []packet.Packet {
	var b packet.Batch
	for _, f := range frames {
		b.Append(append([]byte(nil), f...), 0, 0).Parse()
	}
	s.ProcessAt(&b, now)
	return append([]packet.Packet(nil), b.Slice()...)
}

const sec = int64(1e9)
