package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xnfdev/xnf/config"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// file is an in-memory pcapng file the writer goroutine writes to.
type file struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (f *file) Write(p []byte) (int, error) { f.mu.Lock(); defer f.mu.Unlock(); return f.b.Write(p) }

// packets reads the capture back with gopacket.
func (f *file) packets(t *testing.T) [][]byte {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := pcapgo.NewNgReader(bytes.NewReader(f.b.Bytes()), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if ci.Length < ci.CaptureLength {
			t.Errorf("wire length %d < captured %d", ci.Length, ci.CaptureLength)
		}
		out = append(out, data)
	}
}

func waitWritten(t *testing.T, s *Sampler, n uint64) {
	t.Helper()
	for end := time.Now().Add(3 * time.Second); s.Written.Load() < n && time.Now().Before(end); time.Sleep(time.Millisecond) {
	}
	if w := s.Written.Load(); w != n {
		t.Fatalf("the writer wrote %d samples, want %d", w, n)
	}
}

func newSampler(t testing.TB, c Config, out io.Writer) *Sampler {
	t.Helper()
	s, err := New(c, out)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dns(i int) []byte {
	return pt.UDP4("198.18.0.1:1000", "198.18.1.2:53", fmt.Sprintf("query %02d", i))
}

func TestWritesEveryNthPacketOfChosenFlows(t *testing.T) {
	var f file
	s := newSampler(t, Config{Every: 3, Flows: []Flow{{Proto: "udp", Dst: "198.18.1.0/24", DPort: 53}}}, &f)
	h := pt.New(t, s)
	var frames, want [][]byte
	var wants []pt.Want
	for i := range 30 {
		frames = append(frames, dns(i),
			pt.UDP4("198.18.0.1:1000", "198.18.1.2:54", "other port"),
			pt.TCP4("198.18.0.1:1000", "198.18.1.2:53", "tcp"),
			pt.UDP4("198.18.0.1:1000", "198.18.2.2:53", "other subnet"))
		wants = append(wants, pt.Forwarded(1).Bytes(dns(i)), pt.Forwarded(1), pt.Forwarded(1), pt.Forwarded(1))
		if i%3 == 2 {
			want = append(want, dns(i))
		}
	}
	h.Expect(h.Send(0, frames...), wants...) // the sampler never changes a verdict
	h.ExpectMetrics(0, map[string]uint64{"matched": 30, "sampled": 10, "lagged": 0})
	waitWritten(t, s, 10)
	got := f.packets(t)
	for i := range min(len(got), len(want)) {
		if d := pt.Diff(got[i], want[i]); d != "" {
			t.Errorf("sample %d:\n%s", i, d)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d samples in the file, want %d", len(got), len(want))
	}
	h.Out(1)
}

func TestSnaplenCutsSamples(t *testing.T) {
	var f file
	s := newSampler(t, Config{Snaplen: 20}, &f)
	h := pt.New(t, s)
	frame := pt.UDP4("198.18.0.1:1000", "198.18.1.2:9", strings.Repeat("x", 100))
	h.Send(0, frame)
	waitWritten(t, s, 1)
	if got := f.packets(t); len(got) != 1 || !bytes.Equal(got[0], frame[:20]) {
		t.Errorf("sample %x, want the first 20 bytes %x", got, frame[:20])
	}
	h.Out(1)
}

// A writer that never returns (stuck on the capture's header): the queue
// fills, then samples are counted as lagged and the data path goes on at
// full speed.
func TestLaggingWriterNeverSlowsTheDataPath(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	s := newSampler(t, Config{Queue: 8}, writerFunc(func(p []byte) (int, error) { <-block; return len(p), nil }))
	h := pt.New(t, s)
	var frames [][]byte
	for i := range 200 {
		frames = append(frames, dns(i))
	}
	start := time.Now()
	res := h.Send(0, frames...)
	if d := time.Since(start); d > time.Second {
		t.Errorf("200 packets took %v with a stuck writer", d)
	}
	for _, r := range res {
		if r.Port != 1 {
			t.Fatalf("%s", r)
		}
	}
	h.ExpectMetrics(0, map[string]uint64{"matched": 200, "sampled": 8, "lagged": 192})
	h.Out(1)
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

func TestConfig(t *testing.T) {
	f, err := config.Load("chain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stages(&config.BuildContext{File: f, Check: true})
	if err != nil {
		t.Fatal(err)
	}
	if c := st[0].(*Sampler).cfg; c.Every != 10 || c.Snaplen != 128 || c.Queue != 1024 || len(c.Flows) != 1 || c.Flows[0].proto != 17 || c.Flows[0].dst.String() != "198.18.1.0/24" {
		t.Errorf("built %+v", c)
	}
	base := `ports: [{name: in, interface: in0}, {name: out, interface: out0}]
chain:
  - type: example/sampler
    file: x.pcapng
    flows:
      - REPLACE
`
	for _, tc := range []struct{ flow, want string }{
		{"{proto: sctp}", `<config>:6: chain[0].flows[0].proto: "sctp": expected tcp, udp or icmp`},
		{"{dst: 198.18.1.0}", `<config>:6: chain[0].flows[0].dst: "198.18.1.0": expected a prefix such as 198.18.0.0/24`},
		{"{dport: 70000}", "<config>:6: chain[0].flows[0].dport: cannot unmarshal !!int `70000` into uint16"},
		{"{port: 53}", `chain[0].flows[0].port: unknown field (expected one of proto, src, dst, sport, dport)`},
	} {
		_, err := config.Parse("", []byte(strings.Replace(base, "REPLACE", tc.flow, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.flow, err, tc.want)
		}
	}
}

func mix() [][]byte {
	var f [][]byte
	for i := range 64 {
		if i%2 == 0 {
			f = append(f, dns(i))
		} else {
			f = append(f, pt.TCP4("198.18.0.1:1000", "198.18.1.2:443", strings.Repeat("x", 100)))
		}
	}
	return f
}

func TestAllocatesNothing(t *testing.T) {
	pt.ZeroAllocs(t, newSampler(t, Config{Every: 4, Flows: []Flow{{Proto: "udp", DPort: 53}}}, io.Discard), mix()...)
}

func BenchmarkSampler(b *testing.B) {
	flows := []Flow{{Proto: "tcp", DPort: 80}, {Proto: "udp", Dst: "198.18.1.0/24", DPort: 53}}
	for _, every := range []int{64, 1} {
		// Half the packets match the second flow; 1 in every of them is
		// copied to the writer, or counted lagged when it is behind.
		b.Run(fmt.Sprintf("every=%d", every), func(b *testing.B) {
			s := newSampler(b, Config{Every: every, Flows: flows}, io.Discard)
			pt.Benchmark(b, s, mix()...)
			m := s.StageMetrics()
			b.ReportMetric(100*float64(m["lagged"])/float64(max(m["matched"], 1)), "%lagged")
		})
	}
}

// closingFile records that Close was called.
type closingFile struct {
	file
	closed bool
}

func (c *closingFile) Close() error { c.closed = true; return nil }

func TestCloseWritesEverySampleThenClosesTheFile(t *testing.T) {
	var f closingFile
	s := newSampler(t, Config{}, &f)
	h := pt.New(t, s)
	for i := range 50 {
		h.Send(0, dns(i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !f.closed {
		t.Error("Close left the file open")
	}
	if got := len(f.packets(t)); got != 50 {
		t.Errorf("%d samples in the file after Close, want 50", got)
	}
	if err := s.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}
