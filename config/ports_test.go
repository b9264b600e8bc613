package config

import (
	"strings"
	"testing"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/port/pcap"
	"github.com/xnfdev/xnf/port/xdp"
)

// Ports become Go values of their type, with their typed fields parsed
// once: what service.FileSpec hands the service.
func TestPortsBecomeTheirTypesGoValues(t *testing.T) {
	f, err := Parse("p.yaml", []byte(`ports:
  - name: in
    interface: in0
    mode: generic
    zero_copy: off
    filter: {ethertype: ipv6, proto: udp, dst_ports: [53]}
  - name: cap
    type: pcap
    write: out.pcap
chain: []
`))
	if err != nil {
		t.Fatal(err)
	}
	pcs, err := f.PortConfigs()
	if err != nil {
		t.Fatal(err)
	}
	x, ok := pcs[0].(xdp.Interface)
	if !ok || x.Interface != "in0" || x.Mode != afxdp.ModeGeneric || x.ZeroCopy != afxdp.ZeroCopyOff ||
		x.Filter.EtherType != 0x86dd || x.Filter.IPProto != 17 || len(x.Filter.DstPorts) != 1 {
		t.Errorf("ports[0] is %#v", pcs[0])
	}
	if p, ok := pcs[1].(pcap.File); !ok || p.Write != "out.pcap" || p.Read != "" {
		t.Errorf("ports[1] is %#v", pcs[1])
	}
	if n := f.WorkerCount(); n != 1 {
		t.Errorf("%d workers, want 1", n)
	}
}

func TestPortMistakesNameFileLineAndField(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"unknown port type", "ports:\n  - name: in\n    type: tap\n", `p.yaml:3: ports[0].type: unknown port type "tap" (expected one of afxdp, pcap)`},
		{"bad zero-copy policy", "ports:\n  - name: in\n    interface: in0\n    zero_copy: maybe\n", `p.yaml:4: ports[0].zero_copy: unknown zero-copy policy "maybe" (expected auto, require or off)`},
		{"bad filter protocol", "ports:\n  - name: in\n    interface: in0\n    filter:\n      proto: tcpp\n", `p.yaml:5: ports[0].filter: proto "tcpp": expected tcp`},
		{"a field of another type", "ports:\n  - name: in\n    type: pcap\n    interface: in0\n", `p.yaml:4: ports[0].interface: unknown field (expected one of read, write)`},
		{"pcap without a file", "ports:\n  - name: in\n    type: pcap\n", `p.yaml:2: ports[0]: a pcap port needs one of read:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tc.file+"chain: []\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got  %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}
