package service

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/port/pcap"
)

// A Spec built in Go runs through the whole lifecycle without root or a
// chain file: two pcap ports over the worker's UMEM, a stage built per
// worker, and every frame back in the UMEM at Stop.
func TestSpecOfGoValuesRuns(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.pcap")
	built := 0
	sp := Spec{
		Ports: []Port{
			{Name: "in", Config: pcap.File{Read: "../port/pcap/testdata/in.pcap"}},
			{Name: "out", Config: pcap.File{Write: out}},
		},
		Stages: func(w int) ([]pipeline.Stage, error) {
			built++
			return []pipeline.Stage{pipeline.StageFunc{StageName: "drop-dns", Fn: func(b *packet.Batch) {
				for _, p := range pipeline.Live(b) {
					if p.Has(packet.FlagUDP) && p.DstPort() == 53 {
						p.SetDrop(packet.DropPolicy)
					}
				}
			}}}, nil
		},
		UMEM: afxdpUMEM(),
	}
	s, err := New(sp, slog.New(slog.DiscardHandler), Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The capture holds 20 frames (port/pcap/testdata/gen.go).
	deadline := time.Now().Add(5 * time.Second)
	for s.Workers[0].PortCounters()[0].RX < 20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var buf strings.Builder
	s.PrintCounters(&buf)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	pc := s.Workers[0].PortCounters()
	if built != 1 || pc[0].RX != 20 || pc[1].TX != 14 || pc[0].Dropped[packet.DropPolicy] != 5 {
		t.Errorf("stages built %d times, counters %+v: want rx 20, tx 14, 5 dropped by policy", built, pc)
	}
	if st, err := os.Stat(out); err != nil || st.Size() < 24+14*16 {
		t.Errorf("the output capture: %v, %v", st, err)
	}
	if !strings.Contains(buf.String(), "drop-dns") || !strings.Contains(buf.String(), "out") {
		t.Errorf("counters table:\n%s", buf.String())
	}
}

// A port that cannot open fails New with its name, and what was opened
// is closed again.
func TestSpecWithABrokenPortFails(t *testing.T) {
	sp := Spec{Ports: []Port{
		{Name: "in", Config: pcap.File{Read: "../port/pcap/testdata/in.pcap"}},
		{Name: "out", Config: pcap.File{Write: "/nonexistent/dir/out.pcap"}},
	}, UMEM: afxdpUMEM()}
	s, err := New(sp, slog.New(slog.DiscardHandler), Options{})
	if err == nil || s != nil || !strings.Contains(err.Error(), "/nonexistent/dir/out.pcap") {
		t.Fatalf("New: %v, %v", s, err)
	}
}

// Run ends, and returns the error, when a port stops its worker.
func TestRunEndsWhenAPortFails(t *testing.T) {
	sp := Spec{Ports: []Port{
		{Name: "in", Config: pcap.File{Read: "../port/pcap/testdata/in.pcap"}},
		{Name: "out", Config: pcap.File{Write: "/dev/full"}},
	}, UMEM: afxdpUMEM()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := Run(ctx, sp, slog.New(slog.DiscardHandler), RunOptions{Metrics: "off"})
	if err == nil || !strings.Contains(err.Error(), "/dev/full") || ctx.Err() != nil {
		t.Errorf("Run: %v (context %v), want the output port's error before the timeout", err, ctx.Err())
	}
}

// afxdpUMEM is a small UMEM: these tests need no more frames.
func afxdpUMEM() afxdp.UMEMConfig { return afxdp.UMEMConfig{FrameSize: 2048, FrameCount: 512} }
