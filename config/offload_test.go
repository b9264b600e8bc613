package config

import (
	"strings"
	"testing"
)

// The service's XDP pre-filter exists only for a firewall at chain[0]
// with offload auto and an AF_XDP port to load it; one per Shared.
func TestXDPOffloadOnlyForAFirstFirewallWithAFXDPPorts(t *testing.T) {
	pcapPorts := `ports:
  - {name: in, type: pcap, read: in.pcap}
  - {name: out, type: pcap, write: out.pcap}
chain:
  - type: firewall
    conntrack: {stateless: true}
    rules: [drop proto udp dport 9]
`
	second := strings.Replace(withFirewall, "chain:\n", "chain:\n  - {type: router, interfaces: [{port: in, addrs: [198.18.0.2/24], mac: \"02:00:00:00:00:02\"}]}\n", 1)
	cases := []struct {
		name, file string
		want       bool
		blocked    string
	}{
		{"a first firewall with offload auto", withFirewall, true, ""},
		{"offload off", strings.Replace(withFirewall, "    default: drop\n", "    default: drop\n    offload: off\n", 1), false, ""},
		{"a firewall after another stage", second, false, "chain[0] (router) sees packets before it"},
		{"capture-file ports only", pcapPorts, false, "no port is an AF_XDP port, where XDP could drop them"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("fw.yaml", []byte(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			s := NewShared()
			defer s.Close()
			o := s.XDPOffload(f)
			if (o != nil) != tc.want {
				t.Fatalf("XDPOffload: %v, want one: %v", o, tc.want)
			}
			if o != nil && s.XDPOffload(f) != o {
				t.Error("a second call made another pre-filter")
			}
			fos, err := f.FirewallOffloads()
			if err != nil {
				t.Fatal(err)
			}
			if len(fos) != 1 || fos[0].Blocked != tc.blocked {
				t.Errorf("plans %+v, want one blocked by %q", fos, tc.blocked)
			}
		})
	}
	var none *Shared
	if none.XDPOffload(nil) != nil {
		t.Error("a nil Shared made a pre-filter")
	}
}
