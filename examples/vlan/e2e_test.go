package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/xnftest"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

func TestMain(m *testing.M) { xnftest.Main(m, main) }

// rawSocket is an AF_PACKET socket on a link of ns that reports the VLAN
// tag the kernel took off each received frame (this kernel has no 802.1Q
// interfaces, so the trunk side is played with raw frames).
func rawSocket(t *testing.T, ns *lab.NS, link string) (fd, ifindex int) {
	l, err := ns.Link(link)
	if err != nil {
		t.Fatal(err)
	}
	ifindex = l.Attrs().Index
	if err := ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex})
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, ifindex
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestBridgesAccessToTrunk runs this binary with chain.yaml between gen
// (untagged, 198.18.0.1) and the sink's s0 as a trunk carrying VLAN 100,
// where a host 198.18.0.3 in gen's subnet lives.
func TestBridgesAccessToTrunk(t *testing.T) {
	topo := lab.TopologyForTest(t, "vlan", lab.TopologyOptions{})
	const host = "198.18.0.3"
	// gen reaches the host on VLAN 100 at the sink's MAC, without ARP.
	if err := topo.Gen.AddNeigh("g0", host, lab.SinkMAC); err != nil {
		t.Fatal(err)
	}
	fd, ifindex := rawSocket(t, topo.Sink, "s0")
	x := xnftest.Start(t, topo.DUT, "run", "-c", "chain.yaml")
	x.WaitFor(t, "metrics: http://", 10*time.Second)

	// gen -> trunk: untagged datagrams must arrive tagged 100.
	if err := topo.Gen.SendUDP(host+":9", 40, "datagram %d", 1, 100*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	tagged, untagged := 0, 0
	buf, oob := make([]byte, 2048), make([]byte, 256)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 500000})
	for {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
		if err != nil {
			break
		}
		if n < 34 || binary.BigEndian.Uint16(buf[12:]) != 0x0800 || buf[23] != unix.IPPROTO_UDP {
			continue // not IPv4/UDP (after the kernel took the tag off)
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		vlan := -1
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
				aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
				if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 {
					vlan = int(aux.Vlan_tci & 0xfff)
				}
			}
		}
		if vlan == 100 {
			tagged++
		} else {
			untagged++
		}
	}
	if tagged != 40 || untagged != 0 {
		t.Errorf("the trunk received %d datagrams tagged 100 and %d others, want 40 and 0", tagged, untagged)
	}

	// trunk -> gen: tagged 100 is popped and delivered; untagged and
	// VLAN 200 frames are dropped.
	var atGen *net.UDPConn
	if err := topo.Gen.Do(func() (err error) {
		atGen, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(lab.GenAddr), Port: 9})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer atGen.Close()
	to := &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6}
	frame := func(payload string, opts ...pt.Option) []byte {
		return pt.UDP4(host+":9", lab.GenAddr+":9", payload, append([]pt.Option{pt.SrcMAC(lab.SinkMAC), pt.DstMAC(lab.GenMAC)}, opts...)...)
	}
	for i := range 30 {
		fs := [][]byte{frame(fmt.Sprint("tagged ", i), pt.VLAN(100)), frame("vlan 200", pt.VLAN(200))}
		if i < 10 {
			fs = append(fs, frame("untagged"))
		}
		for _, f := range fs {
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Microsecond)
	}
	got := 0
	for {
		atGen.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := atGen.Read(buf)
		if err != nil {
			break
		}
		if string(buf[:6]) != "tagged" {
			t.Errorf("gen received %q", buf[:n])
		}
		got++
	}
	if got != 30 {
		t.Errorf("gen received %d of the 30 datagrams tagged 100", got)
	}

	const metrics = "127.0.0.1:9464"
	if v := xnftest.Settle(t, topo.DUT, metrics, xnftest.StageEvent("vlan", "foreign"), 40); v != 40 {
		t.Errorf("foreign = %d, want 10 untagged + 30 on VLAN 200", v)
	}
	text := xnftest.Metrics(t, topo.DUT, metrics)
	for ev, want := range map[string]uint64{"pushed": 40, "popped": 30, "no_room": 0} {
		if v := xnftest.Value(text, xnftest.StageEvent("vlan", ev)); v != want {
			t.Errorf("%s = %d, want %d", ev, v, want)
		}
	}
	x.Stop(t)
}
