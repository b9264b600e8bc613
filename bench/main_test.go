package bench_test

import (
	"os"
	"testing"

	"github.com/xnfdev/xnf/bench"
	"github.com/xnfdev/xnf/cli"
)

// ExecEnv makes the test binary act as xnf (cmd/xnf's command tree) when
// the harness runs it as a contender's process.
const execEnv = "XNF_BENCH_EXEC"

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) == "1" {
		os.Args = append([]string{"xnf"}, os.Args[1:]...)
		cli.Main(bench.Command())
		os.Exit(0)
	}
	os.Exit(m.Run())
}
