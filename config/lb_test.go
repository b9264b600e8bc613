package config

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/lb"
	"github.com/xnfdev/xnf/packet"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

const withLB = `ports:
  - name: in
    interface: in0
  - name: out
    interface: out0
chain:
  - type: lb
    services:
      - vip: 198.18.1.100
        proto: tcp
        port: 80
        backends:
          - {addr: 198.18.2.10, weight: 2}
          - {addr: "198.18.2.11:8080"}
          - {addr: 198.18.2.12, weight: 0}
        table_size: 65537
      - vip: 2001:db8:100::100
        proto: udp
        port: 53
        backends:
          - {addr: "[2001:db8:2::10]:5353", weight: 3}
    snat_to: [198.18.2.1, 2001:db8:2::1]
    conntrack: {max_flows: 4096}
  - type: router
    interfaces:
      - port: in
        addrs: [198.18.0.2/24]
      - port: out
        addrs: [198.18.2.1/24]
`

func TestLBStageFromYAML(t *testing.T) {
	f, err := Parse("lb.yaml", []byte(withLB))
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stages(&BuildContext{File: f, Check: true})
	if err != nil || st[0].Name() != "lb" {
		t.Fatalf("stages %v %v", st, err)
	}
	if _, ok := Unwrap(st[0]).(*lb.Stage); !ok {
		t.Errorf("stage is a %T", st[0])
	}
	var c LBConfig
	if err := f.StageConfig(0).Decode(&c); err != nil {
		t.Fatal(err)
	}
	cfg, err := lbConfig(f.StageConfig(0), &c)
	if err != nil {
		t.Fatal(err)
	}
	want := lb.Config{
		Services: []lb.Service{
			{Proto: packet.ProtoTCP, VIP: netip.MustParseAddrPort("198.18.1.100:80"), TableSize: 65537, Backends: []lb.Server{
				{Addr: netip.MustParseAddrPort("198.18.2.10:80"), Weight: 2},
				{Addr: netip.MustParseAddrPort("198.18.2.11:8080"), Weight: 1},
				{Addr: netip.MustParseAddrPort("198.18.2.12:80"), Weight: 0},
			}},
			{Proto: packet.ProtoUDP, VIP: netip.MustParseAddrPort("[2001:db8:100::100]:53"), Backends: []lb.Server{
				{Addr: netip.MustParseAddrPort("[2001:db8:2::10]:5353"), Weight: 3},
			}},
		},
		SNAT: []netip.Addr{netip.MustParseAddr("198.18.2.1"), netip.MustParseAddr("2001:db8:2::1")},
	}
	if got, exp := lbString(cfg), lbString(want); got != exp {
		t.Errorf("config\n got  %s\n want %s", got, exp)
	}
	// One address without a list is a list of one.
	one := strings.Replace(withLB, "snat_to: [198.18.2.1, 2001:db8:2::1]", "snat_to: 198.18.2.1", 1)
	f, err = Parse("lb.yaml", []byte(one))
	if err != nil {
		t.Fatal(err)
	}
	f.StageConfig(0).Decode(&c)
	if cfg, err = lbConfig(f.StageConfig(0), &c); err != nil || len(cfg.SNAT) != 1 || cfg.SNAT[0].String() != "198.18.2.1" {
		t.Errorf("snat_to: one address: %v %v", cfg.SNAT, err)
	}
}

func lbString(c lb.Config) string {
	var b strings.Builder
	for _, s := range c.Services {
		fmt.Fprintf(&b, "%s size %d:", s.Name(), s.TableSize)
		for _, be := range s.Backends {
			fmt.Fprintf(&b, " %s=%d", be.Addr, be.Weight)
		}
		b.WriteString("; ")
	}
	fmt.Fprintf(&b, "snat %v", c.SNAT)
	return b.String()
}

