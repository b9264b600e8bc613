package pcap

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// The replay tests run testdata/in.pcap (written by testdata/gen.go)
// through a chain and compare what comes out with the committed
// testdata/want.pcap. After a deliberate change of the input or of the
// chain, regenerate the expected capture with
//
//	go test ./port/pcap -run TestPcapReplayMatchesExpectedCapture -update
//
// and review it (tcpdump -r port/pcap/testdata/want.pcap -nnev) before
// committing. The output is also checked against a model of the chain
// built on gopacket's decoder, with -update too, so a wrong capture is
// never written silently.
var update = flag.Bool("update", false, "rewrite testdata/want.pcap from the replay's output")

const (
	pcapIn   = "testdata/in.pcap"
	pcapWant = "testdata/want.pcap"
)

// pcapNewDst is the destination MAC the test chain writes.
var pcapNewDst = [6]byte{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}

// pcapChain drops UDP to port 53 (IPv4 or IPv6) and rewrites the
// destination MAC of everything else.
func pcapChain() []pipeline.Stage {
	return []pipeline.Stage{
		pipeline.StageFunc{StageName: "drop-dns", Fn: func(b *packet.Batch) {
			for i := range b.Slice() {
				if p := &b.Packets[i]; p.Has(packet.FlagUDP) && p.DstPort() == 53 {
					p.SetDrop(packet.DropPolicy)
				}
			}
		}},
		pipeline.StageFunc{StageName: "set-dst", Fn: func(b *packet.Batch) {
			for i := range b.Slice() {
				b.Packets[i].SetDstMAC(pcapNewDst)
			}
		}},
	}
}

type pcapRecord struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// readPcap decodes a whole pcap or pcapng capture with pcapgo.
func readPcap(t *testing.T, name string, b []byte) []pcapRecord {
	t.Helper()
	var (
		src interface {
			ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
		}
		err error
	)
	if len(b) >= 4 && binary.LittleEndian.Uint32(b) == pcapngSectionHeader {
		src, err = pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
	} else {
		src, err = pcapgo.NewReader(bytes.NewReader(b))
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var recs []pcapRecord
	for {
		data, ci, err := src.ReadPacketData()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("%s: packet %d: %v", name, len(recs)+1, err)
			}
			return recs
		}
		recs = append(recs, pcapRecord{ci, data})
	}
}

