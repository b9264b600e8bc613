package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/nf/router"
	"github.com/xnfdev/xnf/packet"
)

const valid = `# the demo chain, minus what has not landed
ports:
  - name: in
    interface: in0
    mode: native
    filter:
      ethertype: ipv4
  - name: out
    interface: out0
umem:
  frame_size: 2048
  frames: 4096
workers:
  cpus: [1]
  burst: 64
chain:
  - type: router
    interfaces:
      - port: in
        addrs: [198.18.0.2/24]
        mac: 02:00:00:00:00:02
      - port: out
        addrs: [198.18.1.1/24]
        mac: 02:00:00:00:01:01
    routes:
      - to: 198.19.0.0/16
        via: [198.18.1.2]
        port: out
metrics:
  listen: 127.0.0.1:9464
`

func TestValidFileLoads(t *testing.T) {
	f, err := Parse("chain.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Ports) != 2 || f.Ports[0].Interface != "in0" || f.Ports[1].Queues[0] != 0 || len(f.Chain) != 1 || f.Chain[0].Type != "router" {
		t.Errorf("parsed %+v", f)
	}
	if out := f.DefaultOut(); out[0] != 1 || out[1] != 0 {
		t.Errorf("default outputs %v, want in->out and out->in", out)
	}
	st, err := f.Stages(&BuildContext{File: f, Check: true})
	if err != nil || len(st) != 1 || st[0].Name() != "router" {
		t.Errorf("stages %v, %v", st, err)
	}
}

