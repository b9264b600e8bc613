package cli

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/service"
)

//go:embed demo.yaml
var demoChain []byte

// DemoChain is the embedded demo chain file.
func DemoChain() []byte { return demoChain }

func demoCmd() *cobra.Command {
	var mode string
	var frames uint64
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "build a lab, run the demo chain on it, drive traffic through it, tear it down (root)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return Demo(cmd.OutOrStdout(), mode, frames)
		},
	}
	cmd.Flags().StringVar(&mode, "mode", "auto", "XDP mode: auto, native or generic")
	cmd.Flags().Uint64Var(&frames, "frames", 100000, "generated frames in the burst")
	return cmd
}

type check struct {
	what string
	err  error
}

// Demo runs the whole demo and reports; it fails if any check failed.
func Demo(out io.Writer, mode string, burst uint64) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("demo: needs root (it creates network namespaces and attaches XDP programs)")
	}
	am, err := afxdp.ParseAttachMode(mode)
	if err != nil {
		return fmt.Errorf("demo: --mode: %w", err)
	}
	f, err := config.Parse("demo.yaml (embedded)", demoChain)
	if err != nil {
		return err
	}
	for i := range f.Ports {
		f.Ports[i].Mode = am
	}
	topo, err := lab.NewTopology("xnf", lab.TopologyOptions{Names: &demoNames})
	if err != nil {
		return err
	}
	defer func() {
		cerr := topo.Close()
		for _, n := range demoNames {
			if lab.Exists(n) {
				cerr = errors.Join(cerr, fmt.Errorf("demo: namespace %s left behind", n))
			}
		}
		if cerr == nil {
			fmt.Fprintln(out, "lab removed: no namespace, veth or XDP program left")
		}
		err = errors.Join(err, cerr)
	}()
	fmt.Fprint(out, "lab:\n  xnf-client (g0 198.18.0.1) -- (in0 198.18.0.2) xnf-dut (out0 198.18.1.1) -- (s0 198.18.1.2) xnf-server\n")

	// Ctrl-C (or SIGTERM) stops the service and removes the lab before
	// exiting, whatever step the demo is at.
	var s *service.Service
	var mu sync.Mutex
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	demoDone := make(chan struct{})
	defer close(demoDone)
	go func() {
		select {
		case <-sig:
		case <-demoDone:
			return
		}
		fmt.Fprintln(out, "\ninterrupted: stopping xnf and removing the lab")
		mu.Lock()
		if s != nil {
			s.Stop()
		}
		mu.Unlock()
		topo.Close()
		os.Exit(130)
	}()
	if err := topo.DUT.Do(func() error {
		svc, err := service.Start(f, newLogger("warn", "text"))
		mu.Lock()
		s = svc
		mu.Unlock()
		return err
	}); err != nil {
		return err
	}
	for _, d := range s.Devices {
		fmt.Fprintf(out, "xnf: %s: XDP attached to %s in %s mode\n", d.Port, d.Name, d.Mode())
	}
	fmt.Fprintf(out, "xnf: chain:")
	for _, st := range s.Workers[0].Stages {
		fmt.Fprintf(out, " %s", st.Name())
	}
	fmt.Fprintln(out)

	var checks []check
	add := func(what string, err error) {
		checks = append(checks, check{what, err})
		mark := "ok  "
		if err != nil {
			mark = "FAIL"
		}
		fmt.Fprintf(out, "  [%s] %s", mark, what)
		if err != nil {
			fmt.Fprintf(out, ": %v", err)
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintln(out, "traffic:")
	add("ping xnf's own address 198.18.0.2 from xnf-client", demoPing(topo.Gen, lab.DUTInAddr))
	add("ping xnf-server from xnf-client through xnf", demoPing(topo.Gen, lab.SinkAddr))
	add("ping from xnf-server to xnf-client is dropped by the firewall", expectFail(demoPing(topo.Sink, lab.GenAddr)))
	add("TCP: 4 MiB from xnf-client to xnf-server port 8080; the server sees the NAT address", demoTCP(topo, 8080, 4<<20))
	add("TCP to port 8081, which the firewall rejects, is refused at once (a RST from xnf)", expectRefused(demoTCP(topo, 8081, 1)))
	add("UDP: 100 requests from 100 client ports, 100 replies; 100 distinct translated sources", demoUDP(topo, 100))
	sent, gerr := demoBurst(topo, burst)
	add(fmt.Sprintf("burst: %d 64-byte UDP frames (paced to 100k/s, 256 flows) from xnf-client toward xnf-server", sent), gerr)

	fmt.Fprintln(out, "\nkernel side (frames the kernel dropped before xnf could take them show here):")
	PrintKernelCounters(out, s)
	serr := s.Stop()
	fmt.Fprintln(out, "\npipeline counters:")
	PrintCounters(out, s)
	if len(s.Workers) > 0 {
		for _, st := range s.Workers[0].Stages {
			if m, ok := config.Unwrap(st).(pipeline.StageMetrics); ok {
				fmt.Fprintf(out, "\n%s:", st.Name())
				v := m.StageMetrics()
				for _, k := range slices.Sorted(maps.Keys(v)) {
					if v[k] != 0 {
						fmt.Fprintf(out, " %s=%d", k, v[k])
					}
				}
				fmt.Fprintln(out)
			}
		}
	}
	printVerdicts(out, s)
	if serr != nil {
		add("clean stop: every frame back in the UMEM", serr)
	} else {
		fmt.Fprintln(out, "\nclean stop: workers drained, programs detached, every UMEM frame accounted for")
	}
	failed := 0
	for _, c := range checks {
		if c.err != nil {
			failed++
		}
	}
	fmt.Fprintf(out, "summary: %d of %d checks passed\n", len(checks)-failed, len(checks))
	if failed > 0 {
		return fmt.Errorf("demo: %d checks failed", failed)
	}
	return nil
}

func demoPing(ns *lab.NS, dst string) error { return ns.Ping(dst, uint16(os.Getpid()), 3) }

func expectFail(err error) error {
	if err == nil {
		return errors.New("it went through")
	}
	return nil
}

// expectRefused wants err to be a refused connection.
func expectRefused(err error) error {
	switch {
	case err == nil:
		return errors.New("it went through")
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%v, want connection refused", err)
	}
	return nil
}

func demoTCP(t *lab.Topology, port, size int) error {
	addr := net.JoinHostPort(lab.SinkAddr, strconv.Itoa(port))
	var ln net.Listener
	if err := t.Sink.Do(func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		return err
	}
	defer ln.Close()
	got := make(chan int, 1)
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		peer <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _ := io.Copy(io.Discard, c)
		got <- int(n)
	}()
	err := t.Gen.Do(func() error {
		c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
		if err != nil {
			return err
		}
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Write(make([]byte, size))
		c.Close()
		return err
	})
	if err != nil {
		return err
	}
	if n := <-got; n != size {
		return fmt.Errorf("server received %d of %d bytes", n, size)
	}
	if p := <-peer; p != lab.DUTOutAddr {
		return fmt.Errorf("the server saw the client as %s, not the NAT address %s", p, lab.DUTOutAddr)
	}
	return nil
}

