package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/xnfdev/xnf/afxdp"
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
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d ports, %d workers, %d stages)\n", path, len(f.Ports), len(f.Ports[0].Queues), len(f.Chain))
				return nil
			}
			return run(cmd.Context(), f, cmd.OutOrStdout(), service.Options{Force: force}, !keepCaps)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "chain file (YAML)")
	cmd.Flags().BoolVar(&check, "check", false, "validate the file and exit")
	cmd.Flags().BoolVar(&force, "force", false, "detach XDP programs other tools left on the interfaces")
	cmd.Flags().BoolVar(&keepCaps, "keep-caps", false, "keep capabilities after setup (by default xnf drops them all once running)")
	return cmd
}

func run(ctx context.Context, f *config.File, out io.Writer, o service.Options, dropCaps bool) error {
	log := newLogger(f.Log.Level, f.Log.Format)
	s, err := service.StartWith(f, log, o)
	if err != nil {
		return err
	}
	for _, d := range s.Devices {
		fmt.Fprintf(out, "%s: XDP attached to %s in %s mode\n", d.Port, d.Name, d.Mode())
	}
	stopMetrics, addr, err := serveMetrics(f.Metrics.Listen, s, log)
	if err != nil {
		s.Stop()
		return err
	}
	if dropCaps {
		if err := dropCapabilities(); err != nil {
			log.Warn("capabilities kept", "err", err)
		} else {
			fmt.Fprintln(out, "capabilities: all dropped after setup")
		}
	}
	if addr != "" {
		fmt.Fprintf(out, "metrics: http://%s/metrics\n", addr)
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
	if ctx == nil {
		ctx = context.Background()
	}
	for {
		select {
		case <-ctx.Done():
		case v := <-sig:
			if v == syscall.SIGHUP {
				reload(s, f.Path, log)
				continue
			}
			log.Info("stopping", "signal", v.String())
		}
		break
	}
	stopMetrics()
	PrintKernelCounters(out, s)
	err = s.Stop()
	PrintCounters(out, s)
	return err
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

func serveMetrics(listen string, s *service.Service, log *slog.Logger) (func(), string, error) {
	if listen == "off" {
		return func() {}, "", nil
	}
	if listen == "" {
		listen = "127.0.0.1:9464"
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(service.NewCollector(s))
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, "", fmt.Errorf("metrics: listening on %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return func() {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(c)
	}, ln.Addr().String(), nil
}

// PrintCounters prints every port's and stage's counters as tables.
func PrintCounters(out io.Writer, s *service.Service) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "worker\tport\tqueue\trx\ttx\tdropped\tdrop reasons\t")
	for _, w := range s.Workers {
		if w.Worker == nil {
			continue
		}
		for i, pc := range w.PortCounters() {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%s\t\n", w.Index, s.File.Ports[i].Name, w.Queue[i], pc.RX, pc.TX, pc.DroppedTotal(), reasons(pc.Dropped))
		}
	}
	tw.Flush()
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "worker\tstage\tin\tout\tdropped\tdrop reasons\t")
	for _, w := range s.Workers {
		if w.Worker == nil {
			continue
		}
		for _, sc := range w.StageCounters() {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%s\t\n", w.Index, sc.Name, sc.In, sc.Out, sc.DroppedTotal(), reasons(sc.Dropped))
		}
	}
	tw.Flush()
}

func reasons[K interface {
	comparable
	fmt.Stringer
}](m map[K]uint64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// PrintKernelCounters prints what the XDP programs and the AF_XDP sockets
// saw: frames the kernel dropped before xnf could take them show here, not
// in the pipeline's counters. Call it before Stop.
func PrintKernelCounters(out io.Writer, s *service.Service) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "port\tinterface\txdp redirected\tpassed\tfiltered\tsocket rx_dropped\trx_ring_full\tfill_ring_empty\ttx_invalid\t")
	for i, d := range s.Devices {
		c, _ := d.Counters()
		var st afxdp.Stats
		for _, w := range s.Workers {
			if i < len(w.Ports) {
				if x, err := w.Ports[i].Socket().Stats(); err == nil {
					st.RXDropped += x.RXDropped
					st.RXRingFull += x.RXRingFull
					st.RXFillRingEmpty += x.RXFillRingEmpty
					st.TXInvalidDescs += x.TXInvalidDescs
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", d.Port, d.Name, c.Redirected, c.Passed, c.Filtered, st.RXDropped, st.RXRingFull, st.RXFillRingEmpty, st.TXInvalidDescs)
	}
	tw.Flush()
}
