package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/port/pcap"
)

func replayCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "replay -c chain.yaml in.pcap out.pcap",
		Short: "run a chain offline over a capture (no privileges needed)",
		Long: `replay feeds in.pcap into the chain's first port and writes every packet the chain
transmits, on any port, to out.pcap, keeping the input timestamps. Stages are built
offline: interface MACs come from the file (router interfaces need mac:) and kernel
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
			return Replay(f, args[0], args[1], cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "chain file (YAML)")
	return cmd
}

// replayPort reads from the capture (port 0 only) and writes to the shared output.
type replayPort struct {
	name string
	in   *pcap.Port
	out  *pcap.Port
}

func (r *replayPort) Name() string { return r.name }
func (r *replayPort) Receive(b *packet.Batch, max int) (int, error) {
	if r.in == nil {
		return 0, nil
	}
	return r.in.Receive(b, max)
}
func (r *replayPort) Transmit(p []*packet.Packet) (int, error) { return r.out.Transmit(p) }
func (r *replayPort) Release(p []*packet.Packet)               { r.out.Release(p) }
func (r *replayPort) Flush() error                             { return r.out.Flush() }

// Close leaves the capture files to Replay, which closes each once.
func (r *replayPort) Close() error { return nil }

// Replay runs the chain of f over a capture.
func Replay(f *config.File, inPath, outPath string, out io.Writer) error {
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
	stages, err := f.Stages(&config.BuildContext{File: f, Check: true})
	if err != nil {
		w.Close()
		return err
	}
	var ports []pipeline.Port
	for i, p := range f.Ports {
		rp := &replayPort{name: p.Name, out: w}
		if i == 0 {
			rp.in = in
		}
		ports = append(ports, rp)
	}
	wk, err := pipeline.NewWorker(pipeline.Config{Ports: ports, Stages: stages, DefaultOut: f.DefaultOut(), CPU: -1})
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
	var tx, dropped uint64
	for _, c := range pc {
		tx += c.TX
		dropped += c.DroppedTotal()
	}
	fmt.Fprintf(out, "%s: %d packets in, %d out to %s, %d dropped, %d too big for a frame\n", inPath, pc[0].RX, tx, outPath, dropped, in.Oversize())
	for _, sc := range wk.StageCounters() {
		fmt.Fprintf(out, "  %-12s in %d out %d dropped %d %s\n", sc.Name, sc.In, sc.Out, sc.DroppedTotal(), reasons(sc.Dropped))
	}
	if pool.Available() != pool.Total() {
		return fmt.Errorf("replay: %d of %d frames not returned (a bug)", pool.Total()-pool.Available(), pool.Total())
	}
	return nil
}
