package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

func init() { config.Register("example/sampler", build) }

// Config is the stage's YAML:
//
//   - type: example/sampler
//     file: sample.pcapng
//     every: 100
//     flows: [{proto: udp, dst: 198.18.1.0/24, dport: 53}]
type Config struct {
	File    string `yaml:"file"`
	Every   int    `yaml:"every"`   // write 1 in Every matching packets (default 1)
	Queue   int    `yaml:"queue"`   // samples waiting for the writer (default 1024)
	Snaplen int    `yaml:"snaplen"` // bytes kept of each packet (default 256)
	Flows   []Flow `yaml:"flows"`   // none: every packet
}

// Flow chooses packets; empty fields match anything.
type Flow struct {
	Proto    string `yaml:"proto"` // tcp, udp, icmp
	Src      string `yaml:"src"`   // a prefix such as 198.18.0.0/24
	Dst      string `yaml:"dst"`
	SPort    uint16 `yaml:"sport"`
	DPort    uint16 `yaml:"dport"`
	proto    uint8
	src, dst netip.Prefix
}

// compile checks the flows and parses their fields.
func (c *Config) compile() error {
	for i := range c.Flows {
		f := &c.Flows[i]
		p, ok := map[string]uint8{"": 0, "tcp": packet.ProtoTCP, "udp": packet.ProtoUDP, "icmp": packet.ProtoICMP}[f.Proto]
		if !ok {
			return fmt.Errorf("flows[%d].proto: %q: expected tcp, udp or icmp", i, f.Proto)
		}
		f.proto = p
		for _, a := range []struct {
			name, s string
			to      *netip.Prefix
		}{{"src", f.Src, &f.src}, {"dst", f.Dst, &f.dst}} {
			var err error
			if *a.to, err = netip.ParsePrefix(a.s); a.s != "" && err != nil {
				return fmt.Errorf("flows[%d].%s: %q: expected a prefix such as 198.18.0.0/24", i, a.name, a.s)
			}
		}
	}
	return nil
}

func build(ctx *config.BuildContext, sc *config.StageConfig) (pipeline.Stage, error) {
	var c Config
	if err := sc.Decode(&c); err != nil {
		return nil, err
	}
	if c.File == "" {
		return nil, sc.Errorf("file", "missing (expected a pcapng file name)")
	}
	// Check everything before creating the file, so a bad configuration
	// leaves no empty file (and no open one) behind.
	if err := c.compile(); err != nil {
		return nil, configError(sc, err)
	}
	var out io.Writer
	if !ctx.Check {
		// Each worker writes its own file: worker 0 file, worker i file.i.
		name := c.File
		if ctx.Worker > 0 {
			name = fmt.Sprintf("%s.%d", name, ctx.Worker)
		}
		f, err := os.Create(name)
		if err != nil {
			return nil, sc.Errorf("file", "%v", err)
		}
		out = f
	}
	s, err := New(c, out)
	if err != nil {
		if f, ok := out.(*os.File); ok {
			f.Close()
			os.Remove(f.Name())
		}
		return nil, configError(sc, err)
	}
	return s, nil
}

// configError turns "field: message" from compile into an error that
// names the file, line and field.
func configError(sc *config.StageConfig, err error) error {
	field, msg, _ := strings.Cut(err.Error(), ": ")
	return sc.Errorf(field, "%s", msg)
}
