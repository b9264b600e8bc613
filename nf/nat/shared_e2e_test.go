package nat_test

import (
	"net/netip"
	"testing"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/nf/nat"
)

// firewall -> NAT -> router with one conntrack table: the firewall lets
// the inside open flows and the outside only answer; the answers,
// translated, are established for it, and ICMP errors related.
func TestStatefulFirewallSharingTheNATTable(t *testing.T) {
	ct, err := conntrack.New(conntrack.Config{MaxFlows: 4096})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := firewall.ParseRules([]string{"accept state established,related", "accept in 0 state new"})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := firewall.New(1, rules, firewall.Drop)
	if err != nil {
		t.Fatal(err)
	}
	fs := firewall.NewStage(fw, ct, 0)
	ns, err := nat.NewStageShared(nat.Config{Inside: []uint16{0}, Outside: []uint16{1},
		Pool:   []netip.Addr{netip.MustParseAddr(lab.DUTOutAddr)},
		Except: []netip.Prefix{netip.MustParsePrefix(lab.GenNet)}}, ct)
	if err != nil {
		t.Fatal(err)
	}
	topo := xnfLabWith(t, fs, ns)
	peer, local, n := tcpTransfer(t, topo, 1<<20)
	if n != 1<<20 || peer.Addr().String() != lab.DUTOutAddr || peer.Port() != local.Port() {
		t.Errorf("TCP: %d bytes, server saw %v (client %v)", n, peer, local)
	}
	if src, _, err := ping(t, topo, 0x99); err != nil || src.String() != lab.DUTOutAddr {
		t.Errorf("ping: %v, server saw %v", err, src)
	}
	if err := icmpErrorChecks(t, topo); err != nil {
		t.Error(err)
	}
	m := fs.StageMetrics()
	if m["rule_0_hits"] == 0 || m["conntrack_related"] == 0 {
		t.Errorf("firewall metrics %v: want established and related hits", m)
	}
	t.Logf("firewall %v", m)
	t.Logf("nat %+v", ns.Counters())
}
