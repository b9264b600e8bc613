// Command inline is a network function built in Go, without a chain file:
// firewall -> ttlfloor (a stage of its own) -> router between two
// interfaces, run with the lifecycle of `xnf run` (attach, pinned workers,
// metrics, drain on SIGINT/SIGTERM, detach).
//
//	go build ./examples/inline && sudo xnf lab up
//	sudo ip netns exec xnf-dut ./inline -in in0 -out out0
//
// The chain is Go values all the way: ports are xdp.Interface, stages are
// built per worker by a function, service.Run does the rest. The same
// service runs chain files; YAML is only another way to make these values.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/nf/router"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/port/xdp"
	"github.com/xnfdev/xnf/service"
)

// Options are the example's knobs; the defaults fit the lab of `xnf lab up`.
type Options struct {
	In, Out         string       // interfaces
	InAddr, OutAddr netip.Prefix // the router's addresses on them
	MinTTL          uint8
	Metrics         string
	Mode            afxdp.AttachMode
}

func main() {
	var o Options
	var in, out, mode string
	flag.StringVar(&o.In, "in", "in0", "inside interface (port 0)")
	flag.StringVar(&o.Out, "out", "out0", "outside interface (port 1)")
	flag.StringVar(&in, "in-addr", "198.18.0.2/24", "router address on the inside")
	flag.StringVar(&out, "out-addr", "198.18.1.1/24", "router address on the outside")
	minTTL := flag.Uint("min-ttl", 5, "drop IP packets arriving with a lower TTL")
	flag.StringVar(&o.Metrics, "metrics", "127.0.0.1:9464", "Prometheus listen address, or off")
	flag.StringVar(&mode, "mode", "auto", "XDP attach mode: auto, native or generic")
	flag.Parse()
	var err error
	if o.InAddr, err = netip.ParsePrefix(in); err == nil {
		o.OutAddr, err = netip.ParsePrefix(out)
	}
	if err == nil {
		err = o.Mode.UnmarshalText([]byte(mode))
	}
	if err == nil {
		o.MinTTL = uint8(min(*minTTL, 255))
		err = Run(context.Background(), o, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "inline:", err)
		os.Exit(1)
	}
}

// Run builds the chain and runs it until a signal or ctx ends it.
func Run(ctx context.Context, o Options, log *slog.Logger) error {
	const in, out = 0, 1 // port indices: the order of Spec.Ports
	inMAC, err := mac(o.In)
	if err != nil {
		return err
	}
	outMAC, err := mac(o.Out)
	if err != nil {
		return err
	}
	// New flows only from the inside; replies come back through
	// conntrack. Rules are compiled once and shared by the workers.
	rules, err := firewall.ParseRules([]string{
		"accept state established,related",
		fmt.Sprintf("accept in %d state new", in),
	})
	if err != nil {
		return err
	}
	fw, err := firewall.New(1, rules, firewall.Drop)
	if err != nil {
		return err
	}
	// One FIB and neighbor table for every worker's router: a neighbor
	// one worker learns, the others use.
	rcfg := router.Config{Interfaces: []router.Interface{
		{Port: in, MAC: inMAC, Addrs: []netip.Prefix{o.InAddr}},
		{Port: out, MAC: outMAC, Addrs: []netip.Prefix{o.OutAddr}},
	}}
	if rcfg.Tables, err = router.NewTables(rcfg); err != nil {
		return err
	}
	spec := service.Spec{
		Ports: []service.Port{
			{Name: "in", Config: xdp.Interface{Interface: o.In, Mode: o.Mode}},
			{Name: "out", Config: xdp.Interface{Interface: o.Out, Mode: o.Mode}},
		},
		// Called once per worker: each gets its own conntrack table and
		// router stage (counters, ICMP budget), so nothing here needs a
		// lock; the router's tables are safe to share.
		Stages: func(w int) ([]pipeline.Stage, error) {
			ct, err := conntrack.New(conntrack.Config{MaxFlows: 65536})
			if err != nil {
				return nil, err
			}
			r, err := router.NewRouter(rcfg)
			if err != nil {
				return nil, err
			}
			return []pipeline.Stage{firewall.NewStage(fw, ct, w), NewTTLFloor(o.MinTTL), r}, nil
		},
	}
	return service.Run(ctx, spec, log, service.RunOptions{Metrics: o.Metrics, Out: os.Stdout})
}

func mac(ifname string) ([6]byte, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return [6]byte{}, err
	}
	if len(ifi.HardwareAddr) != 6 {
		return [6]byte{}, fmt.Errorf("%s has no Ethernet address", ifname)
	}
	return [6]byte(ifi.HardwareAddr), nil
}
