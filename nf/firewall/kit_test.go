package firewall_test

import (
	"testing"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/packet"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// The firewall through the users' test kit (pipeline/pipelinetest), in a
// real worker over memory ports: a TCP handshake to an allowed port and its
// replies pass, the same from the far side does not.
func TestFirewallThroughTheTestKit(t *testing.T) {
	rules, err := firewall.ParseRules([]string{
		"accept state established,related",
		"accept in 0 proto tcp dport 8080 state new",
	})
	if err != nil {
		t.Fatal(err)
	}
	fw, _ := firewall.New(1, rules, firewall.Drop)
	ct, _ := conntrack.New(conntrack.Config{MaxFlows: 64})
	h := pt.New(t, firewall.NewStage(fw, ct, 0))

	syn := pt.TCP4("198.18.0.1:40000", "198.18.1.2:8080", "", pt.TCPFlags(packet.TCPSyn))
	synAck := pt.TCP4("198.18.1.2:8080", "198.18.0.1:40000", "", pt.TCPFlags(packet.TCPSyn|packet.TCPAck))
	data := pt.TCP4("198.18.0.1:40000", "198.18.1.2:8080", "hello")
	h.Expect(h.Send(0, syn), pt.Forwarded(1).Bytes(syn))
	h.Expect(h.Send(1, synAck), pt.Forwarded(0).Bytes(synAck))
	h.Expect(h.Send(0, data), pt.Forwarded(1).Bytes(data))

	farSyn := pt.TCP4("198.18.1.2:50000", "198.18.0.1:8080", "", pt.TCPFlags(packet.TCPSyn))
	otherPort := pt.TCP4("198.18.0.1:40001", "198.18.1.2:22", "", pt.TCPFlags(packet.TCPSyn))
	h.Expect(h.Send(1, farSyn), pt.Dropped(packet.DropPolicy))
	h.Expect(h.Send(0, otherPort), pt.Dropped(packet.DropPolicy))
	h.ExpectMetrics(0, map[string]uint64{"accepted": 3, "dropped": 2, "rule_0_hits": 2, "rule_1_hits": 1, "default_hits": 2})
	pt.ZeroAllocs(t, firewall.NewStage(fw, ct, 0), data)
}
