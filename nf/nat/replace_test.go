package nat

import (
	"net/netip"
	"testing"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/packet"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// Replace swaps the rules for new flows at the next batch; a flow already
// translated keeps its translation.
func TestReplaceChangesNewFlowsOnly(t *testing.T) {
	ct, _ := conntrack.New(conntrack.Config{MaxFlows: 64})
	cfg := Config{Inside: []uint16{0}, Outside: []uint16{1}, Pool: []netip.Addr{netip.MustParseAddr("198.18.1.1")},
		Forwards: []Forward{{Proto: packet.ProtoUDP, Addr: netip.MustParseAddr("198.18.1.1"), PortMin: 5000, PortMax: 5000, To: netip.MustParseAddr("198.18.0.10"), ToPort: 53}}}
	s, err := NewStage(cfg, ct)
	if err != nil {
		t.Fatal(err)
	}
	dst := func(frame []byte) netip.AddrPort {
		var b packet.Batch
		b.Append(frame, 0, 1).Parse()
		s.ProcessAt(&b, 1)
		p := &b.Packets[0]
		if p.Verdict == packet.Drop {
			return netip.AddrPort{}
		}
		p.Parse()
		return netip.AddrPortFrom(p.IPv4().DstAddr(), p.DstPort())
	}
	old := pt.UDP4("198.18.1.2:4000", "198.18.1.1:5000", "a")
	if got := dst(old); got.String() != "198.18.0.10:53" {
		t.Fatalf("before Replace: %v", got)
	}
	cfg.Forwards[0].To = netip.MustParseAddr("198.18.0.20")
	if err := s.Replace(cfg); err != nil {
		t.Fatal(err)
	}
	if got := dst(pt.UDP4("198.18.1.2:4001", "198.18.1.1:5000", "b")); got.String() != "198.18.0.20:53" {
		t.Errorf("a new flow after Replace went to %v, want the new target", got)
	}
	if got := dst(pt.UDP4("198.18.1.2:4000", "198.18.1.1:5000", "c")); got.String() != "198.18.0.10:53" {
		t.Errorf("the flow from before Replace went to %v, want its old translation", got)
	}
	bad := cfg
	bad.Inside, bad.Outside = []uint16{0}, []uint16{0}
	if err := s.Replace(bad); err == nil {
		t.Error("Replace accepted a port both inside and outside")
	}
}
