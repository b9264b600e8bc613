package config

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/xnfdev/xnf/nf/router"
	"github.com/xnfdev/xnf/nf/router/kernelsync"
	"github.com/xnfdev/xnf/pipeline"
)

func init() {
	Register("router", buildRouter)
}

// RouterConfig is the YAML of a router stage.
type RouterConfig struct {
	Interfaces []struct {
		Port  string   `yaml:"port"`
		Addrs []string `yaml:"addrs"`
		MAC   string   `yaml:"mac"` // default: the port's interface MAC
		MTU   int      `yaml:"mtu"` // default: the port's interface MTU
	} `yaml:"interfaces"`
	Routes []struct {
		To   string   `yaml:"to"`
		Via  []string `yaml:"via"`
		Port string   `yaml:"port"`
	} `yaml:"routes"`
	Neighbors []struct {
		Port string `yaml:"port"`
		Addr string `yaml:"addr"`
		MAC  string `yaml:"mac"`
	} `yaml:"neighbors"`
	// FIB is static (default: interfaces' subnets and routes above) or
	// kernel (also mirror the main routing and neighbor tables of xnf's
	// network namespace, for FRR, BIRD or `ip route`).
	FIB       string `yaml:"fib"`
	ICMPRate  int    `yaml:"icmp_rate"`
	Reachable string `yaml:"neighbor_reachable"`
}

func parseMAC(s string) ([6]byte, error) {
	m, err := net.ParseMAC(s)
	if err != nil || len(m) != 6 {
		return [6]byte{}, fmt.Errorf("%q is not a MAC address (expected six hex bytes such as 02:00:00:00:00:01)", s)
	}
	return [6]byte(m), nil
}

