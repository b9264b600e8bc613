package xdp

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

const headroom = 256 // XDP_PACKET_HEADROOM: where the kernel puts received data

func testUMEM(t *testing.T, frames int) *afxdp.UMEM {
	t.Helper()
	u, err := afxdp.NewUMEM(afxdp.UMEMConfig{FrameSize: 4096, FrameCount: frames})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// frame takes a frame of u and writes b at offset off in it, as the kernel
// writes a received frame: the descriptor's address is the data's.
func frame(t *testing.T, u *afxdp.UMEM, off int, b []byte) afxdp.Desc {
	t.Helper()
	a := make([]uint64, 1)
	if u.Alloc(a) != 1 {
		t.Fatal("UMEM out of frames")
	}
	// Mark the whole chunk, so bytes the tag code must not touch show.
	chunk := u.Frame(a[0], 4096)
	for i := range chunk {
		chunk[i] = 0xee
	}
	copy(chunk[off:], b)
	return afxdp.Desc{Addr: a[0] + uint64(off), Len: uint32(len(b))}
}

func udp(payload string, opts ...pt.Option) []byte {
	return pt.UDP4("198.18.0.1:1000", "198.18.1.2:9", payload, opts...)
}

// Strip moves the 12 MAC bytes over the tag and nothing else: the
// untagged frame starts 4 bytes later in the same chunk, the bytes before
// it are as they were.
func TestStripMovesOnlyTheMACs(t *testing.T) {
	u := testUMEM(t, 8)
	tagged := udp("strip me", pt.VLAN(100))
	d := frame(t, u, headroom, tagged)
	f := Strip(u.Frame(d.Addr, d.Len))
	if want := udp("strip me"); !bytes.Equal(f, want) {
		t.Fatalf("stripped frame\n% x\nwant\n% x", f, want)
	}
	if &f[0] != &u.Frame(d.Addr+4, 1)[0] {
		t.Error("the stripped frame is not 4 bytes into the received one")
	}
	chunk := u.Frame(d.Addr&^4095, 4096)
	if !bytes.Equal(chunk[headroom:headroom+4], tagged[:4]) || chunk[headroom-1] != 0xee {
		t.Errorf("bytes in front of the stripped frame changed: % x", chunk[headroom-4:headroom+4])
	}
}

func TestPushPutsTheTagInTheHeadroom(t *testing.T) {
	u := testUMEM(t, 8)
	for _, c := range []struct {
		name    string
		off     int // where the frame starts in its chunk
		tci     uint16
		addr    int // where the tagged frame starts
		len     int // frame length
		pushed  bool
		wantTag []pt.Option
	}{
		{"a received frame: 4 bytes into the headroom", headroom, 100, headroom - 4, 0, true, []pt.Option{pt.VLAN(100)}},
		{"a stripped frame: back where it was received", headroom + 4, 200, headroom, 0, true, []pt.Option{pt.VLAN(200)}},
		{"just enough headroom", 4, 4094, 0, 0, true, []pt.Option{pt.VLAN(4094)}},
		{"no headroom: the frame shifts into its tailroom", 0, 100, 0, 0, true, []pt.Option{pt.VLAN(100)}},
		{"no headroom nor tailroom", 0, 100, 0, 4096, false, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := udp("push me")
			if c.len > 0 {
				b = append(b, make([]byte, c.len-len(b))...)
			}
			d := frame(t, u, c.off, b)
			defer u.Free([]uint64{d.Addr})
			p := &packet.Packet{Data: u.Frame(d.Addr, d.Len), Addr: d.Addr}
			if got := Push(p, c.tci, u.FrameSize()); got != c.pushed {
				t.Fatalf("Push = %v, want %v", got, c.pushed)
			}
			base := d.Addr &^ 4095
			if !c.pushed {
				if p.Addr != d.Addr || !bytes.Equal(p.Data, b) {
					t.Error("a failed Push changed the packet")
				}
				return
			}
			want := udp("push me", c.wantTag...)
			if !bytes.Equal(p.Data, want) {
				t.Fatalf("pushed frame\n% x\nwant\n% x", p.Data, want)
			}
			if p.Addr != base+uint64(c.addr) || &p.Data[0] != &u.Frame(p.Addr, 1)[0] {
				t.Errorf("Addr %#x (data at %p), want %#x", p.Addr, &p.Data[0], base+uint64(c.addr))
			}
			if c.addr > 0 && u.Frame(base, 4096)[c.addr-1] != 0xee {
				t.Error("Push wrote in front of the tag")
			}
		})
	}
}

// vlans: the parent (untagged, or an access VLAN) and VLAN ports 100, 200.
func testTrunk(t *testing.T, u *afxdp.UMEM, own uint16, rx *[]afxdp.Desc) *trunk {
	tr := newTrunkOver(u, own, []vlanMember{{"v100", 100}, {"v200", 200}})
	tr.recv = func(d []afxdp.Desc) int {
		n := copy(d, *rx)
		*rx = (*rx)[n:]
		return n
	}
	return tr
}

