package router

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func port(p uint16) NextHop { return NextHop{Port: p} }

func via(p uint16, gw string) NextHop { return NextHop{Port: p, Gateway: addr(gw)} }

func TestUpdateErrors(t *testing.T) {
	f := NewFIB()
	if err := f.Add(pfx("10.0.0.0/8"), port(1)); err != nil {
		t.Fatal(err)
	}
	if err := f.Add(pfx("2001:db8::/32"), port(1)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		do   func() error
		want error
		text string
	}{
		{"adding an existing prefix fails", func() error { return f.Add(pfx("10.0.0.0/8"), port(2)) }, ErrRouteExists, "router: add 10.0.0.0/8: route exists"},
		{"adding an existing IPv6 prefix fails", func() error { return f.Add(pfx("2001:db8::/32"), port(2)) }, ErrRouteExists, "router: add 2001:db8::/32: route exists"},
		{"host bits are rejected, not masked", func() error { return f.Add(pfx("10.1.2.3/8"), port(2)) }, ErrHostBits, "router: add 10.1.2.3/8: prefix has host bits set"},
		{"IPv6 host bits are rejected", func() error { return f.Add(pfx("2001:db8::1/64"), port(2)) }, ErrHostBits, ""},
		{"the zero prefix is invalid", func() error { return f.Add(netip.Prefix{}, port(2)) }, ErrInvalidPrefix, ""},
		{"a route needs a next hop", func() error { return f.Add(pfx("10.2.0.0/16")) }, ErrNoNextHop, "router: add 10.2.0.0/16: no next hop"},
		{"an unspecified gateway is rejected", func() error { return f.Add(pfx("10.2.0.0/16"), via(1, "0.0.0.0")) }, ErrInvalidNextHop, ""},
		{"deleting a missing prefix fails", func() error { return f.Delete(pfx("10.0.0.0/9")) }, ErrRouteNotFound, "router: delete 10.0.0.0/9: route not found"},
		{"deleting a missing IPv6 prefix fails", func() error { return f.Delete(pfx("2001:db8::/33")) }, ErrRouteNotFound, ""},
		{"deleting with host bits fails", func() error { return f.Delete(pfx("10.0.0.1/8")) }, ErrHostBits, ""},
		{"replace creates a missing route", func() error { return f.Replace(pfx("10.3.0.0/16"), port(3)) }, nil, ""},
		{"replace overwrites an existing route", func() error { return f.Replace(pfx("10.0.0.0/8"), port(4)) }, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got error %v, want %v", err, tt.want)
			}
			if tt.text != "" && err.Error() != tt.text {
				t.Fatalf("got error text %q, want %q", err, tt.text)
			}
		})
	}
	if got, _ := f.Lookup(addr("10.9.9.9")); got != port(4) {
		t.Errorf("after Replace, 10.9.9.9 -> %v, want %v", got, port(4))
	}
	if f.Len() != 3 {
		t.Errorf("Len = %d, want 3", f.Len())
	}
}

