package bpf_test

import (
	"net"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/bpf"
	"github.com/xnfdev/xnf/internal/lab"
)

// xdpMD mirrors struct xdp_md, the context BPF_PROG_TEST_RUN accepts.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

const (
	xdpPass     = 2
	xdpRedirect = 4
)

func frame(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var (
	mac1, _ = net.ParseMAC("02:00:00:00:00:01")
	mac2, _ = net.ParseMAC("02:00:00:00:00:02")
)

func ipv4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.IP{198, 18, 0, 1}, DstIP: net.IP{198, 18, 0, 2}}
}

func udp4(t testing.TB, dport uint16) []byte {
	ip := ipv4(layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: 1234, DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	return frame(t, &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload("x"))
}

func tcp4(t *testing.T, dport uint16) []byte {
	ip := ipv4(layers.IPProtocolTCP)
	c := &layers.TCP{SrcPort: 1234, DstPort: layers.TCPPort(dport), SYN: true, Window: 1000}
	c.SetNetworkLayerForChecksum(ip)
	return frame(t, &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeIPv4}, ip, c)
}

func vlanUDP4(t *testing.T, dport uint16) []byte {
	ip := ipv4(layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: 1234, DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	return frame(t, &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload("x"))
}

func udp6(t *testing.T, dport uint16) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	u := &layers.UDP{SrcPort: 1234, DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	return frame(t, &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeIPv6}, ip, u, gopacket.Payload("x"))
}

func arp(t *testing.T) []byte {
	return frame(t, &layers.Ethernet{SrcMAC: mac1, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: mac1, SourceProtAddress: []byte{198, 18, 0, 1},
			DstHwAddress: make([]byte, 6), DstProtAddress: []byte{198, 18, 0, 2}})
}

func fragment4(t *testing.T) []byte {
	ip := ipv4(layers.IPProtocolUDP)
	ip.FragOffset = 100 // a non-first fragment: no ports in it
	return frame(t, &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeIPv4}, ip, gopacket.Payload("fragment data"))
}

