package packet

import (
	"bytes"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestIsICMPError(t *testing.T) {
	for _, tc := range []struct {
		typ  uint8
		v6   bool
		want bool
	}{
		{ICMPEchoReply, false, false},
		{3, false, true}, // destination unreachable
		{4, false, true}, // source quench
		{5, false, true}, // redirect
		{ICMPEchoRequest, false, false},
		{11, false, true}, // time exceeded
		{12, false, true}, // parameter problem
		{13, false, false},
		{1, true, true}, // destination unreachable
		{4, true, true}, // parameter problem
		{127, true, true},
		{ICMPv6EchoRequest, true, false},
		{135, true, false}, // neighbor solicitation
	} {
		if got := IsICMPError(tc.typ, tc.v6); got != tc.want {
			t.Errorf("IsICMPError(%d, v6 %v) = %v, want %v", tc.typ, tc.v6, got, tc.want)
		}
		if got := ICMP([]byte{tc.typ, 0, 0, 0}).IsError(tc.v6); got != tc.want {
			t.Errorf("ICMP{%d}.IsError(v6 %v) = %v, want %v", tc.typ, tc.v6, got, tc.want)
		}
	}
}

// An ICMP error built over the packet's frame is the error gopacket
// decodes: headers, checksums and the quote of the packet's start.
func TestToICMPErrorDecodes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame func(testing.TB) []byte
	}{
		{"IPv4 with options", frameIPv4OptionsTCP},
		{"IPv4", frameIPv4UDP},
		{"IPv6", frameIPv6TCP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.frame(t)
			buf := make([]byte, len(f), 2048)
			copy(buf, f)
			var p Packet
			p.Reset(buf, 0, 0)
			p.Parse()
			v4 := p.Flags&FlagIPv4 != 0
			quote := p.icmpErrorQuote()
			orig := bytes.Clone(f[p.L3Off : int(p.L3Off)+quote])
			var ok bool
			if v4 {
				ok = p.ToICMPv4Error(11, 0, [4]byte{198, 18, 0, 1}, false)
			} else {
				ok = p.ToICMPv6Error(3, 0, [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1})
			}
			if !ok || p.Err != ErrNone || p.Flags&(FlagICMP|FlagICMPv6) == 0 {
				t.Fatalf("rewrite ok %v, parsed %v %v", ok, p.Flags, p.Err)
			}
			if !p.L4ChecksumValid() || (v4 && !p.IPv4().ChecksumValid()) {
				t.Fatal("checksums do not verify")
			}
			g := gopacket.NewPacket(p.Data, layers.LayerTypeEthernet, gopacket.Default)
			if el := g.ErrorLayer(); el != nil {
				t.Fatalf("gopacket: %v", el.Error())
			}
			if v4 {
				if ic := g.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ic.TypeCode != layers.CreateICMPv4TypeCode(11, 0) {
					t.Fatalf("type code %v", ic.TypeCode)
				}
			} else if ic := g.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ic.TypeCode != layers.CreateICMPv6TypeCode(3, 0) {
				t.Fatalf("type code %v", ic.TypeCode)
			}
			if body := p.Data[int(p.L4Off)+ICMPLen:]; !bytes.Equal(body, orig) {
				t.Fatalf("quote\n%x\nwant\n%x", body, orig)
			}
		})
	}
}

func TestToICMPErrorNoRoom(t *testing.T) {
	f := frameIPv4UDP(t)
	var p Packet
	p.Reset(f[:len(f):len(f)], 0, 0)
	p.Parse()
	before := bytes.Clone(f)
	if p.ToICMPv4Error(3, 1, [4]byte{198, 18, 0, 1}, false) {
		t.Fatal("rewrote a frame without room")
	}
	if !bytes.Equal(f, before) || p.ToICMPv6Error(1, 0, [16]byte{}) {
		t.Fatal("a refused rewrite changed the frame")
	}
}
