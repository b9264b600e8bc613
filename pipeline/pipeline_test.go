package pipeline_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/pipeline/pipelinetest"
)

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

// dropPort drops UDP packets to one destination port with a reason.
type dropPort struct {
	name   string
	port   uint16
	reason packet.DropReason
}

func (d dropPort) Name() string { return d.name }
func (d dropPort) Process(b *packet.Batch) {
	for i := range b.Slice() {
		p := &b.Packets[i]
		if p.Has(packet.FlagUDP) && p.DstPort() == d.port {
			p.SetDrop(d.reason)
		}
	}
}

// bounceEcho sends packets to port 7 back where they came from.
type bounceEcho struct{}

func (bounceEcho) Name() string { return "echo" }
func (bounceEcho) Process(b *packet.Batch) {
	for i := range b.Slice() {
		if p := &b.Packets[i]; p.Has(packet.FlagUDP) && p.DstPort() == 7 {
			p.SetBounce()
		}
	}
}

// nowhere forwards packets to port 99 (which does not exist) to port 99.
type nowhere struct{}

func (nowhere) Name() string { return "nowhere" }
func (nowhere) Process(b *packet.Batch) {
	for i := range b.Slice() {
		if p := &b.Packets[i]; p.Has(packet.FlagUDP) && p.DstPort() == 99 {
			p.SetForward(42)
		}
	}
}