// comparePcaps reports the first packet (1-based, as in tcpdump and
// Wireshark) where got and want differ.
func comparePcaps(t *testing.T, gotName string, got []pcapRecord, wantName string, want []pcapRecord) {
	t.Helper()
	for i := 0; i < len(got) && i < len(want); i++ {
		g, w := got[i], want[i]
		switch {
		case !g.ci.Timestamp.Equal(w.ci.Timestamp):
			t.Fatalf("packet %d: %s has timestamp %v, %s has %v", i+1, gotName, g.ci.Timestamp, wantName, w.ci.Timestamp)
		case g.ci.CaptureLength != w.ci.CaptureLength || g.ci.Length != w.ci.Length:
			t.Fatalf("packet %d: %s has %d of %d bytes, %s has %d of %d", i+1, gotName, g.ci.CaptureLength, g.ci.Length, wantName, w.ci.CaptureLength, w.ci.Length)
		case !bytes.Equal(g.data, w.data):
			t.Fatalf("packet %d: data differs\n%s: %x\n%s: %x", i+1, gotName, g.data, wantName, w.data)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s has %d packets, %s has %d", gotName, len(got), wantName, len(want))
	}
}

// pcapModel is what pcapChain should make of in, worked out with gopacket's
// decoder rather than the packet package: runts and UDP to port 53 go,
// the rest keep their timestamps and lengths with a new destination MAC.
func pcapModel(in []pcapRecord) []pcapRecord {
	var out []pcapRecord
	for _, r := range in {
		if len(r.data) < 14 {
			continue
		}
		pkt := gopacket.NewPacket(r.data, layers.LayerTypeEthernet, gopacket.Default)
		if u, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && u.DstPort == 53 {
			continue
		}
		data := append([]byte(nil), r.data...)
		copy(data, pcapNewDst[:])
		out = append(out, pcapRecord{r.ci, data})
	}
	return out
}

// replayPcap runs the input port through pcapChain into the output port
// until the input is done, and checks the counters and the frames.
func replayPcap(t *testing.T, pool *pipeline.MemPool, in, out *Port) {
	t.Helper()
	w, err := pipeline.NewWorker(pipeline.Config{Ports: []pipeline.Port{in, out}, Stages: pcapChain(), Burst: 8, CPU: -1})
	if err != nil {
		t.Fatal(err)
	}
	for polls := 0; !in.Done(); polls++ {
		if polls > 1000 {
			t.Fatal("the input never ends")
		}
		w.Poll()
	}
	if err := in.Err(); err != nil {
		t.Fatalf("input: %v", err)
	}
	if err := out.Err(); err != nil {
		t.Fatalf("output: %v", err)
	}
	// 20 frames in: 5 UDP to port 53 (4 IPv4, 1 IPv6) dropped by the
	// chain, the 10-byte runt dropped as malformed, 14 written.
	pc := w.PortCounters()
	wantDrops := map[packet.DropReason]uint64{packet.DropPolicy: 5, packet.DropMalformed: 1}
	if pc[0].RX != 20 || in.Received() != 20 || in.Oversize() != 0 || pc[1].TX != 14 || out.Sent() != 14 ||
		pc[0].TX != 0 || pc[1].RX != 0 || pc[1].TXFull != 0 || fmt.Sprint(pc[0].Dropped) != fmt.Sprint(wantDrops) {
		t.Errorf("counters: %+v, input received %d (%d oversize), output sent %d; want rx 20, tx 14, drops %v",
			pc, in.Received(), in.Oversize(), out.Sent(), wantDrops)
	}
	if dropped := pc[0].DroppedTotal(); pc[0].RX != pc[1].TX+dropped || out.Sent() != pc[1].TX {
		t.Errorf("counters do not add up: rx %d != tx %d + dropped %d (output port sent %d)", pc[0].RX, pc[1].TX, dropped, out.Sent())
	}
	if pool.Available() != pool.Total() || pool.Violations != 0 {
		t.Errorf("frames: %d of %d back, %d violations", pool.Available(), pool.Total(), pool.Violations)
	}
}

func TestPcapReplayMatchesExpectedCapture(t *testing.T) {
	inBytes, err := os.ReadFile(pcapIn)
	if err != nil {
		t.Fatal(err)
	}
	pool := pipeline.NewMemPool(64, 2048)
	in, err := OpenReader(pcapIn, bytes.NewReader(inBytes), pool)
	if err != nil {
		t.Fatal(err)
	}
	var outBuf bytes.Buffer
	out, err := NewWriter("out", &outBuf, pool, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	replayPcap(t, pool, in, out)
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	got := readPcap(t, "output", outBuf.Bytes())
	comparePcaps(t, "output", got, "model of the chain", pcapModel(readPcap(t, pcapIn, inBytes)))
	if *update {
		if err := os.WriteFile(pcapWant, outBuf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s: %d packets", pcapWant, len(got))
	}
	wantBytes, err := os.ReadFile(pcapWant)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	comparePcaps(t, "output", got, pcapWant, readPcap(t, pcapWant, wantBytes))
	if !bytes.Equal(outBuf.Bytes(), wantBytes) {
		t.Errorf("the packets match but the file header differs: %x, want %x", outBuf.Bytes()[:24], wantBytes[:24])
	}
}

// The same replay from pcapng (nanosecond timestamps) and with the file
// helpers gives the same capture.
func TestPcapReplayFromPcapngAndFiles(t *testing.T) {
	inBytes, err := os.ReadFile(pcapIn)
	if err != nil {
		t.Fatal(err)
	}
	wantBytes, err := os.ReadFile(pcapWant)
	if err != nil {
		t.Fatal(err)
	}
	want := readPcap(t, pcapWant, wantBytes)

	t.Run("pcapng", func(t *testing.T) {
		var ng bytes.Buffer
		nw, err := pcapgo.NewNgWriter(&ng, layers.LinkTypeEthernet)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range readPcap(t, pcapIn, inBytes) {
			if err := nw.WritePacket(r.ci, r.data); err != nil {
				t.Fatal(err)
			}
		}
		if err := nw.Flush(); err != nil {
			t.Fatal(err)
		}
		pool := pipeline.NewMemPool(64, 2048)
		in, err := OpenReader("in.pcapng", &ng, pool)
		if err != nil {
			t.Fatal(err)
		}
		var outBuf bytes.Buffer
		out, err := NewWriter("out", &outBuf, pool, WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		replayPcap(t, pool, in, out)
		out.Close()
		comparePcaps(t, "output", readPcap(t, "output", outBuf.Bytes()), pcapWant, want)
	})

	t.Run("files", func(t *testing.T) {
		pool := pipeline.NewMemPool(64, 2048)
		in, err := OpenFile(pcapIn, pool)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "out.pcap")
		out, err := CreateFile(path, pool)
		if err != nil {
			t.Fatal(err)
		}
		replayPcap(t, pool, in, out)
		if err := in.Close(); err != nil {
			t.Fatal(err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
		gotBytes, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		comparePcaps(t, path, readPcap(t, path, gotBytes), pcapWant, want)
	})
}

// pcapFile builds a capture of frames of the given lengths (bytes 0, 1,
// 2, ...) with link type lt.
func pcapFile(t *testing.T, lt layers.LinkType, lens ...int) []byte {
	t.Helper()
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	if err := w.WriteFileHeader(65535, lt); err != nil {
		t.Fatal(err)
	}
	for i, n := range lens {
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(j)
		}
		ts := time.Unix(1700000000, int64(i)*1000)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: n, Length: n}, data); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func TestPcapReaderBadInput(t *testing.T) {
	in, err := os.ReadFile(pcapIn)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(in)
	zw.Close()
	var sll bytes.Buffer
	nw, err := pcapgo.NewNgWriter(&sll, layers.LinkTypeLinuxSLL)
	if err != nil {
		t.Fatal(err)
	}
	nw.Flush()
	twoFrames := pcapFile(t, layers.LinkTypeEthernet, 60, 80)
	var inSizes []int
	for _, r := range readPcap(t, pcapIn, in) {
		inSizes = append(inSizes, len(r.data))
	}

	for _, tc := range []struct {
		name      string
		file      []byte
		frameSize int
		openErr   string // what the error opening the file says, besides its path
		sizes     []int  // frame lengths received
		oversize  uint64
		readErr   string // what Err says, besides the path
	}{
		{name: "not a capture", file: []byte("this is a text file, not a capture\n"), openErr: "not a pcap or pcapng capture"},
		{name: "empty file", file: nil, openErr: "not a pcap or pcapng capture: only 0 bytes"},
		{name: "pcap header cut short", file: twoFrames[:10], openErr: "reading the capture header"},
		{name: "raw IP link type", file: pcapFile(t, layers.LinkTypeRaw, 40), openErr: "link type 101 (Raw) is not Ethernet"},
		{name: "pcapng Linux cooked capture", file: sll.Bytes(), openErr: "link type 113 (Linux SLL) is not Ethernet"},
		{name: "frames bigger than the pool's are skipped", file: pcapFile(t, layers.LinkTypeEthernet, 100, 257, 60, 9000, 256),
			frameSize: 256, sizes: []int{100, 60, 256}, oversize: 2},
		{name: "capture cut inside a record", file: twoFrames[:len(twoFrames)-30], sizes: []int{60}, readErr: "reading packet 2: unexpected EOF"},
		{name: "gzip-compressed pcap", file: gz.Bytes(), sizes: inSizes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), strings.ReplaceAll(tc.name, " ", "-")+".pcap")
			if err := os.WriteFile(path, tc.file, 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.frameSize == 0 {
				tc.frameSize = 2048
			}
			pool := pipeline.NewMemPool(8, tc.frameSize)
			p, err := OpenFile(path, pool)
			if tc.openErr != "" {
				if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.openErr) {
					t.Fatalf("open: got error %v, want one naming %s and saying %q", err, path, tc.openErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var (
				b     packet.Batch
				sizes []int
				pkts  []*packet.Packet
			)
			for polls := 0; !p.Done(); polls++ {
				if polls > 100 {
					t.Fatal("the input never ends")
				}
				b.Reset()
				n, _ := p.Receive(&b, 4)
				pkts = pkts[:0]
				for i := range n {
					sizes = append(sizes, len(b.Packets[i].Data))
					pkts = append(pkts, &b.Packets[i])
				}
				p.Release(pkts)
			}
			if fmt.Sprint(sizes) != fmt.Sprint(tc.sizes) || p.Oversize() != tc.oversize || p.Received() != uint64(len(tc.sizes)) {
				t.Errorf("received frames of %v (%d), %d oversize; want %v, %d oversize", sizes, p.Received(), p.Oversize(), tc.sizes, tc.oversize)
			}
			err = p.Err()
			if tc.readErr == "" && err != nil {
				t.Errorf("Err: %v", err)
			}
			if tc.readErr != "" && (err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.readErr)) {
				t.Errorf("Err: got %v, want an error naming %s and saying %q", err, path, tc.readErr)
			}
			if cerr := p.Close(); cerr != err {
				t.Errorf("Close returned %v, Err %v", cerr, err)
			}
			if pool.Available() != pool.Total() || pool.Violations != 0 {
				t.Errorf("frames: %d of %d back, %d violations", pool.Available(), pool.Total(), pool.Violations)
			}
		})
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestPcapWriter(t *testing.T) {
	t.Run("fake clock, snap length, nanoseconds", func(t *testing.T) {
		// Frames from a memory port carry no capture timestamp: they are
		// written 1µs apart from the Unix epoch.
		pool := pipeline.NewMemPool(16, 2048)
		mem := pipelinetest.NewMemPort("mem", pool)
		var buf bytes.Buffer
		out, err := NewWriter("out", &buf, pool, WriterOptions{Snaplen: 50, Nanoseconds: true})
		if err != nil {
			t.Fatal(err)
		}
		w, err := pipeline.NewWorker(pipeline.Config{Ports: []pipeline.Port{mem, out}, CPU: -1})
		if err != nil {
			t.Fatal(err)
		}
		frames := [][]byte{udpFrame(t, 9, "a"), udpFrame(t, 9, strings.Repeat("b", 100)), udpFrame(t, 9, "c")}
		mem.Inject(frames...)
		for mem.Pending() > 0 {
			w.Poll()
		}
		if binary.LittleEndian.Uint32(buf.Bytes()) != pcapMagicNano {
			t.Errorf("magic %x, want the nanosecond one", buf.Bytes()[:4])
		}
		got := readPcap(t, "output", buf.Bytes())
		if len(got) != len(frames) {
			t.Fatalf("%d packets written, want %d", len(got), len(frames))
		}
		for i, r := range got {
			wantData := frames[i]
			if len(wantData) > 50 {
				wantData = wantData[:50]
			}
			if ts := time.Unix(0, int64(i+1)*1000); !r.ci.Timestamp.Equal(ts) || r.ci.Length != len(frames[i]) || !bytes.Equal(r.data, wantData) {
				t.Errorf("packet %d: %v, %d of %d bytes; want %v, %d of %d", i+1, r.ci.Timestamp, r.ci.CaptureLength, r.ci.Length, ts, len(wantData), len(frames[i]))
			}
		}
		if pool.Available() != pool.Total() {
			t.Errorf("frames: %d of %d back", pool.Available(), pool.Total())
		}
	})

	t.Run("write error", func(t *testing.T) {
		pool := pipeline.NewMemPool(16, 2048)
		mem := pipelinetest.NewMemPort("mem", pool)
		out, err := NewWriter("broken.pcap", failingWriter{}, pool, WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := pipeline.NewWorker(pipeline.Config{Ports: []pipeline.Port{mem, out}, Burst: 2, CPU: -1})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 6; i++ {
			mem.Inject(udpFrame(t, 9, "x"))
		}
		for mem.Pending() > 0 {
			w.Poll()
		}
		// The first burst is buffered and lost when the flush fails; the
		// port takes nothing after that, so the worker drops the rest.
		if err := out.Err(); err == nil || !strings.Contains(err.Error(), "broken.pcap") || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("Err: %v, want the port's name and the cause", err)
		}
		pc := w.PortCounters()
		if pc[1].TX != 2 || pc[1].TXFull != 4 || pc[0].Dropped[packet.DropFull] != 4 {
			t.Errorf("counters %+v, want 2 sent and 4 refused", pc)
		}
		if out.Close() != out.Err() {
			t.Errorf("Close and Err disagree")
		}
		if pool.Available() != pool.Total() || pool.Violations != 0 {
			t.Errorf("frames: %d of %d back, %d violations", pool.Available(), pool.Total(), pool.Violations)
		}
	})
}

// Once running, a replay from pcap to pcap allocates nothing per batch:
// records are read into pcapgo's reused buffer and copied into pool frames.
func TestPcapReplayAllocatesNothingPerBatch(t *testing.T) {
	inBytes, err := os.ReadFile(pcapIn)
	if err != nil {
		t.Fatal(err)
	}
	recs := readPcap(t, pcapIn, inBytes)
	var big bytes.Buffer
	pw := pcapgo.NewWriter(&big)
	pw.WriteFileHeader(65535, layers.LinkTypeEthernet)
	for range 100 {
		for _, r := range recs {
			pw.WritePacket(r.ci, r.data)
		}
	}
	pool := pipeline.NewMemPool(64, 2048)
	in, err := OpenReader("big", &big, pool)
	if err != nil {
		t.Fatal(err)
	}
	out, err := NewWriter("out", io.Discard, pool, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := pipeline.NewWorker(pipeline.Config{Ports: []pipeline.Port{in, out}, Stages: pcapChain(), Burst: 16, CPU: -1})
	if err != nil {
		t.Fatal(err)
	}
	w.Poll() // warm up
	if a := testing.AllocsPerRun(50, func() { w.Poll() }); a != 0 {
		t.Errorf("a replay loop allocates %.2f times per batch", a)
	}
	if in.Done() || in.Err() != nil || pool.Available() != pool.Total() {
		t.Errorf("done %v, err %v, %d of %d frames back", in.Done(), in.Err(), pool.Available(), pool.Total())
	}
}

// A pcap frame freed by a memory port leaves no timestamp behind: the
// next frame in the same pool frame, from a memory port, gets the fake
// clock, not the old capture's time.
func TestPcapTimestampDiesWithItsFrame(t *testing.T) {
	pool := pipeline.NewMemPool(1, 2048) // one frame: reuse is certain
	in, err := OpenFile(pcapIn, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	mem := pipelinetest.NewMemPort("mem", pool)
	mem.Discard = true
	b := &packet.Batch{}
	if n, _ := in.Receive(b, 1); n != 1 {
		t.Fatal("no frame from the capture")
	}
	mem.Transmit([]*packet.Packet{&b.Packets[0]}) // freed by a memory port
	var buf bytes.Buffer
	out, err := NewWriter("out", &buf, pool, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mem.Inject(udpFrame(t, 9, "later"))
	b.Reset()
	mem.Receive(b, 1)
	out.Transmit([]*packet.Packet{&b.Packets[0]})
	out.Flush()
	got := readPcap(t, "output", buf.Bytes())
	if len(got) != 1 || !got[0].ci.Timestamp.Equal(time.Unix(0, 1000)) {
		t.Fatalf("the memory port's frame was written at %v, want the fake clock's first tick", got[0].ci.Timestamp)
	}
}

func udpFrame(t testing.TB, dport uint16, payload string) []byte {
	t.Helper()
	src, _ := net.ParseMAC("02:00:00:00:00:01")
	dst, _ := net.ParseMAC("02:00:00:00:00:02")
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{198, 18, 0, 1}, DstIP: net.IP{198, 18, 1, 2}}
	u := &layers.UDP{SrcPort: 1000, DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A two-interface pcapng split by interface: each port receives exactly its
// interface's packets, the ports together in capture order, with short
// batches where the interfaces alternate; a bad route stops the input with
// an error naming the packet; no frame is leaked, read-ahead included.
func TestPcapSplitByInterface(t *testing.T) {
	var ng bytes.Buffer
	nw, err := pcapgo.NewNgWriterInterface(&ng, pcapgo.NgInterface{Name: "in0", LinkType: layers.LinkTypeEthernet}, pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nw.AddInterface(pcapgo.NgInterface{Name: "out0", LinkType: layers.LinkTypeEthernet}); err != nil {
		t.Fatal(err)
	}
	// Interfaces of packets 1..9: runs of 2, 1, 3, 1, 2.
	ifaces := []int{0, 0, 1, 0, 0, 0, 1, 0, 0}
	for i, ifc := range ifaces {
		f := udpFrame(t, uint16(1000+i), "x")
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1, int64(i)), CaptureLength: len(f), Length: len(f), InterfaceIndex: ifc}
		if err := nw.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := nw.Flush(); err != nil {
		t.Fatal(err)
	}
	raw := ng.Bytes()

	pool := pipeline.NewMemPool(16, 2048)
	in, err := OpenReader("two.pcapng", bytes.NewReader(raw), pool)
	if err != nil {
		t.Fatal(err)
	}
	ports := in.Split(2, func(p Packet) (int, error) {
		if want := []string{"in0", "out0"}[p.Interface]; p.Name != want {
			t.Errorf("packet %d: interface %d named %q, want %q", p.N, p.Interface, p.Name, want)
		}
		return p.Interface, nil
	})
	var order []int // the destination port of each packet, by arrival
	var b packet.Batch
	for loops := 0; !in.Done() && loops < 100; loops++ {
		for i, p := range ports {
			b.Reset()
			n, err := p.Receive(&b, 64)
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
			for _, pk := range b.Slice()[:n] {
				dport := binary.BigEndian.Uint16(pk.Data[14+20+2:])
				if want := ifaces[dport-1000]; want != i {
					t.Errorf("packet %d (interface %d) received by port %d", dport-1000+1, want, i)
				}
				order = append(order, int(dport-1000))
			}
			ports[i].Release(ptrs(b.Slice()[:n]))
		}
	}
	if len(order) != len(ifaces) {
		t.Fatalf("received %d of %d packets", len(order), len(ifaces))
	}
	for i, o := range order {
		if o != i {
			t.Fatalf("arrival order %v, want capture order", order)
		}
	}
	if in.Close() != nil || pool.Available() != pool.Total() {
		t.Errorf("close %v, %d of %d frames back", in.Err(), pool.Available(), pool.Total())
	}

	// A route to no port stops the input at that packet, and Close frees
	// the frame read ahead for the other port.
	in, err = OpenReader("two.pcapng", bytes.NewReader(raw), pool)
	if err != nil {
		t.Fatal(err)
	}
	ports = in.Split(2, func(p Packet) (int, error) {
		if p.N == 4 {
			return 0, errors.New("no port for interface 7")
		}
		return p.Interface, nil
	})
	b.Reset()
	n, _ := ports[0].Receive(&b, 64) // packets 1 and 2, then 3 (port 1) read ahead
	ports[0].Release(ptrs(b.Slice()[:n]))
	if n != 2 {
		t.Fatalf("port 0 received %d, want 2", n)
	}
	b.Reset()
	n, _ = ports[1].Receive(&b, 64) // packet 3, then packet 4 fails
	ports[1].Release(ptrs(b.Slice()[:n]))
	b.Reset()
	_, err = ports[0].Receive(&b, 64)
	if n != 1 || err == nil || !strings.Contains(err.Error(), "pcap two.pcapng: packet 4: no port for interface 7") {
		t.Errorf("port 1 got %d, then %v", n, err)
	}
	in.Close()
	if pool.Available() != pool.Total() {
		t.Errorf("%d of %d frames back", pool.Available(), pool.Total())
	}
}

func ptrs(pkts []packet.Packet) []*packet.Packet {
	out := make([]*packet.Packet, len(pkts))
	for i := range pkts {
		out[i] = &pkts[i]
	}
	return out
}
