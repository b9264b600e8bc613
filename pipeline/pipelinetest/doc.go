// Package pipelinetest is the test kit for stages, in the spirit of
// wireguard-go's tun/tuntest: build frames in one line, run them through a
// stage or a chain in a real pipeline.Worker over memory ports (no root, no
// kernel), and check verdicts, output bytes and counters with failure
// messages that show decoded packets, not hex.
//
//	func TestDropsBlockedNames(t *testing.T) {
//		h := pipelinetest.New(t, newStage(t, "ads.example.com"))
//		q := pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:53", pipelinetest.DNSQuery("ads.example.com"))
//		ok := pipelinetest.UDP4("198.18.0.1:1000", "198.18.1.2:53", pipelinetest.DNSQuery("www.example.org"))
//		res := h.Send(0, q, ok)
//		h.Expect(res, pipelinetest.Dropped(packet.DropPolicy), pipelinetest.Forwarded(1).Bytes(ok))
//		h.ExpectMetrics(0, map[string]uint64{"blocked": 1})
//	}
//
// A failing expectation reads
//
//	frame 0 forwarded to port 1: 02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 198.18.0.1 > 198.18.1.2 ttl 64 UDP 1000 > 53 len 33 DNS query A "ads.example.com" (75 bytes); want dropped (policy)
//
// # Frames
//
// UDP4, UDP6, TCP4, TCP6, EchoRequest4/6, EchoReply4/6, ARPRequest and
// ARPReply build Ethernet frames with right lengths and checksums, from the
// lab's MAC addresses, TTL 64; options (SrcMAC, DstMAC, VLAN, QinQ, TTL,
// TOS, TCPFlags, ...) change the rest. Frame serializes any gopacket
// layers; Fragments cuts a frame's datagram into IP fragments. Summary,
// Dump and Diff describe frames.
//
// # The harness
//
// New builds a worker with two memory ports (Config for more) around the
// stages. Send receives frames on a port, runs the loop until each one has
// left or been dropped, and returns a Result per frame: its verdict, drop
// reason and the stage that dropped it, the port it left by and its bytes.
// The harness also polices the frame contract: every frame must be back in
// the pool when the test ends, a packet's Addr must move with the start of
// its Data, and released frames are overwritten with 0xdd so a stage that
// kept a slice into one reads garbage in its next batch.
//
// The harness's memory ports leave 256 bytes of headroom in front of each
// received frame, as an AF_XDP UMEM does; Config{Headroom: NoHeadroom}
// puts frames at the start of their pool frames, as NewMemPort's do.
// A stage that pushes headers must cope with both (pipeline.PushFront;
// examples/vlan tests both).
//
// # Memory ports
//
// MemPort is the one in-memory port of the project: NewMemPort over a
// pipeline.MemPool gives a port to inject frames into and read transmitted
// frames from, for tests and benchmarks that build their own worker.
//
// # Cost
//
// ZeroAllocs fails a test whose stage allocates per batch; Benchmark
// reports ns/pkt (the whole loop) and stage-ns/pkt (the stage alone) at
// burst 64, with allocs/op per batch under -benchmem.
package pipelinetest