func payloads(b *packet.Batch) []string {
	var out []string
	for i := range b.Slice() {
		p := &b.Packets[i]
		p.Parse()
		tag := ""
		if p.VLANCount > 0 {
			tag = fmt.Sprintf("@%d", p.VLANTags[0]&0xfff)
		}
		out = append(out, string(p.Data[p.PayloadOff:p.L3End])+tag)
	}
	return out
}

func TestDemultiplexesByVLAN(t *testing.T) {
	for _, c := range []struct {
		name               string
		own                uint16
		parent, v100, v200 []string
		unknown            uint64
	}{
		{"untagged parent (native VLAN)", 0,
			[]string{"untagged 1", "priority", "untagged 2", "inner@7"}, []string{"100 a", "100 b", "100 c"}, []string{"200 a"}, 4},
		{"parent on access VLAN 300", 300,
			[]string{"300"}, []string{"100 a", "100 b", "100 c"}, []string{"200 a"}, 7},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := testUMEM(t, 64)
			var rx []afxdp.Desc
			for _, f := range [][]byte{
				udp("untagged 1"), udp("100 a", pt.VLAN(100)), udp("200 a", pt.VLAN(200)),
				udp("300", pt.VLAN(300)), udp("qinq", pt.QinQ(100, 5)), udp("100 b", pt.VLAN(100)),
				udp("priority", pt.VLAN(0)), udp("4095", pt.VLAN(4095)), udp("untagged 2"),
				udp("100 c", pt.VLAN(100)), udp("inner", pt.VLAN(0), pt.VLAN(7)),
				udp("short tag")[:16], // an 802.1Q ethertype and half a tag
			} {
				if len(f) == 16 {
					copy(f[12:], []byte{0x81, 0x00, 0, 100})
				}
				rx = append(rx, frame(t, u, headroom, f))
			}
			tr := testTrunk(t, u, c.own, &rx)
			var b packet.Batch
			n := tr.receive(&b, 64)
			if got := payloads(&b); n != len(c.parent) || fmt.Sprint(got) != fmt.Sprint(c.parent) {
				t.Errorf("the parent received %d: %q, want %q", n, got, c.parent)
			}
			for i, want := range [][]string{c.v100, c.v200} {
				var vb packet.Batch
				tr.take(&tr.members[1+i], &vb, 64)
				if got := payloads(&vb); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("VLAN %d received %q, want %q", 100*(i+1), got, want)
				}
				for j := range vb.Slice() {
					if p := &vb.Packets[j]; pipeline.Headroom(p, 4096) != headroom+4 {
						t.Errorf("VLAN %d: packet %d at %d into its frame, want %d", 100*(i+1), j, pipeline.Headroom(p, 4096), headroom+4)
					}
				}
			}
			if got := tr.counters().Unknown; got != c.unknown {
				t.Errorf("unknown = %d, want %d", got, c.unknown)
			}
			// The parent's and the VLANs' packets are held; the rest freed.
			if a := u.Accounting(); a.App != len(c.parent)+4 || a.Free != 64-a.App {
				t.Errorf("accounting %+v", a)
			}
		})
	}
}

// The parent takes no more off the socket than each VLAN's queue holds:
// what does not fit waits in the RX ring, and every VLAN keeps its order
// across receives.
func TestDemuxIsBoundedAndKeepsOrder(t *testing.T) {
	u := testUMEM(t, 2048)
	var rx []afxdp.Desc
	const n = 3 * packet.MaxBurst
	for i := range n {
		rx = append(rx, frame(t, u, headroom, udp(fmt.Sprint(i), pt.VLAN(100))))
	}
	tr := testTrunk(t, u, 0, &rx)
	var b packet.Batch
	if got := tr.receive(&b, 64); got != 0 || tr.members[1].q.size != packet.MaxBurst || len(rx) != n-packet.MaxBurst {
		t.Fatalf("first receive: %d for the parent, %d queued, %d left in the ring", got, tr.members[1].q.size, len(rx))
	}
	next := 0
	for loop := 0; loop < 100 && next < n; loop++ {
		b.Reset()
		tr.receive(&b, 64) // the parent, then VLAN 100, as a worker does
		var vb packet.Batch
		tr.take(&tr.members[1], &vb, 64)
		for _, s := range payloads(&vb) {
			if s != fmt.Sprint(next) {
				t.Fatalf("VLAN 100 received %q, want %d", s, next)
			}
			next++
		}
		for i := range vb.Slice() {
			u.Free([]uint64{vb.Packets[i].Addr})
		}
	}
	if next != n || tr.counters().Unknown != 0 {
		t.Errorf("VLAN 100 received %d of %d; %d unknown", next, n, tr.counters().Unknown)
	}
}

