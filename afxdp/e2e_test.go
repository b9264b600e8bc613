package afxdp_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/bpf"
	"github.com/xnfdev/xnf/internal/lab"
)

const udpPort = 9000

var claimUDP = bpf.Filter{EtherType: 0x0800, IPProto: 17}

// attachDUT attaches xnf to in0 in the DUT namespace and opens queue 0.
func attachDUT(t *testing.T, topo *lab.Topology, mode afxdp.AttachMode, f bpf.Filter) (*afxdp.Device, *afxdp.Socket, *afxdp.UMEM) {
	t.Helper()
	u, err := afxdp.NewUMEM(afxdp.UMEMConfig{FrameSize: 2048, FrameCount: 4096})
	if err != nil {
		t.Fatal(err)
	}
	var dev *afxdp.Device
	var s *afxdp.Socket
	err = topo.DUT.Do(func() (err error) {
		dev, err = afxdp.Attach("in0", afxdp.DeviceConfig{Mode: mode, Filter: f})
		if err != nil {
			return err
		}
		s, err = dev.OpenQueue(0, u, afxdp.SocketConfig{})
		return err
	})
	if err != nil {
		if dev != nil {
			dev.Close()
		}
		u.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close(); u.Close() })
	if got := s.FillFromFree(2048); got != 2048 {
		t.Fatalf("filled %d frames, want 2048", got)
	}
	return dev, s, u
}

// sendUDP sends n datagrams "xnf-<i>" from the gen namespace to dst.
func sendUDP(t *testing.T, ns *lab.NS, dst string, n int) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.Dial("udp4", net.JoinHostPort(dst, fmt.Sprint(udpPort)))
		if err != nil {
			return err
		}
		defer c.Close()
		for i := 0; i < n; i++ {
			if _, err := fmt.Fprintf(c, "xnf-%d", i); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestReceiveDatagramsFromKernelSocket(t *testing.T) {
	for _, mode := range []afxdp.AttachMode{afxdp.ModeNative, afxdp.ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			topo := lab.TopologyForTest(t, "rx", lab.TopologyOptions{})
			if err := topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC); err != nil {
				t.Fatal(err)
			}
			dev, s, u := attachDUT(t, topo, mode, claimUDP)
			if dev.Mode() != mode {
				t.Fatalf("kernel reports mode %v, asked for %v", dev.Mode(), mode)
			}
			const n = 1000
			sendUDP(t, topo.Gen, lab.DUTInAddr, n)

			seen := make(map[string]bool)
			descs := make([]afxdp.Desc, 64)
			deadline := time.Now().Add(5 * time.Second)
			for len(seen) < n && time.Now().Before(deadline) {
				s.Poll(50 * time.Millisecond)
				k := s.Receive(descs)
				for _, d := range descs[:k] {
					f := u.Frame(d.Addr, d.Len)
					if len(f) < 42 {
						t.Fatalf("frame of %d bytes", len(f))
					}
					payload := string(f[42:])
					if seen[payload] {
						t.Fatalf("payload %q received twice", payload)
					}
					seen[payload] = true
				}
				u.FreeDescs(descs[:k])
				s.FillFromFree(k)
			}
			if len(seen) != n {
				t.Fatalf("received %d of %d datagrams", len(seen), n)
			}
			for i := 0; i < n; i++ {
				if !seen[fmt.Sprintf("xnf-%d", i)] {
					t.Fatalf("datagram xnf-%d missing", i)
				}
			}
			c, err := dev.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if c.Redirected != n || c.Passed != 0 {
				t.Errorf("program counters %+v, want exactly %d redirected and none passed", c, n)
			}
			if a := u.Accounting(); !a.Balanced() {
				t.Errorf("UMEM accounting: %v", a)
			}
		})
	}
}

