package service

import (
	"log/slog"
	"strings"
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

// Preferred busy polling where the kernel cannot busy-poll the socket
// (veth: copy mode; generic XDP: no NAPI context) is refused with the
// reason, naming the port, rather than deferring the device's NAPI for
// busy polls that poll nothing. Left unset, the same ports start and the
// devices' NAPI settings stay as they were.
func TestPreferBusyPollWhereItCannotWork(t *testing.T) {
	topo := lab.TopologyForTest(t, "svcbp", lab.TopologyOptions{})
	for _, c := range []struct {
		mode, opt, want string
	}{
		{"native", "prefer_busy_poll: true", "port in queue 0: prefer_busy_poll: the socket runs in copy mode (veth has no zero-copy)"},
		{"generic", "prefer_busy_poll: true", "prefer_busy_poll: generic mode has no NAPI context to poll"},
		{"native", "", ""},
	} {
		yaml := "ports:\n  - {name: in, interface: in0, mode: " + c.mode + ", " + c.opt + "}\n  - {name: out, interface: out0, mode: " + c.mode + "}\nworkers: {realtime: 0}\nmetrics: {listen: \"off\"}\nchain: []\n"
		f, err := config.Parse("svc.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		var s *Service
		err = topo.DUT.Do(func() (err error) {
			s, err = Start(f, slog.New(slog.DiscardHandler))
			return err
		})
		if c.want == "" {
			if err != nil {
				t.Fatalf("%s, prefer_busy_poll unset: %v", c.mode, err)
			}
			for _, d := range s.Devices {
				if len(d.BusyPolled()) != 0 {
					t.Errorf("%s: NAPI deferred on a copy-mode device", d.Name)
				}
			}
			if err := s.Stop(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err == nil {
			s.Stop()
			t.Fatalf("%s, %s: started", c.mode, c.opt)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s, %s: %v\nwant it to say %q", c.mode, c.opt, err, c.want)
		}
	}
}