func demoUDP(t *lab.Topology, n int) error {
	var srv *net.UDPConn
	if err := t.Sink.Do(func() (err error) {
		srv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(lab.SinkAddr), Port: 5353})
		return err
	}); err != nil {
		return err
	}
	defer srv.Close()
	peers := make(chan map[string]bool, 1)
	go func() {
		seen := map[string]bool{}
		defer func() { peers <- seen }()
		buf := make([]byte, 1500)
		srv.SetReadDeadline(time.Now().Add(10 * time.Second))
		for i := 0; i < n; i++ {
			k, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			seen[from.String()] = true
			srv.WriteToUDP(buf[:k], from)
		}
	}()
	ok := 0
	err := t.Gen.Do(func() error {
		// Every socket stays open to the end, so the kernel gives each
		// its own port (a closed one's may come back).
		var conns []*net.UDPConn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := 0; i < n; i++ {
			c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(lab.SinkAddr), Port: 5353})
			if err != nil {
				return err
			}
			conns = append(conns, c)
			c.Write([]byte(fmt.Sprintf("request %d", i)))
			c.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 64)
			if k, err := c.Read(buf); err == nil && string(buf[:k]) == fmt.Sprintf("request %d", i) {
				ok++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if ok != n {
		return fmt.Errorf("%d of %d replies", ok, n)
	}
	seen := <-peers
	for p := range seen {
		if host, _, _ := net.SplitHostPort(p); host != lab.DUTOutAddr {
			return fmt.Errorf("the server saw a client as %s, not the NAT address", p)
		}
	}
	if len(seen) != n {
		return fmt.Errorf("the server saw %d distinct translated sources, want %d", len(seen), n)
	}
	return nil
}

func demoBurst(t *lab.Topology, n uint64) (uint64, error) {
	if n == 0 {
		return 0, nil
	}
	// The server's kernel drops them (no listener on the port); the
	// counters show xnf routed them. Kernel sockets rather than the
	// benchmark's XDP generator, so users' binaries built on cli carry
	// none of the rig; paced, so the burst shows forwarding, not overload.
	sent, err := t.Gen.SendUDPFlows(lab.SinkAddr+":7777", 256, int(n), 18, 100000)
	return uint64(sent), err
}

// printVerdicts is the short table of what each function did.
func printVerdicts(out io.Writer, s *service.Service) {
	if len(s.Workers) == 0 {
		return
	}
	fmt.Fprintln(out, "\nwhat each function did:")
	for _, st := range s.Workers[0].Stages {
		m, ok := config.Unwrap(st).(pipeline.StageMetrics)
		if !ok {
			continue
		}
		v := m.StageMetrics()
		switch st.Name() {
		case "firewall":
			fmt.Fprintf(out, "  firewall  allowed %d, dropped %d (by rule or default policy), rejected %d (%d answered), %d flows tracked\n",
				v["accepted"], v["dropped"], v["rejected"], v["reject_sent"], v["conntrack_new"])
		case "nat":
			fmt.Fprintf(out, "  nat       translated %d packets of %d flows (%d kept their port)\n", v["translated"], v["snat_flows"], v["ports_kept"])
		case "router":
			fmt.Fprintf(out, "  router    routed %d, answered %d ARP and %d ping, sent %d ICMP errors\n", v["forwarded"], v["arp_replies"], v["echo_replies"], v["time_exceeded_sent"]+v["unreachable_sent"])
		}
	}
}
