package nftest

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/packet"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// TestFragmentSequencesGetDefinedVerdicts sends fragments from the
// generator namespace, one frame at a time (each received by xnf before
// the next goes: a batch of its own), through the live firewall (accept
// established,related; accept in 0 state new; default drop) -> NAT ->
// router, and checks each one's verdict and the firewall's fragment
// counters: in order a datagram passes whole and reaches the sink's
// socket; a later fragment before its first, overlaps (RFC 1858, RFC
// 5722) and a first IPv6 fragment without its header chain (RFC 7112)
// are dropped as fragment.
func TestFragmentSequencesGetDefinedVerdicts(t *testing.T) {
	var fw *firewall.Stage
	topo, w, _, _, _ := liveChainWith(t, conntrack.Config{MaxFlows: 4096}, &fw, nil)
	if err := topo.Sink.AddNeigh("s0", lab.DUTOutAddr, lab.DUTOutMAC); err != nil {
		t.Fatal(err)
	}
	var sink *net.UDPConn
	if err := topo.Sink.Do(func() (err error) {
		sink, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(lab.SinkAddr), Port: 9})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	send := rawSender(t, topo.Gen)
	// sendOne sends f and waits until xnf has received it, so that the
	// next frame is in another batch; it returns the frame's verdict.
	sendOne := func(f []byte) packet.DropReason {
		t.Helper()
		before := w.PortCounters()
		send(f)
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end) && w.PortCounters()[0].RX == before[0].RX; {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(5 * time.Millisecond)
		after := w.PortCounters()
		if after[0].RX != before[0].RX+1 {
			t.Fatalf("xnf received %d frames, want 1", after[0].RX-before[0].RX)
		}
		if after[1].TX == before[1].TX+1 {
			return packet.DropNone
		}
		for r, n := range after[0].Dropped {
			if n != before[0].Dropped[r] {
				return r
			}
		}
		t.Fatal("neither forwarded nor dropped")
		return 0
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), 250) // 4000 bytes
	v4 := func(id uint32, payload []byte) [][]byte {
		return pt.Fragments(pt.UDP4(lab.GenAddr+":7000", lab.SinkAddr+":9", payload), 1480, id)
	}
	v6 := func(id uint32) [][]byte {
		return pt.Fragments(pt.UDP6("[2001:db8::1]:7000", "[2001:db8:1::2]:9", payload), 1448, id)
	}
	overlapping := func(f []byte, by int) []byte { // the same fragment, its offset by bytes earlier
		c := append([]byte(nil), f...)
		var p packet.Packet
		p.Reset(c, 0, 0)
		p.Parse()
		d, _ := p.Fragment()
		if p.Flags&packet.FlagIPv4 != 0 {
			h := packet.IPv4(c[14:])
			c[14+6] = c[14+6]&0xe0 | byte((d.Offset-by)/8>>8)
			c[14+7] = byte((d.Offset - by) / 8)
			h.SetChecksum(0)
			h.SetChecksum(h.ComputeChecksum())
		} else {
			om := uint16(d.Offset-by) | uint16(c[d.HeaderOff+3]&1)
			c[d.HeaderOff+2], c[d.HeaderOff+3] = byte(om>>8), byte(om)
		}
		return c
	}
	tcpAt8 := pt.Fragments(pt.TCP4(lab.GenAddr+":7001", lab.SinkAddr+":9", make([]byte, 40)), 8, 77)[1]
	chainCut := func() []byte {
		f := v6(66)[0][:14+40+8]
		c := append([]byte(nil), f...)
		c[14+40] = packet.ProtoDstOpts // the fragmentable part: 16 bytes of destination options, no UDP
		c[14+4], c[14+5] = 0, 8+16
		return append(c, packet.ProtoUDP, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	}()

	a, b, c, d, e := v4(1, payload), v4(2, payload), v4(3, payload), v6(4), v6(5)
	steps := []struct {
		name  string
		frame []byte
		want  packet.DropReason
	}{
		{"ipv4 in order: first", a[0], packet.DropNone},
		{"ipv4 in order: middle", a[1], packet.DropNone},
		{"ipv4 in order: last", a[2], packet.DropNone},
		{"ipv4 last before its first", b[2], packet.DropFragment},
		{"ipv4 first after its last", b[0], packet.DropNone},
		{"ipv4 middle after its first", b[1], packet.DropNone},
		{"ipv4 first", c[0], packet.DropNone},
		{"ipv4 middle", c[1], packet.DropNone},
		{"ipv4 a fragment overlapping the middle", overlapping(c[2], 8), packet.DropFragment},
		{"ipv4 the last of a condemned datagram", c[2], packet.DropFragment},
		{"ipv4 TCP at offset 8 (RFC 1858)", tcpAt8, packet.DropFragment},
		{"ipv6 in order: first", d[0], packet.DropNone},
		{"ipv6 in order: middle", d[1], packet.DropNone},
		{"ipv6 in order: last", d[2], packet.DropNone},
		{"ipv6 first", e[0], packet.DropNone},
		{"ipv6 a middle overlapping the first (RFC 5722)", overlapping(e[1], 16), packet.DropFragment},
		{"ipv6 the rest of a condemned datagram", e[1], packet.DropFragment},
		{"ipv6 first fragment without its UDP header (RFC 7112)", chainCut, packet.DropFragment},
	}
	before := fw.StageMetrics()
	for _, s := range steps {
		if got := sendOne(s.frame); got != s.want {
			t.Errorf("%s: %v, want %v", s.name, got, s.want)
		}
	}
	m := fw.StageMetrics()
	for name, want := range map[string]uint64{"fragment_tracked": 5, "fragment_followed": 6, "fragment_complete": 2,
		"fragment_out_of_order": 1, "fragment_overlap": 5, "fragment_incomplete_chain": 1} {
		if got := m[name] - before[name]; got != want {
			t.Errorf("%s: %d, want %d", name, got, want)
		}
	}
	// The in-order IPv4 datagram reached the sink's socket whole, from
	// the NAT's address; no other did (b lost its last fragment, c was
	// condemned).
	buf := make([]byte, 9000)
	sink.SetReadDeadline(time.Now().Add(time.Second))
	n, from, err := sink.ReadFromUDP(buf)
	if err != nil || !bytes.Equal(buf[:n], payload) || from.IP.String() != lab.DUTOutAddr {
		t.Fatalf("sink: %d bytes from %v, %v; want the %d-byte datagram from %s", n, from, err, len(payload), lab.DUTOutAddr)
	}
	sink.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := sink.ReadFromUDP(buf); err == nil {
		t.Errorf("sink received another %d-byte datagram", n)
	}
}
