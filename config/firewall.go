package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/xnfdev/xnf/bpf"
	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/pipeline"
)

func init() { Register("firewall", buildFirewall) }

// FirewallConfig is the YAML of a firewall stage.
type FirewallConfig struct {
	// Default is accept or drop (default drop).
	Default string `yaml:"default"`
	// Rules in nf/firewall's grammar; "in" takes a port name or index.
	Rules []string `yaml:"rules"`
	// Conntrack sizes the stage's flow tables (one per worker); a
	// stateless firewall sets stateless: true.
	Conntrack ConntrackConfig `yaml:"conntrack"`
	// Fragments sets the fragment tracking of the stage's conntrack
	// table: later fragments follow their first fragment's verdict.
	Fragments FragmentsConfig `yaml:"fragments"`
	// RejectLimit bounds the answers to rejected packets (TCP RST, ICMP
	// port unreachable) per worker; nil keeps the defaults.
	RejectLimit *struct {
		Rate  int `yaml:"rate"`  // answers a second
		Burst int `yaml:"burst"` // answers at once
	} `yaml:"reject_limit"`
	// Offload is auto (default) or off: whether the stateless drop rules
	// that firewall.PlanOffload finds safe run in the XDP program of the
	// AF_XDP ports, which drops their packets before they reach the
	// stage (only for the chain's first stage; xnf run --check prints the
	// plan). Off keeps every packet's verdict in Go.
	Offload string `yaml:"offload"`
}

// ConntrackConfig is the YAML of a conntrack table.
type ConntrackConfig struct {
	Stateless bool   `yaml:"stateless"`
	MaxFlows  int    `yaml:"max_flows"` // default 65536 per worker
	WhenFull  string `yaml:"when_full"` // refuse (default) or evict
	Timeouts  struct {
		TCPEstablished string `yaml:"tcp_established"`
		TCPSynSent     string `yaml:"tcp_syn_sent"`
		TCPTimeWait    string `yaml:"tcp_time_wait"`
		UDP            string `yaml:"udp"`
		UDPStream      string `yaml:"udp_stream"`
		ICMP           string `yaml:"icmp"`
	} `yaml:"timeouts"`
	TCPPickup bool `yaml:"tcp_pickup"`
}

// Table builds the conntrack configuration; errors name the field.
func (c ConntrackConfig) Table(sc *StageConfig, at string) (conntrack.Config, error) {
	var out conntrack.Config
	out.MaxFlows = c.MaxFlows
	if c.MaxFlows < 0 || c.MaxFlows > 1<<30 {
		return out, sc.Errorf(at+".max_flows", "%d: expected between 1 and 1073741824", c.MaxFlows)
	}
	switch c.WhenFull {
	case "", "refuse":
		out.Full = conntrack.Refuse
	case "evict":
		out.Full = conntrack.EvictOldest
	default:
		return out, sc.Errorf(at+".when_full", "%q: expected refuse or evict", c.WhenFull)
	}
	out.TCPPickup = c.TCPPickup
	for _, d := range []struct {
		name string
		s    string
		dst  *time.Duration
	}{
		{"tcp_established", c.Timeouts.TCPEstablished, &out.Timeouts.TCPEstablished},
		{"tcp_syn_sent", c.Timeouts.TCPSynSent, &out.Timeouts.TCPSynSent},
		{"tcp_time_wait", c.Timeouts.TCPTimeWait, &out.Timeouts.TCPTimeWait},
		{"udp", c.Timeouts.UDP, &out.Timeouts.UDP},
		{"udp_stream", c.Timeouts.UDPStream, &out.Timeouts.UDPStream},
		{"icmp", c.Timeouts.ICMP, &out.Timeouts.ICMP},
	} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil || v <= 0 {
			return out, sc.Errorf(at+".timeouts."+d.name, "%q: expected a duration such as 30s or 2h", d.s)
		}
		*d.dst = v
	}
	return out, nil
}

// firewallRules parses the stage's rules, turning port names after "in"
// into indices.
func firewallRules(ctx *BuildContext, sc *StageConfig, c *FirewallConfig) ([]firewall.Rule, firewall.Action, error) {
	def := firewall.Drop
	switch c.Default {
	case "", "drop":
	case "accept":
		def = firewall.Accept
	default:
		return nil, 0, sc.Errorf("default", "%q: expected accept or drop", c.Default)
	}
	var rules []firewall.Rule
	for i, text := range c.Rules {
		words := strings.Fields(text)
		for j := 0; j+1 < len(words); j++ {
			if words[j] == "in" && words[j+1] != "any" {
				if _, err := strconv.Atoi(words[j+1]); err != nil {
					idx, perr := ctx.Port(words[j+1])
					if perr != nil {
						return nil, 0, sc.Errorf(fmt.Sprintf("rules[%d]", i), "%q: in: %v", text, perr)
					}
					words[j+1] = strconv.Itoa(int(idx))
				}
			}
		}
		r, err := firewall.ParseRule(strings.Join(words, " "))
		if err != nil {
			return nil, 0, sc.Errorf(fmt.Sprintf("rules[%d]", i), "%q: %v", text, err)
		}
		rules = append(rules, r)
	}
	return rules, def, nil
}

