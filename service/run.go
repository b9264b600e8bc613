package service

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
	"reflect"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/port/xdp"
)

// RunOptions shape Run: the lifecycle of `xnf run` around a started
// service.
type RunOptions struct {
	// Metrics is where Prometheus metrics are served (host:port; default
	// 127.0.0.1:9464); "off" serves none.
	Metrics string
	// Out receives what `xnf run` prints: the attached interfaces, the
	// metrics address, and the kernel's and the pipeline's counters at the
	// end. Nil prints nothing.
	Out io.Writer
	// Started runs once the service runs and serves metrics, before Run
	// waits (`xnf run` drops its capabilities here). An error stops the
	// service.
	Started func(*Service) error
	// Reload runs on SIGHUP; nil ignores the signal.
	Reload func(*Service)
}

// Run starts sp (New) and runs it until ctx is done, SIGINT or SIGTERM
// arrives, or a worker stops on a port error; then it drains, detaches and
// returns the first error. It is `xnf run` for a chain built in Go.
func Run(ctx context.Context, sp Spec, log *slog.Logger, o RunOptions) error {
	s, err := New(sp, log, Options{})
	if err != nil {
		return err
	}
	return s.Run(ctx, o)
}

// Run serves metrics and waits for ctx, SIGINT, SIGTERM or a failing
// worker, then stops the service (see Stop) and returns its error. SIGHUP
// calls o.Reload.
func (s *Service) Run(ctx context.Context, o RunOptions) error {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	for _, d := range s.Devices {
		fmt.Fprintf(out, "%s: XDP attached to %s in %s mode\n", d.Port, d.Name, d.Mode())
	}
	stopMetrics, addr, err := s.ServeMetrics(o.Metrics)
	if err != nil {
		return errors.Join(err, s.Stop())
	}
	defer stopMetrics()
	if o.Started != nil {
		if err := o.Started(s); err != nil {
			return errors.Join(err, s.Stop())
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
	// A worker that stopped on a port error ends the service: select over
	// every worker's Done channel, the signals and ctx.
	cases := []reflect.SelectCase{
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(sig)},
	}
	for _, w := range s.Workers {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w.Done())})
	}
	for {
		i, v, _ := reflect.Select(cases)
		if i == 1 {
			if v.Interface() == syscall.SIGHUP {
				if o.Reload != nil {
					o.Reload(s)
				}
				continue
			}
			s.log.Info("stopping", "signal", v.Interface().(os.Signal).String())
		} else if i > 1 {
			s.log.Error("worker stopped", "worker", s.Workers[i-2].Index, "err", s.Workers[i-2].Err())
		}
		break
	}
	stopMetrics()
	s.PrintKernelCounters(out)
	err = s.Stop()
	s.PrintCounters(out)
	return err
}

// ServeMetrics serves the service's metrics (NewCollector) on listen
// (default 127.0.0.1:9464; "off" serves none) and returns a function that
// stops the server, and the address it listens on.
func (s *Service) ServeMetrics(listen string) (stop func(), addr string, err error) {
	if listen == "off" {
		return func() {}, "", nil
	}
	if listen == "" {
		listen = "127.0.0.1:9464"
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(s))
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, "", fmt.Errorf("metrics: listening on %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server", "err", err)
		}
	}()
	return func() {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(c)
	}, ln.Addr().String(), nil
}

// PrintCounters prints every port's and stage's counters as tables, and
// the workers' hand-off counters when they hand packets to each other.
func (s *Service) PrintCounters(out io.Writer) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "worker\tport\tqueue\trx\ttx\tdropped\tdrop reasons\t")
	for _, w := range s.Workers {
		if w.Worker == nil {
			continue
		}
		for i, pc := range w.PortCounters() {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%s\t\n", w.Index, s.PortName(i), w.Queue[i], pc.RX, pc.TX, pc.DroppedTotal(), Reasons(pc.Dropped))
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
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%s\t\n", w.Index, sc.Name, sc.In, sc.Out, sc.DroppedTotal(), Reasons(sc.Dropped))
		}
	}
	tw.Flush()
	if s.handoff == nil {
		return
	}
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "worker\thanded off\treceived\tdropped (ring full)\tdropped (no frame)\t")
	for _, w := range s.Workers {
		if w.Worker == nil {
			continue
		}
		c := w.Counters()
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t\n", w.Index, c.HandedOff, c.ReceivedHandoff, c.HandoffFull, c.HandoffNoFrame)
	}
	tw.Flush()
}

// Reasons formats counters by reason as "a=1 b=2" (sorted), "-" for none.
func Reasons[K interface {
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
func (s *Service) PrintKernelCounters(out io.Writer) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "port\tinterface\txdp redirected\tpassed\tfiltered\tsocket rx_dropped\trx_ring_full\tfill_ring_empty\ttx_invalid\toffload dropped\t")
	for _, d := range s.Devices {
		c, _ := d.Counters()
		var st afxdp.Stats
		for _, w := range s.Workers {
			for _, p := range w.Ports {
				xp, ok := p.(*xdp.Port)
				if !ok || xp.Socket().Interface() != d.Name {
					continue
				}
				if x, err := xp.Socket().Stats(); err == nil {
					st.RXDropped += x.RXDropped
					st.RXRingFull += x.RXRingFull
					st.RXFillRingEmpty += x.RXFillRingEmpty
					st.TXInvalidDescs += x.TXInvalidDescs
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", d.Port, d.Name, c.Redirected, c.Passed, c.Filtered, st.RXDropped, st.RXRingFull, st.RXFillRingEmpty, st.TXInvalidDescs, c.Dropped)
	}
	tw.Flush()
}
