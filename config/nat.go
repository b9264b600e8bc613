package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/nat"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

func init() { Register("nat", buildNAT) }

// NATConfig is the YAML of a nat stage:
//
//	chain:
//	  - type: nat
//	    inside: [in]
//	    outside: [out]
//	    snat:
//	      to: [198.18.1.1]
//	      ports: 1024-65535
//	      except: [198.18.0.0/24]
//	    dnat:
//	      - {match: "tcp 198.18.1.1:8080", to: "198.18.0.1:80"}
//	    conntrack: {max_flows: 65536}
type NATConfig struct {
	// Inside and Outside name ports: new flows from inside ports are
	// source-translated, new flows from outside ports may match a dnat
	// rule.
	Inside  []string `yaml:"inside"`
	Outside []string `yaml:"outside"`
	SNAT    struct {
		// To is the address pool.
		To []string `yaml:"to"`
		// Ports is "min-max" (or one port). Unset: 1024-65535, and a
		// free original port is kept whatever its value.
		Ports string `yaml:"ports"`
		// Except lists destination prefixes reached without SNAT.
		Except []string `yaml:"except"`
	} `yaml:"snat"`
	DNAT []struct {
		// Match is "tcp|udp ADDR:PORT" or "tcp|udp ADDR:MIN-MAX".
		Match string `yaml:"match"`
		// To is "ADDR:PORT" (the first port of the range) or "ADDR"
		// (ports unchanged).
		To string `yaml:"to"`
	} `yaml:"dnat"`
	// Fragments sets the fragment tracking of the stage's conntrack
	// table (refused when the table is an earlier stage's).
	Fragments FragmentsConfig `yaml:"fragments"`
	// Conntrack sizes the stage's own flow table (one per worker).
	Conntrack ConntrackConfig `yaml:"conntrack"`
}

func natPorts(ctx *BuildContext, sc *StageConfig, field string, names []string) ([]uint16, error) {
	var out []uint16
	for i, n := range names {
		idx, err := ctx.Port(n)
		if err != nil {
			return nil, sc.Errorf(fmt.Sprintf("%s[%d]", field, i), "%v", err)
		}
		out = append(out, idx)
	}
	return out, nil
}

// parsePortRange reads "N" or "N-M" (1 <= N <= M <= 65535).
func parsePortRange(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	x, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	y := x
	var err2 error
	if isRange {
		y, err2 = strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	}
	if err1 != nil || err2 != nil || x == 0 || x > y {
		return 0, 0, fmt.Errorf("%q: expected a port or a range such as 1024-65535", s)
	}
	return uint16(x), uint16(y), nil
}

func natConfig(ctx *BuildContext, sc *StageConfig, c *NATConfig) (nat.Config, error) {
	var out nat.Config
	var err error
	if out.Inside, err = natPorts(ctx, sc, "inside", c.Inside); err != nil {
		return out, err
	}
	if out.Outside, err = natPorts(ctx, sc, "outside", c.Outside); err != nil {
		return out, err
	}
	if len(out.Inside) == 0 {
		return out, sc.Errorf("inside", "a nat needs at least one inside port")
	}
	for i, in := range out.Inside {
		for _, o := range out.Outside {
			if in == o {
				return out, sc.Errorf(fmt.Sprintf("inside[%d]", i), "port %q is also an outside port", c.Inside[i])
			}
		}
	}
	for i, s := range c.SNAT.To {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return out, sc.Errorf(fmt.Sprintf("snat.to[%d]", i), "%q: expected an IPv4 address", s)
		}
		out.Pool = append(out.Pool, a)
	}
	if c.SNAT.Ports != "" {
		if out.PortMin, out.PortMax, err = parsePortRange(c.SNAT.Ports); err != nil {
			return out, sc.Errorf("snat.ports", "%v", err)
		}
	}
	for i, s := range c.SNAT.Except {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return out, sc.Errorf(fmt.Sprintf("snat.except[%d]", i), "%q: expected an address or a prefix", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out.Except = append(out.Except, p.Masked())
	}
	// Packets for the chain's own router addresses are delivered, not
	// forwarded: like Linux, which masquerades only what it routes out,
	// never translate them (the router's answer would go to the pool).
	out.Except = append(out.Except, routerAddrs(ctx.File)...)
	for i, d := range c.DNAT {
		field := fmt.Sprintf("dnat[%d]", i)
		words := strings.Fields(d.Match)
		if len(words) != 2 {
			return out, sc.Errorf(field+".match", "%q: expected \"tcp|udp ADDRESS:PORT[-PORT]\"", d.Match)
		}
		var f nat.Forward
		switch words[0] {
		case "tcp":
			f.Proto = packet.ProtoTCP
		case "udp":
			f.Proto = packet.ProtoUDP
		default:
			return out, sc.Errorf(field+".match", "%q: protocol %q: expected tcp or udp", d.Match, words[0])
		}
		host, ports, ok := strings.Cut(words[1], ":")
		if f.Addr, err = netip.ParseAddr(host); !ok || err != nil || !f.Addr.Is4() {
			return out, sc.Errorf(field+".match", "%q: expected an IPv4 address and a port, such as 198.18.1.1:8080", d.Match)
		}
		if f.PortMin, f.PortMax, err = parsePortRange(ports); err != nil {
			return out, sc.Errorf(field+".match", "port %v", err)
		}
		host, port, hasPort := strings.Cut(d.To, ":")
		if f.To, err = netip.ParseAddr(host); err != nil || !f.To.Is4() {
			return out, sc.Errorf(field+".to", "%q: expected an IPv4 address with an optional port, such as 198.18.0.1:80", d.To)
		}
		if hasPort {
			p, err := strconv.ParseUint(port, 10, 16)
			if err != nil || p == 0 {
				return out, sc.Errorf(field+".to", "%q: port %q: expected 1 to 65535", d.To, port)
			}
			f.ToPort = uint16(p)
			if int(p)+int(f.PortMax-f.PortMin) > 65535 {
				return out, sc.Errorf(field+".to", "%q: the range of %d ports starting at %d runs past 65535", d.To, f.PortMax-f.PortMin+1, p)
			}
		}
		out.Forwards = append(out.Forwards, f)
	}
	if len(out.Pool) == 0 && len(out.Forwards) == 0 {
		return out, sc.Errorf("snat", "a nat needs snat.to addresses or dnat rules")
	}
	if len(out.Forwards) > 0 && len(out.Outside) == 0 {
		return out, sc.Errorf("outside", "dnat rules need at least one outside port")
	}
	if _, err := c.Fragments.tracker(sc, "fragments"); err != nil {
		return out, err // checked on reload too
	}
	return out, nil
}

