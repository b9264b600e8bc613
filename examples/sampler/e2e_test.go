package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/xnftest"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

func TestMain(m *testing.M) { xnftest.Main(m, main) }

// TestSamplesRealTraffic runs this binary with chain.yaml (the file moved
// to a temporary directory) and checks the capture holds exactly every
// 10th UDP datagram towards the sink, and nothing else.
func TestSamplesRealTraffic(t *testing.T) {
	topo := lab.TopologyForTest(t, "smp", lab.TopologyOptions{})
	if err := topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile("chain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	capture := filepath.Join(dir, "sample.pcapng")
	chain := filepath.Join(dir, "chain.yaml")
	os.WriteFile(chain, bytes.Replace(base, []byte("file: sample.pcapng"), []byte("file: "+capture), 1), 0o644)
	x := xnftest.Start(t, topo.DUT, "run", "-c", chain)
	x.WaitFor(t, "metrics: http://", 10*time.Second)

	// A listener, so the sink's kernel answers nothing (answers would be
	// UDP towards gen: not sampled, but noise on the wire).
	topo.Sink.Do(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(lab.SinkAddr), Port: 9})
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return err
	})
	const n = 200
	if err := topo.Gen.SendUDP(lab.SinkAddr+":9", n, "datagram %03d", 1, 100*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	const metrics = "127.0.0.1:9464"
	if v := xnftest.Settle(t, topo.DUT, metrics, xnftest.StageEvent("sampler", "sampled"), n/10); v != n/10 {
		t.Errorf("sampled %d, want %d", v, n/10)
	}
	text := xnftest.Metrics(t, topo.DUT, metrics)
	if m, l := xnftest.Value(text, xnftest.StageEvent("sampler", "matched")), xnftest.Value(text, xnftest.StageEvent("sampler", "lagged")); m != n || l != 0 {
		t.Errorf("matched %d lagged %d, want %d and 0", m, l, n)
	}
	x.Stop(t)

	f, err := os.Open(capture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		got = append(got, decodeUDP(data))
	}
	var want []string
	for i := 9; i < n; i += 10 {
		want = append(want, fmt.Sprintf("datagram %03d", i))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("the capture holds %q, want %q", got, want)
	}
}

// decodeUDP returns the payload of a sampled UDP datagram to the sink, or
// a summary of anything else.
func decodeUDP(frame []byte) string {
	pkt := pt.Decode(frame)
	if u, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && u.DstPort == 9 {
		return string(u.Payload)
	}
	return pt.Summary(frame)
}
