package rigbpf_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/rig"
	"github.com/xnfdev/xnf/internal/rig/rigbpf"
)

const xdpTX = 3

func genConfig(size int) rigbpf.GeneratorConfig {
	src, _ := net.ParseMAC(lab.GenMAC)
	dst, _ := net.ParseMAC(lab.DUTInMAC)
	return rigbpf.GeneratorConfig{
		SrcMAC: src, DstMAC: dst,
		SrcIP: netip.MustParseAddr(lab.GenAddr), DstIP: netip.MustParseAddr(lab.SinkAddr),
		DstPort: 7777, FrameSize: size,
	}
}

// ipv4HeaderValid reports whether the ones-complement sum of the header,
// checksum included, is 0xffff.
func ipv4HeaderValid(h []byte) bool {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

func TestGeneratorFrameTemplate(t *testing.T) {
	for _, size := range []int{60, 64, 128, 1000, 1514} {
		cfg := genConfig(size)
		f, err := cfg.Frame()
		if err != nil {
			t.Fatal(err)
		}
		if len(f) != size {
			t.Fatalf("size %d: frame is %d bytes", size, len(f))
		}
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("size %d: decode: %v", size, el.Error())
		}
		eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if ip == nil || udp == nil {
			t.Fatalf("size %d: not IPv4/UDP: %v", size, p)
		}
		if eth.SrcMAC.String() != lab.GenMAC || eth.DstMAC.String() != lab.DUTInMAC {
			t.Errorf("size %d: MACs %v -> %v", size, eth.SrcMAC, eth.DstMAC)
		}
		if !ip.SrcIP.Equal(net.ParseIP(lab.GenAddr)) || !ip.DstIP.Equal(net.ParseIP(lab.SinkAddr)) {
			t.Errorf("size %d: addresses %v -> %v", size, ip.SrcIP, ip.DstIP)
		}
		if ip.IHL != 5 || int(ip.Length) != size-14 || ip.TTL != 64 || ip.Flags != layers.IPv4DontFragment || ip.FragOffset != 0 {
			t.Errorf("size %d: IPv4 header ihl %d len %d ttl %d flags %v", size, ip.IHL, ip.Length, ip.TTL, ip.Flags)
		}
		if !ipv4HeaderValid(f[14:34]) {
			t.Errorf("size %d: IPv4 checksum %#04x is wrong", size, ip.Checksum)
		}
		// The same header serialized by gopacket carries the same checksum.
		again := gopacket.NewSerializeBuffer()
		ip2 := *ip
		if err := ip2.SerializeTo(again, gopacket.SerializeOptions{ComputeChecksums: true}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Bytes()[:20], f[14:34]) {
			t.Errorf("size %d: IPv4 header differs from gopacket's:\n got %x\nwant %x", size, f[14:34], again.Bytes()[:20])
		}
		if udp.SrcPort != 1024 || udp.DstPort != 7777 || int(udp.Length) != size-34 || udp.Checksum != 0 {
			t.Errorf("size %d: UDP %d -> %d len %d csum %#x", size, udp.SrcPort, udp.DstPort, udp.Length, udp.Checksum)
		}
		if len(udp.Payload) != size-42 {
			t.Errorf("size %d: payload %d bytes", size, len(udp.Payload))
		}
	}
}

func TestGeneratorConfigErrors(t *testing.T) {
	for name, mod := range map[string]func(*rigbpf.GeneratorConfig){
		"short frame":   func(c *rigbpf.GeneratorConfig) { c.FrameSize = 59 },
		"long frame":    func(c *rigbpf.GeneratorConfig) { c.FrameSize = 1515 },
		"no MAC":        func(c *rigbpf.GeneratorConfig) { c.SrcMAC = nil },
		"IPv6":          func(c *rigbpf.GeneratorConfig) { c.DstIP = netip.MustParseAddr("2001:db8::1") },
		"zero IP":       func(c *rigbpf.GeneratorConfig) { c.SrcIP = netip.Addr{} },
		"ports overrun": func(c *rigbpf.GeneratorConfig) { c.SrcPort = 65000; c.Flows = 1000 },
	} {
		cfg := genConfig(60)
		mod(&cfg)
		if _, err := cfg.Frame(); err == nil {
			t.Errorf("%s: Frame accepted %+v", name, cfg)
		}
	}
}

