package lab

import "errors"

// The standard topology of tests, the demo and the benchmark:
//
//	gen (g0) ---- (in0) dut (out0) ---- (s0) sink
//	198.18.0.1/24  198.18.0.2/24  198.18.1.1/24  198.18.1.2/24
//	2001:db8::1/64 2001:db8::2/64 2001:db8:1::1/64 2001:db8:1::2/64   (TopologyOptions.IPv6)
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

	GenAddr6    = "2001:db8::1"
	DUTInAddr6  = "2001:db8::2"
	DUTOutAddr6 = "2001:db8:1::1"
	SinkAddr6   = "2001:db8:1::2"
	GenNet6     = "2001:db8::/64"
	SinkNet6    = "2001:db8:1::/64"

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
	// IPv6 gives gen and sink their IPv6 addresses (GenAddr6/64,
	// SinkAddr6/64) and routes to each other's /64 through the DUT's
	// (DUTInAddr6, DUTOutAddr6), which no kernel holds: the DUT
	// namespace keeps IPv6 off, so whatever runs there (xnf) owns them,
	// answers neighbor discovery for them and resolves gen and sink
	// itself, while their kernels do neighbor discovery as usual. gen and
	// sink accept no router advertisements (so they send no router
	// solicitations); they still send MLD reports. By default IPv6 is off
	// in every lab namespace, so that nothing disturbs exact counts.
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
		if !o.IPv6 || p.name == "dut" {
			if err := errors.Join(ns.Sysctl("net.ipv6.conf.all.disable_ipv6", "1"), ns.Sysctl("net.ipv6.conf.default.disable_ipv6", "1")); err != nil {
				return nil, err
			}
		} else if err := errors.Join(ns.Sysctl("net.ipv6.conf.all.accept_ra", "0"), ns.Sysctl("net.ipv6.conf.default.accept_ra", "0")); err != nil {
			return nil, err
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
	if o.IPv6 {
		if err := errors.Join(
			t.Gen.AddAddr("g0", GenAddr6+"/64"),
			t.Sink.AddAddr("s0", SinkAddr6+"/64"),
			t.Gen.AddRoute(SinkNet6, DUTInAddr6, "g0"),
			t.Sink.AddRoute(GenNet6, DUTOutAddr6, "s0"),
		); err != nil {
			return nil, err
		}
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
