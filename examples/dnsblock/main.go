// Command dnsblock is xnf with one more stage type, example/dnsblock: it
// drops DNS queries for names on a blocklist and counts hits per name.
// Everything else is the xnf command line:
//
//	go build ./examples/dnsblock && sudo ./dnsblock lab up
//	sudo ip netns exec xnf-dut ./dnsblock run -c examples/dnsblock/chain.yaml
//
// The stage registers itself (config.Register in dnsblock.go's init), so a
// chain file can name it: type: example/dnsblock.
package main

import "github.com/xnfdev/xnf/cli"

func main() { cli.Main() }