// TestGeneratorRewritesEveryFrame runs the program (no live frames) on a
// buffer of garbage, as a reused page-pool buffer could be, and checks the
// headers come out as the template with the flow's source port.
func TestGeneratorRewritesEveryFrame(t *testing.T) {
	lab.RequireRoot(t)
	cfg := genConfig(128)
	cfg.SrcPort = 5000
	cfg.Flows = 3
	g, err := rigbpf.LoadGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	tmpl := g.Frame()
	garbage := bytes.Repeat([]byte{0xa5}, 128)
	for i := 0; i < 7; i++ {
		out := make([]byte, 128)
		ret, err := g.Program.Run(&ebpf.RunOptions{Data: garbage, DataOut: out})
		if err != nil {
			t.Fatal(err)
		}
		if ret != xdpTX {
			t.Fatalf("run %d: verdict %d, want XDP_TX", i, ret)
		}
		want := append([]byte(nil), tmpl[:48]...)
		binary.BigEndian.PutUint16(want[34:], uint16(5000+i%3))
		if !bytes.Equal(out[:48], want) {
			t.Fatalf("run %d: headers\n got %x\nwant %x", i, out[:48], want)
		}
		if !ipv4HeaderValid(out[14:34]) {
			t.Fatalf("run %d: bad IPv4 checksum", i)
		}
		if !bytes.Equal(out[48:], garbage[48:]) {
			t.Fatalf("run %d: payload past 48 bytes changed", i)
		}
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != 7 || st.Short != 0 {
		t.Fatalf("stats %+v, want 7 sent", st)
	}
}

func TestSinkVerdictsAndMarker(t *testing.T) {
	lab.RequireRoot(t)
	frame, err := genConfig(100).Frame()
	if err != nil {
		t.Fatal(err)
	}
	other := genConfig(100)
	other.DstPort = 53
	otherFrame, _ := other.Frame()
	bad := append([]byte(nil), frame...)
	bad[22]-- // TTL, checksum left alone
	for _, c := range []struct {
		cfg                   rigbpf.SinkConfig
		verdict               uint32
		pkts, bytes, oth, bad uint64
	}{
		{rigbpf.SinkConfig{}, 1, 4, 400, 0, 0},
		{rigbpf.SinkConfig{Pass: true}, 2, 4, 400, 0, 0},
		{rigbpf.SinkConfig{DstPort: 7777}, 1, 3, 300, 1, 0},
		{rigbpf.SinkConfig{CheckIPv4: true}, 1, 4, 400, 0, 1},
		{rigbpf.SinkConfig{DstPort: 53, CheckIPv4: true}, 1, 1, 100, 3, 0},
	} {
		s, err := rigbpf.LoadSinkWith(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range [][]byte{frame, otherFrame, frame, bad} {
			ret, err := s.Program.Run(&ebpf.RunOptions{Data: f})
			if err != nil {
				t.Fatal(err)
			}
			if ret != c.verdict {
				t.Errorf("%+v: verdict %d, want %d", c.cfg, ret, c.verdict)
			}
		}
		st, err := s.Stats()
		if err != nil {
			t.Fatal(err)
		}
		want := rigbpf.SinkCounters{Packets: c.pkts, Bytes: c.bytes, Other: c.oth, BadChecksum: c.bad}
		if st != want {
			t.Errorf("%+v: counters %+v, want %+v", c.cfg, st, want)
		}
		s.Close()
	}
}

// TestGeneratorBurstCountedExactly sends bounded bursts from g0 straight to
// a sink on its peer in0 and checks every frame arrives, no more, no less
// (including counts that are not a multiple of the kernel's batch).
func TestGeneratorBurstCountedExactly(t *testing.T) {
	topo := lab.TopologyForTest(t, "gensink", lab.TopologyOptions{})
	sink, err := rig.AttachSink(topo.DUT, "in0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	const size = 60
	g, err := rigbpf.LoadGenerator(genConfig(size))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g0, err := topo.Gen.Link("g0")
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, n := range []uint32{10000, 1, 63, 64, 65, 1000, 4097} {
		if err := topo.Gen.Do(func() error { return g.Run(uint32(g0.Attrs().Index), n) }); err != nil {
			t.Fatal(err)
		}
		total += uint64(n)
		pkts, byts, err := sink.Prog.Counters()
		if err != nil {
			t.Fatal(err)
		}
		sent, err := g.Sent()
		if err != nil {
			t.Fatal(err)
		}
		if sent != total || pkts != total || byts != total*size {
			t.Fatalf("after a burst of %d: generator sent %d, sink counted %d frames %d bytes; want %d frames of %d bytes",
				n, sent, pkts, byts, total, size)
		}
	}
	st, _ := sink.Counters()
	t.Logf("sink after %d frames: %+v", total, st)
}

// pinTo locks the goroutine to its thread and pins the thread to cpu, so
// the per-CPU pacing state and limit of that CPU apply to its runs.
func pinTo(t *testing.T, cpu int) {
	t.Helper()
	runtime.LockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	})
}

func TestGeneratorLimitAndPacing(t *testing.T) {
	lab.RequireRoot(t)
	pinTo(t, 0)
	g, err := rigbpf.LoadGenerator(genConfig(60))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	run := func(n uint32) rigbpf.GeneratorStats {
		t.Helper()
		if _, err := g.Program.Run(&ebpf.RunOptions{Data: g.Frame(), Repeat: n}); err != nil {
			t.Fatal(err)
		}
		st, err := g.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	// A limit: 1000 more frames on CPU 0, the rest of the runs skip.
	if err := g.SetLimit(0, 1000); err != nil {
		t.Fatal(err)
	}
	if st := run(5000); st.Sent != 1000 || st.Skipped != 4000 {
		t.Fatalf("with a limit of 1000, 5000 runs gave %+v", st)
	}
	if err := g.SetLimit(0, 0); err != nil {
		t.Fatal(err)
	}
	if st := run(10); st.Sent != 1010 {
		t.Fatalf("after clearing the limit: %+v", st)
	}

	// Pacing at 1 Mpps: at most one frame per microsecond (plus the
	// first), whatever the runs.
	if err := g.SetRate(1e6); err != nil {
		t.Fatal(err)
	}
	before, _ := g.Stats()
	start := time.Now()
	st := run(200000)
	el := time.Since(start)
	sent := st.Sent - before.Sent
	if sent == 0 || sent > uint64(el.Microseconds())+65 {
		t.Fatalf("paced at 1 Mpps for %v: %d frames sent, %d skipped", el, sent, st.Skipped-before.Skipped)
	}
	t.Logf("paced at 1 Mpps: %d frames in %v of runs (%d skipped)", sent, el, st.Skipped-before.Skipped)
	if err := g.SetRate(0); err != nil {
		t.Fatal(err)
	}
	before = st
	if st := run(100); st.Sent-before.Sent != 100 {
		t.Fatalf("unpaced again: %d of 100 sent", st.Sent-before.Sent)
	}
}

// TestGeneratorRunSurvivesSignals interrupts a long live-frames call with
// signals: the kernel returns EINTR midway, and Run must carry on with
// exactly the runs still missing (cilium/ebpf's Program.Run would start
// the whole repeat again).
func TestGeneratorRunSurvivesSignals(t *testing.T) {
	topo := lab.TopologyForTest(t, "gensig", lab.TopologyOptions{})
	sink, err := rig.AttachSink(topo.DUT, "in0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	g, err := rigbpf.LoadGenerator(genConfig(60))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	// Paced at 10 kpps the runs are cheap skips: a long call, few frames.
	if err := g.SetRate(10e3); err != nil {
		t.Fatal(err)
	}
	g0, err := topo.Gen.Link("g0")
	if err != nil {
		t.Fatal(err)
	}
	const repeat = 2_000_000
	tids := make(chan int, 1)
	stop := make(chan struct{})
	signals := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		tid := <-tids
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if unix.Tgkill(unix.Getpid(), tid, unix.SIGURG) == nil {
					signals++
				}
			}
		}
	}()
	start := time.Now()
	err = topo.Gen.Do(func() error {
		tids <- unix.Gettid()
		return g.Run(uint32(g0.Attrs().Index), repeat)
	})
	el := time.Since(start)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d runs in %v with %d signals: %+v", repeat, el, signals, st)
	if st.Runs() != repeat {
		t.Fatalf("%d runs asked, the program ran %d times", repeat, st.Runs())
	}
	time.Sleep(50 * time.Millisecond)
	if pkts, _ := sink.Count(); pkts != st.Sent {
		t.Fatalf("sent %d, sink counted %d", st.Sent, pkts)
	}
}