// offloadOff reads the offload field: false for auto (the default), true
// for off.
func offloadOff(sc *StageConfig, c *FirewallConfig) (bool, error) {
	switch c.Offload {
	case "", "auto":
		return false, nil
	case "off":
		return true, nil
	}
	return false, sc.Errorf("offload", "%q: expected auto or off", c.Offload)
}

// FirewallOffload is what offload planning decided for one firewall stage
// of a file (see firewall.PlanOffload): what `xnf run --check` reports,
// and what `xnf run` puts in the XDP programs of the AF_XDP ports.
type FirewallOffload struct {
	Stage int  // index in the chain
	Off   bool // offload: off; Plan is nil
	// Blocked says why no rule of the stage runs in XDP, whatever the
	// plan: the firewall is not the chain's first stage (a stage before
	// it sees, and may rewrite, answer or drop, packets first), or the
	// file has no AF_XDP port. "" when the plan's entries run in XDP.
	Blocked string
	Rules   []string // the rules as written
	Plan    *firewall.OffloadPlan
}

// FirewallOffloads plans the offload of every firewall stage, in chain
// order.
func (f *File) FirewallOffloads() ([]FirewallOffload, error) {
	var out []FirewallOffload
	for i, st := range f.Chain {
		if st.Type != "firewall" {
			continue
		}
		sc := f.StageConfig(i)
		var c FirewallConfig
		if err := sc.Decode(&c); err != nil {
			return nil, err
		}
		off, err := offloadOff(sc, &c)
		if err != nil {
			return nil, err
		}
		fo := FirewallOffload{Stage: i, Off: off, Rules: c.Rules}
		if !off {
			rules, _, err := firewallRules(&BuildContext{File: f, Check: true}, sc, &c)
			if err != nil {
				return nil, err
			}
			if fo.Plan, err = firewall.PlanOffload(rules); err != nil {
				return nil, sc.Errorf("rules", "%v", err)
			}
			if i > 0 {
				fo.Blocked = fmt.Sprintf("chain[0] (%s) sees packets before it", f.Chain[0].Type)
			} else if !f.hasXDPPort() {
				fo.Blocked = "no port is an AF_XDP port, where XDP could drop them"
			}
		}
		out = append(out, fo)
	}
	return out, nil
}

func buildFirewall(ctx *BuildContext, sc *StageConfig) (pipeline.Stage, error) {
	var c FirewallConfig
	if err := sc.Decode(&c); err != nil {
		return nil, err
	}
	if _, err := offloadOff(sc, &c); err != nil {
		return nil, err
	}
	rules, def, err := firewallRules(ctx, sc, &c)
	if err != nil {
		return nil, err
	}
	fw, err := firewall.New(1, rules, def)
	if err != nil {
		return nil, sc.Errorf("rules", "%v", err)
	}
	// The service's pre-filter, when it loaded one (Shared.XDPOffload):
	// worker 0's firewall installs its rules and counts its drops, once
	// for every worker (XDP drops belong to no worker's queue).
	var xdpOff firewall.Offloader
	if o := ctx.Shared.xdpOffload(); o != nil && sc.index == 0 {
		if ctx.Worker == 0 {
			xdpOff = XDPOffloader(o)
			if err := fw.SetOffload(xdpOff); err != nil {
				return nil, sc.Errorf("offload", "%v", err)
			}
		}
	}
	// A service that started this firewall with offload off loaded its
	// programs without the pre-filter: offload auto needs a restart.
	noPrefilter := ctx.Shared != nil && sc.index == 0 && ctx.Shared.xdpOffload() == nil && ctx.File.hasXDPPort()
	limit := func(s *firewall.Stage) (pipeline.Stage, error) {
		if l := c.RejectLimit; l != nil {
			if l.Rate < 0 || l.Rate > 1e9 {
				return nil, sc.Errorf("reject_limit.rate", "%d: expected answers a second, 0 to 1000000000", l.Rate)
			}
			if l.Burst < 0 || l.Burst > 1e9 {
				return nil, sc.Errorf("reject_limit.burst", "%d: expected answers at once, 0 to 1000000000", l.Burst)
			}
			if l.Burst == 0 && l.Rate > 0 {
				return nil, sc.Errorf("reject_limit.burst", "0 answers nothing at any rate: expected at least 1 (or rate 0 as well, to answer none)")
			}
			s.SetRejectLimit(l.Rate, l.Burst)
		}
		return &reloadableFirewall{Stage: s, xdp: xdpOff, noPrefilter: noPrefilter}, nil
	}
	if c.Conntrack.Stateless {
		if c.Fragments.set() {
			return nil, sc.Errorf("fragments", "a stateless firewall follows no fragments (the tracker is its conntrack table's): drop fragments or conntrack.stateless")
		}
		return limit(firewall.NewStage(fw, nil, 0))
	}
	cc, err := c.Conntrack.Table(sc, "conntrack")
	if err != nil {
		return nil, err
	}
	if err := c.Fragments.fragmentsFor(ctx, sc, &cc); err != nil {
		return nil, err
	}
	ct, shared, err := ctx.conntrackFor(sc, cc)
	if err != nil {
		return nil, err
	}
	if shared {
		// An earlier stage tracks: look packets up in its table.
		return limit(firewall.NewStageShared(fw, ct, 0))
	}
	return limit(firewall.NewStage(fw, ct, 0))
}

