package config

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xnfdev/xnf/nf/router"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// twoWorkers builds the chain of valid for two workers of one service, as
// service.FileSpec does, and returns each worker's router.
func twoWorkers(t *testing.T, f *File, sh *Shared) (stages [2][]pipeline.Stage, routers [2]*router.Router) {
	t.Helper()
	for w := range 2 {
		st, err := f.Stages(&BuildContext{File: f, Worker: w, Shared: sh})
		if err != nil {
			t.Fatal(err)
		}
		stages[w], routers[w] = st, Unwrap(st[0]).(*router.Router)
	}
	return stages, routers
}

// The routers of two workers built from one chain entry share one FIB and
// one neighbor table: a neighbor learned through worker 0's stage resolves
// worker 1's packets, a route added once routes both workers' packets.
// Counters stay per worker.
func TestWorkersRoutersShareOneFIBAndNeighborTable(t *testing.T) {
	f, err := Parse("chain.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	sh := NewShared()
	defer sh.Close()
	_, r := twoWorkers(t, f, sh)
	if r[0] == r[1] {
		t.Fatal("both workers got the same router stage: its counters and ICMP budget are per worker")
	}
	if r[0].Tables() != r[1].Tables() || r[0].FIB() != r[1].FIB() || r[0].Neighbors() != r[1].Neighbors() {
		t.Fatal("the workers' routers have tables of their own")
	}
	h0, h1 := pt.New(t, r[0]), pt.New(t, r[1])
	// The gateway of the static route answers worker 0's ARP request.
	gw := "02:00:00:00:01:02"
	h0.Expect(h0.Send(1, pt.ARPReply("198.18.1.2", "198.18.1.1", pt.SrcMAC(gw), pt.DstMAC("02:00:00:00:01:01"))), pt.Dropped(packet.DropConsumed))
	// A route added once, to the shared FIB.
	if err := r[0].FIB().Add(netip.MustParsePrefix("198.20.0.0/16"), router.NextHop{Port: 1, Gateway: netip.MustParseAddr("198.18.1.2")}); err != nil {
		t.Fatal(err)
	}
	for w, h := range []*pt.Harness{h0, h1} {
		for _, dst := range []string{"198.19.0.7:53", "198.20.0.7:53"} {
			in := pt.UDP4("198.18.0.1:1000", dst, "query")
			want := pt.UDP4("198.18.0.1:1000", dst, "query", pt.TTL(63), pt.SrcMAC("02:00:00:00:01:01"), pt.DstMAC(gw))
			h.Expect(h.Send(0, in), pt.Forwarded(1).Bytes(want))
		}
		if w == 1 {
			h.ExpectMetrics(0, map[string]uint64{"forwarded": 2})
		}
	}
	if c := r[1].Counters(); c.Learned != 0 || c.Resolutions != 0 {
		t.Errorf("worker 1 learned %d and resolved %d: the neighbor came from worker 0", c.Learned, c.Resolutions)
	}
	if c := r[0].Counters(); c.Learned != 1 || c.Forwarded != 2 {
		t.Errorf("worker 0's counters %+v: want 1 learned, 2 forwarded", c)
	}
}

// A reload applies the file once to the shared tables: the service hands
// every worker's stage the same file, and the later ones change nothing,
// so a route the control plane removed right after the first stays
// removed.
func TestRouterReloadAppliesOncePerFile(t *testing.T) {
	f, err := Parse("chain.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	sh := NewShared()
	defer sh.Close()
	st, r := twoWorkers(t, f, sh)
	nf, err := Parse("chain.yaml", []byte(strings.Replace(valid, "to: 198.19.0.0/16", "to: 198.20.0.0/16", 1)))
	if err != nil {
		t.Fatal(err)
	}
	reload := func(w int) {
		t.Helper()
		rl, ok := Find[interface {
			Reload(*BuildContext, *StageConfig) error
		}](st[w][0])
		if !ok {
			t.Fatal("the router stage cannot reload")
		}
		if err := rl.Reload(&BuildContext{File: nf, Worker: w, Shared: sh}, nf.StageConfig(0)); err != nil {
			t.Fatal(err)
		}
	}
	reload(0)
	fib := r[1].FIB()
	if _, ok := fib.Lookup(netip.MustParseAddr("198.20.1.1")); !ok {
		t.Fatal("worker 0's reload did not reach the shared FIB")
	}
	if _, ok := fib.Lookup(netip.MustParseAddr("198.19.1.1")); ok {
		t.Fatal("the route the reload removed still routes")
	}
	if err := fib.Delete(netip.MustParsePrefix("198.20.0.0/16")); err != nil {
		t.Fatal(err)
	}
	reload(1)
	if _, ok := fib.Lookup(netip.MustParseAddr("198.20.1.1")); ok {
		t.Error("worker 1's reload of the same file applied it again")
	}
}

// A kernel-mode router needs an owner for its kernel sync: without a
// Shared, building one outside check mode is an error rather than a
// subscription nobody closes.
func TestKernelRouterWithoutSharedIsRefused(t *testing.T) {
	f, err := Parse("chain.yaml", []byte(strings.Replace(valid, "    routes:", "    fib: kernel\n    routes:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Stages(&BuildContext{File: f})
	if err == nil || !strings.Contains(err.Error(), "chain[0].fib: kernel: the kernel sync must be closed by whoever runs the stages") {
		t.Errorf("Stages without a Shared: %v", err)
	}
}

// closer counts its Close calls.
type closer struct{ closed *int }

func (c closer) Close() error { *c.closed++; return nil }

// SharedValue makes a chain entry's value once, per entry; Close closes
// each closer once, and a failed make is not remembered.
func TestSharedValueIsMadeOnceAndClosedOnce(t *testing.T) {
	f, err := Parse("chain.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	sh := NewShared()
	ctx := &BuildContext{File: f, Shared: sh}
	made, closed := 0, 0
	mk := func() (closer, error) { made++; return closer{&closed}, nil }
	for range 3 {
		if _, err := SharedValue(ctx, f.StageConfig(0), mk); err != nil {
			t.Fatal(err)
		}
	}
	if made != 1 {
		t.Errorf("made %d times for one entry", made)
	}
	if _, err := SharedValue(ctx, &StageConfig{file: f, index: 1, node: f.Chain[0].node}, func() (closer, error) { return closer{}, errFailed }); err != errFailed {
		t.Errorf("a failed make: %v", err)
	}
	if err := sh.Close(); err != nil || closed != 1 {
		t.Errorf("Close: %v, closed %d times, want once", err, closed)
	}
	if err := sh.Close(); err != nil || closed != 1 {
		t.Errorf("second Close: %v, closed %d times, want once", err, closed)
	}
	if _, err := SharedValue(ctx, f.StageConfig(0), mk); err == nil {
		t.Error("a value made after Close, which nobody would close")
	}
	// Without a Shared, every call makes its own.
	for range 2 {
		SharedValue(&BuildContext{File: f}, f.StageConfig(0), mk)
	}
	if made != 3 {
		t.Errorf("made %d times, want 1 + 2 without a Shared", made)
	}
}

var errFailed = errorString("failed")

type errorString string

func (e errorString) Error() string { return string(e) }