func TestMistakesNameFileLineAndField(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown top-level field", "umem:", "umen:", `chain.yaml:10: umen: unknown field (expected one of ports, umem, workers, chain, forward, metrics, log)`},
		{"unknown port field", "    mode: native", "    moed: native", `chain.yaml:5: ports[0].moed: unknown field`},
		{"bad XDP mode", "mode: native", "mode: turbo", `chain.yaml:5: ports[0].mode: unknown XDP mode "turbo" (expected auto, native, generic or offload)`},
		{"bad ethertype", "ethertype: ipv4", "ethertype: ipx", `chain.yaml:7: ports[0].filter: ethertype "ipx": expected ipv4, ipv6, arp or a number`},
		{"frame size not allowed", "frame_size: 2048", "frame_size: 3000", `chain.yaml:11: umem.frame_size: 3000: expected 2048 or 4096`},
		{"a string where a number goes", "frames: 4096", "frames: many", "chain.yaml:12: umem.frames: cannot unmarshal !!str `many` into int"},
		{"a number too big for its field", "burst: 64", "burst: 99999999999999999999", "chain.yaml:15: workers.burst: cannot unmarshal"},
		{"a realtime worker that never blocks", "burst: 64", "burst: 64\n  busy_poll: true", `chain.yaml:16: workers.busy_poll: a realtime worker that never blocks starves the kernel's receive work on its core`},
		{"realtime priority out of range", "burst: 64", "burst: 64\n  realtime: 120", `workers.realtime: 120: expected a SCHED_FIFO priority between 1 and 99, or 0 for none`},
		{"busy-poll budget out of range", "    interface: out0", "    interface: out0\n    busy_poll_budget: 5000", `ports[1].busy_poll_budget: 5000: expected between 1 and 1024 frames`},
		{"duplicate port name", "name: out", "name: in", `chain.yaml:8: ports[1].name: port name "in" is already used by ports[0]`},
		{"unknown stage type", "type: router", "type: teleporter", `chain.yaml:17: chain[0].type: unknown stage type "teleporter" (expected one of`},
		{"unknown stage field", "    routes:", "    rootes:", `chain.yaml:25: chain[0].rootes: unknown field (expected one of interfaces, routes, neighbors, fib, icmp_rate, neighbor_reachable)`},
		{"stage names an unknown port", "port: out\n", "port: wan\n", `chain.yaml:22: chain[0].interfaces[1].port: unknown port "wan" (expected one of in, out)`},
		{"bad address in a stage", "198.18.0.2/24", "198.18.0.300/24", `chain.yaml:20: chain[0].interfaces[0].addrs[0]: "198.18.0.300/24" is not an address with prefix length`},
		{"bad MAC in a stage", "mac: 02:00:00:00:01:01", "mac: 02:00:00:00:01", `chain.yaml:24: chain[0].interfaces[1].mac: "02:00:00:00:01" is not a MAC address`},
		{"bad metrics address", "listen: 127.0.0.1:9464", "listen: localhost", `chain.yaml:30: metrics.listen: "localhost": expected host:port`},
		{"YAML syntax error", "  burst: 64", "  burst: [64", `chain.yaml:14: did not find expected`},
		{"queue lists of different lengths", "    interface: out0", "    interface: out0\n    queues: [0, 1]", `chain.yaml:10: ports[1].queues: port "out" lists 2 queues but ports[0] lists 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(valid, tc.old) {
				t.Fatalf("test bug: %q not in the valid file", tc.old)
			}
			_, err := Parse("chain.yaml", []byte(strings.Replace(valid, tc.old, tc.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got  %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}

func TestEmptyAndPortlessFiles(t *testing.T) {
	if _, err := Parse("e.yaml", []byte("")); err == nil || !strings.Contains(err.Error(), "e.yaml: empty file") {
		t.Errorf("empty: %v", err)
	}
	if _, err := Parse("p.yaml", []byte("chain: []\n")); err == nil || !strings.Contains(err.Error(), "no ports") {
		t.Errorf("no ports: %v", err)
	}
}

const withFirewall = `ports:
  - name: in
    interface: in0
  - name: out
    interface: out0
chain:
  - type: firewall
    default: drop
    rules:
      - accept state established,related
      - accept in in proto tcp dport 8080 state new
      - drop proto udp dport 53
    conntrack:
      max_flows: 4096
      when_full: evict
      timeouts:
        udp: 20s
    reject_limit: {rate: 10, burst: 5}
    fragments: {cache: 256, timeout: 1s}
`

func TestFirewallStageFromYAML(t *testing.T) {
	f, err := Parse("fw.yaml", []byte(withFirewall))
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stages(&BuildContext{File: f, Check: true})
	if err != nil || st[0].Name() != "firewall" {
		t.Fatalf("stages %v %v", st, err)
	}
	if r, b := Unwrap(st[0]).(*firewall.Stage).RejectLimit(); r != 10 || b != 5 {
		t.Errorf("reject limit %d/s, burst %d: want 10 and 5 from the file", r, b)
	}
	if fr := Unwrap(st[0]).(*firewall.Stage).Conntrack().Fragments(); fr == nil || fr.Cap() != 256 || fr.Timeout().Seconds() != 1 {
		t.Errorf("fragment tracker %+v: want 256 datagrams, 1s from the file", fr)
	}
	for _, tc := range []struct{ old, new, want string }{
		{"rate: 10", "rate: -1", `fw.yaml:18: chain[0].reject_limit.rate: -1: expected answers a second`},
		{"burst: 5", "burst: lots", `fw.yaml:18: chain[0].reject_limit.burst`},
		{"burst: 5", "burst: 0", `fw.yaml:18: chain[0].reject_limit.burst: 0 answers nothing at any rate`},
		{"dport 53", "dport 70000", `fw.yaml:12: chain[0].rules[2]: "drop proto udp dport 70000": `},
		{"accept in in", "accept in wan", `fw.yaml:11: chain[0].rules[1]: "accept in wan proto tcp dport 8080 state new": in: unknown port "wan" (expected one of in, out)`},
		{"default: drop", "default: maybe", `fw.yaml:8: chain[0].default: "maybe": expected accept or drop`},
		{"when_full: evict", "when_full: panic", `fw.yaml:15: chain[0].conntrack.when_full: "panic": expected refuse or evict`},
		{"udp: 20s", "udp: soon", `fw.yaml:17: chain[0].conntrack.timeouts.udp: "soon": expected a duration`},
		{"max_flows: 4096", "max_flow: 4096", `fw.yaml:14: chain[0].conntrack.max_flow: unknown field (expected one of stateless, max_flows, when_full, timeouts, tcp_pickup)`},
		{"    default: drop", "    default: drop\n    offload: xdp", `fw.yaml:9: chain[0].offload: "xdp": expected auto or off`},
		{"cache: 256", "cache: -2", `fw.yaml:19: chain[0].fragments.cache: -2: expected datagrams followed at once, 1 to 16777216, 0 for the default or -1 for none`},
		{"timeout: 1s", "timeout: 0s", `fw.yaml:19: chain[0].fragments.timeout: "0s": expected a duration such as 2s`},
		{"timeout: 1s}", "timeout: 1s, size: 3}", `fw.yaml:19: chain[0].fragments.size: unknown field (expected one of cache, timeout)`},
		{"max_flows: 4096", "stateless: true", `fw.yaml:19: chain[0].fragments: a stateless firewall follows no fragments`},
	} {
		_, err := Parse("fw.yaml", []byte(strings.Replace(withFirewall, tc.old, tc.new, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s:\n got  %v\n want %q", tc.old, tc.new, err, tc.want)
		}
	}
}

// Offload planning reads the stage's rules as the builder does (port
// names included), plans only a first stage, and is skipped when off.
func TestFirewallOffloadPlans(t *testing.T) {
	file := strings.Replace(withFirewall, "    rules:\n", "    rules:\n      - drop in out src 203.0.113.0/24\n", 1) + `  - type: firewall
    name: second
    conntrack: {stateless: true}
    rules:
      - drop proto udp dport 1900
  - type: firewall
    offload: off
    conntrack: {stateless: true}
    rules:
      - drop proto udp dport 1900
`
	f, err := Parse("fw.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	fos, err := f.FirewallOffloads()
	if err != nil {
		t.Fatal(err)
	}
	if len(fos) != 3 {
		t.Fatalf("%d plans, want one per firewall stage (3)", len(fos))
	}
	first := fos[0]
	if first.Stage != 0 || first.Off || first.Blocked != "" || len(first.Rules) != 4 || first.Rules[0] != "drop in out src 203.0.113.0/24" {
		t.Fatalf("first stage: %+v", first)
	}
	want := []string{"offloaded", "accept stays in Go (XDP only drops)", "accept stays in Go (XDP only drops)",
		"shadowed by rule 1 (accept state established,related)"}
	for i, w := range want {
		if got := first.Plan.Why(i); got != w {
			t.Errorf("rule %d: %q, want %q", i, got, w)
		}
	}
	if e := first.Plan.Entries; len(e) != 1 || e[0].InPort != 1 || e[0].Rule != 0 {
		t.Errorf("entries %+v, want rule 0 on port 1 (out)", e)
	}
	if fos[1].Stage != 1 || fos[1].Blocked != "chain[0] (firewall) sees packets before it" || fos[1].Plan == nil {
		t.Errorf("second stage: %+v", fos[1])
	}
	if !fos[2].Off || fos[2].Plan != nil {
		t.Errorf("offload: off: %+v", fos[2])
	}
}

func TestRouterReloadFollowsStaticRoutes(t *testing.T) {
	f, err := Parse("chain.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stages(&BuildContext{File: f, Check: true})
	if err != nil {
		t.Fatal(err)
	}
	r := Unwrap(st[0]).(*router.Router)
	if _, ok := r.FIB().Lookup(netip.MustParseAddr("198.19.1.1")); !ok {
		t.Fatal("the static route to 198.19.0.0/16 is missing")
	}
	nf, err := Parse("chain.yaml", []byte(strings.Replace(valid, "to: 198.19.0.0/16", "to: 198.20.0.0/16", 1)))
	if err != nil {
		t.Fatal(err)
	}
	rl, ok := st[0].(interface {
		Reload(*BuildContext, *StageConfig) error
	})
	if !ok {
		t.Fatal("the router stage cannot reload")
	}
	if err := rl.Reload(&BuildContext{File: nf, Check: true}, nf.StageConfig(0)); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.FIB().Lookup(netip.MustParseAddr("198.19.1.1")); ok {
		t.Error("the removed route still routes")
	}
	if nh, ok := r.FIB().Lookup(netip.MustParseAddr("198.20.1.1")); !ok || nh.Gateway.String() != "198.18.1.2" {
		t.Errorf("the new route: %v %v", nh, ok)
	}
	if _, ok := r.FIB().Lookup(netip.MustParseAddr("198.18.0.9")); !ok {
		t.Error("the connected route went away on reload")
	}
}

// Per-worker flow state on more than one worker is right only if both
// directions of a flow meet one worker: such a file gets a steering for
// its workers' hand-off (symmetric without a NAT, by the outside endpoint
// with one), and what hand-off cannot make correct is refused where the
// stage is, with why and what to do. A stateless chain needs no steering.
func TestFlowStateOnManyWorkersIsSteered(t *testing.T) {
	twoQueues := func(s string) string {
		return strings.NewReplacer("interface: in0", "interface: in0\n    queues: [0, 1]",
			"interface: out0", "interface: out0\n    queues: [0, 1]").Replace(s)
	}
	for _, tc := range []struct {
		name, file string
		nat        bool
	}{{"firewall", twoQueues(withFirewall), false}, {"nat", twoQueues(withNAT), true}} {
		f, err := Parse("fw.yaml", []byte(tc.file))
		if err != nil {
			t.Fatalf("%s on 2 workers: %v", tc.name, err)
		}
		c, err := f.steeringConfig()
		if err != nil || c == nil || c.Workers != 2 || c.NAT != tc.nat {
			t.Fatalf("%s on 2 workers: steering %+v, %v", tc.name, c, err)
		}
		if s, err := f.Steering(); err != nil || s == nil || s.Workers() != 2 {
			t.Errorf("%s: Steering() = %v, %v", tc.name, s, err)
		}
	}
	f, err := Parse("nat.yaml", []byte(twoQueues(withNAT)))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := f.steeringConfig()
	if !slices.Equal(c.Outside, []uint16{1}) || !slices.Contains(c.Except, netip.MustParsePrefix("198.18.0.0/24")) ||
		!slices.Contains(c.Forwarded, conntrack.PortRange{Proto: packet.ProtoTCP, Addr: netip.MustParseAddr("198.18.0.1"), Min: 80, Max: 80}) ||
		!slices.Contains(c.Forwarded, conntrack.PortRange{Proto: packet.ProtoUDP, Addr: netip.MustParseAddr("198.18.0.1"), Min: 5000, Max: 5009}) {
		t.Errorf("the NAT's steering: %+v", c)
	}
	twoNATs := twoQueues(withNAT) + withNAT[strings.Index(withNAT, "  - type: nat"):]
	if _, err := Parse("nat.yaml", []byte(twoNATs)); err == nil || !strings.Contains(err.Error(), "chain[1].type: a second nat stage on 2 workers") {
		t.Errorf("two nat stages on 2 workers: %v", err)
	}
	// A reload that would move flows between workers is refused there,
	// and not on one worker.
	for _, tc := range []struct {
		file, old, new string
		refused        bool
	}{
		{twoQueues(withNAT), "except: [198.18.0.0/24", "except: [198.18.0.0/25", true},
		{twoQueues(withNAT), `to: "198.18.0.1:80"`, `to: "198.18.0.2:80"`, true},
		{twoQueues(withNAT), "ports: 20000-29999", "ports: 20000-29990", false},
		{withNAT, "except: [198.18.0.0/24", "except: [198.18.0.0/25", false},
	} {
		f, err := Parse("nat.yaml", []byte(tc.file))
		if err != nil {
			t.Fatal(err)
		}
		st, err := f.Stages(&BuildContext{File: f, Check: true})
		if err != nil {
			t.Fatal(err)
		}
		nf, err := Parse("nat.yaml", []byte(strings.Replace(tc.file, tc.old, tc.new, 1)))
		if err != nil {
			t.Fatalf("%s: %v", tc.new, err)
		}
		err = st[0].(interface {
			Reload(*BuildContext, *StageConfig) error
		}).Reload(&BuildContext{File: nf, Check: true}, nf.StageConfig(0))
		if tc.refused != (err != nil) || err != nil && !strings.Contains(err.Error(), "restart to change them") {
			t.Errorf("%d workers, reload to %s: %v", f.WorkerCount(), tc.new, err)
		}
	}
	stateless := strings.NewReplacer("      - accept state established,related\n", "",
		" state new", "", "    conntrack:\n      max_flows: 4096\n      when_full: evict\n      timeouts:\n        udp: 20s\n",
		"    conntrack: {stateless: true}\n", "    fragments: {cache: 256, timeout: 1s}\n", "").Replace(twoQueues(withFirewall))
	f, err = Parse("fw.yaml", []byte(stateless))
	if err != nil {
		t.Fatalf("a stateless firewall on 2 workers: %v", err)
	}
	if n := f.WorkerCount(); n != 2 {
		t.Errorf("%d workers, want 2", n)
	}
	if s, err := f.Steering(); s != nil || err != nil {
		t.Errorf("a stateless chain on 2 workers: steering %v, %v", s, err)
	}
	one, err := Parse("one.yaml", []byte(withFirewall))
	if err != nil {
		t.Errorf("one worker: %v", err)
	}
	if s, err := one.Steering(); s != nil || err != nil {
		t.Errorf("one worker: steering %v, %v", s, err)
	}
}