// reloadableFirewall adds Reload to the firewall stage.
type reloadableFirewall struct {
	*firewall.Stage
	// xdp is the service's pre-filter, on worker 0's firewall of
	// chain[0] when the ports loaded one; noPrefilter is set when the
	// service's ports could have but did not (offload off at start).
	xdp         firewall.Offloader
	noPrefilter bool
}

// Reload swaps in the rules and default of a new configuration
// atomically, and their offload. Offload auto after a start with offload
// off is refused (the XDP programs were loaded without the pre-filter);
// auto to off takes the offloaded rules back into Go. Conntrack settings
// take effect on restart only.
func (r *reloadableFirewall) Reload(ctx *BuildContext, sc *StageConfig) error {
	var c FirewallConfig
	if err := sc.Decode(&c); err != nil {
		return err
	}
	off, err := offloadOff(sc, &c)
	if err != nil {
		return err
	}
	if !off && r.noPrefilter {
		return sc.Errorf("offload", "auto: the service started with offload off, so its XDP programs have no pre-filter: restart xnf to turn it on")
	}
	rules, def, err := firewallRules(ctx, sc, &c)
	if err != nil {
		return err
	}
	fw := r.Firewall()
	if r.xdp != nil && off {
		// Into Go first, then the new rules: every packet is decided by
		// the old set or the new one.
		if err := fw.SetOffload(nil); err != nil {
			return sc.Errorf("offload", "%v", err)
		}
	}
	if _, err := fw.Replace(rules, def); err != nil {
		return sc.Errorf("rules", "%v", err)
	}
	if r.xdp != nil && !off && fw.Offloaded() == nil {
		if err := fw.SetOffload(r.xdp); err != nil {
			return sc.Errorf("offload", "%v", err)
		}
	}
	return nil
}

// Unwrap returns the firewall stage.
func (r *reloadableFirewall) Unwrap() pipeline.Stage { return r.Stage }

// hasXDPPort reports whether some port of f is an AF_XDP port.
func (f *File) hasXDPPort() bool {
	for i := range f.Ports {
		if f.Ports[i].PortType() == "afxdp" {
			return true
		}
	}
	return false
}

// offloads reports whether f's chain starts with a firewall whose
// offloaded rules run in XDP: offload auto, and an AF_XDP port.
func (f *File) offloads() bool {
	if len(f.Chain) == 0 || f.Chain[0].Type != "firewall" || !f.hasXDPPort() {
		return false
	}
	var c FirewallConfig
	if err := f.StageConfig(0).Decode(&c); err != nil {
		return false
	}
	return c.Offload == "" || c.Offload == "auto"
}

// firewallXDP is chain[0]'s value in a Shared when its rules run in XDP:
// the service's pre-filter.
type firewallXDP struct{ *bpf.Offload }

// XDPOffload returns the firewall pre-filter that the AF_XDP ports of a
// service running f are to load (xdp.Interface.Offload), or nil when f's
// first stage is not a firewall with offload auto, or f has no AF_XDP
// port. It is made once per Shared, on the first call; its maps are
// created when the first program loads with it, and closed with s. The
// firewall built with s as its BuildContext's Shared installs its rules.
func (s *Shared) XDPOffload(f *File) *bpf.Offload {
	if s == nil || !f.offloads() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if v, ok := s.values[0].(*firewallXDP); ok {
		return v.Offload
	}
	v := &firewallXDP{bpf.NewOffload()}
	s.values[0] = v
	s.order = append(s.order, 0)
	return v.Offload
}

// xdpOffload is the pre-filter XDPOffload made, or nil.
func (s *Shared) xdpOffload() *bpf.Offload {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.values[0].(*firewallXDP); ok {
		return v.Offload
	}
	return nil
}

// XDPOffloader is the firewall's side of a bpf.Offload: it hands the
// plan's entries to the XDP tables as plain data and reads their
// counters. A Go program that builds its own Spec sets the same Offload
// on its xdp.Interface ports and gives this to Firewall.SetOffload of
// one of its workers' firewalls.
func XDPOffloader(o *bpf.Offload) firewall.Offloader { return xdpOffloader{o} }

type xdpOffloader struct{ o *bpf.Offload }

func (x xdpOffloader) Offload(entries []firewall.OffloadEntry) ([]uint64, error) {
	rules := make([]bpf.OffloadRule, len(entries))
	for i, e := range entries {
		rules[i] = bpf.OffloadRule{InPort: e.InPort, Proto: e.Proto, Src: e.Src, Dst: e.Dst,
			SrcPort: [2]uint16{e.SrcPort.Lo, e.SrcPort.Hi}, DstPort: [2]uint16{e.DstPort.Lo, e.DstPort.Hi}}
	}
	return x.o.Install(rules)
}

func (x xdpOffloader) Hits() ([]uint64, error) { return x.o.Hits() }