func TestOverlappingRoutes(t *testing.T) {
	f := NewFIB()
	add := func(p string, nh NextHop) {
		t.Helper()
		if err := f.Add(pfx(p), nh); err != nil {
			t.Fatal(err)
		}
	}
	del := func(p string) {
		t.Helper()
		if err := f.Delete(pfx(p)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string, cases map[string]NextHop) {
		t.Helper()
		for a, want := range cases {
			got, ok := f.Lookup(addr(a))
			if want == (NextHop{}) {
				if ok {
					t.Errorf("%s: %s -> %v, want no route", step, a, got)
				}
				continue
			}
			if !ok || got != want {
				t.Errorf("%s: %s -> %v %v, want %v", step, a, got, ok, want)
			}
		}
	}
	none := NextHop{}
	add("10.0.0.0/8", port(8))
	add("10.1.0.0/16", port(16))
	add("10.1.2.0/24", port(24))
	add("10.1.2.128/25", port(25))
	add("10.1.2.200/32", port(32))
	add("0.0.0.0/0", via(0, "192.0.2.1"))
	check("all installed", map[string]NextHop{
		"10.2.0.1": port(8), "10.1.3.1": port(16), "10.1.2.1": port(24),
		"10.1.2.129": port(25), "10.1.2.200": port(32), "11.0.0.0": via(0, "192.0.2.1"),
	})
	del("10.1.0.0/16")
	check("the /16 deleted", map[string]NextHop{"10.1.3.1": port(8), "10.1.2.1": port(24), "10.1.2.200": port(32)})
	del("10.1.2.128/25")
	check("the /25 deleted", map[string]NextHop{"10.1.2.129": port(24), "10.1.2.200": port(32), "10.1.2.201": port(24)})
	del("10.1.2.0/24")
	check("the /24 deleted", map[string]NextHop{"10.1.2.129": port(8), "10.1.2.200": port(32)})
	del("0.0.0.0/0")
	del("10.0.0.0/8")
	check("only the host route left", map[string]NextHop{"10.1.2.129": none, "10.1.2.200": port(32), "11.0.0.0": none})
	add("10.0.0.0/8", port(8))
	check("the /8 back under the host route", map[string]NextHop{"10.1.2.129": port(8), "10.1.2.200": port(32)})

	add("::/0", port(100))
	add("2001:db8::/32", port(132))
	add("2001:db8:1::/48", port(148))
	add("2001:db8:1:2::/64", port(164))
	add("2001:db8:1:2::1/128", port(228))
	add("2000::/3", port(103))
	check("IPv6 installed", map[string]NextHop{
		"2001:db8:1:2::1": port(228), "2001:db8:1:2::2": port(164), "2001:db8:1:3::": port(148),
		"2001:db8:2::": port(132), "2001:db9::": port(103), "fe80::1": port(100), "10.1.2.200": port(32),
	})
	del("2001:db8:1::/48")
	del("2000::/3")
	check("IPv6 /48 and /3 deleted", map[string]NextHop{
		"2001:db8:1:2::1": port(228), "2001:db8:1:3::": port(132), "2001:db9::": port(100),
	})
	del("::/0")
	check("IPv6 default deleted", map[string]NextHop{"2001:db9::": none, "2001:db8:1:2::2": port(164)})
}

func TestECMP(t *testing.T) {
	f := NewFIB()
	a, b, c := via(1, "192.0.2.1"), via(2, "192.0.2.2"), via(3, "fe80::3")
	if err := f.Add(pfx("10.0.0.0/8"), a, b, c); err != nil {
		t.Fatal(err)
	}
	if err := f.Add(pfx("11.0.0.0/8"), c, a, b); err != nil {
		t.Fatal(err)
	}
	if err := f.Add(pfx("12.0.0.0/8"), a, a); err != nil {
		t.Fatal(err)
	}
	id10, _ := f.Lookup4([4]byte{10, 0, 0, 1})
	id11, _ := f.Lookup4([4]byte{11, 0, 0, 1})
	id12, _ := f.Lookup4([4]byte{12, 0, 0, 1})
	if !id10.IsGroup() || id10 != id11 {
		t.Errorf("the same next hops in another order should share one group: %#x, %#x", id10, id11)
	}
	if id12.IsGroup() || f.NextHop(id12) != a {
		t.Errorf("a repeated single next hop should not make a group: %#x -> %v", id12, f.NextHop(id12))
	}
	counts := map[NextHop]int{}
	for h := range uint32(3000) {
		hash := h * 2654435761
		id, ok := f.LookupFlow4([4]byte{10, 1, 2, 3}, hash)
		if !ok || id.IsGroup() {
			t.Fatalf("LookupFlow4 = %#x, %v; want a member", id, ok)
		}
		again, _ := f.LookupFlow4([4]byte{10, 9, 9, 9}, hash)
		if again != id {
			t.Fatalf("hash %#x picked %#x then %#x", hash, id, again)
		}
		nh, _ := f.LookupFlow(addr("10.1.2.3"), hash)
		if nh != f.NextHop(id) {
			t.Fatalf("LookupFlow = %v, LookupFlow4 = %v", nh, f.NextHop(id))
		}
		counts[nh]++
	}
	for _, nh := range []NextHop{a, b, c} {
		if counts[nh] < 800 {
			t.Errorf("next hop %v got %d of 3000 flows; want about 1000", nh, counts[nh])
		}
	}
	// Weights: a twice, b once.
	if err := f.Replace(pfx("10.0.0.0/8"), a, b, a); err != nil {
		t.Fatal(err)
	}
	clear(counts)
	for h := range uint32(3000) {
		nh, _ := f.LookupFlow(addr("10.1.2.3"), h*2654435761)
		counts[nh]++
	}
	if counts[a] < 1800 || counts[b] < 800 || counts[c] != 0 {
		t.Errorf("weighted group a,b,a spread %v", counts)
	}
	if err := f.Add(pfx("2001:db8::/32"), b, c); err != nil {
		t.Fatal(err)
	}
	for h := range uint32(100) {
		id, ok := f.LookupFlow6(addr("2001:db8::1").As16(), h*2654435761)
		if nh := f.NextHop(id); !ok || (nh != b && nh != c) {
			t.Fatalf("IPv6 ECMP picked %v", nh)
		}
	}
	routes := f.Routes()
	if len(routes) != 4 || routes[0].Prefix != pfx("10.0.0.0/8") || !slices.Equal(routes[0].NextHops, []NextHop{a, a, b}) {
		t.Errorf("Routes() = %v", routes)
	}
	if routes[3].Prefix != pfx("2001:db8::/32") {
		t.Errorf("IPv6 routes should come last: %v", routes)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	f := NewFIB()
	f.Add(pfx("10.0.0.0/8"), port(1), port(2))
	f.Add(pfx("10.1.2.128/25"), port(3))
	f.Add(pfx("2001:db8::/32"), port(1), port(2))
	a4 := [4]byte{10, 1, 2, 200}
	a6 := addr("2001:db8::1").As16()
	n4, n6 := addr("10.1.2.3"), addr("2001:db8::1")
	b4 := make([][4]byte, 20)
	b6 := make([][16]byte, 20)
	for i := range b6 {
		b4[i] = [4]byte{10, 1, 2, byte(i * 10)}
		b6[i] = a6
		b6[i][5] = byte(i)
	}
	out := make([]NextHopID, 20)
	var sink NextHopID
	for name, fn := range map[string]func(){
		"Lookup4":      func() { id, _ := f.Lookup4(a4); sink += id },
		"Lookup6":      func() { id, _ := f.Lookup6(a6); sink += id },
		"LookupFlow4":  func() { id, _ := f.LookupFlow4(a4, 77); sink += id },
		"LookupFlow6":  func() { id, _ := f.LookupFlow6(a6, 77); sink += id },
		"Lookup":       func() { nh, _ := f.Lookup(n4); sink += NextHopID(nh.Port) },
		"LookupFlow":   func() { nh, _ := f.LookupFlow(n6, 5); sink += NextHopID(nh.Port) },
		"NextHop":      func() { sink += NextHopID(f.NextHop(1).Port) },
		"Lookup4Batch": func() { f.Lookup4Batch(b4, out); sink += out[0] },
		"Lookup6Batch": func() { f.Lookup6Batch(b6, out); sink += out[0] },
	} {
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
	_ = sink
}

func TestNextHopString(t *testing.T) {
	for nh, want := range map[NextHop]string{
		port(2):                "port 2 direct",
		via(1, "192.0.2.1"):    "port 1 via 192.0.2.1",
		via(0, "fe80::1%eth0"): "port 0 via fe80::1%eth0",
	} {
		if got := nh.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", nh, got, want)
		}
	}
}

func TestIPv4MappedAddressesAreIPv6(t *testing.T) {
	f := NewFIB()
	f.Add(pfx("10.0.0.0/8"), port(4))
	f.Add(pfx("::ffff:0:0/96"), port(6))
	if nh, ok := f.Lookup(addr("::ffff:10.1.2.3")); !ok || nh != port(6) {
		t.Errorf("::ffff:10.1.2.3 -> %v %v, want the IPv6 route %v", nh, ok, port(6))
	}
	if nh, ok := f.Lookup(addr("10.1.2.3")); !ok || nh != port(4) {
		t.Errorf("10.1.2.3 -> %v %v, want the IPv4 route %v", nh, ok, port(4))
	}
}

func TestMemoryBytesCountsTables(t *testing.T) {
	f := NewFIB()
	empty := f.MemoryBytes()
	if empty < 64<<20 || empty > 65<<20 {
		t.Fatalf("empty FIB reports %d bytes, want 64 MiB of tbl24 plus the IPv6 root", empty)
	}
	f.Add(pfx("10.1.2.128/25"), port(1))
	if grown := f.MemoryBytes() - empty; grown < 1024 {
		t.Errorf("a /25 (one tbl8 group of 1 KiB) grew the report by %d bytes", grown)
	}
	before := f.MemoryBytes()
	f.Add(pfx("2001:db8:1:2::/64"), port(1))
	if grown := f.MemoryBytes() - before; grown <= 0 {
		t.Errorf("an IPv6 /64 grew the report by %d bytes", grown)
	}
}