// TestRedirectVerdicts runs the real program over real frames with
// BPF_PROG_TEST_RUN on a 2-queue veth whose queue 0 has a bound AF_XDP socket.
func TestRedirectVerdicts(t *testing.T) {
	l := lab.ForTest(t, "bpf")
	a := l.MustNS(t, "a")
	b := l.MustNS(t, "b")
	l.MustVeth(t, lab.Veth{A: a, AName: "x0", B: b, BName: "x1", Queues: 2})
	link, err := a.Link("x0")
	if err != nil {
		t.Fatal(err)
	}
	ifindex := uint32(link.Attrs().Index)

	cases := []struct {
		name     string
		filter   bpf.Filter
		frame    []byte
		queue    uint32
		want     uint32
		counters bpf.Counters
	}{
		{"everything is claimed and redirected on a queue with a socket", bpf.Filter{}, arp(t), 0, xdpRedirect, bpf.Counters{Redirected: 1}},
		{"a claimed frame on a queue without a socket goes to the kernel", bpf.Filter{}, udp4(t, 53), 1, xdpPass, bpf.Counters{Passed: 1}},
		{"ethertype filter keeps IPv4", bpf.Filter{EtherType: 0x0800}, tcp4(t, 80), 0, xdpRedirect, bpf.Counters{Redirected: 1}},
		{"ethertype filter leaves ARP to the kernel", bpf.Filter{EtherType: 0x0800}, arp(t), 0, xdpPass, bpf.Counters{Filtered: 1}},
		{"ethertype filter looks behind a VLAN tag", bpf.Filter{EtherType: 0x0800}, vlanUDP4(t, 53), 0, xdpRedirect, bpf.Counters{Redirected: 1}},
		{"protocol filter keeps UDP", bpf.Filter{IPProto: 17}, udp4(t, 9), 0, xdpRedirect, bpf.Counters{Redirected: 1}},
		{"protocol filter leaves TCP to the kernel", bpf.Filter{IPProto: 17}, tcp4(t, 22), 0, xdpPass, bpf.Counters{Filtered: 1}},
		{"protocol filter works for IPv6", bpf.Filter{IPProto: 17}, udp6(t, 9), 0, xdpRedirect, bpf.Counters{Redirected: 1}},
		{"port set keeps UDP to a listed port", bpf.Filter{DstPorts: []uint16{53, 8080}}, udp4(t, 53), 0, xdpRedirect, bpf.Counters{Redirected: 1}},
		{"port set keeps TCP to a listed port", bpf.Filter{DstPorts: []uint16{53, 8080}}, tcp4(t, 8080), 0, xdpRedirect, bpf.Counters{Redirected: 1}},
		{"port set leaves SSH to the kernel", bpf.Filter{DstPorts: []uint16{53, 8080}}, tcp4(t, 22), 0, xdpPass, bpf.Counters{Filtered: 1}},
		{"port set leaves ARP to the kernel", bpf.Filter{DstPorts: []uint16{53}}, arp(t), 0, xdpPass, bpf.Counters{Filtered: 1}},
		{"port set leaves non-first fragments to the kernel", bpf.Filter{DstPorts: []uint16{53}}, fragment4(t), 0, xdpPass, bpf.Counters{Filtered: 1}},
		{"port 65535 is representable", bpf.Filter{DstPorts: []uint16{65535}}, udp4(t, 65535), 0, xdpRedirect, bpf.Counters{Redirected: 1}},
		{"all filters together", bpf.Filter{EtherType: 0x86dd, IPProto: 17, DstPorts: []uint16{9}}, udp6(t, 9), 0, xdpRedirect, bpf.Counters{Redirected: 1}},
		{"all filters together refuse IPv4", bpf.Filter{EtherType: 0x86dd, IPProto: 17, DstPorts: []uint16{9}}, udp4(t, 9), 0, xdpPass, bpf.Counters{Filtered: 1}},
		{"a bare Ethernet header with a port filter is not claimed", bpf.Filter{DstPorts: []uint16{9}}, udp4(t, 9)[:14], 0, xdpPass, bpf.Counters{Filtered: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a.Do(func() error {
				r, err := bpf.LoadRedirect(bpf.RedirectOptions{Queues: 2, Filter: tc.filter})
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				u, err := afxdp.NewUMEM(afxdp.UMEMConfig{FrameCount: 64})
				if err != nil {
					t.Fatal(err)
				}
				defer u.Close()
				s, err := afxdp.OpenSocket(u, "x0", 0, afxdp.SocketConfig{RXSize: 64, TXSize: 64, FillSize: 64, CompletionSize: 64})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				if err := r.Register(0, s.FD()); err != nil {
					t.Fatal(err)
				}
				const repeat = 3
				got, err := r.Program.Run(&ebpf.RunOptions{
					Data:    tc.frame,
					Context: xdpMD{DataEnd: uint32(len(tc.frame)), IngressIfindex: ifindex, RxQueueIndex: tc.queue},
					Repeat:  repeat,
				})
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Errorf("verdict %d, want %d", got, tc.want)
				}
				c, err := r.Counters()
				if err != nil {
					t.Fatal(err)
				}
				want := bpf.Counters{Redirected: tc.counters.Redirected * repeat, Passed: tc.counters.Passed * repeat, Filtered: tc.counters.Filtered * repeat}
				if c != want {
					t.Errorf("counters %+v, want %+v", c, want)
				}
				return nil
			})
		})
	}
}

func TestRegisterRejectsQueueOutOfRange(t *testing.T) {
	lab.RequireRoot(t)
	r, err := bpf.LoadRedirect(bpf.RedirectOptions{Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Register(2, 0); err == nil {
		t.Fatal("queue 2 of a 2-queue program accepted")
	}
}

func TestFilterString(t *testing.T) {
	if s := (bpf.Filter{}).String(); s != "all" {
		t.Errorf("zero filter prints %q", s)
	}
	if s := (bpf.Filter{EtherType: 0x800, IPProto: 17, DstPorts: []uint16{53}}).String(); s != "ethertype 0x0800 proto 17 dports [53]" {
		t.Errorf("filter prints %q", s)
	}
}
