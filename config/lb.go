package config

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/xnfdev/xnf/nf/lb"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

func init() { Register("lb", buildLB) }

// LBConfig is the YAML of an lb stage (see docs/lb.md):
//
//	chain:
//	  - type: lb
//	    services:
//	      - vip: 198.18.1.100
//	        proto: tcp
//	        port: 80
//	        backends:
//	          - {addr: 198.18.2.10, weight: 2}
//	          - {addr: "198.18.2.11:8080"}
//	        table_size: 65537
//	    snat_to: 198.18.2.1
//	    conntrack: {max_flows: 65536}
type LBConfig struct {
	// Mode is nat (the default, and the only one so far).
	Mode     string          `yaml:"mode"`
	Services []LBServiceYAML `yaml:"services"`
	// SNATTo is one address, or a list of at most one IPv4 and one IPv6
	// address: balanced packets leave towards their backend from it.
	SNATTo addrList `yaml:"snat_to"`
	// Conntrack sizes the stage's flow table (one per worker), unless a
	// firewall in front made it.
	Conntrack ConntrackConfig `yaml:"conntrack"`
}

// LBServiceYAML is one virtual service of an lb stage.
type LBServiceYAML struct {
	VIP       string `yaml:"vip"`
	Proto     string `yaml:"proto"` // tcp or udp
	Port      uint16 `yaml:"port"`
	TableSize int    `yaml:"table_size"` // a prime; default 65537
	Backends  []struct {
		// Addr is "ADDRESS" (the service's port) or "ADDRESS:PORT"
		// ("[ADDRESS]:PORT" for IPv6).
		Addr string `yaml:"addr"`
		// Weight is the backend's share of new flows relative to the
		// others' (default 1); 0 drains it.
		Weight *uint32 `yaml:"weight"`
	} `yaml:"backends"`
}

// addrList is one address or a list of them.
type addrList []string

