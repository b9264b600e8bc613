package nat_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xnfdev/xnf/internal/lab"
)

// serverView is what the server side sees of a fixed set of inside flows,
// in terms that do not depend on the NAT's choice of free ports.
type serverView struct {
	TCPPeer       netip.Addr
	TCPPortKept   bool
	UDPPeers      [2]netip.Addr // two inside hosts, same source port, same server
	UDPPortKept   [2]bool
	UDPDistinct   bool
	PingFrom      netip.Addr
	PingIDKept    bool
	ICMPErrorsErr string // "" when port unreachable and time exceeded reached the client
}

func (v serverView) String() string { type plain serverView; return fmt.Sprintf("%+v", plain(v)) }

func observe(t *testing.T, topo *lab.Topology) serverView {
	t.Helper()
	var v serverView
	peer, local, n := tcpTransfer(t, topo, 1<<20)
	if n != 1<<20 {
		t.Fatalf("TCP: %d bytes arrived", n)
	}
	v.TCPPeer, v.TCPPortKept = peer.Addr(), peer.Port() == local.Port()

	srv := udpListen(t, topo.Sink, lab.SinkAddr, 9002)
	const port = 40123
	var seen [2]netip.AddrPort
	for i, addr := range []string{lab.GenAddr, client2} {
		c := udpListen(t, topo.Gen, addr, port)
		ok := false
		// Retries: the first datagram to a new neighbor may wait for ARP.
		for try := 0; try < 5 && !ok; try++ {
			c.WriteToUDP([]byte("hi"), &net.UDPAddr{IP: net.ParseIP(lab.SinkAddr), Port: 9002})
			srv.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			buf := make([]byte, 16)
			if _, from, err := srv.ReadFromUDPAddrPort(buf); err == nil {
				seen[i] = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
				ok = true
			}
		}
		if !ok {
			t.Fatalf("UDP from %s:%d never reached the server", addr, port)
		}
	}
	for i := range seen {
		v.UDPPeers[i], v.UDPPortKept[i] = seen[i].Addr(), seen[i].Port() == port
	}
	v.UDPDistinct = seen[0] != seen[1]

	from, id, err := ping(t, topo, 0x5151)
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	v.PingFrom, v.PingIDKept = from, id == 0x5151
	if err := icmpErrorChecks(t, topo); err != nil {
		v.ICMPErrorsErr = err.Error()
	}
	return v
}

// The same inside-to-outside flows through the Linux kernel's masquerade
// (nftables in the DUT namespace) and through xnf give the same view from
// the server: the NAT address as peer, free ports and echo ids kept, a
// taken port replaced, ICMP errors delivered.
func TestDifferentialAgainstKernelMasquerade(t *testing.T) {
	var kernel, xnf serverView
	t.Run("kernel", func(t *testing.T) { kernel = observe(t, kernelLab(t)) })
	if t.Skipped() || kernel == (serverView{}) {
		t.Skip("no kernel view to compare with")
	}
	t.Run("xnf", func(t *testing.T) {
		topo, _ := xnfLab(t)
		xnf = observe(t, topo)
	})
	t.Logf("kernel: %v", kernel)
	t.Logf("xnf:    %v", xnf)
	if kernel != xnf {
		t.Errorf("server-side views differ:\nkernel %v\nxnf    %v", kernel, xnf)
	}
	want := serverView{
		TCPPeer: netip.MustParseAddr(lab.DUTOutAddr), TCPPortKept: true,
		UDPPeers:    [2]netip.Addr{netip.MustParseAddr(lab.DUTOutAddr), netip.MustParseAddr(lab.DUTOutAddr)},
		UDPPortKept: [2]bool{true, false}, UDPDistinct: true,
		PingFrom: netip.MustParseAddr(lab.DUTOutAddr), PingIDKept: true,
	}
	if xnf != want {
		t.Errorf("xnf view %v\nwant      %v", xnf, want)
	}
}
