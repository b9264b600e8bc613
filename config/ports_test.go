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
		{"unknown port type", "ports:\n  - name: in\n    type: tap\n", `p.yaml:3: ports[0].type: unknown port type "tap" (expected one of afxdp, pcap, vlan)`},
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

// VLAN ports become xdp.VLAN values over their parent; the router's
// interfaces on them take the parent interface's MAC and MTU.
func TestVLANPortsBecomeVLANsOfTheirParent(t *testing.T) {
	f, err := Parse("v.yaml", []byte(`ports:
  - {name: trunk, interface: lo}
  - {name: v100, type: vlan, parent: trunk, vid: 100}
  - {name: v200, type: vlan, parent: trunk, vid: 200}
  - {name: out, interface: out0, vlan: 300}
chain: []
`))
	if err != nil {
		t.Fatal(err)
	}
	pcs, err := f.PortConfigs()
	if err != nil {
		t.Fatal(err)
	}
	if x, ok := pcs[0].(xdp.Interface); !ok || x.VLAN != 0 {
		t.Errorf("ports[0] is %#v", pcs[0])
	}
	for i, vid := range map[int]uint16{1: 100, 2: 200} {
		if v, ok := pcs[i].(xdp.VLAN); !ok || v != (xdp.VLAN{Parent: "trunk", VID: vid}) {
			t.Errorf("ports[%d] is %#v", i, pcs[i])
		}
	}
	if x, ok := pcs[3].(xdp.Interface); !ok || x.VLAN != 300 {
		t.Errorf("ports[3] is %#v", pcs[3])
	}
	if f.PortInterface(1) != "lo" || f.PortInterface(3) != "out0" {
		t.Errorf("interfaces under the ports: %q, %q", f.PortInterface(1), f.PortInterface(3))
	}
	if n := f.WorkerCount(); n != 1 {
		t.Errorf("%d workers", n)
	}
}

func TestVLANMistakesNameFileLineAndField(t *testing.T) {
	const trunk = "ports:\n  - name: trunk\n    interface: in0\n"
	for _, tc := range []struct{ name, file, want string }{
		{"access VLAN out of range", "ports:\n  - name: in\n    interface: in0\n    vlan: 4095\n",
			`p.yaml:4: ports[0].vlan: 4095: expected a VLAN ID 1-4094 (or 0 for untagged)`},
		{"VLAN ID 0", trunk + "  - name: v0\n    type: vlan\n    parent: trunk\n    vid: 0\n",
			`p.yaml:7: ports[1].vid: 0: expected a VLAN ID 1-4094`},
		{"VLAN ID 4095", trunk + "  - name: v\n    type: vlan\n    parent: trunk\n    vid: 4095\n",
			`p.yaml:7: ports[1].vid: 4095: expected a VLAN ID 1-4094`},
		{"no parent", trunk + "  - name: v\n    type: vlan\n    vid: 5\n",
			`p.yaml:4: ports[1]: a vlan port needs parent: (the afxdp port whose wire carries the VLAN) and vid:`},
		{"unknown parent", trunk + "  - name: v\n    type: vlan\n    parent: trunc\n    vid: 5\n",
			`p.yaml:6: ports[1].parent: unknown port "trunc" (expected an afxdp port: one of trunk)`},
		{"parent of another type", "ports:\n  - name: cap\n    type: pcap\n    read: in.pcap\n  - name: v\n    type: vlan\n    parent: cap\n    vid: 5\n",
			`p.yaml:7: ports[1].parent: port "cap" is a pcap port: VLANs ride on afxdp ports`},
		{"parent listed after", "ports:\n  - name: v\n    type: vlan\n    parent: trunk\n    vid: 5\n  - name: trunk\n    interface: in0\n",
			`p.yaml:4: ports[0].parent: port "trunk" comes after its VLAN port (ports[1]): list the parent first`},
		{"a VLAN twice", trunk + "  - {name: a, type: vlan, parent: trunk, vid: 5}\n  - name: b\n    type: vlan\n    parent: trunk\n    vid: 5\n",
			`p.yaml:8: ports[2].vid: VLAN 5 of "trunk" is port "a" already (ports[1])`},
		{"the parent's own VLAN", "ports:\n  - {name: trunk, interface: in0, vlan: 5}\n  - name: b\n    type: vlan\n    parent: trunk\n    vid: 5\n",
			`p.yaml:6: ports[1].vid: VLAN 5 is port "trunk"'s own (its vlan: 5): a VLAN is one port`},
		{"an afxdp field on a VLAN port", trunk + "  - name: v\n    type: vlan\n    parent: trunk\n    vid: 5\n    interface: in0.5\n",
			`p.yaml:8: ports[1].interface: unknown field (expected one of parent, vid)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tc.file+"chain: []\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got  %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}
