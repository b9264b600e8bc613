package nftest

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/nf/router"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/pipeline/pipelinetest"
)

var (
	macIn  = [6]byte{2, 0, 0, 0, 0, 2}
	macOut = [6]byte{2, 0, 0, 0, 1, 1}
)

// chain builds firewall -> router over two memory ports. New flows from
// port 1 are rejected in part, so fuzzed frames also become answers.
func chain(t testing.TB) (*pipeline.Worker, *pipeline.MemPool, *pipelinetest.MemPort, *pipelinetest.MemPort) {
	rules, err := firewall.ParseRules([]string{
		"accept state established,related",
		"accept in 0 state new",
		"drop proto udp dport 53",
		"reject in 1 proto tcp",
		"reject in 1 proto udp dport 1-1000",
		"reject in 1 proto icmpv6",
	})
	if err != nil {
		t.Fatal(err)
	}
	fw, _ := firewall.New(1, rules, firewall.Drop)
	ct, _ := conntrack.New(conntrack.Config{MaxFlows: 256, Full: conntrack.EvictOldest})
	r, err := router.NewRouter(router.Config{
		Interfaces: []router.Interface{
			{Port: 0, MAC: macIn, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24"), netip.MustParsePrefix("2001:db8::2/64")}},
			{Port: 1, MAC: macOut, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.1.1/24"), netip.MustParsePrefix("2001:db8:1::1/64")}},
		},
		Routes: []router.StaticRoute{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), NextHops: []router.NextHop{{Port: 1, Gateway: netip.MustParseAddr("198.18.1.2")}}}},
		Neighbors: []router.Neighbor{
			{Port: 1, Addr: netip.MustParseAddr("198.18.1.2"), MAC: [6]byte{2, 0, 0, 0, 1, 2}},
			{Port: 1, Addr: netip.MustParseAddr("2001:db8:1::2"), MAC: [6]byte{2, 0, 0, 0, 1, 2}},
		},
		ICMPBurst: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	pool := pipeline.NewMemPool(512, 2048)
	a, b := pipelinetest.NewMemPort("a", pool), pipelinetest.NewMemPort("b", pool)
	w, err := pipeline.NewWorker(pipeline.Config{Ports: []pipeline.Port{a, b}, Stages: []pipeline.Stage{firewall.NewStage(fw, ct, 0), r}, CPU: -1})
	if err != nil {
		t.Fatal(err)
	}
	return w, pool, a, b
}

func seed(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...)
	return buf.Bytes()
}

// frames splits fuzz input into frames: each is a 1-byte port and a 2-byte
// length, then that many bytes (capped at 1514).
func frames(data []byte) (out [][]byte, ports []uint16) {
	for len(data) >= 3 {
		port := uint16(data[0] & 1)
		n := min(int(binary.BigEndian.Uint16(data[1:3])), 1514, len(data)-3)
		out = append(out, data[3:3+n])
		ports = append(ports, port)
		data = data[3+n:]
	}
	return
}

func encode(port byte, f []byte) []byte {
	return append([]byte{port, byte(len(f) >> 8), byte(len(f))}, f...)
}

// FuzzChain feeds random frames from both sides through firewall -> router:
// nothing panics, every frame comes back to the pool, and every IPv4
// packet the chain transmits has a valid header checksum (the router
// verifies before it forwards, and its rewrites keep checksums right).
func FuzzChain(f *testing.F) {
	eth := func(t layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr(macIn[:]), EthernetType: t}
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{198, 18, 0, 1}, DstIP: net.IP{203, 0, 113, 9}}
	u := &layers.UDP{SrcPort: 1000, DstPort: 9}
	u.SetNetworkLayerForChecksum(ip)
	udp := seed(eth(layers.EthernetTypeIPv4), ip, u, gopacket.Payload("hello"))
	ip2 := *ip
	ip2.Protocol = layers.IPProtocolTCP
	tc := &layers.TCP{SrcPort: 1000, DstPort: 80, SYN: true, Window: 100}
	tc.SetNetworkLayerForChecksum(&ip2)
	tcp := seed(eth(layers.EthernetTypeIPv4), &ip2, tc)
	ip3 := *ip
	ip3.TTL = 1
	ttl1 := seed(eth(layers.EthernetTypeIPv4), &ip3, u, gopacket.Payload("x"))
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8:1::2")}
	u6 := &layers.UDP{SrcPort: 1000, DstPort: 9}
	u6.SetNetworkLayerForChecksum(ip6)
	udp6 := seed(eth(layers.EthernetTypeIPv6), ip6, u6, gopacket.Payload("six"))
	f.Add(append(append(encode(0, udp), encode(1, tcp)...), encode(0, ttl1)...))
	f.Add(append(encode(0, udp6), encode(0, udp[:20])...))
	f.Add(encode(1, []byte{1, 2, 3}))

	w, pool, a, b := chain(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, ps := frames(data)
		for i, fr := range fs {
			if ps[i] == 0 {
				a.Inject(fr)
			} else {
				b.Inject(fr)
			}
		}
		for a.Pending() > 0 || b.Pending() > 0 {
			w.Poll()
		}
		for _, out := range append(a.Output(), b.Output()...) {
			var p packet.Packet
			p.Reset(out, 0, 0)
			p.Parse()
			if p.Has(packet.FlagIPv4) && !p.IPv4().ChecksumValid() {
				t.Fatalf("transmitted an IPv4 packet with a bad header checksum: %x", out)
			}
		}
		if pool.Available() != pool.Total() || pool.Violations != 0 {
			t.Fatalf("frames: %d of %d back, %d violations", pool.Available(), pool.Total(), pool.Violations)
		}
	})
}
