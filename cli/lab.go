package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/xnfdev/xnf/internal/lab"
)

// The demo lab's fixed names, for `ip netns exec xnf-client ...`.
var demoNames = [3]string{"xnf-client", "xnf-dut", "xnf-server"}

func labCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "lab", Short: "bring the demo topology up or down (root)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "up",
		Short: "create xnf-client -- xnf-dut -- xnf-server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := lab.NewTopology("xnf", lab.TopologyOptions{Names: &demoNames})
			if err != nil {
				return err
			}
			if err := t.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC); err != nil {
				t.Close()
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), labDiagram())
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "down",
		Short: "remove the demo topology",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			gone, err := lab.DeleteNamespaces(demoNames[:]...)
			for _, n := range gone {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", n)
			}
			if len(gone) == 0 && err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "no lab to remove")
			}
			return err
		},
	})
	return cmd
}

func labDiagram() string {
	return fmt.Sprintf(`lab up:
  xnf-client (g0 %s) ---- (in0 %s) xnf-dut (out0 %s) ---- (s0 %s) xnf-server
try:
  sudo ip netns exec xnf-dut xnf run -c examples/chains/router.yaml
  sudo ip netns exec xnf-client ping %s
remove it with: sudo xnf lab down
`, lab.GenAddr, lab.DUTInAddr, lab.DUTOutAddr, lab.SinkAddr, lab.SinkAddr)
}
