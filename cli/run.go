package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/service"
)

func runCmd() *cobra.Command {
	var path string
	var check, force, keepCaps bool
	cmd := &cobra.Command{
		Use:   "run -c chain.yaml",
		Short: "run a service chain",
		Long: `run attaches xnf to the configured interfaces and runs the chain until SIGINT or SIGTERM,
which drain the workers, print the final counters and detach. SIGHUP reloads the stages
that support it (firewall rules) from the same file; a broken file keeps the old rules.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return errors.New("run needs a chain file: xnf run -c chain.yaml")
			}
			f, err := config.Load(path)
			if err != nil {
				return err
			}
			if check {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d ports, %d workers, %d stages)\n", path, len(f.Ports), f.WorkerCount(), len(f.Chain))
				return printOffload(cmd.OutOrStdout(), f)
			}
			return run(cmd.Context(), f, cmd.OutOrStdout(), service.Options{Force: force}, !keepCaps)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "chain file (YAML)")
	cmd.Flags().BoolVar(&check, "check", false, "validate the file, print the firewall offload plan and exit")
	cmd.Flags().BoolVar(&force, "force", false, "detach XDP programs other tools left on the interfaces")
	cmd.Flags().BoolVar(&keepCaps, "keep-caps", false, "keep capabilities after setup (by default xnf drops them all once running)")
	return cmd
}

// printOffload says, for each firewall stage, which rules are dropped in
// XDP and why the others are not (firewall.PlanOffload).
func printOffload(out io.Writer, f *config.File) error {
	fos, err := f.FirewallOffloads()
	if err != nil {
		return err
	}
	for _, fo := range fos {
		at := fmt.Sprintf("chain[%d] firewall", fo.Stage)
		if n := f.Chain[fo.Stage].Name; n != "" {
			at += " (" + n + ")"
		}
		switch {
		case fo.Off:
			fmt.Fprintf(out, "%s: offload off\n", at)
			continue
		case fo.Blocked != "":
			fmt.Fprintf(out, "%s: offload auto: no rule runs in XDP: %s\n", at, fo.Blocked)
			continue
		}
		fmt.Fprintf(out, "%s: offload auto: %d of %d rules are dropped in XDP, before the stage\n", at, len(fo.Plan.Entries), len(fo.Rules))
		for i, text := range fo.Rules {
			why := fo.Plan.Decisions[i].String()
			if by := fo.Plan.Decisions[i].By; by >= 0 {
				why += fmt.Sprintf(" %q", fo.Rules[by])
			}
			fmt.Fprintf(out, "  rule %d %q: %s\n", i, text, why)
		}
	}
	return nil
}

func run(ctx context.Context, f *config.File, out io.Writer, o service.Options, dropCaps bool) error {
	log := newLogger(f.Log.Level, f.Log.Format)
	s, err := service.StartWith(f, log, o)
	if err != nil {
		return err
	}
	return s.Run(ctx, service.RunOptions{
		Metrics: f.Metrics.Listen,
		Out:     out,
		Started: func(s *service.Service) error {
			if dropCaps {
				// Putting back the NAPI settings preferred busy polling
				// changed (at exit, over netdev netlink) needs
				// CAP_NET_ADMIN: keep it, and only it, when there are any.
				var keep []uint
				for _, d := range s.Devices {
					if len(d.BusyPolled()) > 0 {
						keep = []uint{capNetAdmin}
					}
				}
				if err := dropCapabilities(keep...); err != nil {
					log.Warn("capabilities kept", "err", err)
				} else if len(keep) > 0 {
					fmt.Fprintln(out, "capabilities: all dropped after setup but CAP_NET_ADMIN, to restore the NAPI settings of preferred busy polling at exit")
				} else {
					fmt.Fprintln(out, "capabilities: all dropped after setup")
				}
			}
			return nil
		},
		Reload: func(s *service.Service) { reload(s, f.Path, log) },
	})
}

// reload re-reads the chain file and hands each reloadable stage its new
// configuration; a broken file changes nothing.
func reload(s *service.Service, path string, log *slog.Logger) {
	nf, err := config.Load(path)
	if err != nil {
		log.Error("reload failed; keeping the running configuration", "err", err)
		return
	}
	if n, err := s.Reload(nf); err != nil {
		log.Error("reload failed; keeping the running configuration", "err", err)
	} else {
		log.Info("reloaded", "file", path, "stages", n)
	}
}

// PrintCounters prints every port's and stage's counters as tables.
func PrintCounters(out io.Writer, s *service.Service) { s.PrintCounters(out) }

func reasons[K interface {
	comparable
	fmt.Stringer
}](m map[K]uint64) string {
	return service.Reasons(m)
}

// PrintKernelCounters prints what the XDP programs and the AF_XDP sockets
// saw (see service.Service.PrintKernelCounters). Call it before Stop.
func PrintKernelCounters(out io.Writer, s *service.Service) { s.PrintKernelCounters(out) }
