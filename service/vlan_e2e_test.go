package service

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/packet"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
	"github.com/xnfdev/xnf/port/xdp"
)

// rawPeer is an AF_PACKET socket on a veth end in a lab namespace: this
// kernel has no 802.1Q interfaces, so the peers write tagged frames and
// read them back raw.
type rawPeer struct {
	fd      int
	ifindex int
}

func newRawPeer(t *testing.T, ns *lab.NS, link string) *rawPeer {
	t.Helper()
	l, err := ns.Link(link)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawPeer{ifindex: l.Attrs().Index}
	proto := int(htons(unix.ETH_P_ALL))
	if err := ns.Do(func() (err error) {
		if r.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
			return err
		}
		// The kernel takes the tag off received frames (skb_vlan_untag)
		// and reports it beside them.
		if err := unix.SetsockoptInt(r.fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return err
		}
		return unix.Bind(r.fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: r.ifindex})
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(r.fd) })
	return r
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (r *rawPeer) send(t *testing.T, frames ...[]byte) {
	t.Helper()
	for _, f := range frames {
		if err := unix.Sendto(r.fd, f, 0, &unix.SockaddrLinklayer{Ifindex: r.ifindex, Halen: 6}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Microsecond) // no burst beyond what a veth queues
	}
}

// received is an IPv4 frame a peer read, with the VLAN it came on (-1:
// untagged).
type received struct {
	vlan    int
	ttl     uint8
	src     string
	payload string
	sumOK   bool
}

// receive reads the IPv4/UDP frames arriving at the peer until the line
// has been quiet for quiet, at most 200 of them.
func (r *rawPeer) receive(t *testing.T, quiet time.Duration) []received {
	t.Helper()
	tv := unix.NsecToTimeval(quiet.Nanoseconds())
	if err := unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	var out []received
	buf, oob := make([]byte, 2048), make([]byte, 256)
	for len(out) < 200 {
		n, oobn, _, from, err := unix.Recvmsg(r.fd, buf, oob, 0)
		if err != nil {
			break
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		vlan := -1
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
				if aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0])); aux.Status&unix.TP_STATUS_VLAN_VALID != 0 {
					vlan = int(aux.Vlan_tci & 0xfff)
				}
			}
		}
		f := append([]byte(nil), buf[:n]...)
		if vlan >= 0 {
			// Put the tag the kernel took off back, so the frame parses
			// as it was on the wire.
			f = append(f[:12:12], append([]byte{0x81, 0, byte(vlan >> 8), byte(vlan)}, buf[12:n]...)...)
		}
		var p packet.Packet
		p.Data = f
		p.Parse()
		if !p.Has(packet.FlagIPv4) || !p.Has(packet.FlagUDP) {
			continue // ARP, the kernel's own
		}
		if p.VLANCount > 0 {
			vlan = int(p.VLANTags[0] & 0xfff)
		}
		ip := f[p.L3Off:p.L4Off]
		out = append(out, received{vlan: vlan, ttl: ip[8], src: fmt.Sprintf("%d.%d.%d.%d", ip[12], ip[13], ip[14], ip[15]),
			payload: string(f[p.PayloadOff:p.L3End]), sumOK: ipSum(ip) == 0xffff})
	}
	return out
}

// socketEvents reads one event of xnf_socket_events_total by port, as
// Prometheus would scrape it.
func socketEvents(t *testing.T, s *Service, event string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(s))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "xnf_socket_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["event"] == event {
				out[l["port"]] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func ipSum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// The router gets an interface per VLAN: gen's side of in0 is a trunk
// with the untagged native VLAN (the parent port) and VLAN 100 (a vlan
// port), the sink's side of out0 an access port of VLAN 200. Tagged
// traffic from real frames on the wire is routed between the VLANs with
// the TTL decremented, and what no port carries is dropped and counted.
func TestRoutesBetweenVLANs(t *testing.T) {
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) { routesBetweenVLANs(t, mode) })
	}
}

