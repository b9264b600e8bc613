package packet

import (
	"strings"
	"testing"
	"unsafe"
)

func TestZeroPacketIsForwardWithoutReason(t *testing.T) {
	var p Packet
	if p.Verdict != Forward || p.Reason != DropNone {
		t.Errorf("zero Packet: verdict %v reason %v, want forward none", p.Verdict, p.Reason)
	}
}

func TestVerdictHelpers(t *testing.T) {
	var p Packet
	p.SetDrop(DropTTL)
	if p.Verdict != Drop || p.Reason != DropTTL {
		t.Errorf("SetDrop: %v %v", p.Verdict, p.Reason)
	}
	p.SetForward(3)
	if p.Verdict != Forward || p.OutPort != 3 || p.Reason != DropNone {
		t.Errorf("SetForward: %v %d %v", p.Verdict, p.OutPort, p.Reason)
	}
	p.SetBounce()
	if p.Verdict != Bounce || p.Reason != DropNone {
		t.Errorf("SetBounce: %v %v", p.Verdict, p.Reason)
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"a drop verdict", Drop.String(), "drop"},
		{"an unknown verdict", Verdict(9).String(), "verdict(9)"},
		{"a named drop reason", DropNoRoute.String(), "no-route"},
		{"the last named drop reason", DropOther.String(), "other"},
		{"a user drop reason", (DropUserBase + 2).String(), "user(130)"},
		{"an unassigned drop reason", DropReason(50).String(), "reason(50)"},
		{"no flags", Flags(0).String(), "0"},
		{"several flags", (FlagEthernet | FlagIPv4 | FlagTCP).String(), "ethernet|ipv4|tcp"},
		{"an unknown flag", (FlagUnsupported << 1).String(), "0x40000"},
		{"an error kind", ErrTCPHeaderLength.String(), "tcp bad data offset"},
		{"an unknown error kind", ErrorKind(200).String(), "error(200)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, tt.got, tt.want)
		}
	}
	for e := ErrNone + 1; e <= ErrFrameTooLong; e++ {
		if f := e.Flag(); f != FlagTruncated && f != FlagMalformed && f != FlagUnsupported {
			t.Errorf("%v has no summary flag", e)
		}
		if strings.HasPrefix(e.String(), "error(") {
			t.Errorf("error kind %d has no name", e)
		}
	}
	if ErrNone.Flag() != 0 {
		t.Errorf("ErrNone has a summary flag")
	}
}

func TestBatch(t *testing.T) {
	b := new(Batch)
	frame := frameIPv4UDP(t)
	for i := range MaxBurst {
		p := b.Append(frame, uint64(i)*4096, 1)
		if p == nil {
			t.Fatalf("Append %d returned nil before the batch was full", i)
		}
		if i == 0 {
			p.Parse()
			p.SetDrop(DropPolicy)
		}
	}
	if !b.Full() || b.Free() != 0 || len(b.Slice()) != MaxBurst {
		t.Fatalf("after MaxBurst appends: full %v free %d len %d", b.Full(), b.Free(), len(b.Slice()))
	}
	if b.Append(frame, 0, 0) != nil {
		t.Fatalf("Append to a full batch returned a slot")
	}
	if b.Slice()[MaxBurst-1].Addr != (MaxBurst-1)*4096 {
		t.Fatalf("slots out of order")
	}
	b.Reset()
	if b.Len != 0 || len(b.Slice()) != 0 || b.Free() != MaxBurst {
		t.Fatalf("Reset left %d packets", b.Len)
	}
	p := b.Append(frame[:20], 7, 2)
	if p != &b.Packets[0] || p.Verdict != Forward || p.Reason != DropNone || p.Flags != 0 || p.Addr != 7 || p.InPort != 2 || len(p.Data) != 20 {
		t.Fatalf("a reused slot kept old state: %+v", *p)
	}
}

// TestNoAllocations proves the hot path allocates nothing.
func TestNoAllocations(t *testing.T) {
	v4 := Packet{Data: frameIPv4TCPOptions(t)}
	v6 := Packet{Data: frameVLANVLANIPv6TCP(t)}
	udp := Packet{Data: frameIPv4UDP(t)}
	icmp := Packet{Data: frameICMPv6Echo(t)}
	for _, p := range []*Packet{&v4, &v6, &udp, &icmp} {
		p.Parse()
	}
	b := new(Batch)
	var sink uint64
	tests := []struct {
		name string
		f    func()
	}{
		{"Parse", func() { v4.Parse(); v6.Parse() }},
		{"Reset and Batch.Append", func() { b.Reset(); b.Append(v4.Data, 1, 0).Parse() }},
		{"header views", func() {
			sink += uint64(v4.IPv4().TTL()) + uint64(v4.TCP().SrcPort()) + uint64(v6.IPv6().HopLimit()) + uint64(len(v4.Payload()))
			a := v6.IPv6().SrcAddr()
			sink += uint64(a.BitLen())
		}},
		{"FlowKey", func() { k := v6.FlowKey(); sink += uint64(k.SrcPort) }},
		{"checksums", func() {
			c, _ := udp.ComputeL4Checksum()
			sink += uint64(c) + uint64(v4.IPv4().ComputeChecksum())
			if v6.L4ChecksumValid() {
				sink++
			}
		}},
		{"rewrites", func() {
			v4.SetIPv4Src([4]byte{10, 0, 0, 1})
			v4.SetDstPort(80)
			v4.SetSrcMAC([6]byte{2})
			v4.DecTTL()
			v6.SetIPv6Dst([16]byte{1})
			udp.SetSrcPort(9)
			icmp.SetICMPEchoID(7)
		}},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, tt.f); n != 0 {
			t.Errorf("%s allocates %v times per run", tt.name, n)
		}
	}
	_ = sink
}

// TestPacketIsOneCacheLine keeps the per-packet state at 64 bytes: a worker
// touches every Packet of a batch in every stage.
func TestPacketIsOneCacheLine(t *testing.T) {
	if n := unsafe.Sizeof(Packet{}); n != 64 {
		t.Errorf("Packet is %d bytes, want 64: reorder or shrink the fields", n)
	}
}
