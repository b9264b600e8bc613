// Command sampler is xnf with one more stage type, example/sampler: it
// writes every Nth packet of chosen flows to a pcapng file, off the data
// path (a bounded queue to a writer goroutine; samples that find the queue
// full are counted as lagged and skipped, never waited for).
//
//	go build ./examples/sampler && sudo ./sampler lab up
//	sudo ip netns exec xnf-dut ./sampler run -c examples/sampler/chain.yaml
//	tshark -r sample.pcapng
package main

import "github.com/xnfdev/xnf/cli"

func main() { cli.Main() }
