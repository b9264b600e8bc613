package cli

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/spf13/cobra"

	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/port/pcap"
)

func replayCmd() *cobra.Command {
	var path string
	var byMAC []string
	cmd := &cobra.Command{
		Use:   "replay -c chain.yaml in.pcap out.pcap",
		Short: "run a chain offline over a capture (no privileges needed)",
		Long: `replay feeds in.pcap (pcap or pcapng) into the chain and writes every packet the
chain transmits, on any port, to out.pcap, keeping the input timestamps. Each packet
enters the port its pcapng interface names (a port's name or interface), or the port
of that interface's number when the capture names none; a classic pcap enters the
first port. --port-by-mac picks the port by source MAC instead, for two-sided
captures taken on one interface. Stages are built offline, with the tables xnf run
would have: interface MACs come from the file (router interfaces need mac:) and kernel
mode is off.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if path == "" {
				return errors.New("replay needs a chain file: xnf replay -c chain.yaml in.pcap out.pcap")
			}
			f, err := config.Load(path)
			if err != nil {
				return err
			}
			macs, err := parsePortByMAC(f, byMAC)
			if err != nil {
				return err
			}
			return Replay(f, args[0], args[1], cmd.OutOrStdout(), ReplayOptions{PortByMAC: macs})
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "chain file (YAML)")
	cmd.Flags().StringSliceVar(&byMAC, "port-by-mac", nil, "MAC=port: frames from this source MAC enter this port (repeat or comma-separate; then every frame's source MAC must be listed)")
	return cmd
}

// ReplayOptions tune Replay.
type ReplayOptions struct {
	// PortByMAC, when set, picks each frame's ingress port (an index into
	// the file's ports) by its source MAC instead of its pcapng interface.
	PortByMAC map[[6]byte]int
}

// parsePortByMAC reads --port-by-mac values: MAC=port.
func parsePortByMAC(f *config.File, vals []string) (map[[6]byte]int, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	idx := f.PortIndex()
	m := map[[6]byte]int{}
	for _, v := range vals {
		mac, name, ok := strings.Cut(v, "=")
		hw, err := net.ParseMAC(mac)
		if !ok || err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("--port-by-mac %q: expected MAC=port, such as 02:00:00:00:00:01=in", v)
		}
		i, ok := idx[name]
		if !ok {
			return nil, fmt.Errorf("--port-by-mac %q: %s has no port %q (ports: %s)", v, f.Path, name, portNames(f))
		}
		m[[6]byte(hw)] = int(i)
	}
	return m, nil
}

func portNames(f *config.File) string {
	var names []string
	for _, p := range f.Ports {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

// replayRoute picks a captured packet's ingress port: by source MAC when
// asked, else by its pcapng interface's name (a port's name or interface),
// else by the interface's number.
func replayRoute(f *config.File, o ReplayOptions) func(pcap.Packet) (int, error) {
	if o.PortByMAC != nil {
		return func(p pcap.Packet) (int, error) {
			if len(p.Data) < 12 {
				return 0, errors.New("frame shorter than an Ethernet header")
			}
			src := [6]byte(p.Data[6:12])
			if i, ok := o.PortByMAC[src]; ok {
				return i, nil
			}
			return 0, fmt.Errorf("source MAC %s is in no --port-by-mac", net.HardwareAddr(src[:]))
		}
	}
	return func(p pcap.Packet) (int, error) {
		if p.Name != "" {
			for i, port := range f.Ports {
				if p.Name == port.Name || p.Name == port.Interface {
					return i, nil
				}
			}
			return 0, fmt.Errorf("capture interface %d (%s) is no port of %s (ports: %s); name it after one, or use --port-by-mac", p.Interface, p.Name, f.Path, portNames(f))
		}
		if p.Interface < len(f.Ports) {
			return p.Interface, nil
		}
		return 0, fmt.Errorf("capture interface %d: %s has %d ports; use --port-by-mac", p.Interface, f.Path, len(f.Ports))
	}
}

// replayPort receives a capture's packets for one port and writes to the
// shared output.
type replayPort struct {
	name string
	in   pipeline.Port
	out  *pcap.Port
}

func (r *replayPort) Name() string { return r.name }
func (r *replayPort) Receive(b *packet.Batch, max int) (int, error) {
	return r.in.Receive(b, max)
}
func (r *replayPort) Transmit(p []*packet.Packet) (int, error) { return r.out.Transmit(p) }
func (r *replayPort) Release(p []*packet.Packet)               { r.out.Release(p) }
func (r *replayPort) Flush() error                             { return r.out.Flush() }

// Close leaves the capture files to Replay, which closes each once.
func (r *replayPort) Close() error { return nil }

// Replay runs the chain of f over a capture.
func Replay(f *config.File, inPath, outPath string, out io.Writer, o ReplayOptions) error {
	pool := pipeline.NewMemPool(4096, 2048)
	in, err := pcap.OpenFile(inPath, pool)
	if err != nil {
		return err
	}
	defer in.Close()
	w, err := pcap.CreateFile(outPath, pool)
	if err != nil {
		return err
	}
	stages, err := f.Stages(&config.BuildContext{File: f, Offline: true})
	if err != nil {
		w.Close()
		return err
	}
	var ports []pipeline.Port
	for i, in := range in.Split(len(f.Ports), replayRoute(f, o)) {
		ports = append(ports, &replayPort{name: f.Ports[i].Name, in: in, out: w})
	}
	// The stages run on the capture's clock, so timeouts expire as they
	// did when it was taken.
	wk, err := pipeline.NewWorker(pipeline.Config{Ports: ports, Stages: stages, DefaultOut: f.DefaultOut(), CPU: -1, Clock: in.Now})
	if err != nil {
		w.Close()
		return err
	}
	for !in.Done() && wk.Err() == nil {
		wk.Poll()
	}
	wk.Poll()
	if err := errors.Join(in.Err(), w.Close()); err != nil {
		return err
	}
	pc := wk.PortCounters()
	var rx, tx, dropped uint64
	for _, c := range pc {
		rx += c.RX
		tx += c.TX
		dropped += c.DroppedTotal()
	}
	fmt.Fprintf(out, "%s: %d packets in, %d out to %s, %d dropped, %d too big for a frame\n", inPath, rx, tx, outPath, dropped, in.Oversize())
	if len(pc) > 1 {
		for i, c := range pc {
			fmt.Fprintf(out, "  port %-8s in %d out %d\n", f.Ports[i].Name, c.RX, c.TX)
		}
	}
	for _, sc := range wk.StageCounters() {
		fmt.Fprintf(out, "  %-12s in %d out %d dropped %d %s\n", sc.Name, sc.In, sc.Out, sc.DroppedTotal(), reasons(sc.Dropped))
	}
	if pool.Available() != pool.Total() {
		return fmt.Errorf("replay: %d of %d frames not returned (a bug)", pool.Total()-pool.Available(), pool.Total())
	}
	return nil
}
