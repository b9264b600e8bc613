package service

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/port/pcap"
)

// absentCPU is a CPU number the process cannot run on: config accepts it
// (a chain file may be written for a bigger machine), pinning fails.
func absentCPU(t *testing.T) int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	for c := range 1024 {
		if !set.IsSet(c) {
			return c
		}
	}
	t.Skip("the process may run on every CPU up to 1023: no CPU to fail pinning on")
	return 0
}

// countingCloser counts Close calls.
type countingCloser struct{ n int }

func (c *countingCloser) Close() error { c.n++; return nil }

// A worker whose thread cannot be pinned never runs: New fails with an
// error that names the worker and the CPU, instead of leaving the
// worker's ports to nobody, and releases what the stages share.
func TestAWorkerThatCannotBePinnedFailsTheStart(t *testing.T) {
	cpu := absentCPU(t)
	shared := &countingCloser{}
	sp := Spec{Ports: []Port{
		{Name: "in", Config: pcap.File{Read: "../port/pcap/testdata/in.pcap"}},
		{Name: "out", Config: pcap.File{Write: t.TempDir() + "/out.pcap"}},
	}, UMEM: afxdpUMEM(), CPUs: []int{cpu}, Shared: shared}
	s, err := New(sp, slog.New(slog.DiscardHandler), Options{})
	want := fmt.Sprintf("worker 0: pipeline: pinning worker to CPU %d: ", cpu)
	if err == nil || s != nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("New: %v, %v; want the error %q", s, err, want)
	}
	if pe, ok := errors.AsType[*pipeline.PinError](err); !ok || pe.CPU != cpu {
		t.Errorf("%v is not a *pipeline.PinError for CPU %d", err, cpu)
	}
	if shared.n != 1 {
		t.Errorf("Spec.Shared closed %d times on the failed start, want once", shared.n)
	}
}

// A worker whose pinning fails stops the start of a kernel-mode service:
// the error names the worker and its CPU, the kernel sync the first worker
// started is closed, and no XDP program is left on the interfaces.
func TestAPinFailureStopsTheServiceAndItsKernelSync(t *testing.T) {
	topo := lab.TopologyForTest(t, "svcpin", lab.TopologyOptions{Queues: 2})
	cpu := absentCPU(t)
	var s *Service
	err := topo.DUT.Do(func() (err error) {
		s, err = Start(kernelChain(t, fmt.Sprintf(", cpus: [0, %d]", cpu)), slog.New(slog.DiscardHandler))
		return err
	})
	want := fmt.Sprintf("worker 1: pipeline: pinning worker to CPU %d: ", cpu)
	if err == nil || s != nil || !strings.Contains(err.Error(), want) {
		if s != nil {
			s.Stop()
		}
		t.Fatalf("Start: %v, %v; want the error %q", s, err, want)
	}
	waitNoKernelSync(t, "after the failed start")
	for _, ifname := range []string{"in0", "out0"} {
		l, err := topo.DUT.Link(ifname)
		if err != nil {
			t.Fatal(err)
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			t.Errorf("%s keeps an XDP program (id %d) after the failed start", ifname, x.ProgId)
		}
	}
}
