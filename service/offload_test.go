package service

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/pipeline"
)

// offloadChain is a firewall -> router chain on the standard lab with the
// given firewall lines (rules, offload).
func offloadChain(t *testing.T, queues string, firewall string) *config.File {
	t.Helper()
	yaml := fmt.Sprintf(`ports:
  - {name: in, interface: in0, queues: %s}
  - {name: out, interface: out0, queues: %s}
workers: {realtime: 0, nice: 0}
metrics: {listen: "off"}
chain:
  - type: firewall
    default: accept
    conntrack: {stateless: true}
%s
  - type: router
    interfaces:
      - {port: in, addrs: [%s/24]}
      - {port: out, addrs: [%s/24]}
`, queues, queues, firewall, lab.DUTInAddr, lab.DUTOutAddr)
	f, err := config.Parse("offload.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func udpFrame(t *testing.T, dport uint16) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(lab.GenAddr), DstIP: net.ParseIP(lab.SinkAddr)}
	u := &layers.UDP{SrcPort: 4000, DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	gen, _ := net.ParseMAC(lab.GenMAC)
	dut, _ := net.ParseMAC(lab.DUTInMAC)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: gen, DstMAC: dut, EthernetType: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload("x")); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// xdpMD mirrors struct xdp_md, the context BPF_PROG_TEST_RUN accepts.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// runXDP runs port's XDP program over frame as received on queue 0: the
// verdict (1 drop, 4 redirect).
func runXDP(t *testing.T, topo *lab.Topology, s *Service, port int, frame []byte) uint32 {
	t.Helper()
	d := s.Devices[port]
	var got uint32
	if err := topo.DUT.Do(func() (err error) {
		got, err = d.Program().Program.Run(&ebpf.RunOptions{Data: frame,
			Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(d.Ifindex)}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func startIn(t *testing.T, topo *lab.Topology, f *config.File) *Service {
	t.Helper()
	var s *Service
	if err := topo.DUT.Do(func() (err error) {
		s, err = Start(f, slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

func firewallMetrics(s *Service, w int) map[string]uint64 {
	m, _ := config.Find[pipeline.StageMetrics](s.Workers[w].Stages[0])
	return m.StageMetrics()
}

const (
	verdictDrop     = 1
	verdictRedirect = 4
)

// With offload auto and the firewall first, every AF_XDP port's program
// drops what the offloaded rules drop, by ingress port, and the firewall
// of worker 0 counts those drops in its rule_N_hits, dropped and
// xdp_dropped, once for both workers; Prometheus and the kernel counters
// show them too.
func TestOffloadedRulesDropInXDPAndCountInTheStage(t *testing.T) {
	topo := lab.TopologyForTest(t, "svcoff", lab.TopologyOptions{Queues: 2})
	s := startIn(t, topo, offloadChain(t, "[0, 1]", `    rules:
      - drop proto udp dport 9
      - drop in out proto udp dport 7
      - accept proto udp dport 8
      - drop proto udp dport 8`))
	cases := []struct {
		port  int
		dport uint16
		want  uint32
	}{
		{0, 9, verdictDrop},     // rule 0
		{1, 9, verdictDrop},     // rule 0, on the other port
		{1, 7, verdictDrop},     // rule 1: in out
		{0, 7, verdictRedirect}, // rule 1 is for the out port only
		{0, 8, verdictRedirect}, // accepted in Go: rule 3 stays there (shadowed)
		{0, 10, verdictRedirect},
		{0, 9, verdictDrop},
	}
	for _, c := range cases {
		if got := runXDP(t, topo, s, c.port, udpFrame(t, c.dport)); got != c.want {
			t.Errorf("port %d, UDP to %d: verdict %d, want %d", c.port, c.dport, got, c.want)
		}
	}
	m := firewallMetrics(s, 0)
	if m["rule_0_hits"] != 3 || m["rule_1_hits"] != 1 || m["xdp_dropped"] != 4 || m["dropped"] != 4 {
		t.Errorf("worker 0's firewall: %v", m)
	}
	if m1 := firewallMetrics(s, 1); m1["xdp_dropped"] != 0 || m1["rule_0_hits"] != 0 || m1["dropped"] != 0 {
		t.Errorf("worker 1's firewall counts XDP drops too: %v", m1)
	}
	var in, out uint64
	for i, d := range s.Devices {
		c, err := d.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			in = c.Dropped
		} else {
			out = c.Dropped
		}
	}
	if in != 2 || out != 2 {
		t.Errorf("the programs counted %d and %d drops, want 2 and 2", in, out)
	}
	got := scrape(t, s)
	for _, want := range []string{
		`xnf_xdp_packets_total{action=dropped,interface=in0,port=in} 2`,
		`xnf_stage_events_total{event=xdp_dropped,index=0,stage=firewall,worker=0} 4`,
		`xnf_stage_events_total{event=rule_0_hits,index=0,stage=firewall,worker=0} 3`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	var kc strings.Builder
	s.PrintKernelCounters(&kc)
	if !strings.Contains(kc.String(), "offload dropped") {
		t.Errorf("kernel counters:\n%s", kc.String())
	}
}

// With offload off, and with a firewall that is not the first stage, the
// programs drop nothing: every packet's verdict is the stage's.
func TestNoOffloadLeavesEveryPacketToTheStage(t *testing.T) {
	topo := lab.TopologyForTest(t, "svcnooff", lab.TopologyOptions{})
	s := startIn(t, topo, offloadChain(t, "[0]", `    offload: off
    rules:
      - drop proto udp dport 9`))
	if got := runXDP(t, topo, s, 0, udpFrame(t, 9)); got != verdictRedirect {
		t.Errorf("offload off: verdict %d, want redirect", got)
	}
	if m := firewallMetrics(s, 0); m["xdp_dropped"] != 0 || m["dropped"] != 0 {
		t.Errorf("offload off: %v", m)
	}
	if s.Devices[0].Program() == nil {
		t.Fatal("no program")
	}
}

// scrape renders the service's metrics (all counters) as
// "name{k=v,...} value" lines, labels sorted.
func scrape(t *testing.T, s *Service) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(s))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			fmt.Fprintf(&b, "%s{%s} %v\n", mf.GetName(), strings.Join(ls, ","), m.GetCounter().GetValue())
		}
	}
	return b.String()
}

// tag puts an outer tag (tpid, VLAN ID vid) on an Ethernet frame.
func tag(f []byte, tpid, vid uint16) []byte {
	out := append([]byte(nil), f[:12]...)
	out = append(out, byte(tpid>>8), byte(tpid), byte(vid>>8), byte(vid))
	return append(out, f[12:]...)
}

// On a trunk, offloaded rules judge each frame as the port its VLAN
// reaches, without its tag, as the stage sees it: a rule on the VLAN port
// drops its tagged frames and not the trunk's untagged ones, and frames
// of VLANs no port carries, which xnf drops unjudged, are not judged.
func TestOffloadJudgesVLANFramesAsTheirPort(t *testing.T) {
	topo := lab.TopologyForTest(t, "svcoffvl", lab.TopologyOptions{})
	yaml := fmt.Sprintf(`ports:
  - {name: trunk, interface: in0}
  - {name: v100, type: vlan, parent: trunk, vid: 100}
  - {name: out, interface: out0, vlan: 200}
workers: {realtime: 0, nice: 0}
metrics: {listen: "off"}
chain:
  - type: firewall
    default: accept
    conntrack: {stateless: true}
    rules:
      - drop in v100 proto udp dport 9
      - drop in trunk proto udp dport 8
      - drop in out proto udp dport 7
  - type: router
    interfaces:
      - {port: trunk, addrs: [198.18.2.1/24]}
      - {port: v100, addrs: [%s/24]}
      - {port: out, addrs: [%s/24]}
`, lab.DUTInAddr, lab.DUTOutAddr)
	f, err := config.Parse("vlan.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	s := startIn(t, topo, f)
	cases := []struct {
		name  string
		port  int // device: 0 the trunk (in0), 1 out0
		frame []byte
		want  uint32
	}{
		{"VLAN 100, a rule of its port", 0, tag(udpFrame(t, 9), 0x8100, 100), verdictDrop},
		{"VLAN 100 with a priority, a rule of its port", 0, tag(udpFrame(t, 9), 0x8100, 5<<13|100), verdictDrop},
		{"untagged: the trunk's own, not VLAN 100's rule", 0, udpFrame(t, 9), verdictRedirect},
		{"untagged, the trunk's rule", 0, udpFrame(t, 8), verdictDrop},
		{"priority-tagged counts as untagged", 0, tag(udpFrame(t, 8), 0x8100, 0), verdictDrop},
		{"VLAN 100 is not the trunk", 0, tag(udpFrame(t, 8), 0x8100, 100), verdictRedirect},
		{"a VLAN no port carries is not judged", 0, tag(udpFrame(t, 8), 0x8100, 300), verdictRedirect},
		{"802.1ad is not judged", 0, tag(udpFrame(t, 8), 0x88a8, 0), verdictRedirect},
		{"the access port's VLAN, its rule", 1, tag(udpFrame(t, 7), 0x8100, 200), verdictDrop},
		{"the access port drops untagged frames unjudged", 1, udpFrame(t, 7), verdictRedirect},
	}
	for _, c := range cases {
		if got := runXDP(t, topo, s, c.port, c.frame); got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, got, c.want)
		}
	}
	if m := firewallMetrics(s, 0); m["rule_0_hits"] != 2 || m["rule_1_hits"] != 2 || m["rule_2_hits"] != 1 || m["xdp_dropped"] != 5 {
		t.Errorf("firewall: %v", m)
	}
}

// A reload swaps the XDP rules with the Go rules: the new set's drops run
// in XDP at once and count from zero in its rule_N_hits, while dropped and
// xdp_dropped go on counting; offload off takes the rules back into Go and
// auto puts them back. A service started with offload off refuses auto
// (its programs have no pre-filter), and keeps its rules.
func TestReloadSwapsTheOffloadedRules(t *testing.T) {
	topo := lab.TopologyForTest(t, "svcoffrl", lab.TopologyOptions{})
	chain := func(extra string) *config.File {
		return offloadChain(t, "[0]", extra+`    rules:
      - drop proto udp dport 9
      - drop proto udp dport 10`)
	}
	s := startIn(t, topo, offloadChain(t, "[0]", `    rules:
      - drop proto udp dport 9`))
	s.File = offloadChain(t, "[0]", "    rules: [drop proto udp dport 9]")
	verdicts := func(when string, want map[uint16]uint32) {
		t.Helper()
		for dport, v := range want {
			if got := runXDP(t, topo, s, 0, udpFrame(t, dport)); got != v {
				t.Errorf("%s: UDP to %d: verdict %d, want %d", when, dport, got, v)
			}
		}
	}
	metrics := func(when string, want map[string]uint64) {
		t.Helper()
		m := firewallMetrics(s, 0)
		for k, v := range want {
			if m[k] != v {
				t.Errorf("%s: %s = %d, want %d (%v)", when, k, m[k], v, m)
			}
		}
	}
	verdicts("before the reload", map[uint16]uint32{9: verdictDrop, 10: verdictRedirect})
	runXDP(t, topo, s, 0, udpFrame(t, 9))
	runXDP(t, topo, s, 0, udpFrame(t, 9))
	metrics("before the reload", map[string]uint64{"rule_0_hits": 3, "xdp_dropped": 3, "dropped": 3})

	if _, err := s.Reload(chain("")); err != nil {
		t.Fatal(err)
	}
	metrics("right after the reload", map[string]uint64{"rule_0_hits": 0, "rule_1_hits": 0, "xdp_dropped": 3, "dropped": 3})
	verdicts("after the reload", map[uint16]uint32{9: verdictDrop, 10: verdictDrop, 11: verdictRedirect})
	metrics("after the reload", map[string]uint64{"rule_0_hits": 1, "rule_1_hits": 1, "xdp_dropped": 5, "dropped": 5})

	if _, err := s.Reload(chain("    offload: off\n")); err != nil {
		t.Fatal(err)
	}
	verdicts("offload off", map[uint16]uint32{9: verdictRedirect, 10: verdictRedirect})
	// A reload starts the rules' hits afresh; the XDP drops stay counted.
	metrics("offload off", map[string]uint64{"rule_0_hits": 0, "rule_1_hits": 0, "xdp_dropped": 5, "dropped": 5})

	if _, err := s.Reload(chain("")); err != nil {
		t.Fatal(err)
	}
	verdicts("offload auto again", map[uint16]uint32{9: verdictDrop, 10: verdictDrop})
	metrics("offload auto again", map[string]uint64{"rule_0_hits": 1, "rule_1_hits": 1, "xdp_dropped": 7})
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}

	off := startIn(t, topo, chain("    offload: off\n"))
	off.File = chain("    offload: off\n")
	_, err := off.Reload(chain(""))
	if err == nil || !strings.Contains(err.Error(), "restart xnf to turn it on") {
		t.Fatalf("offload auto on a service started with offload off: %v", err)
	}
	if got := runXDP(t, topo, off, 0, udpFrame(t, 9)); got != verdictRedirect {
		t.Errorf("after the refused reload: verdict %d, want redirect", got)
	}
}