func buildNAT(ctx *BuildContext, sc *StageConfig) (pipeline.Stage, error) {
	var c NATConfig
	if err := sc.Decode(&c); err != nil {
		return nil, err
	}
	cfg, err := natConfig(ctx, sc, &c)
	if err != nil {
		return nil, err
	}
	if c.Conntrack.Stateless {
		return nil, sc.Errorf("conntrack.stateless", "a nat cannot be stateless")
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
	newStage := nat.NewStage
	if shared {
		// A firewall (or another stage) in front tracks the flows: share
		// its table so it sees the translations (its settings win).
		newStage = nat.NewStageShared
	}
	s, err := newStage(cfg, ct)
	if err != nil {
		return nil, sc.Errorf("", "%v", err)
	}
	return reloadableNAT{s, natSteering(ctx.File.WorkerCount(), cfg)}, nil
}

// routerAddrs lists the addresses of every router stage's interfaces in
// the file, as host prefixes.
func routerAddrs(f *File) []netip.Prefix {
	var out []netip.Prefix
	for _, st := range f.Chain {
		if st.Type != "router" || st.node == nil {
			continue
		}
		var rc RouterConfig
		if st.node.Decode(&rc) != nil {
			continue
		}
		for _, ic := range rc.Interfaces {
			for _, a := range ic.Addrs {
				if p, err := netip.ParsePrefix(a); err == nil {
					out = append(out, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
				}
			}
		}
	}
	return out
}

// reloadableNAT adds Reload to the NAT stage: new rules apply to new flows
// from the worker's next batch; translated flows keep their translation.
//
// On more than one worker, the outside ports, exceptions and forwards also
// decide which worker owns a flow (File.Steering): a reload that changes
// them is refused (restart to change them).
type reloadableNAT struct {
	*nat.Stage
	steer conntrack.SteeringConfig
}

// Reload checks the new rules and hands them to the stage.
func (r reloadableNAT) Reload(ctx *BuildContext, sc *StageConfig) error {
	var c NATConfig
	if err := sc.Decode(&c); err != nil {
		return err
	}
	cfg, err := natConfig(ctx, sc, &c)
	if err != nil {
		return err
	}
	if n := ctx.File.WorkerCount(); n > 1 {
		if err := sameSteering(r.steer, natSteering(n, cfg)); err != nil {
			return sc.Errorf("", "%v changed: on %d workers they decide which worker owns each flow, and live flows would move to workers that never saw them; restart to change them", err, n)
		}
	}
	if err := r.Replace(cfg); err != nil {
		return sc.Errorf("", "%v", err)
	}
	return nil
}

// Unwrap returns the NAT stage.
func (r reloadableNAT) Unwrap() pipeline.Stage { return r.Stage }
