package packet

import (
	"net/netip"
	"testing"
)

func TestMartianAddresses(t *testing.T) {
	cases := []struct {
		name     string
		src, dst string
		want     Martian
	}{
		{"a unicast pair is sound", "198.18.0.1", "198.19.0.1", MartianNone},
		{"0.0.0.0 as source", "0.0.0.0", "198.19.0.1", MartianSrcZero},
		{"0/8 as source", "0.255.0.1", "198.19.0.1", MartianSrcZero},
		{"127/8 as source", "127.1.2.3", "198.19.0.1", MartianSrcLoopback},
		{"224/4 as source", "224.0.0.1", "198.19.0.1", MartianSrcMulticast},
		{"239.255.255.255 as source", "239.255.255.255", "198.19.0.1", MartianSrcMulticast},
		{"class E as source passes, as on Linux", "240.0.0.1", "198.19.0.1", MartianNone},
		{"broadcast as source", "255.255.255.255", "198.19.0.1", MartianSrcBroadcast},
		{"0/8 as destination", "198.18.0.1", "0.0.0.9", MartianDstZero},
		{"127/8 as destination", "198.18.0.1", "127.0.0.1", MartianDstLoopback},
		{"the source decides first", "127.0.0.1", "0.0.0.0", MartianSrcLoopback},
		{"an IPv6 unicast pair is sound", "2001:db8::1", "2001:db8:1::1", MartianNone},
		{"link-local is sound on its link", "fe80::1", "fe80::2", MartianNone},
		{"an IPv6 multicast source", "ff02::1", "2001:db8::1", MartianSrcMulticast},
		{"the unspecified IPv6 source", "::", "2001:db8::1", MartianSrcZero},
		{"the IPv6 loopback source", "::1", "2001:db8::1", MartianSrcLoopback},
		{"the unspecified IPv6 destination", "2001:db8::1", "::", MartianDstZero},
		{"the IPv6 loopback destination", "2001:db8::1", "::1", MartianDstLoopback},
	}
	for _, tc := range cases {
		s, d := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
		var got Martian
		if s.Is4() {
			got = Martian4(s.As4(), d.As4())
		} else {
			s16, d16 := s.As16(), d.As16()
			got = Martian6(&s16, &d16)
		}
		if got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
