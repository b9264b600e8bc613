package config

import (
	"strings"
	"testing"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/nat"
)

const withNAT = `ports:
  - name: in
    interface: in0
  - name: out
    interface: out0
chain:
  - type: nat
    inside: [in]
    outside: [out]
    snat:
      to: [198.18.1.1, 198.18.1.3]
      ports: 20000-29999
      except: [198.18.0.0/24, 198.18.1.7]
    dnat:
      - {match: "tcp 198.18.1.1:8080", to: "198.18.0.1:80"}
      - {match: "udp 198.18.1.1:5000-5009", to: "198.18.0.1"}
    fragments: {cache: 256, timeout: 10s}
    conntrack:
      max_flows: 4096
`

func TestNATStageFromYAML(t *testing.T) {
	f, err := Parse("nat.yaml", []byte(withNAT))
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stages(&BuildContext{File: f, Check: true})
	if err != nil || st[0].Name() != "nat" {
		t.Fatalf("stages %v %v", st, err)
	}
	ns, ok := Unwrap(st[0]).(*nat.Stage)
	if !ok {
		t.Fatalf("stage is a %T", st[0])
	}
	if fr := ns.Conntrack().Fragments(); fr == nil || fr.Cap() != 256 || fr.Timeout().Seconds() != 10 {
		t.Errorf("fragment tracker %+v", fr)
	}
	var c NATConfig
	f.StageConfig(0).Decode(&c)
	cfg, err := natConfig(&BuildContext{File: f, Check: true}, f.StageConfig(0), &c)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Pool) != 2 || cfg.PortMin != 20000 || cfg.PortMax != 29999 || len(cfg.Except) != 2 || cfg.Except[1].Bits() != 32 ||
		cfg.Inside[0] != 0 || cfg.Outside[0] != 1 {
		t.Errorf("config %+v", cfg)
	}
	if len(cfg.Forwards) != 2 || cfg.Forwards[0].String() != "tcp 198.18.1.1:8080 -> 198.18.0.1:80" ||
		cfg.Forwards[1].String() != "udp 198.18.1.1:5000-5009 -> 198.18.0.1:5000" {
		t.Errorf("forwards %v", cfg.Forwards)
	}
}