func TestLBMistakesNameLineAndField(t *testing.T) {
	for _, tc := range []struct{ old, new, want string }{
		{"  - type: lb\n", "  - type: lb\n    mode: dsr\n", `lb.yaml:8: chain[0].mode: dsr (direct server return) is not there yet: expected nat`},
		{"  - type: lb\n", "  - type: lb\n    mode: tunnel\n", `lb.yaml:8: chain[0].mode: "tunnel": expected nat`},
		{"vip: 198.18.1.100", "vip: 198.18.1.300", `lb.yaml:9: chain[0].services[0].vip: "198.18.1.300": expected an IP address such as 198.18.1.100 or 2001:db8::100`},
		{"        proto: tcp\n", "", `lb.yaml:9: chain[0].services[0]: missing proto (expected tcp or udp)`},
		{"proto: tcp", "proto: sctp", `lb.yaml:10: chain[0].services[0].proto: "sctp": expected tcp or udp`},
		{"port: 80", "port: 80000", `lb.yaml:11: chain[0].services[0].port: cannot unmarshal`},
		{"        port: 80\n", "", `lb.yaml:9: chain[0].services[0]: missing port (expected 1 to 65535)`},
		{"{addr: 198.18.2.10, weight: 2}", "{addr: backend-a, weight: 2}", `lb.yaml:13: chain[0].services[0].backends[0].addr: "backend-a": expected an address with an optional port, such as 198.18.2.10, 198.18.2.10:8080 or [2001:db8::10]:8080`},
		{"{addr: 198.18.2.10, weight: 2}", "{addr: 2001:db8:2::10, weight: 2}", `lb.yaml:13: chain[0].services[0].backends[0].addr: "2001:db8:2::10" is not an IPv4 address like the vip 198.18.1.100`},
		{"{addr: 198.18.2.12, weight: 0}", "{addr: \"198.18.2.10:80\"}", `lb.yaml:15: chain[0].services[0].backends[2].addr: 198.18.2.10:80 is also backends[0] (expected each address and port once)`},
		{"{addr: 198.18.2.10, weight: 2}", "{addr: 198.18.2.10, weight: -2}", `lb.yaml:13: chain[0].services[0].backends[0].weight: cannot unmarshal`},
		{"{addr: 198.18.2.10, weight: 2}", "{addr: 198.18.2.10, wieght: 2}", `lb.yaml:13: chain[0].services[0].backends[0].wieght: unknown field (expected one of addr, weight)`},
		{"table_size: 65537", "table_size: 65536", `lb.yaml:16: chain[0].services[0].table_size: lb: table size 65536 is not prime: expected a prime such as 65521 or 65537`},
		{"table_size: 65537", "table_size: 211", `lb.yaml:16: chain[0].services[0].table_size: lb: table size 211 is too small`},
		{"port: 53", "port: 53\n        table_size: 1", `lb.yaml:20: chain[0].services[1].table_size: lb: table size 1: expected a prime such as 65537`},
		{"vip: 2001:db8:100::100\n        proto: udp\n        port: 53", "vip: 198.18.1.100\n        proto: tcp\n        port: 80",
			`lb.yaml:17: chain[0].services[1]: tcp 198.18.1.100:80 is also services[0] (expected each protocol, address and port once)`},
		{"snat_to: [198.18.2.1, 2001:db8:2::1]", "snat_to: [198.18.2.1, 198.18.2.2]", `lb.yaml:22: chain[0].snat_to[1]: 198.18.2.2: a second IPv4 address (snat_to[0] is one): expected at most one IPv4 and one IPv6 address`},
		{"snat_to: [198.18.2.1, 2001:db8:2::1]", "snat_to: nowhere", `lb.yaml:22: chain[0].snat_to: "nowhere": expected an IP address`},
		{"    conntrack: {max_flows: 4096}", "    conntrack: {stateless: true}", `lb.yaml:23: chain[0].conntrack.stateless: an lb cannot be stateless`},
		{"    conntrack: {max_flows: 4096}", "    conntrack: {max_flow: 4096}", `lb.yaml:23: chain[0].conntrack.max_flow: unknown field`},
		{"    snat_to:", "    snat:", `lb.yaml:22: chain[0].snat: unknown field (expected one of mode, services, snat_to, conntrack)`},
	} {
		if !strings.Contains(withLB, tc.old) {
			t.Fatalf("test bug: %q not in the file", tc.old)
		}
		_, err := Parse("lb.yaml", []byte(strings.Replace(withLB, tc.old, tc.new, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s:\n got  %v\n want %q", tc.old, tc.new, err, tc.want)
		}
	}
	noServices := withLB[:strings.Index(withLB, "    services:")] + withLB[strings.Index(withLB, "    snat_to:"):]
	if _, err := Parse("lb.yaml", []byte(noServices)); err == nil || !strings.Contains(err.Error(), "chain[0].services: an lb needs services (expected a list of {vip, proto, port, backends})") {
		t.Errorf("no services: %v", err)
	}
}

// The balancer goes where it can be right: after a stateful firewall,
// which shares its table; never with a nat, a second lb, or a stateful
// firewall behind it, which would look up packets already translated;
// and on one worker: hand-off cannot steer its flows yet.
func TestLBPlacementInTheChain(t *testing.T) {
	ports := "ports:\n  - {name: in, interface: in0}\n  - {name: out, interface: out0}\nchain:\n"
	lbs := "  - type: lb\n    services: [{vip: 198.18.1.100, proto: tcp, port: 80, backends: [{addr: 198.18.2.10}]}]\n"
	fw := "  - type: firewall\n    rules: [accept]\n"
	fwStateless := "  - type: firewall\n    rules: [accept]\n    conntrack: {stateless: true}\n"
	nt := "  - type: nat\n    inside: [in]\n    outside: [out]\n    snat: {to: [198.18.1.1]}\n"
	for _, tc := range []struct{ name, chain, want string }{
		{"a firewall in front", fw + lbs, ""},
		{"a stateless firewall behind", lbs + fwStateless, ""},
		{"a nat in front", nt + lbs, "x.yaml:5: chain[0].type: a nat and an lb cannot share a chain yet: a nat before the lb claims every new flow first"},
		{"a nat behind", lbs + nt, "x.yaml:7: chain[1].type: a nat and an lb cannot share a chain yet: a nat after the lb shares its conntrack table"},
		{"a stateful firewall behind", lbs + fw, "x.yaml:7: chain[1].type: a stateful firewall after an lb shares its conntrack table and would look up packets the lb already translated"},
		{"a second lb", lbs + lbs, "x.yaml:7: chain[1].type: a second lb (chain[0] is one)"},
		{"two workers", strings.ReplaceAll(ports, "out0}", "out0, queues: [0, 1]}") + lbs, "x.yaml:5: chain[0].type: an lb on 2 workers (ports[].queues lists 2): hand-off steers each flow to its owner by its 5-tuple"},
	} {
		p := ports
		if tc.name == "two workers" {
			p = strings.NewReplacer("in0}", "in0, queues: [0, 1]}", "out0}", "out0, queues: [0, 1]}").Replace(ports)
			tc.chain = lbs
		}
		f, err := Parse("x.yaml", []byte(p+tc.chain))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s:\n got  %v\n want %q", tc.name, err, tc.want)
		case tc.name == "a firewall in front":
			st, err := f.Stages(&BuildContext{File: f, Check: true})
			if err != nil {
				t.Fatal(err)
			}
			a := Unwrap(st[0]).(interface{ Conntrack() *conntrack.Table }).Conntrack()
			if b := Unwrap(st[1]).(*lb.Stage).Conntrack(); a == nil || a != b {
				t.Errorf("firewall and lb: tables %p and %p, want one shared", a, b)
			}
		}
	}
}

// A reload swaps the services of every worker's stage, through the
// balancer they share, applied once per file.
func TestLBReload(t *testing.T) {
	f, err := Parse("lb.yaml", []byte(withLB))
	if err != nil {
		t.Fatal(err)
	}
	sh := NewShared()
	defer sh.Close()
	var stages []*reloadableLB
	for w := range 2 {
		st, err := f.Stages(&BuildContext{File: f, Worker: w, Shared: sh, Offline: true})
		if err != nil {
			t.Fatal(err)
		}
		stages = append(stages, st[0].(*reloadableLB))
	}
	if stages[0].Balancer() != stages[1].Balancer() {
		t.Fatal("the workers' stages do not share one balancer")
	}
	// to sends a new flow to the IPv6 service through worker w's stage
	// and returns where it went.
	to := func(w int, port uint16) string {
		var b packet.Batch
		b.Append(pt.UDP6(fmt.Sprintf("[2001:db8::1]:%d", port), "[2001:db8:100::100]:53", "q"), 0, 0).Parse()
		stages[w].ProcessAt(&b, 1e9)
		p := &b.Packets[0]
		return netip.AddrPortFrom(p.IPv6().DstAddr(), p.DstPort()).String()
	}
	if got := to(0, 1000); got != "[2001:db8:2::10]:5353" {
		t.Fatalf("before the reload: to %s", got)
	}
	nf, err := Parse("lb.yaml", []byte(strings.Replace(withLB, `"[2001:db8:2::10]:5353"`, `"[2001:db8:2::11]:5353"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stages {
		if err := s.Reload(&BuildContext{File: nf}, nf.StageConfig(0)); err != nil {
			t.Fatal(err)
		}
	}
	for w := range stages {
		if got := to(w, 2000+uint16(w)); got != "[2001:db8:2::11]:5353" {
			t.Errorf("worker %d after the reload: a new flow to %s", w, got)
		}
	}
	if got := to(0, 1000); got != "[2001:db8:2::10]:5353" {
		t.Errorf("after the reload: the established flow moved to %s", got)
	}
}