func routesBetweenVLANs(t *testing.T, mode string) {
	topo := lab.TopologyForTest(t, "vlan", lab.TopologyOptions{})
	const (
		genV100  = "198.18.0.1" // gen on VLAN 100 of the trunk
		genNativ = "198.18.2.2" // gen untagged on the trunk
	)
	yaml := fmt.Sprintf(`ports:
  - {name: trunk, interface: in0, mode: %s}
  - {name: v100, type: vlan, parent: trunk, vid: 100}
  - {name: out, interface: out0, mode: %s, vlan: 200}
workers: {realtime: 0}
metrics: {listen: "off"}
chain:
  - type: router
    interfaces:
      - {port: trunk, addrs: [198.18.2.1/24]}
      - {port: v100, addrs: [%s/24]}
      - {port: out, addrs: [%s/24]}
    neighbors:
      - {port: v100, addr: %s, mac: "%s"}
      - {port: trunk, addr: %s, mac: "%s"}
      - {port: out, addr: %s, mac: "%s"}
`, mode, mode, lab.DUTInAddr, lab.DUTOutAddr, genV100, lab.GenMAC, genNativ, lab.GenMAC, lab.SinkAddr, lab.SinkMAC)
	f, err := config.Parse("vlan.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	gen, sink := newRawPeer(t, topo.Gen, "g0"), newRawPeer(t, topo.Sink, "s0")
	var s *Service
	if err := topo.DUT.Do(func() (err error) {
		s, err = Start(f, slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()
	w := s.Workers[0]
	if n := []string{w.Ports[0].Name(), w.Ports[1].Name(), w.Ports[2].Name()}; n[1] != "in0.100/q0" {
		t.Errorf("port names %q", n)
	}

	toSink := func(src, payload string, opts ...pt.Option) []byte {
		return pt.UDP4(src+":1000", lab.SinkAddr+":9", payload, append([]pt.Option{pt.SrcMAC(lab.GenMAC), pt.DstMAC(lab.DUTInMAC)}, opts...)...)
	}
	const n = 20
	for i := range n {
		gen.send(t, toSink(genV100, fmt.Sprint("on 100 #", i), pt.VLAN(100)), toSink(genNativ, fmt.Sprint("native #", i)))
		if i < 10 {
			gen.send(t, toSink(genV100, "on 300", pt.VLAN(300)), toSink(genV100, "qinq", pt.QinQ(100, 5)))
		}
	}
	got := sink.receive(t, 500*time.Millisecond)
	on100, native := 0, 0
	for _, r := range got {
		if r.vlan != 200 || r.ttl != 63 || !r.sumOK {
			t.Errorf("the sink received %+v: want VLAN 200, TTL 63, a good checksum", r)
		}
		switch r.payload {
		case fmt.Sprint("on 100 #", on100):
			on100++
		case fmt.Sprint("native #", native):
			native++
		default:
			t.Errorf("the sink received %q (from %s) out of order or unexpected", r.payload, r.src)
		}
	}
	if on100 != n || native != n {
		t.Errorf("the sink received %d of %d datagrams from VLAN 100, %d of %d untagged", on100, n, native, n)
	}

	// Back: tagged 200 from the sink leaves the trunk tagged 100 or
	// untagged; an untagged frame on the access port is dropped.
	toGen := func(dst, payload string, opts ...pt.Option) []byte {
		return pt.UDP4(lab.SinkAddr+":9", dst+":1000", payload, append([]pt.Option{pt.SrcMAC(lab.SinkMAC), pt.DstMAC(lab.DUTOutMAC)}, opts...)...)
	}
	for i := range n {
		sink.send(t, toGen(genV100, fmt.Sprint("to 100 #", i), pt.VLAN(200)), toGen(genNativ, fmt.Sprint("to native #", i), pt.VLAN(200)))
		if i < 5 {
			sink.send(t, toGen(genV100, "untagged on an access port"))
		}
	}
	back := gen.receive(t, 500*time.Millisecond)
	to100, toNative := 0, 0
	for _, r := range back {
		switch {
		case r.ttl != 63 || !r.sumOK:
			t.Errorf("gen received %+v: want TTL 63, a good checksum", r)
		case r.vlan == 100 && r.payload == fmt.Sprint("to 100 #", to100):
			to100++
		case r.vlan == -1 && r.payload == fmt.Sprint("to native #", toNative):
			toNative++
		default:
			t.Errorf("gen received %+v", r)
		}
	}
	if to100 != n || toNative != n {
		t.Errorf("gen received %d of %d datagrams on VLAN 100, %d of %d untagged", to100, n, toNative, n)
	}

	trunk, _ := w.Ports[0].(*xdp.Port).VLANCounters()
	access, _ := w.Ports[2].(*xdp.Port).VLANCounters()
	if trunk.Unknown != 20 || access.Unknown != 5 || trunk.NoRoom+access.NoRoom != 0 {
		t.Errorf("vlan_unknown: %d on the trunk (want 10 on VLAN 300 + 10 QinQ), %d on the access port (want 5 untagged); no_room %d, %d",
			trunk.Unknown, access.Unknown, trunk.NoRoom, access.NoRoom)
	}
	if got := socketEvents(t, s, "vlan_unknown"); got["trunk"] != 20 || got["out"] != 5 {
		t.Errorf("xnf_socket_events_total{event=vlan_unknown} by port: %v", got)
	}
	pc := w.PortCounters()
	if pc[0].RX != n || pc[1].RX != n || pc[2].RX != 2*n || pc[0].TX != n || pc[1].TX != n || pc[2].TX != 2*n {
		t.Errorf("port counters %+v", pc)
	}
	stopped = true
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
}