// Transmit tags each VLAN's packets; a packet with no room for its tag is
// freed and counted, the ring's refusal leaves the rest with the caller.
func TestTransmitTags(t *testing.T) {
	u := testUMEM(t, 64)
	var sent []afxdp.Desc
	ring := 3
	tr := newTrunkOver(u, 0, []vlanMember{{"v100", 100}})
	tr.txFree = func() int { return ring }
	tr.xmit = func(d []afxdp.Desc) int {
		k := min(len(d), ring)
		ring -= k
		sent = append(sent, d[:k]...)
		return k
	}
	var pkts []*packet.Packet
	for i, off := range []int{headroom, headroom, 0, headroom, headroom} {
		b := udp(fmt.Sprint(i))
		if off == 0 {
			b = append(b, make([]byte, 4096-len(b))...) // fills its chunk
		}
		d := frame(t, u, off, b)
		pkts = append(pkts, &packet.Packet{Data: u.Frame(d.Addr, d.Len), Addr: d.Addr})
	}
	if got := tr.transmit(&tr.members[1], pkts); got != 4 {
		t.Fatalf("transmit took %d, want 4 (2 sent, 1 without room, 1 sent, then the ring is full)", got)
	}
	for i, d := range sent {
		want := udp(fmt.Sprint([]int{0, 1, 3}[i]), pt.VLAN(100))
		if f := u.Frame(d.Addr, d.Len); !bytes.Equal(f, want) {
			t.Errorf("sent %d\n% x\nwant\n% x", i, f, want)
		}
	}
	if tr.counters().NoRoom != 1 {
		t.Errorf("no_room = %d", tr.counters().NoRoom)
	}
	// The untagged parent sends frames as they are.
	ring = 1
	sent = sent[:0]
	if got := tr.transmit(&tr.members[0], pkts[4:]); got != 1 || !bytes.Equal(u.Frame(sent[0].Addr, sent[0].Len), udp("4")) {
		t.Errorf("the untagged parent sent %d: % x", got, u.Frame(sent[0].Addr, sent[0].Len))
	}
}

func TestDemuxAllocatesNothing(t *testing.T) {
	u := testUMEM(t, 256)
	var frames []afxdp.Desc
	tagged := udp("x", pt.VLAN(100))
	for range 64 {
		frames = append(frames, frame(t, u, headroom, tagged))
	}
	var rx []afxdp.Desc
	tr := testTrunk(t, u, 0, &rx)
	tr.xmit = func(d []afxdp.Desc) int { return len(d) }
	tr.txFree = func() int { return 2048 }
	var b, vb packet.Batch
	pkts := make([]*packet.Packet, 0, 64)
	allocs := testing.AllocsPerRun(10, func() {
		// The frames go round without the UMEM seeing them: rewrite the tags.
		for _, d := range frames {
			f := u.Frame(d.Addr, d.Len)
			copy(f, tagged[:18])
		}
		rx = frames
		b.Reset()
		tr.receive(&b, 64)
		vb.Reset()
		tr.take(&tr.members[1], &vb, 64)
		pkts = pkts[:0]
		for i := range vb.Slice() {
			pkts = append(pkts, &vb.Packets[i])
		}
		tr.transmit(&tr.members[1], pkts)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per burst", allocs)
	}
}

// BenchmarkTrunk is the VLAN demultiplexing of a burst of 64 tagged frames
// over four VLAN ports (classify, strip, queue, take), then the tag pushed
// back on each for transmit: what VLANs add to a packet's trip through an
// AF_XDP port, without the rings.
func BenchmarkTrunk(b *testing.B) {
	u, err := afxdp.NewUMEM(afxdp.UMEMConfig{FrameSize: 4096, FrameCount: 128})
	if err != nil {
		b.Fatal(err)
	}
	defer u.Close()
	vlans := []vlanMember{{"a", 100}, {"b", 200}, {"c", 300}, {"d", 400}}
	tr := newTrunkOver(u, 0, vlans)
	var rx []afxdp.Desc
	tr.recv = func(d []afxdp.Desc) int { n := copy(d, rx); rx = rx[n:]; return n }
	tr.xmit = func(d []afxdp.Desc) int { return len(d) }
	tr.txFree = func() int { return 2048 }
	addrs := make([]uint64, 64)
	u.Alloc(addrs)
	var frames []afxdp.Desc
	var heads [][]byte
	for i, a := range addrs {
		f := udp("payload of a small datagram", pt.VLAN(vlans[i%4].vid))
		copy(u.Frame(a+headroom, uint32(len(f))), f)
		frames = append(frames, afxdp.Desc{Addr: a + headroom, Len: uint32(len(f))})
		heads = append(heads, f[:18])
	}
	var batch, vb packet.Batch
	pkts := make([]*packet.Packet, 0, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		rx = frames
		batch.Reset()
		tr.receive(&batch, 64)
		for m := 1; m < len(tr.members); m++ {
			vb.Reset()
			tr.take(&tr.members[m], &vb, 64)
			pkts = pkts[:0]
			for i := range vb.Slice() {
				pkts = append(pkts, &vb.Packets[i])
			}
			tr.transmit(&tr.members[m], pkts)
		}
		b.StopTimer()
		for i, d := range frames { // the tags the next round strips
			copy(u.Frame(d.Addr, 18), heads[i])
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/pkt")
}
