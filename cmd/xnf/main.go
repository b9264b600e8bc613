// Command xnf runs network-function chains on AF_XDP: run, demo, bench,
// replay, lab, stats and version. See `xnf help` and docs/getting-started.md.
package main

import (
	"github.com/xnfdev/xnf/bench"
	"github.com/xnfdev/xnf/cli"
)

func main() { cli.Main(bench.Command()) }
