package packet

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestFragment(t *testing.T) {
	ipv6Frag := func(frag []byte, rest ...[]byte) func(testing.TB) []byte {
		return func(t testing.TB) []byte {
			ip := ipv6(layers.IPProtocolIPv6HopByHop)
			return serialize(t, eth(layers.EthernetTypeIPv6), ip, gopacket.Payload(concat(append([][]byte{extHeader(ProtoFragment, 8), frag}, rest...)...)))
		}
	}
	udpHeader := []byte{0x14, 0xe9, 0x00, 0x35, 0x00, 0x40, 0x00, 0x00}
	tcpHeader := make([]byte, 20)
	tcpHeader[12] = 5 << 4
	tcpLong := make([]byte, 24)
	tcpLong[12] = 8 << 4 // 32 bytes of header, 24 here
	cases := []struct {
		name  string
		frame func(testing.TB) []byte
		ok    bool
		want  Fragment
	}{
		{"not a fragment", frameIPv4UDP, false, Fragment{}},
		{"an IPv4 first fragment", func(t testing.TB) []byte { return frameIPv4Fragment(t, 0, true, make([]byte, 16)) },
			true, Fragment{ID: 0x1234, Len: 16, More: true, Next: ProtoUDP}},
		{"an IPv4 last fragment", func(t testing.TB) []byte { return frameIPv4Fragment(t, 16, false, []byte("last bytes")) },
			true, Fragment{ID: 0x1234, Offset: 16, Len: 10, Next: ProtoUDP}},
		{"an IPv6 first fragment behind hop-by-hop", frameIPv6FirstFragmentUDP,
			true, Fragment{ID: 7, Len: 24, More: true, Next: ProtoUDP, HeaderOff: 14 + 40 + 8}},
		{"an IPv6 later fragment", frameIPv6LaterFragment,
			true, Fragment{ID: 7, Offset: 24, Len: 16, Next: ProtoUDP, HeaderOff: 14 + 40}},
		{"an IPv6 first fragment with destination options before UDP",
			ipv6Frag(fragHeader(ProtoDstOpts, 0, true, 9), extHeader(ProtoUDP, 16), udpHeader),
			true, Fragment{ID: 9, Len: 24, More: true, Next: ProtoDstOpts, HeaderOff: 62}},
		{"an IPv6 first fragment cut inside its destination options (RFC 7112)",
			ipv6Frag(fragHeader(ProtoDstOpts, 0, true, 9), extHeader(ProtoUDP, 16)[:8]),
			true, Fragment{ID: 9, Len: 8, More: true, Next: ProtoDstOpts, HeaderOff: 62, ChainCut: true}},
		{"an IPv6 first fragment cut before UDP",
			ipv6Frag(fragHeader(ProtoDstOpts, 0, true, 9), extHeader(ProtoUDP, 16)),
			true, Fragment{ID: 9, Len: 16, More: true, Next: ProtoDstOpts, HeaderOff: 62, ChainCut: true}},
		{"an IPv6 first fragment cut in TCP's options",
			ipv6Frag(fragHeader(ProtoTCP, 0, true, 9), tcpLong),
			true, Fragment{ID: 9, Len: 24, More: true, Next: ProtoTCP, HeaderOff: 62, ChainCut: true}},
		{"an IPv6 first fragment with a whole TCP header",
			ipv6Frag(fragHeader(ProtoTCP, 0, true, 9), tcpHeader, make([]byte, 4)),
			true, Fragment{ID: 9, Len: 24, More: true, Next: ProtoTCP, HeaderOff: 62}},
		{"an IPv6 first fragment of ESP: nothing to check",
			ipv6Frag(fragHeader(ProtoESP, 0, true, 9), make([]byte, 8)),
			true, Fragment{ID: 9, Len: 8, More: true, Next: ProtoESP, HeaderOff: 62}},
		{"an IPv6 atomic fragment",
			ipv6Frag(fragHeader(ProtoUDP, 0, false, 0x01020304), udpHeader),
			true, Fragment{ID: 0x01020304, Len: 8, Next: ProtoUDP, HeaderOff: 62}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			p.Reset(tc.frame(t), 0, 0)
			p.Parse()
			got, ok := p.Fragment()
			if ok != tc.ok || got != tc.want {
				t.Errorf("Fragment() = %+v, %v; want %+v, %v (flags %v, err %v)", got, ok, tc.want, tc.ok, p.Flags, p.Err)
			}
		})
	}
}

func TestFragmentDoesNotAllocate(t *testing.T) {
	var p Packet
	p.Reset(frameIPv6FirstFragmentUDP(t), 0, 0)
	p.Parse()
	if n := testing.AllocsPerRun(100, func() { p.Fragment() }); n != 0 {
		t.Errorf("%v allocs", n)
	}
}
