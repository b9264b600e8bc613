// Command vlan is xnf with one more stage type, example/vlan: it pushes
// and pops 802.1Q tags by ingress port (an access port facing a trunk).
//
//	go build ./examples/vlan
//	sudo ip netns exec xnf-dut ./vlan run -c examples/vlan/chain.yaml
//
// Pushing a tag needs 4 bytes in front of the frame: an AF_XDP frame has
// 256 bytes of headroom, so only the MACs move; a frame from a memory port
// (unit tests) has none and shifts whole (pipeline.PushFront).
package main

import "github.com/xnfdev/xnf/cli"

func main() { cli.Main() }
