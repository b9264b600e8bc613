package pipelinetest

import (
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Decode decodes a frame with gopacket, from Ethernet up, without copying
// it: for assertions on fields the kit has no helper for.
func Decode(frame []byte) gopacket.Packet {
	return gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true})
}

// Summary describes a frame on one line, decoded with gopacket:
//
//	02:00:00:00:00:01 > 02:00:00:00:00:02 vlan 100 IPv4 198.18.0.1 > 198.18.1.2 ttl 64 UDP 1000 > 53 len 33 DNS query A "ads.example.com" (79 bytes)
//
// It is what the kit's failure messages show instead of bytes.
func Summary(frame []byte) string {
	p := Decode(frame)
	var b strings.Builder
	// The IP protocol is said by the next layer, when gopacket has one.
	l4 := p.TransportLayer() != nil || p.Layer(layers.LayerTypeICMPv4) != nil || p.Layer(layers.LayerTypeICMPv6) != nil
	proto := func(s fmt.Stringer) string {
		if l4 {
			return ""
		}
		return " " + s.String()
	}
	for _, l := range p.Layers() {
		switch l := l.(type) {
		case *layers.Ethernet:
			fmt.Fprintf(&b, "%s > %s", l.SrcMAC, l.DstMAC)
		case *layers.Dot1Q:
			fmt.Fprintf(&b, " vlan %d", l.VLANIdentifier)
			if l.Priority != 0 {
				fmt.Fprintf(&b, " pcp %d", l.Priority)
			}
		case *layers.ARP:
			if l.Operation == layers.ARPRequest {
				fmt.Fprintf(&b, " ARP who-has %s tell %s", net.IP(l.DstProtAddress), net.IP(l.SourceProtAddress))
			} else {
				fmt.Fprintf(&b, " ARP %s is-at %s (op %d)", net.IP(l.SourceProtAddress), net.HardwareAddr(l.SourceHwAddress), l.Operation)
			}
		case *layers.IPv4:
			fmt.Fprintf(&b, " IPv4 %s > %s%s ttl %d", l.SrcIP, l.DstIP, proto(l.Protocol), l.TTL)
			if l.Flags&layers.IPv4MoreFragments != 0 || l.FragOffset != 0 {
				fmt.Fprintf(&b, " frag off %d", int(l.FragOffset)*8)
			}
		case *layers.IPv6:
			fmt.Fprintf(&b, " IPv6 %s > %s%s hlim %d", l.SrcIP, l.DstIP, proto(l.NextHeader), l.HopLimit)
		case *layers.UDP:
			fmt.Fprintf(&b, " UDP %d > %d len %d", l.SrcPort, l.DstPort, len(l.Payload))
		case *layers.TCP:
			fmt.Fprintf(&b, " TCP %d > %d [%s] seq %d ack %d len %d", l.SrcPort, l.DstPort, tcpFlags(l), l.Seq, l.Ack, len(l.Payload))
		case *layers.ICMPv4:
			fmt.Fprintf(&b, " ICMP %s", l.TypeCode)
			if t := l.TypeCode.Type(); t == layers.ICMPv4TypeEchoRequest || t == layers.ICMPv4TypeEchoReply {
				fmt.Fprintf(&b, " id %d seq %d", l.Id, l.Seq)
			}
		case *layers.ICMPv6:
			fmt.Fprintf(&b, " ICMPv6 %s", l.TypeCode)
		case *layers.ICMPv6Echo:
			fmt.Fprintf(&b, " id %d seq %d", l.Identifier, l.SeqNumber)
		case *layers.DNS:
			kind := "query"
			if l.QR {
				kind = "response"
			}
			fmt.Fprintf(&b, " DNS %s", kind)
			for _, q := range l.Questions {
				fmt.Fprintf(&b, " %s %q", q.Type, q.Name)
			}
		}
	}
	// Application layers are guessed from port numbers (port 9 "is" APSP):
	// their decode errors are noise once L4 decoded.
	if el := p.ErrorLayer(); el != nil && !l4 {
		fmt.Fprintf(&b, " [decode error: %v]", el.Error())
	}
	fmt.Fprintf(&b, " (%d bytes)", len(frame))
	return strings.TrimSpace(b.String())
}

func tcpFlags(t *layers.TCP) string {
	var f []string
	for _, x := range []struct {
		on   bool
		name string
	}{{t.SYN, "S"}, {t.FIN, "F"}, {t.RST, "R"}, {t.PSH, "P"}, {t.ACK, "."}, {t.URG, "U"}, {t.ECE, "E"}, {t.CWR, "C"}} {
		if x.on {
			f = append(f, x.name)
		}
	}
	return strings.Join(f, "")
}

// Dump is gopacket's full multi-line description of a frame, every layer
// with its fields (for when Summary is not enough).
func Dump(frame []byte) string { return Decode(frame).String() }

// Diff explains how got differs from want: both summaries, the first byte
// that differs, the layer it is in and a few bytes around it. It returns ""
// when they are equal.
func Diff(got, want []byte) string {
	if string(got) == string(want) {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  got:  %s\n  want: %s\n", Summary(got), Summary(want))
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	fmt.Fprintf(&b, "  first difference at byte %d (%s): got %s, want %s", i, layerAt(want, i), around(got, i), around(want, i))
	return b.String()
}

func around(f []byte, i int) string {
	if i >= len(f) {
		return "end of frame (" + strconv.Itoa(len(f)) + " bytes)"
	}
	end := min(i+8, len(f))
	s := hex.EncodeToString(f[i:end])
	if end < len(f) {
		s += "..."
	}
	return s
}

// layerAt names the layer of frame holding byte off, with the offset in it.
func layerAt(frame []byte, off int) string {
	at := 0
	for _, l := range Decode(frame).Layers() {
		n := len(l.LayerContents())
		if off < at+n {
			return fmt.Sprintf("%s header, byte %d", l.LayerType(), off-at)
		}
		at += n
	}
	return "after the headers"
}
