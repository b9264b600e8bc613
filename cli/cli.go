// Package cli is the xnf command line: run, demo, bench, replay, lab,
// stats and version. It is a package (not only cmd/xnf) so a program that registers
// its own stage types (config.Register) can become a full xnf binary by
// calling cli.Main.
package cli

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is set at build time (-ldflags "-X github.com/xnfdev/xnf/cli.Version=v0.1.0").
var Version = "dev"

// Main runs the CLI with os.Args and exits.
func Main() {
	if err := Root().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "xnf:", err)
		os.Exit(1)
	}
}

// Root builds the command tree.
func Root() *cobra.Command {
	root := &cobra.Command{
		Use:           "xnf",
		Short:         "network functions on AF_XDP",
		Long:          "xnf runs chains of network functions (firewall, NAT, router, your own) on AF_XDP sockets,\nwith the Linux kernel still in charge of the NIC.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), demoCmd(), replayCmd(), labCmd(), statsCmd(), versionCmd(), benchCmd())
	return root
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Run: func(cmd *cobra.Command, _ []string) {
			v := Version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			fmt.Fprintf(cmd.OutOrStdout(), "xnf %s\n", v)
		},
	}
}

func newLogger(level, format string) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