func TestChainVerdictsCountersAndFrames(t *testing.T) {
	pool := pipeline.NewMemPool(512, 2048)
	a, b := pipelinetest.NewMemPort("a", pool), pipelinetest.NewMemPort("b", pool)
	w, err := pipeline.NewWorker(pipeline.Config{
		Ports: []pipeline.Port{a, b},
		Stages: []pipeline.Stage{
			dropPort{"block-53", 53, packet.DropPolicy},
			bounceEcho{},
			dropPort{"block-666", 666, packet.DropUserBase + 1},
			nowhere{},
		},
		CPU: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	// 100 to port 53 (dropped by stage 1), 30 to 7 (bounced), 20 to 666
	// (dropped by stage 3), 5 to 99 (no such port), 200 to 9 (forwarded),
	// 7 runts (dropped as malformed before the chain).
	counts := map[uint16]int{53: 100, 7: 30, 666: 20, 99: 5, 9: 200}
	for _, port := range []uint16{53, 7, 666, 99, 9} {
		for i := 0; i < counts[port]; i++ {
			a.Inject(udpFrame(t, port, fmt.Sprintf("%d-%d", port, i)))
		}
	}
	for i := 0; i < 7; i++ {
		a.Inject([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	}
	for a.Pending() > 0 {
		w.Poll()
	}
	outB, outA := b.Output(), a.Output()
	if len(outB) != 200 || len(outA) != 30 {
		t.Fatalf("b sent %d (want 200 forwarded), a sent %d (want 30 bounced)", len(outB), len(outA))
	}
	for i, f := range outB {
		want := udpFrame(t, 9, fmt.Sprintf("9-%d", i))
		if string(f) != string(want) {
			t.Fatalf("forwarded frame %d differs (order or bytes)", i)
		}
	}
	pc := w.PortCounters()
	wantDrops := map[packet.DropReason]uint64{packet.DropPolicy: 100, packet.DropUserBase + 1: 20, packet.DropNoPort: 5, packet.DropMalformed: 7}
	if pc[0].RX != 362 || pc[1].TX != 200 || pc[0].TX != 30 || fmt.Sprint(pc[0].Dropped) != fmt.Sprint(wantDrops) {
		t.Errorf("port counters %+v, want rx 362, tx a 30 b 200, drops %v", pc, wantDrops)
	}
	if dropped := pc[0].DroppedTotal(); pc[0].RX != pc[0].TX+pc[1].TX+dropped {
		t.Errorf("counters do not add up: rx %d != tx %d + %d + dropped %d", pc[0].RX, pc[0].TX, pc[1].TX, dropped)
	}
	sc := w.StageCounters()
	if sc[0].In != 355 || sc[0].Out != 255 || sc[0].Dropped[packet.DropPolicy] != 100 {
		t.Errorf("stage 1 counters %+v", sc[0])
	}
	if sc[2].In != 255 || sc[2].Out != 235 || sc[2].DroppedTotal() != 20 {
		t.Errorf("stage 3 counters %+v", sc[2])
	}
	if pool.Available() != pool.Total() || pool.Violations != 0 {
		t.Errorf("frames: %d of %d back, %d violations", pool.Available(), pool.Total(), pool.Violations)
	}
}

func TestBurstLimitsPacketsPerBatch(t *testing.T) {
	pool := pipeline.NewMemPool(512, 2048)
	a, b := pipelinetest.NewMemPort("a", pool), pipelinetest.NewMemPort("b", pool)
	var sizes []int
	w, _ := pipeline.NewWorker(pipeline.Config{Ports: []pipeline.Port{a, b}, Burst: 16, CPU: -1,
		Stages: []pipeline.Stage{pipeline.StageFunc{"size", func(b *packet.Batch) { sizes = append(sizes, b.Len) }}}})
	for i := 0; i < 40; i++ {
		a.Inject(udpFrame(t, 9, "x"))
	}
	for a.Pending() > 0 {
		w.Poll()
	}
	if fmt.Sprint(sizes) != "[16 16 8]" {
		t.Errorf("batch sizes %v, want [16 16 8]", sizes)
	}
}

func TestNewWorkerRejectsBadConfig(t *testing.T) {
	pool := pipeline.NewMemPool(8, 2048)
	a := pipelinetest.NewMemPort("a", pool)
	for _, tc := range []struct {
		name string
		cfg  pipeline.Config
		want string
	}{
		{"no ports", pipeline.Config{}, "at least one port"},
		{"burst too big", pipeline.Config{Ports: []pipeline.Port{a}, Burst: 1000}, "burst 1000"},
		{"default output past the last port", pipeline.Config{Ports: []pipeline.Port{a}, DefaultOut: []uint16{3}}, "default output of port 0 is port 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := pipeline.NewWorker(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// rewriteMAC is a realistic no-allocation stage: it swaps the MACs.
type rewriteMAC struct{ src, dst [6]byte }

func (rewriteMAC) Name() string { return "mac" }
func (r rewriteMAC) Process(b *packet.Batch) {
	for i := range b.Slice() {
		p := &b.Packets[i]
		p.SetSrcMAC(r.src)
		p.SetDstMAC(r.dst)
	}
}

type noop struct{}

func (noop) Name() string            { return "noop" }
func (noop) Process(b *packet.Batch) {}

func loopWorker(t testing.TB, burst int, stages ...pipeline.Stage) (*pipeline.Worker, *pipeline.MemPool) {
	pool := pipeline.NewMemPool(1024, 2048)
	a, b := pipelinetest.NewMemPort("a", pool), pipelinetest.NewMemPort("b", pool)
	a.Loop, b.Discard = true, true
	a.Inject(udpFrame(t, 9, "0123456789012345"))
	w, err := pipeline.NewWorker(pipeline.Config{Ports: []pipeline.Port{a, b}, Burst: burst, Stages: stages, CPU: -1})
	if err != nil {
		t.Fatal(err)
	}
	return w, pool
}

func TestLoopAllocatesNothingPerBatch(t *testing.T) {
	w, pool := loopWorker(t, 64, rewriteMAC{}, dropPort{"d", 53, packet.DropPolicy}, noop{})
	w.Poll() // warm up
	if a := testing.AllocsPerRun(200, func() { w.Poll() }); a != 0 {
		t.Errorf("parse + 3 stages + transmit allocates %.2f times per batch", a)
	}
	if pool.Available() != pool.Total() {
		t.Errorf("%d of %d frames back", pool.Available(), pool.Total())
	}
}

func BenchmarkPipeline(b *testing.B) {
	for _, chain := range []struct {
		name   string
		stages []pipeline.Stage
	}{{"empty", nil}, {"3-noop", []pipeline.Stage{noop{}, noop{}, noop{}}}} {
		for _, burst := range []int{1, 16, 64, 256} {
			b.Run(fmt.Sprintf("%s/burst=%d", chain.name, burst), func(b *testing.B) {
				w, _ := loopWorker(b, burst, chain.stages...)
				b.ReportAllocs()
				b.ResetTimer()
				pkts := 0
				for i := 0; i < b.N; i++ {
					pkts += w.Poll()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pkts), "ns/pkt")
			})
		}
	}
}

// A pipeline.Named stage counts under its name, and the worker calls the stage
// under the name directly (no wrapper call per batch).
func TestNamedStageCountsUnderItsNameAndRunsDirectly(t *testing.T) {
	pool := pipeline.NewMemPool(64, 2048)
	a, b := pipelinetest.NewMemPort("a", pool), pipelinetest.NewMemPort("b", pool)
	batches := 0
	inner := pipeline.StageFunc{"inner", func(*packet.Batch) { batches++ }}
	w, err := pipeline.NewWorker(pipeline.Config{Ports: []pipeline.Port{a, b}, CPU: -1, Stages: []pipeline.Stage{pipeline.Named(pipeline.Named(inner, "first"), "outer")}})
	if err != nil {
		t.Fatal(err)
	}
	a.Inject(udpFrame(t, 9, "x"))
	for a.Pending() > 0 {
		w.Poll()
	}
	if sc := w.StageCounters(); batches != 1 || sc[0].Name != "outer" || sc[0].In != 1 {
		t.Errorf("%d batches, counters %+v: want 1 batch counted under outer", batches, sc[0])
	}
}

// brokenPort fails every transmission, as a port that lost its device.
type brokenPort struct{ *pipelinetest.MemPort }

func (b brokenPort) Transmit(p []*packet.Packet) (int, error) { return 0, errors.New("device gone") }

// eofPort receives nothing and says so with io.EOF, as a capture that ended.
type eofPort struct {
	*pipelinetest.MemPort
	calls *int
}

func (e eofPort) Receive(*packet.Batch, int) (int, error) { *e.calls++; return 0, io.EOF }

// A port error stops the worker, which returns it naming the port; an
// input at io.EOF is not an error and is never asked again.
func TestPortErrorStopsTheWorkerAndEOFDoesNot(t *testing.T) {
	pool := pipeline.NewMemPool(64, 2048)
	a := pipelinetest.NewMemPort("a", pool)
	calls := 0
	w, err := pipeline.NewWorker(pipeline.Config{Ports: []pipeline.Port{a, eofPort{pipelinetest.NewMemPort("ended", pool), &calls}}, CPU: -1})
	if err != nil {
		t.Fatal(err)
	}
	w.Poll()
	w.Poll()
	if calls != 1 || w.Err() != nil {
		t.Errorf("an ended input was asked %d times (want 1), worker error %v", calls, w.Err())
	}

	b := brokenPort{pipelinetest.NewMemPort("b", pool)}
	w, err = pipeline.NewWorker(pipeline.Config{Ports: []pipeline.Port{a, b}, CPU: -1})
	if err != nil {
		t.Fatal(err)
	}
	a.Inject(udpFrame(t, 9, "x")) // before Start: the port is the worker's from then on
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the worker runs on after its output port failed")
	}
	if err := w.Stop(); err == nil || !strings.Contains(err.Error(), "port b") || !strings.Contains(err.Error(), "device gone") {
		t.Errorf("Stop: %v, want the port's name and its error", err)
	}
	if pool.Available() != pool.Total() || w.Counters().PortErrors == 0 {
		t.Errorf("%d of %d frames back, %d port errors", pool.Available(), pool.Total(), w.Counters().PortErrors)
	}
}