func TestNATMistakesNameLineAndField(t *testing.T) {
	for _, tc := range []struct{ old, new, want string }{
		{"inside: [in]", "inside: [lan]", `nat.yaml:8: chain[0].inside[0]: unknown port "lan" (expected one of in, out)`},
		{"inside: [in]", "inside: []", `nat.yaml:8: chain[0].inside: a nat needs at least one inside port`},
		{"outside: [out]", "outside: [out, in]", `nat.yaml:8: chain[0].inside[0]: port "in" is also an outside port`},
		{"to: [198.18.1.1, 198.18.1.3]", "to: [198.18.1.1, 198.18.1.300]", `nat.yaml:11: chain[0].snat.to[1]: "198.18.1.300": expected an IPv4 address`},
		{"to: [198.18.1.1, 198.18.1.3]", "to: [2001:db8::1]", `nat.yaml:11: chain[0].snat.to[0]: "2001:db8::1": expected an IPv4 address`},
		{"ports: 20000-29999", "ports: 29999-20000", `nat.yaml:12: chain[0].snat.ports: "29999-20000": expected a port or a range such as 1024-65535`},
		{"ports: 20000-29999", "ports: 0-10", `nat.yaml:12: chain[0].snat.ports: "0-10": expected a port`},
		{"ports: 20000-29999", "ports: lots", `nat.yaml:12: chain[0].snat.ports: "lots": expected a port`},
		{"198.18.1.7]", "nowhere]", `nat.yaml:13: chain[0].snat.except[1]: "nowhere": expected an address or a prefix`},
		{`"tcp 198.18.1.1:8080"`, `"sctp 198.18.1.1:8080"`, `nat.yaml:15: chain[0].dnat[0].match: "sctp 198.18.1.1:8080": protocol "sctp": expected tcp or udp`},
		{`"tcp 198.18.1.1:8080"`, `"tcp 198.18.1.1"`, `nat.yaml:15: chain[0].dnat[0].match: "tcp 198.18.1.1": expected an IPv4 address and a port`},
		{`"tcp 198.18.1.1:8080"`, `"tcp:8080"`, `nat.yaml:15: chain[0].dnat[0].match: "tcp:8080": expected "tcp|udp ADDRESS:PORT[-PORT]"`},
		{`"udp 198.18.1.1:5000-5009"`, `"udp 198.18.1.1:5009-5000"`, `nat.yaml:16: chain[0].dnat[1].match: port "5009-5000": expected a port or a range`},
		{`to: "198.18.0.1:80"`, `to: "198.18.0.1:http"`, `nat.yaml:15: chain[0].dnat[0].to: "198.18.0.1:http": port "http": expected 1 to 65535`},
		{`to: "198.18.0.1"}`, `to: "198.18.0.1:65530"}`, `nat.yaml:16: chain[0].dnat[1].to: "198.18.0.1:65530": the range of 10 ports starting at 65530 runs past 65535`},
		{`to: "198.18.0.1"}`, `to: "inside"}`, `nat.yaml:16: chain[0].dnat[1].to: "inside": expected an IPv4 address`},
		{"timeout: 10s", "timeout: soon", `nat.yaml:17: chain[0].fragments.timeout: "soon": expected a duration such as 2s`},
		{"cache: 256", "cache: -5", `nat.yaml:17: chain[0].fragments.cache: -5: expected datagrams followed at once`},
		{"max_flows: 4096", "max_flows: -1", `nat.yaml:19: chain[0].conntrack.max_flows: -1: expected between 1 and 1073741824`},
		{"    conntrack:", "    conntrak:", `nat.yaml:18: chain[0].conntrak: unknown field (expected one of inside, outside, snat, dnat, fragments, conntrack)`},
		{"      ports: 20000", "      port: 20000", `nat.yaml:12: chain[0].snat.port: unknown field (expected one of to, ports, except)`},
	} {
		if !strings.Contains(withNAT, tc.old) {
			t.Fatalf("test bug: %q not in the file", tc.old)
		}
		_, err := Parse("nat.yaml", []byte(strings.Replace(withNAT, tc.old, tc.new, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s:\n got  %v\n want %q", tc.old, tc.new, err, tc.want)
		}
	}
	// Neither a pool nor rules.
	noWork := strings.Replace(withNAT, "    snat:\n      to: [198.18.1.1, 198.18.1.3]\n", "    snat:\n", 1)
	noWork = noWork[:strings.Index(noWork, "    dnat:")] + noWork[strings.Index(noWork, "    fragments:"):]
	if _, err := Parse("nat.yaml", []byte(noWork)); err == nil || !strings.Contains(err.Error(), "chain[0].snat: a nat needs snat.to addresses or dnat rules") {
		t.Errorf("no pool, no rules: %v", err)
	}
}

// A stage that shares an earlier stage's table shares its fragment
// tracker too, and may not set one of its own.
func TestFragmentsOnASharingStageAreRefused(t *testing.T) {
	file := "ports:\n  - {name: in, interface: in0}\n  - {name: out, interface: out0}\nchain:\n" +
		"  - type: firewall\n    rules: [accept]\n" +
		"  - type: nat\n    inside: [in]\n    outside: [out]\n    snat: {to: [198.18.1.1]}\n    fragments: {cache: 64}\n"
	f, err := Parse("share.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Stages(&BuildContext{File: f, Check: true})
	want := "share.yaml:11: chain[1].fragments: this stage shares the conntrack table of an earlier stage, whose fragment tracking applies: set fragments there"
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

// The first stage that tracks makes the worker's conntrack table and the
// ones after it share it, in either order.
func TestTrackingStagesShareOneConntrackTable(t *testing.T) {
	fw := "  - type: firewall\n    rules: [accept]\n"
	nt := "  - type: nat\n    inside: [in]\n    outside: [out]\n    snat: {to: [198.18.1.1]}\n"
	for _, chain := range []string{fw + nt, nt + fw} {
		f, err := Parse("share.yaml", []byte("ports:\n  - {name: in, interface: in0}\n  - {name: out, interface: out0}\nchain:\n"+chain))
		if err != nil {
			t.Fatal(err)
		}
		st, err := f.Stages(&BuildContext{File: f, Check: true})
		if err != nil {
			t.Fatal(err)
		}
		var tables []*conntrack.Table
		for _, s := range st {
			tables = append(tables, Unwrap(s).(interface{ Conntrack() *conntrack.Table }).Conntrack())
		}
		if tables[0] == nil || tables[0] != tables[1] {
			t.Errorf("%s and %s: conntrack tables %p and %p, want one shared", st[0].Name(), st[1].Name(), tables[0], tables[1])
		}
	}
}
