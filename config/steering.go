package config

import (
	"fmt"
	"slices"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/nat"
)

// Steering returns the steering a service running this file must give
// every worker (pipeline.Config.Steering, with a pipeline.Handoff), or nil
// when it needs none: one worker, or no stage that keeps flow state per
// worker (a firewall with conntrack, a nat). With a nat stage each flow is
// owned by the worker its outside endpoint hashes to (the NAT's outside
// ports, exceptions and forwards say which endpoint that is); without
// one, by its sorted 5-tuple (see conntrack.Steering).
//
// A chain the hand-off cannot make correct is an error naming the stage:
// more than one nat stage (a flow has one outside endpoint per NAT), an
// lb stage (no endpoint is common to a balanced flow's two directions
// that the steering knows of), or more workers than conntrack.MaxWorkers.
func (f *File) Steering() (*conntrack.Steering, error) {
	c, err := f.steeringConfig()
	if err != nil || c == nil {
		return nil, err
	}
	return conntrack.NewSteering(*c)
}

func (f *File) steeringConfig() (*conntrack.SteeringConfig, error) {
	n := f.WorkerCount()
	if n <= 1 {
		return nil, nil
	}
	var natAt []int
	stateful := -1
	for i, st := range f.Chain {
		sc := f.StageConfig(i)
		switch st.Type {
		case "lb":
			// DNAT's request C:c > V:v and reply B:b > C:c share the
			// client's endpoint, which the steering does not know to
			// key by; with snat_to they share no endpoint at all.
			return nil, sc.Errorf("type", "an lb on %d workers (ports[].queues lists %d): hand-off steers each flow to its owner by its 5-tuple (or a nat's outside endpoint), "+
				"and a balanced flow's reply, from the backend, shares neither with the client's request, so the two would meet different workers; run one queue per port (one worker)", n, n)
		case "nat":
			natAt = append(natAt, i)
		case "firewall":
			var c FirewallConfig
			if err := sc.Decode(&c); err != nil {
				return nil, err
			}
			if c.Conntrack.Stateless {
				continue
			}
		default:
			continue
		}
		if stateful < 0 {
			stateful = i
		}
	}
	if stateful < 0 {
		return nil, nil
	}
	if n > conntrack.MaxWorkers {
		return nil, f.StageConfig(stateful).Errorf("type", "a %s keeps flow state per worker, and hand-off between workers spreads flows over at most %d workers: this file runs %d",
			f.Chain[stateful].Type, conntrack.MaxWorkers, n)
	}
	out := &conntrack.SteeringConfig{Workers: n}
	if len(natAt) == 0 {
		return out, nil
	}
	if len(natAt) > 1 {
		return nil, f.StageConfig(natAt[1]).Errorf("type", "a second nat stage on %d workers: hand-off steers each flow to the worker its outside endpoint hashes to, and a flow has one per NAT; run one nat stage, or one queue per port (one worker)", n)
	}
	sc := f.StageConfig(natAt[0])
	var c NATConfig
	if err := sc.Decode(&c); err != nil {
		return nil, err
	}
	cfg, err := natConfig(&BuildContext{File: f, Check: true}, sc, &c)
	if err != nil {
		return nil, err
	}
	*out = natSteering(n, cfg)
	return out, nil
}

// natSteering is the steering of a NAT's flows over n workers.
func natSteering(n int, cfg nat.Config) conntrack.SteeringConfig {
	s := conntrack.SteeringConfig{Workers: n, NAT: true, Outside: slices.Clone(cfg.Outside), Except: slices.Clone(cfg.Except)}
	for _, fw := range cfg.Forwards {
		s.Forwarded = append(s.Forwarded, conntrack.PortRange{Proto: fw.Proto, Addr: fw.Addr, Min: fw.PortMin, Max: fw.PortMax})
		to := conntrack.PortRange{Proto: fw.Proto, Addr: fw.To, Min: fw.PortMin, Max: fw.PortMax}
		if fw.ToPort != 0 {
			to.Min, to.Max = fw.ToPort, fw.ToPort+(fw.PortMax-fw.PortMin)
		}
		s.Forwarded = append(s.Forwarded, to)
	}
	return s
}

// sameSteering reports whether a reloaded NAT keeps the steering of the
// running one: the outside ports, exceptions and forwards that decide
// which worker owns a flow. A reload that changed them would move live
// flows to workers that never saw them.
func sameSteering(a, b conntrack.SteeringConfig) error {
	switch {
	case !slices.Equal(a.Outside, b.Outside):
		return fmt.Errorf("the outside ports")
	case !slices.Equal(a.Except, b.Except):
		return fmt.Errorf("snat.except (or the router's addresses)")
	case !slices.Equal(a.Forwarded, b.Forwarded):
		return fmt.Errorf("the dnat rules")
	}
	return nil
}
