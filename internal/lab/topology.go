package lab

import "errors"

// The standard topology of tests, the demo and the benchmark:
//
//	gen (g0) ---- (in0) dut (out0) ---- (s0) sink
//	198.18.0.1/24  198.18.0.2/24  198.18.1.1/24  198.18.1.2/24
//
// MACs are fixed so frames can be built ahead of time. The gen and sink
// namespaces route each other's subnet through the DUT addresses.
const (
	GenAddr    = "198.18.0.1"
	DUTInAddr  = "198.18.0.2"
	DUTOutAddr = "198.18.1.1"
	SinkAddr   = "198.18.1.2"
	GenNet     = "198.18.0.0/24"
	SinkNet    = "198.18.1.0/24"

	GenMAC    = "02:00:00:00:00:01"
	DUTInMAC  = "02:00:00:00:00:02"
	DUTOutMAC = "02:00:00:00:01:01"
	SinkMAC   = "02:00:00:00:01:02"
)

// Topology is the standard gen -> dut -> sink lab.
type Topology struct {
	*Lab
	Gen, DUT, Sink *NS
}

// TopologyOptions tune NewTopology.
type TopologyOptions struct {
	// Queues per veth end (default 1).
	Queues int
	// IPv6 keeps IPv6 enabled; by default it is off in the lab namespaces
	// so router solicitations and MLD reports do not disturb exact counts.
	IPv6 bool
	// MTU of every veth (default 1500).
	MTU int
	// Names fixes the namespace names (gen, dut, sink) instead of
	// prefix-random-role: for a lab people poke at by hand.
	Names *[3]string
}

// NewTopology builds the standard topology.
func NewTopology(prefix string, o TopologyOptions) (t *Topology, err error) {
	l, err := New(prefix)
	if err != nil {
		return nil, err
	}
	if o.Names != nil {
		l.fixed = *o.Names
	}
	t = &Topology{Lab: l}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	for _, p := range []struct {
		ns   **NS
		name string
	}{{&t.Gen, "gen"}, {&t.DUT, "dut"}, {&t.Sink, "sink"}} {
		ns, err := l.Namespace(p.name)
		if err != nil {
			return nil, err
		}
		if !o.IPv6 {
			if err := errors.Join(ns.Sysctl("net.ipv6.conf.all.disable_ipv6", "1"), ns.Sysctl("net.ipv6.conf.default.disable_ipv6", "1")); err != nil {
				return nil, err
			}
		}
		*p.ns = ns
	}
	if err := l.AddVeth(Veth{A: t.DUT, AName: "in0", B: t.Gen, BName: "g0", Queues: o.Queues, MTU: o.MTU,
		AMAC: DUTInMAC, BMAC: GenMAC, AAddrs: []string{DUTInAddr + "/24"}, BAddrs: []string{GenAddr + "/24"}}); err != nil {
		return nil, err
	}
	if err := l.AddVeth(Veth{A: t.DUT, AName: "out0", B: t.Sink, BName: "s0", Queues: o.Queues, MTU: o.MTU,
		AMAC: DUTOutMAC, BMAC: SinkMAC, AAddrs: []string{DUTOutAddr + "/24"}, BAddrs: []string{SinkAddr + "/24"}}); err != nil {
		return nil, err
	}
	if err := errors.Join(
		t.Gen.AddRoute(SinkNet, DUTInAddr, "g0"),
		t.Sink.AddRoute(GenNet, DUTOutAddr, "s0"),
	); err != nil {
		return nil, err
	}
	return t, nil
}

// TopologyForTest builds the standard topology for a test (skipping when not
// root) and removes it when the test ends.
func TopologyForTest(t TB, prefix string, o TopologyOptions) *Topology {
	t.Helper()
	RequireRoot(t)
	topo, err := NewTopology("xt-"+prefix, o)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Logf("lab cleanup: %v", err)
		}
	})
	return topo
}