func buildRouter(ctx *BuildContext, sc *StageConfig) (pipeline.Stage, error) {
	var c RouterConfig
	if err := sc.Decode(&c); err != nil {
		return nil, err
	}
	var rc router.Config
	if len(c.Interfaces) == 0 {
		return nil, sc.Errorf("interfaces", "a router needs interfaces (expected a list of {port, addrs})")
	}
	for i, ic := range c.Interfaces {
		at := fmt.Sprintf("interfaces[%d]", i)
		port, err := ctx.Port(ic.Port)
		if err != nil {
			return nil, sc.Errorf(at+".port", "%v", err)
		}
		ri := router.Interface{Port: port}
		if ic.MAC != "" {
			if ri.MAC, err = parseMAC(ic.MAC); err != nil {
				return nil, sc.Errorf(at+".mac", "%v", err)
			}
		} else if ri.MAC, err = ctx.MAC(ic.Port); err != nil {
			return nil, sc.Errorf(at+".port", "%v", err)
		}
		v6 := false
		for k, a := range ic.Addrs {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return nil, sc.Errorf(fmt.Sprintf("%s.addrs[%d]", at, k), "%q is not an address with prefix length (expected e.g. 198.18.0.1/24)", a)
			}
			v6 = v6 || !p.Addr().Unmap().Is4()
			ri.Addrs = append(ri.Addrs, p)
		}
		switch {
		case ic.MTU == 0:
			if ri.MTU, err = ctx.MTU(ic.Port); err != nil {
				return nil, sc.Errorf(at+".port", "%v", err)
			}
		case ic.MTU < 68 || ic.MTU > 65535:
			return nil, sc.Errorf(at+".mtu", "%d: expected 68 to 65535 (IPv4's minimum to the largest IP packet)", ic.MTU)
		case v6 && ic.MTU < 1280:
			return nil, sc.Errorf(at+".mtu", "%d: an interface with IPv6 addresses needs at least 1280 (RFC 8200 5)", ic.MTU)
		default:
			ri.MTU = ic.MTU
		}
		rc.Interfaces = append(rc.Interfaces, ri)
	}
	var err error
	if rc.Routes, rc.Neighbors, err = routerRoutes(ctx, sc, &c); err != nil {
		return nil, err
	}
	switch c.FIB {
	case "", "static", "kernel":
	default:
		return nil, sc.Errorf("fib", "%q: expected static or kernel", c.FIB)
	}
	rc.ICMPRate = c.ICMPRate
	if c.Reachable != "" {
		d, err := time.ParseDuration(c.Reachable)
		if err != nil || d <= 0 {
			return nil, sc.Errorf("neighbor_reachable", "%q: expected a duration such as 30s", c.Reachable)
		}
		rc.NeighborReachable = d
	}
	kernel := c.FIB == "kernel" && !ctx.Check && !ctx.Offline
	if kernel && ctx.Shared == nil {
		return nil, sc.Errorf("fib", "kernel: the kernel sync must be closed by whoever runs the stages: build them with a BuildContext.Shared (service.FileSpec does) and close it")
	}
	// One FIB, neighbor table and kernel sync for every worker's router.
	sh, err := SharedValue(ctx, sc, func() (*routerShared, error) {
		t, err := router.NewTables(rc)
		if err != nil {
			return nil, err
		}
		s := &routerShared{tables: t, routes: rc.Routes, neighbors: rc.Neighbors}
		if kernel {
			ports := map[string]uint16{}
			for i, p := range ctx.File.Ports {
				ports[p.Interface] = uint16(i)
			}
			if s.sync, err = kernelsync.Start(t, nil, ports); err != nil {
				return nil, sc.Errorf("fib", "%v", err)
			}
		}
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	rc.Tables = sh.tables
	r, err := router.NewRouter(rc)
	if err != nil {
		return nil, err
	}
	return &reloadableRouter{Router: r, shared: sh}, nil
}

// routerShared is what the router stages built from one chain entry share
// across a service's workers: the tables, the kernel sync feeding them, and
// the static routes and neighbors last applied to them.
type routerShared struct {
	tables *router.Tables
	sync   *kernelsync.Sync // fib: kernel

	mu        sync.Mutex // serializes reloads
	routes    []router.StaticRoute
	neighbors []router.Neighbor
	reloaded  *File // the file the last reload applied
}

// Close stops the kernel sync (Shared.Close calls it when the service
// stops).
func (s *routerShared) Close() error {
	if s.sync != nil {
		s.sync.Close()
	}
	return nil
}

// routerRoutes reads a router stage's static routes and neighbors.
func routerRoutes(ctx *BuildContext, sc *StageConfig, c *RouterConfig) (routes []router.StaticRoute, neighbors []router.Neighbor, err error) {
	for i, r := range c.Routes {
		at := fmt.Sprintf("routes[%d]", i)
		to := r.To
		if to == "default" {
			to = "0.0.0.0/0"
		}
		pfx, err := netip.ParsePrefix(to)
		if err != nil {
			return nil, nil, sc.Errorf(at+".to", "%q is not a prefix (expected e.g. 198.19.0.0/16 or default)", r.To)
		}
		port, err := ctx.Port(r.Port)
		if err != nil {
			return nil, nil, sc.Errorf(at+".port", "%v", err)
		}
		sr := router.StaticRoute{Prefix: pfx}
		for k, v := range r.Via {
			gw, err := netip.ParseAddr(v)
			if err != nil {
				return nil, nil, sc.Errorf(fmt.Sprintf("%s.via[%d]", at, k), "%q is not an IP address", v)
			}
			sr.NextHops = append(sr.NextHops, router.NextHop{Port: port, Gateway: gw})
		}
		if len(sr.NextHops) == 0 {
			sr.NextHops = []router.NextHop{{Port: port}}
		}
		routes = append(routes, sr)
	}
	for i, n := range c.Neighbors {
		at := fmt.Sprintf("neighbors[%d]", i)
		port, err := ctx.Port(n.Port)
		if err != nil {
			return nil, nil, sc.Errorf(at+".port", "%v", err)
		}
		a, err := netip.ParseAddr(n.Addr)
		if err != nil {
			return nil, nil, sc.Errorf(at+".addr", "%q is not an IP address", n.Addr)
		}
		m, err := parseMAC(n.MAC)
		if err != nil {
			return nil, nil, sc.Errorf(at+".mac", "%v", err)
		}
		neighbors = append(neighbors, router.Neighbor{Port: port, Addr: a, MAC: m})
	}
	return routes, neighbors, nil
}

// reloadableRouter adds Reload to the router stage: static routes and
// neighbors follow the file; interfaces, the FIB source and the ICMP rate
// apply on restart.
type reloadableRouter struct {
	*router.Router
	shared *routerShared
}

// Reload applies the new static routes and neighbors to the tables the
// workers' routers share, once per file: the service reloads every
// worker's stage with the same file, and the first one applies it. Routes
// added or changed are replaced, routes gone are deleted, each in one
// atomic FIB update, so a packet sees a prefix's old or new next hops,
// never none. Everything is parsed and checked before the first change.
func (r *reloadableRouter) Reload(ctx *BuildContext, sc *StageConfig) error {
	var c RouterConfig
	if err := sc.Decode(&c); err != nil {
		return err
	}
	routes, neighbors, err := routerRoutes(ctx, sc, &c)
	if err != nil {
		return err
	}
	s := r.shared
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reloaded == sc.file {
		return nil // another worker's router applied this file
	}
	fib := s.tables.FIB
	keep := map[netip.Prefix]bool{}
	for _, rt := range routes {
		keep[rt.Prefix] = true
		if err := fib.Replace(rt.Prefix, rt.NextHops...); err != nil {
			return sc.Errorf("routes", "%v: %v", rt.Prefix, err)
		}
	}
	for _, rt := range s.routes {
		if !keep[rt.Prefix] {
			fib.Delete(rt.Prefix)
		}
	}
	nb := s.tables.Neighbors
	keepN := map[[2]any]bool{}
	for _, n := range neighbors {
		keepN[[2]any{n.Port, n.Addr}] = true
		nb.SetStatic(n)
	}
	for _, n := range s.neighbors {
		if !keepN[[2]any{n.Port, n.Addr}] {
			nb.Delete(n.Port, n.Addr)
		}
	}
	s.routes, s.neighbors, s.reloaded = routes, neighbors, sc.file
	return nil
}

// Unwrap returns the router stage.
func (r *reloadableRouter) Unwrap() pipeline.Stage { return r.Router }
