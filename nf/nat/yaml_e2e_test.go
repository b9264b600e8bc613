package nat_test

import (
	"testing"

	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/nf/nat"
)

// The nat stage as YAML builds it masquerades real traffic: a TCP
// connection and a ping, seen from the server as the NAT address.
func TestNATFromYAMLBetweenRealPeers(t *testing.T) {
	f, err := config.Parse("nat.yaml", []byte(`ports:
  - name: in
    interface: in0
  - name: out
    interface: out0
chain:
  - type: nat
    inside: [in]
    outside: [out]
    snat:
      to: [`+lab.DUTOutAddr+`]
      except: [`+lab.GenNet+`]
    conntrack: {max_flows: 4096}
`))
	if err != nil {
		t.Fatal(err)
	}
	stages, err := f.Stages(&config.BuildContext{File: f})
	if err != nil {
		t.Fatal(err)
	}
	ns, ok := config.Unwrap(stages[0]).(*nat.Stage)
	if !ok {
		t.Fatalf("stage is a %T", stages[0])
	}
	topo := xnfLabWith(t, ns)
	peer, local, n := tcpTransfer(t, topo, 1<<20)
	if n != 1<<20 || peer.Addr().String() != lab.DUTOutAddr || peer.Port() != local.Port() {
		t.Errorf("TCP: %d bytes, server saw %v (client %v)", n, peer, local)
	}
	src, id, err := ping(t, topo, 0x77)
	if err != nil || src.String() != lab.DUTOutAddr || id != 0x77 {
		t.Errorf("ping: %v, server saw %v id %#x", err, src, id)
	}
	if m := ns.StageMetrics(); m["snat_flows"] != 2 || m["ports_kept"] != 2 {
		t.Errorf("metrics %v", m)
	}
}