func (a *addrList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*a = addrList{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*a = l
	return nil
}

// lbConfig turns the YAML into the balancer's configuration; errors name
// the field.
func lbConfig(sc *StageConfig, c *LBConfig) (lb.Config, error) {
	var out lb.Config
	switch c.Mode {
	case "", "nat":
	case "dsr":
		return out, sc.Errorf("mode", "dsr (direct server return) is not there yet: expected nat")
	default:
		return out, sc.Errorf("mode", "%q: expected nat", c.Mode)
	}
	if len(c.Services) == 0 {
		return out, sc.Errorf("services", "an lb needs services (expected a list of {vip, proto, port, backends})")
	}
	v4, v6 := -1, -1
	for i, s := range c.SNATTo {
		at := fmt.Sprintf("snat_to[%d]", i)
		if n := sc.file.node(sc.Path() + ".snat_to"); len(c.SNATTo) == 1 && n != nil && n.Kind == yaml.ScalarNode {
			at = "snat_to"
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return out, sc.Errorf(at, "%q: expected an IP address", s)
		}
		a = a.Unmap()
		first := &v4
		if a.Is6() {
			first = &v6
		}
		if *first >= 0 {
			return out, sc.Errorf(at, "%s: a second %s address (snat_to[%d] is one): expected at most one IPv4 and one IPv6 address", a, familyName(a), *first)
		}
		*first = i
		out.SNAT = append(out.SNAT, a)
	}
	seen := map[string]int{}
	for i, s := range c.Services {
		at := fmt.Sprintf("services[%d]", i)
		var sv lb.Service
		switch s.Proto {
		case "tcp":
			sv.Proto = packet.ProtoTCP
		case "udp":
			sv.Proto = packet.ProtoUDP
		case "":
			return out, sc.Errorf(at, "missing proto (expected tcp or udp)")
		default:
			return out, sc.Errorf(at+".proto", "%q: expected tcp or udp", s.Proto)
		}
		if s.VIP == "" {
			return out, sc.Errorf(at, "missing vip (expected an address such as 198.18.1.100)")
		}
		vip, err := netip.ParseAddr(s.VIP)
		if err != nil {
			return out, sc.Errorf(at+".vip", "%q: expected an IP address such as 198.18.1.100 or 2001:db8::100", s.VIP)
		}
		vip = vip.Unmap()
		if s.Port == 0 {
			return out, sc.Errorf(at, "missing port (expected 1 to 65535)")
		}
		sv.VIP = netip.AddrPortFrom(vip, s.Port)
		name := s.Proto + " " + sv.VIP.String()
		if j, dup := seen[name]; dup {
			return out, sc.Errorf(at, "%s is also services[%d] (expected each protocol, address and port once)", name, j)
		}
		seen[name] = i
		if len(s.Backends) == 0 {
			return out, sc.Errorf(at+".backends", "no backends (expected a list of {addr, weight}; weight 0 drains one)")
		}
		addrs := map[netip.AddrPort]int{}
		for j, b := range s.Backends {
			bat := fmt.Sprintf("%s.backends[%d]", at, j)
			ap, err := netip.ParseAddrPort(b.Addr)
			if err != nil {
				a, aerr := netip.ParseAddr(b.Addr)
				if aerr != nil {
					return out, sc.Errorf(bat+".addr", "%q: expected an address with an optional port, such as 198.18.2.10, 198.18.2.10:8080 or [2001:db8::10]:8080", b.Addr)
				}
				ap = netip.AddrPortFrom(a, s.Port)
			}
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			switch {
			case ap.Port() == 0:
				return out, sc.Errorf(bat+".addr", "%q: port 0: expected 1 to 65535, or no port for the service's (%d)", b.Addr, s.Port)
			case ap.Addr().Is4() != vip.Is4():
				return out, sc.Errorf(bat+".addr", "%q is not an %s address like the vip %s: expected the vip's family (no translation between IPv4 and IPv6)", b.Addr, familyName(vip), vip)
			}
			if k, dup := addrs[ap]; dup {
				return out, sc.Errorf(bat+".addr", "%s is also backends[%d] (expected each address and port once)", ap, k)
			}
			addrs[ap] = j
			w := uint32(1)
			if b.Weight != nil {
				w = *b.Weight
			}
			sv.Backends = append(sv.Backends, lb.Server{Addr: ap, Weight: w})
		}
		sv.TableSize = s.TableSize
		out.Services = append(out.Services, sv)
	}
	return out, nil
}

// lbError places an error of lb.New or Update: a table size or weights
// that do not fit.
func lbError(sc *StageConfig, c *LBConfig, err error) error {
	var se *lb.ServiceError
	if !errors.As(err, &se) {
		return sc.Errorf("", "%v", err)
	}
	at := fmt.Sprintf("services[%d]", se.Index)
	switch {
	case se.Backend >= 0:
		at += fmt.Sprintf(".backends[%d]", se.Backend)
	case se.Index < len(c.Services) && c.Services[se.Index].TableSize != 0:
		at += ".table_size"
	default:
		at += ".backends"
	}
	return sc.Errorf(at, "%v", se.Err)
}

func familyName(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// lbShared is what the lb stages built from one chain entry share across
// a service's workers: the balancer, and the file its last reload applied.
type lbShared struct {
	b        *lb.Balancer
	mu       sync.Mutex
	reloaded *File
}

// lbPlacement refuses chains the balancer cannot be right in: stages
// that share its conntrack table and would see its flows translated.
func lbPlacement(f *File, at int) error {
	for i, st := range f.Chain {
		sc := f.StageConfig(i)
		switch {
		case i < at && st.Type == "nat":
			return sc.Errorf("type", "a nat and an lb cannot share a chain yet: a nat before the lb claims every new flow first, the lb's included; "+
				"use the lb's snat_to to source-translate the balanced flows")
		case i > at && st.Type == "lb":
			return sc.Errorf("type", "a second lb (chain[%d] is one): the two would share one conntrack table, which has room for one balancer: put every service in one lb", at)
		case i > at && st.Type == "nat":
			return sc.Errorf("type", "a nat and an lb cannot share a chain yet: a nat after the lb shares its conntrack table and would look up packets the lb already translated, which conntrack cannot find; "+
				"use the lb's snat_to to source-translate the balanced flows")
		case i > at && st.Type == "firewall":
			var c FirewallConfig
			if err := sc.Decode(&c); err != nil {
				return err
			}
			if !c.Conntrack.Stateless {
				return sc.Errorf("type", "a stateful firewall after an lb shares its conntrack table and would look up packets the lb already translated, which conntrack cannot find: put the firewall before the lb")
			}
		}
	}
	return nil
}

func buildLB(ctx *BuildContext, sc *StageConfig) (pipeline.Stage, error) {
	var c LBConfig
	if err := sc.Decode(&c); err != nil {
		return nil, err
	}
	cfg, err := lbConfig(sc, &c)
	if err != nil {
		return nil, err
	}
	if err := lbPlacement(ctx.File, sc.index); err != nil {
		return nil, err
	}
	if c.Conntrack.Stateless {
		return nil, sc.Errorf("conntrack.stateless", "an lb cannot be stateless: conntrack keeps each flow on its backend")
	}
	cc, err := c.Conntrack.Table(sc, "conntrack")
	if err != nil {
		return nil, err
	}
	ct, shared, err := ctx.conntrackFor(sc, cc)
	if err != nil {
		return nil, err
	}
	// One balancer (services, tables) for every worker's stage.
	sh, err := SharedValue(ctx, sc, func() (*lbShared, error) {
		b, err := lb.New(cfg)
		if err != nil {
			return nil, lbError(sc, &c, err)
		}
		return &lbShared{b: b, reloaded: sc.file}, nil
	})
	if err != nil {
		return nil, err
	}
	newStage := lb.NewStage
	if shared {
		// A firewall in front tracks the flows: look them up in its table
		// (its conntrack settings win).
		newStage = lb.NewStageShared
	}
	s, err := newStage(sh.b, ct)
	if err != nil {
		return nil, sc.Errorf("", "%v", err)
	}
	return &reloadableLB{Stage: s, shared: sh}, nil
}

// reloadableLB adds Reload to the lb stage: services, pools, weights and
// snat_to follow the file; conntrack settings apply on restart.
type reloadableLB struct {
	*lb.Stage
	shared *lbShared
}

// Reload checks the new services and swaps them in, with their tables,
// once per file: the service reloads every worker's stage with the same
// file, and the first one applies it to the balancer they share.
// Established flows keep their backends; new flows follow the new tables.
func (r *reloadableLB) Reload(ctx *BuildContext, sc *StageConfig) error {
	var c LBConfig
	if err := sc.Decode(&c); err != nil {
		return err
	}
	cfg, err := lbConfig(sc, &c)
	if err != nil {
		return err
	}
	s := r.shared
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reloaded == sc.file {
		return nil // another worker's stage applied this file
	}
	if err := s.b.Update(cfg); err != nil {
		return lbError(sc, &c, err)
	}
	s.reloaded = sc.file
	return nil
}

// Unwrap returns the lb stage.
func (r *reloadableLB) Unwrap() pipeline.Stage { return r.Stage }
