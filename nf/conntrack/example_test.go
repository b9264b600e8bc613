package conntrack_test

import (
	"fmt"
	"net"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/nf/conntrack"
	"github.com/xnfdev/xnf/packet"
)

// A stage that tracks every packet of its batch with one call and drops
// what conntrack finds invalid. A worker owns the stage and its table. (A
// pipeline.Stage would read the clock in Process; now is a parameter here
// so the example's output does not depend on it.)
type stage struct {
	ct  *conntrack.Table
	res []conntrack.Result
}

func (s *stage) Process(b *packet.Batch, now int64) {
	for i, r := range s.ct.TrackBatch(b, now, s.res) {
		p := &b.Packets[i]
		switch r.State {
		case conntrack.StateInvalid:
			p.SetDrop(packet.DropPolicy)
		case conntrack.StateNew, conntrack.StateEstablished, conntrack.StateRelated:
			// A firewall matches firewall.State(r.State) here; NAT
			// reads r.Flow.Orig(), r.Flow.Reply() and r.Dir.
		}
	}
}

func Example() {
	ct, err := conntrack.New(conntrack.Config{MaxFlows: 1 << 16})
	if err != nil {
		panic(err)
	}
	s := &stage{ct: ct, res: make([]conntrack.Result, packet.MaxBurst)}

	var b packet.Batch
	b.Append(udp("198.18.0.1", 5353, "198.19.0.2", 53), 0, 0).Parse() // a query
	b.Append(udp("198.19.0.2", 53, "198.18.0.1", 5353), 0, 0).Parse() // its answer
	b.Append(udp("198.19.0.2", 53, "198.18.0.1", 5354), 0, 0).Parse() // an answer to nothing: new (UDP)
	now := int64(time.Second)                                         // the worker reads its clock once per batch
	s.Process(&b, now)

	// Results 0 and 1 share a flow, shown as it is after the batch.
	for i, r := range s.res[:b.Len] {
		fmt.Println(i, r.State, r.Dir, r.Flow)
	}
	fmt.Printf("%+v\n", ct.Counters())
	// Output:
	// 0 new original udp 198.18.0.1:5353 > 198.19.0.2:53
	// 1 established reply udp 198.18.0.1:5353 > 198.19.0.2:53
	// 2 new original udp 198.19.0.2:53 > 198.18.0.1:5354 unreplied
	// {Found:1 New:2 Created:0 Related:0 Invalid:0 Untracked:0 Expired:0 Evicted:0 Full:0 Deleted:0}
}

func udp(src string, sport uint16, dst string, dport uint16) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, u, gopacket.Payload("q"))
	return buf.Bytes()
}
