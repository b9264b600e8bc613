//go:build ignore

// gen writes in.pcap, the input capture of the pcap port's tests: 20
// Ethernet frames built with gopacket (which pads short ones to 60
// bytes), with microsecond timestamps at uneven gaps: UDP over IPv4 and
// IPv6 to several ports (five to port 53), TCP, ARP, ICMP, a 10-byte
// runt, a 1434-byte frame and one cut to 64 bytes by the snap length.
//
// Run it from this directory (go run gen.go) only to change the input,
// then regenerate want.pcap with
//
//	go test ./port/pcap -run TestPcapReplayMatchesExpectedCapture -update
//
// and review the difference (the test also checks the output against an
// independent model of the chain).
package main

import (
	"bytes"
	"log"
	"net"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

var (
	srcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	dstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	src4   = net.IP{198, 18, 0, 1}
	dst4   = net.IP{198, 18, 1, 2}
	src6   = net.ParseIP("2001:db8::1")
	dst6   = net.ParseIP("2001:db8::2")
)

func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		log.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func udp4(dport uint16, payload []byte) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src4, DstIP: dst4}
	u := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(&layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload(payload))
}

func udp6(dport uint16, payload []byte) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: src6, DstIP: dst6}
	u := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(&layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv6}, ip, u, gopacket.Payload(payload))
}

func tcp4(dport uint16, syn bool, payload []byte) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src4, DstIP: dst4}
	t := &layers.TCP{SrcPort: 40001, DstPort: layers.TCPPort(dport), Seq: 1000, Window: 65535, SYN: syn, ACK: !syn, Ack: 7}
	if !syn {
		t.PSH = true
	}
	t.SetNetworkLayerForChecksum(ip)
	return serialize(&layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}, ip, t, gopacket.Payload(payload))
}

func icmpEcho() []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: src4, DstIP: dst4}
	return serialize(&layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}, ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1}, gopacket.Payload("ping ping ping ping ping ping ping ping"))
}

func arpRequest() []byte {
	return serialize(&layers.Ethernet{SrcMAC: srcMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: srcMAC, SourceProtAddress: src4,
			DstHwAddress: make([]byte, 6), DstProtAddress: dst4})
}

func main() {
	type rec struct {
		data []byte
		wire int // original length when the capture cut the frame, else 0
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1400/16)
	cut := udp4(9, bytes.Repeat([]byte{0xab}, 200))
	recs := []rec{
		{data: udp4(9, []byte("hello"))},
		{data: udp4(53, []byte("dns query 1"))},
		{data: udp4(123, []byte("ntp"))},
		{data: tcp4(80, true, nil)},
		{data: udp4(53, []byte("dns query 2"))},
		{data: arpRequest()},
		{data: udp4(5000, bytes.Repeat([]byte{0x5a}, 100))},
		{data: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}, // runt
		{data: udp4(7, []byte("echo"))},
		{data: udp6(53, []byte("dns over v6"))},
		{data: udp6(443, []byte("quic"))},
		{data: udp4(53, []byte("dns query 3"))},
		{data: udp4(9, big)},
		{data: cut[:64], wire: len(cut)}, // cut by a 64-byte snap length
		{data: udp4(161, []byte("snmp"))},
		{data: udp4(53, []byte("dns query 4"))},
		{data: tcp4(22, false, []byte("SSH-2.0-x\r\n"))},
		{data: udp4(514, []byte("<13>syslog"))},
		{data: udp4(4789, bytes.Repeat([]byte{0}, 16))},
		{data: icmpEcho()},
	}
	var out bytes.Buffer
	w := pcapgo.NewWriter(&out)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		log.Fatal(err)
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 123000, time.UTC)
	for i, r := range recs {
		ts := base.Add(time.Duration(i*1531+i*i*7) * time.Microsecond)
		wire := len(r.data)
		if r.wire != 0 {
			wire = r.wire
		}
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(r.data), Length: wire}, r.data); err != nil {
			log.Fatal(err)
		}
	}
	if err := os.WriteFile("in.pcap", out.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("in.pcap: %d frames, %d bytes", len(recs), out.Len())
}
