package pipelinetest_test

import (
	"fmt"

	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline/pipelinetest"
)

func ExampleUDP4() {
	f := pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:53", pipelinetest.DNSQuery("example.com"), pipelinetest.VLAN(100), pipelinetest.TTL(3))
	fmt.Println(pipelinetest.Summary(f))
	// Output: 02:00:00:00:00:01 > 02:00:00:00:00:02 vlan 100 IPv4 198.18.0.1 > 198.18.1.2 ttl 3 UDP 1000 > 53 len 29 DNS query A "example.com" (75 bytes)
}

func ExampleTCP6() {
	f := pipelinetest.TCP6("[2001:db8::1]:40000", "[2001:db8::2]:443", "", pipelinetest.TCPFlags(packet.TCPSyn), pipelinetest.Seq(1))
	fmt.Println(pipelinetest.Summary(f))
	// Output: 02:00:00:00:00:01 > 02:00:00:00:00:02 IPv6 2001:db8::1 > 2001:db8::2 hlim 64 TCP 40000 > 443 [S] seq 1 ack 0 len 0 (74 bytes)
}

func ExampleDiff() {
	want := pipelinetest.EchoRequest4("198.18.0.1", "198.18.1.2", 7, 1, "ping")
	got := pipelinetest.EchoRequest4("198.18.0.1", "198.18.1.2", 7, 1, "ping", pipelinetest.TTL(63))
	fmt.Println(pipelinetest.Diff(got, want))
	// Output:
	//   got:  02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 198.18.0.1 > 198.18.1.2 ttl 63 ICMP EchoRequest id 7 seq 1 (46 bytes)
	//   want: 02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 198.18.0.1 > 198.18.1.2 ttl 64 ICMP EchoRequest id 7 seq 1 (46 bytes)
	//   first difference at byte 22 (IPv4 header, byte 8): got 3f01eeb5c6120001..., want 4001edb5c6120001...
}
