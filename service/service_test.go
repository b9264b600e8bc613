package service

import (
	"log/slog"
	"testing"

	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/internal/lab"
)

// A start that fails half-way (the second port's interface is missing)
// returns the error, no Service, and detaches what it had attached.
func TestFailedStartCleansUp(t *testing.T) {
	topo := lab.TopologyForTest(t, "svc", lab.TopologyOptions{})
	f, err := config.Parse("svc.yaml", []byte("ports:\n  - {name: in, interface: in0}\n  - {name: out, interface: nope0}\nchain: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	var s *Service
	err = topo.DUT.Do(func() (err error) {
		s, err = Start(f, slog.New(slog.DiscardHandler))
		return err
	})
	if err == nil || s != nil {
		t.Fatalf("Start with a missing interface: %v, %v", s, err)
	}
	l, err := topo.DUT.Link("in0")
	if err != nil {
		t.Fatal(err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		t.Errorf("in0 keeps an XDP program (id %d) after the failed start", x.ProgId)
	}
}