// udpFrame builds an Ethernet/IPv4/UDP frame with valid checksums.
func udpFrame(t testing.TB, srcMAC, dstMAC, src, dst string, payload []byte) []byte {
	sm, _ := net.ParseMAC(srcMAC)
	dm, _ := net.ParseMAC(dstMAC)
	eth := &layers.Ethernet{SrcMAC: sm, DstMAC: dm, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	udp := &layers.UDP{SrcPort: 40000, DstPort: udpPort}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// listenUDP opens a kernel UDP socket in ns with a big receive buffer.
func listenUDP(t *testing.T, ns *lab.NS, addr string) *net.UDPConn {
	t.Helper()
	c, err := ns.ListenUDP(addr, udpPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// countUDP reads datagrams until n distinct ones arrived or the deadline.
func countUDP(c *net.UDPConn, n int, d time.Duration) (int, map[string]bool) {
	seen := map[string]bool{}
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(d))
	for len(seen) < n {
		k, _, err := c.ReadFromUDP(buf)
		if err != nil {
			break
		}
		seen[string(buf[:k])] = true
	}
	return len(seen), seen
}

func TestTransmitReachesKernelSocket(t *testing.T) {
	topo := lab.TopologyForTest(t, "tx", lab.TopologyOptions{})
	_, s, u := attachDUT(t, topo, afxdp.ModeAuto, claimUDP)
	conn := listenUDP(t, topo.Gen, lab.GenAddr)

	const n = 1000
	addrs := make([]uint64, 64)
	descs := make([]afxdp.Desc, 64)
	done := make([]uint64, 256)
	sent := 0
	deadline := time.Now().Add(5 * time.Second)
	for sent < n && time.Now().Before(deadline) {
		k := u.Alloc(addrs[:min(64, n-sent)])
		for i, a := range addrs[:k] {
			f := udpFrame(t, lab.DUTInMAC, lab.GenMAC, lab.DUTInAddr, lab.GenAddr, []byte(fmt.Sprintf("xnf-%d", sent+i)))
			copy(u.Frame(a, uint32(len(f))), f)
			descs[i] = afxdp.Desc{Addr: a, Len: uint32(len(f))}
		}
		q := s.Transmit(descs[:k])
		for i := q; i < k; i++ { // not queued: ours again
			u.Free([]uint64{descs[i].Addr})
		}
		sent += q
		for {
			c := s.Complete(done)
			if c == 0 {
				break
			}
			u.Free(done[:c])
		}
	}
	got, _ := countUDP(conn, n, 3*time.Second)
	if got != n {
		t.Errorf("kernel socket received %d of %d datagrams", got, n)
	}
	// Every frame comes back through the completion ring.
	for end := time.Now().Add(2 * time.Second); s.UMEM().Accounting().TX > 0 && time.Now().Before(end); {
		s.Kick()
		if c := s.Complete(done); c > 0 {
			u.Free(done[:c])
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	st, _ := s.Stats()
	if st.TXInvalidDescs != 0 {
		t.Errorf("kernel rejected %d TX descriptors", st.TXInvalidDescs)
	}
	if a := u.Accounting(); !a.Balanced() || a.TX != 0 || a.App != 0 {
		t.Errorf("UMEM accounting after TX: %v", a)
	}
	if s.TXBudget() < 64 {
		t.Logf("TX budget stayed at %d (kernel without XDP_MAX_TX_SKB_BUDGET?)", s.TXBudget())
	}
}

func TestUnclaimedTrafficReachesTheKernel(t *testing.T) {
	topo := lab.TopologyForTest(t, "pass", lab.TopologyOptions{})
	// No static neighbor: ARP must pass through to the DUT's kernel too.
	dev, _, _ := attachDUT(t, topo, afxdp.ModeAuto, claimUDP)

	var ln net.Listener
	if err := topo.DUT.Do(func() (err error) {
		ln, err = net.Listen("tcp4", lab.DUTInAddr+":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hello from the kernel"))
			c.Close()
		}
	}()
	var reply []byte
	err := topo.Gen.Do(func() error {
		c, err := net.DialTimeout("tcp4", lab.DUTInAddr+":8080", 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		reply = buf[:n]
		return err
	})
	if err != nil || string(reply) != "hello from the kernel" {
		t.Fatalf("TCP to the DUT while xnf is attached: %q, %v", reply, err)
	}
	c, _ := dev.Counters()
	if c.Filtered == 0 || c.Redirected != 0 {
		t.Errorf("counters %+v: want ARP and TCP filtered to the kernel, nothing redirected", c)
	}
}

func TestClaimedQueueWithoutSocketFallsBackToKernel(t *testing.T) {
	topo := lab.TopologyForTest(t, "nosock", lab.TopologyOptions{})
	if err := topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC); err != nil {
		t.Fatal(err)
	}
	var dev *afxdp.Device
	if err := topo.DUT.Do(func() (err error) {
		dev, err = afxdp.Attach("in0", afxdp.DeviceConfig{Filter: claimUDP})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	conn := listenUDP(t, topo.DUT, lab.DUTInAddr)
	sendUDP(t, topo.Gen, lab.DUTInAddr, 50)
	if got, _ := countUDP(conn, 50, 3*time.Second); got != 50 {
		t.Errorf("kernel got %d of 50 datagrams for a queue with no socket", got)
	}
	if c, _ := dev.Counters(); c.Passed != 50 {
		t.Errorf("counters %+v: want 50 passed", c)
	}
}

func TestZeroCopyAndOffloadOnVeth(t *testing.T) {
	topo := lab.TopologyForTest(t, "zc", lab.TopologyOptions{})
	u, err := afxdp.NewUMEM(afxdp.UMEMConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	topo.DUT.Do(func() error {
		dev, err := afxdp.Attach("in0", afxdp.DeviceConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()

		_, err = dev.OpenQueue(0, u, afxdp.SocketConfig{ZeroCopy: afxdp.ZeroCopyRequire})
		if !errors.Is(err, afxdp.ErrZeroCopyUnsupported) || !strings.Contains(err.Error(), "zero-copy not supported by veth") {
			t.Errorf("zero-copy required on veth: got %v", err)
		}
		s, err := dev.OpenQueue(0, u, afxdp.SocketConfig{ZeroCopy: afxdp.ZeroCopyAuto})
		if err != nil {
			t.Fatalf("zero-copy auto on veth should fall back to copy: %v", err)
		}
		if s.ZeroCopy() {
			t.Errorf("veth granted zero-copy?")
		}
		_, err = dev.OpenQueue(5, u, afxdp.SocketConfig{})
		if !errors.Is(err, afxdp.ErrQueueRange) || !strings.Contains(err.Error(), "in0 has 1 RX queues") {
			t.Errorf("queue 5 of a 1-queue veth: got %v", err)
		}
		return nil
	})
	topo.Sink.Do(func() error {
		_, err := afxdp.Attach("s0", afxdp.DeviceConfig{Mode: afxdp.ModeOffload})
		if !errors.Is(err, afxdp.ErrOffloadUnsupported) || !strings.Contains(err.Error(), "XDP offload not supported by veth") {
			t.Errorf("offload on veth: got %v", err)
		}
		return nil
	})
}

func TestSecondAttachReportsTheHolder(t *testing.T) {
	topo := lab.TopologyForTest(t, "busy", lab.TopologyOptions{})
	topo.DUT.Do(func() error {
		dev, err := afxdp.Attach("in0", afxdp.DeviceConfig{Mode: afxdp.ModeGeneric})
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		_, err = afxdp.Attach("in0", afxdp.DeviceConfig{})
		if !errors.Is(err, afxdp.ErrBusy) || !strings.Contains(err.Error(), "another XDP program") {
			t.Errorf("second attach: got %v", err)
		}
		return nil
	})
}

// TestMain doubles as the helper process of TestSIGKILLLeavesNoProgram.
func TestMain(m *testing.M) {
	if ns := os.Getenv("XNF_TEST_ATTACH_IN"); ns != "" {
		attachAndWait(ns)
		return
	}
	os.Exit(m.Run())
}

func attachAndWait(nsName string) {
	ns, err := lab.Open(nsName)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	err = ns.Do(func() error {
		_, err := afxdp.Attach("in0", afxdp.DeviceConfig{})
		return err
	})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("attached")
	time.Sleep(time.Minute) // bounded: the test kills us long before
}

func TestSIGKILLLeavesNoProgram(t *testing.T) {
	topo := lab.TopologyForTest(t, "kill", lab.TopologyOptions{})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "XNF_TEST_ATTACH_IN="+topo.DUT.Name)
	var out bytes.Buffer
	pr, pw, _ := os.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	line := make([]byte, 64)
	pr.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _ := pr.Read(line)
	if !strings.HasPrefix(string(line[:n]), "attached") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper did not attach: %q %s", line[:n], out.String())
	}
	if !xdpAttached(t, topo.DUT) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("helper says attached but in0 has no XDP program")
	}
	cmd.Process.Signal(unix.SIGKILL)
	cmd.Wait()
	// The bpf_link goes with the last fd; the kernel frees it promptly.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if !xdpAttached(t, topo.DUT) {
			return
		}
	}
	t.Fatal("an XDP program is still attached to in0 after SIGKILL")
}

func xdpAttached(t *testing.T, ns *lab.NS) bool {
	l, err := ns.Netlink().LinkByName("in0")
	if err != nil {
		t.Fatal(err)
	}
	x := l.Attrs().Xdp
	return x != nil && x.Attached
}

func TestForceReplacesAStaleProgramFromAnotherTool(t *testing.T) {
	topo := lab.TopologyForTest(t, "force", lab.TopologyOptions{})
	topo.DUT.Do(func() error {
		// "Another tool": a program attached the legacy way, through
		// netlink, which outlives its process.
		stale, err := bpf.LoadRedirect(bpf.RedirectOptions{Queues: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer stale.Close()
		l, err := netlink.LinkByName("in0")
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetXdpFdWithFlags(l, stale.Program.FD(), unix.XDP_FLAGS_SKB_MODE); err != nil {
			t.Fatal(err)
		}
		_, err = afxdp.Attach("in0", afxdp.DeviceConfig{})
		if !errors.Is(err, afxdp.ErrBusy) || !strings.Contains(err.Error(), "another XDP program") || !strings.Contains(err.Error(), "generic mode") {
			t.Fatalf("attach over a stale program: %v", err)
		}
		dev, err := afxdp.Attach("in0", afxdp.DeviceConfig{Force: true})
		if err != nil {
			t.Fatalf("forced attach: %v", err)
		}
		if dev.Mode() != afxdp.ModeNative {
			t.Errorf("forced attach got %v", dev.Mode())
		}
		dev.Close()
		if xdpAttached(t, topo.DUT) {
			t.Error("a program is left after the forced device closed")
		}
		// A program held by a live bpf_link cannot be forced off.
		holder, err := afxdp.Attach("in0", afxdp.DeviceConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer holder.Close()
		_, err = afxdp.Attach("in0", afxdp.DeviceConfig{Force: true})
		if !errors.Is(err, afxdp.ErrBusy) || !strings.Contains(err.Error(), "bpf_link") {
			t.Errorf("forcing off a bpf_link: %v", err)
		}
		return nil
	})
}

// A frame larger than a UMEM frame cannot be received into one: the kernel
// drops it and counts it (rx_dropped) while smaller frames keep flowing.
func TestFrameLargerThanAUMEMFrameIsCountedNotDelivered(t *testing.T) {
	topo := lab.TopologyForTest(t, "big", lab.TopologyOptions{MTU: 3000})
	if err := topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC); err != nil {
		t.Fatal(err)
	}
	u, err := afxdp.NewUMEM(afxdp.UMEMConfig{FrameSize: 2048, FrameCount: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	var s *afxdp.Socket
	if err := topo.DUT.Do(func() error {
		dev, err := afxdp.Attach("in0", afxdp.DeviceConfig{Filter: claimUDP})
		if err != nil {
			return err
		}
		t.Cleanup(func() { dev.Close() })
		s, err = dev.OpenQueue(0, u, afxdp.SocketConfig{RXSize: 512, TXSize: 512, FillSize: 512, CompletionSize: 512})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s.FillFromFree(512)
	const n = 10
	topo.Gen.Do(func() error {
		c, err := net.Dial("udp4", net.JoinHostPort(lab.DUTInAddr, fmt.Sprint(udpPort)))
		if err != nil {
			return err
		}
		defer c.Close()
		big := make([]byte, 2500) // a 2542-byte frame: more than 2048-256
		for i := 0; i < n; i++ {
			c.Write(big)
			c.Write([]byte("small"))
		}
		return nil
	})
	descs := make([]afxdp.Desc, 64)
	got := 0
	for end := time.Now().Add(3 * time.Second); got < n && time.Now().Before(end); {
		s.Poll(50 * time.Millisecond)
		k := s.Receive(descs)
		for _, d := range descs[:k] {
			if d.Len > uint32(u.MaxFrameLen()) {
				t.Errorf("received a %d-byte frame into a %d-byte frame", d.Len, u.MaxFrameLen())
			}
		}
		got += k
		u.FreeDescs(descs[:k])
	}
	st, _ := s.Stats()
	if got != n || st.RXDropped != n {
		t.Errorf("received %d small frames (want %d); kernel dropped %d big ones (want %d)", got, n, st.RXDropped, n)
	}
}

// A UMEM's socket slots are reused: a worker that reopens a queue over
// and over (a port restarted, a reload) is not refused at its 256th
// socket while another socket keeps sharing the UMEM.
func TestClosedSocketSlotsAreReused(t *testing.T) {
	topo := lab.TopologyForTest(t, "slots", lab.TopologyOptions{})
	in, s, u := attachDUT(t, topo, afxdp.ModeAuto, claimUDP)
	var out *afxdp.Device
	if err := topo.DUT.Do(func() (err error) {
		if out, err = afxdp.Attach("out0", afxdp.DeviceConfig{Filter: claimUDP}); err != nil {
			return err
		}
		_, err = out.OpenQueue(0, u, afxdp.SocketConfig{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	const reopen = 300 // more than the 255 slots a UMEM has
	for i := 0; i < reopen; i++ {
		if err := in.CloseQueue(s); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
		err := topo.DUT.Do(func() (err error) {
			s, err = in.OpenQueue(0, u, afxdp.SocketConfig{})
			return err
		})
		if err != nil {
			t.Fatalf("reopen %d of %d: %v", i+1, reopen, err)
		}
		if got := s.FillFromFree(16); got != 16 {
			t.Fatalf("reopen %d: filled %d frames, want 16", i+1, got)
		}
	}
	if a := u.Accounting(); !a.Balanced() || a.Fill != 16 {
		t.Errorf("after %d reopens: %+v, want balanced with the last socket's 16 frames on its fill ring", reopen, a)
	}
}
