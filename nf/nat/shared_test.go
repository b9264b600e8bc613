package nat

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/nf/firewall"
	"github.com/xnfdev/xnf/packet"
)

// A stateful firewall and the NAT share one table: the firewall tracks,
// the NAT looks up and installs the translation, and the firewall then
// recognises the translated answers as established.
func TestSharedTableWithStatefulFirewall(t *testing.T) {
	ct, err := conntrack.New(conntrack.Config{MaxFlows: 1024})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := firewall.ParseRules([]string{"accept state established,related", "accept in 0 state new"})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := firewall.New(1, rules, firewall.Drop)
	if err != nil {
		t.Fatal(err)
	}
	fs := firewall.NewStage(fw, ct, 0)
	ns, err := NewStageShared(Config{Inside: []uint16{portIn}, Outside: []uint16{portOut}, Pool: []netip.Addr{natX}}, ct)
	if err != nil {
		t.Fatal(err)
	}
	chain := func(in uint16, f []byte) *packet.Packet {
		var b packet.Batch
		b.Append(append([]byte(nil), f...), 0, in).Parse()
		fs.Process(&b)
		ns.Process(&b)
		p := b.Packets[0]
		return &p
	}
	// Port 4000 towards srvB:53 is held, so inA2's flow moves to 1024.
	chain(portIn, udpFrame(t, ap(inA, 4000), ap(srvB, 53), "x"))
	p := chain(portIn, udpFrame(t, ap(inA2, 4000), ap(srvB, 53), "q"))
	if p.Verdict != packet.Forward || tupleOf(p) != (tuple{ap(natX, 1024), ap(srvB, 53)}) {
		t.Fatalf("outbound: %v %v", p.Verdict, tupleOf(p))
	}
	p = chain(portOut, udpFrame(t, ap(srvB, 53), ap(natX, 1024), "a"))
	if p.Verdict != packet.Forward || tupleOf(p) != (tuple{ap(srvB, 53), ap(inA2, 4000)}) {
		t.Fatalf("answer: %v %v %v", p.Verdict, p.Reason, tupleOf(p))
	}
	checksumsRight(t, p)
	// The ICMP error about it is related for the firewall, translated by the NAT.
	e := chain(portOut, icmpErrorFrame(t, rtrR, natX, 11, 0, udpFrame(t, ap(natX, 1024), ap(srvB, 53), "q"), 0))
	if e.Verdict != packet.Forward || e.IPv4().DstAddr() != inA2 {
		t.Fatalf("error: %v to %v", e.Verdict, e.IPv4().DstAddr())
	}
	// Unsolicited from outside: the firewall drops it.
	p = chain(portOut, udpFrame(t, ap(srvB, 53), ap(natX, 1025), "a"))
	if p.Verdict != packet.Drop {
		t.Errorf("unsolicited: %v", p.Verdict)
	}
	if st := ns.Counters(); st.SNATFlows != 2 || st.Translated != 4 || st.ICMPErrors != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Stages sharing a table must share a clock: Process reads the one
// firewall.Stage reads (time.Now().UnixNano()), so flows it creates expire
// a timeout after the wall-clock now.
func TestProcessClockIsTheFirewalls(t *testing.T) {
	s := masq(t, nil)
	var b packet.Batch
	b.Append(udpFrame(t, ap(inA, 1), ap(srvB, 2), "x"), 0, portIn).Parse()
	k := b.Packets[0].FlowKey()
	before := time.Now().UnixNano()
	s.Process(&b)
	f, _, ok := s.Conntrack().Lookup(k, time.Now().UnixNano())
	if !ok {
		t.Fatal("no flow for the translated packet")
	}
	udp := int64(conntrack.DefaultTimeouts.UDP)
	if e := f.Expires(); e < before+udp || e > time.Now().UnixNano()+udp {
		t.Errorf("flow expires at %d, want now+30s on the wall clock (%d)", e, before+udp)
	}
}
