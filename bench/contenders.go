package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/rig"
	"github.com/xnfdev/xnf/internal/rig/rigbpf"
	"github.com/xnfdev/xnf/service"
)

// Chain is a chain section of an xnf config for the benchmark, with the
// frames it expects.
type Chain struct {
	// YAML is the "chain:" section (top level, may be "chain: []").
	YAML   string
	Frames Frames
}

// ExampleChainYAML is the example chain of the benchmark: firewall ->
// NAT -> router, the demo's chain with the firewall rules of NFTRuleset
// (its Linux equivalent: the same 20 rules, the {22, 80, 443} set written
// as three), masquerade behind out0's address, and static neighbors (the
// sink drops ARP). The firewall and the NAT share one conntrack table.
const ExampleChainYAML = `chain:
  - type: firewall
    default: drop
    rules:
      - accept state established,related
      - drop state invalid
      - drop src 192.0.2.0/24
      - drop src 198.51.100.0/24
      - drop src 203.0.113.0/24
      - drop dst 192.0.2.0/24
      - drop dst 198.51.100.0/24
      - drop dst 203.0.113.0/24
      - drop proto tcp dport 23
      - drop proto tcp dport 135-139
      - drop proto tcp dport 445
      - drop proto udp dport 137-138
      - drop proto udp dport 1900
      - drop proto udp dport 5353
      - drop proto tcp dport 3389
      - drop proto tcp dport 5900
      - accept proto tcp dst 198.18.1.0/24 dport 22
      - accept proto tcp dst 198.18.1.0/24 dport 80
      - accept proto tcp dst 198.18.1.0/24 dport 443
      - accept proto udp dst 198.18.1.0/24 dport 53
      - accept proto udp dst 198.18.1.0/24 dport 123
      - accept in in proto udp dst 198.18.1.0/24 dport 7777
      - accept proto icmp
  - type: nat
    inside: [in]
    outside: [out]
    snat:
      to: [198.18.1.1]
  - type: router
    interfaces:
      - port: in
        addrs: [198.18.0.2/24]
        mac: 02:00:00:00:00:02
      - port: out
        addrs: [198.18.1.1/24]
        mac: 02:00:00:00:01:01
    neighbors:
      - port: in
        addr: 198.18.0.1
        mac: 02:00:00:00:00:01
      - port: out
        addr: 198.18.1.2
        mac: 02:00:00:00:01:02
`

// ChainStages returns the chain of the last n stages of
// ExampleChainYAML (0..3): 0 is the empty chain, 1 the router, 2 NAT ->
// router, 3 firewall -> NAT -> router, the chain-length sweep. Every
// chain but the empty one is fed routed frames.
func ChainStages(n int) (Chain, error) {
	body, ok := strings.CutPrefix(ExampleChainYAML, "chain:\n")
	if !ok {
		return Chain{}, errors.New(`bench: ExampleChainYAML does not start with "chain:"`)
	}
	var stages []string
	for _, line := range strings.SplitAfter(body, "\n") {
		if strings.HasPrefix(line, "  - ") || len(stages) == 0 {
			stages = append(stages, "")
		}
		stages[len(stages)-1] += line
	}
	if n < 0 || n > len(stages) {
		return Chain{}, fmt.Errorf("bench: chain length %d outside 0..%d (the example chain's stages)", n, len(stages))
	}
	if n == 0 {
		return EmptyChain, nil
	}
	return Chain{YAML: "chain:\n" + strings.Join(stages[len(stages)-n:], ""), Frames: Routed}, nil
}

// WithChains returns cs with its xnf chain contenders (native and
// generic, any chain) replaced by one per chain and mode, in the order of
// chains, at the place of the first one. Modes are those cs has (native
// and generic when it has none).
func WithChains(cs []Contender, chains []Chain) []Contender {
	var modes []string
	at := -1
	var rest []Contender
	for _, c := range cs {
		if c.Name == "xnf" && (c.Mode == "native" || c.Mode == "generic") {
			if at < 0 {
				at = len(rest)
			}
			if !slices.Contains(modes, c.Mode) {
				modes = append(modes, c.Mode)
			}
			continue
		}
		rest = append(rest, c)
	}
	if at < 0 {
		at = 0
	}
	if len(modes) == 0 {
		modes = []string{"native", "generic"}
	}
	var xs []Contender
	for _, ch := range chains {
		for _, m := range modes {
			xs = append(xs, XNF(m, ch))
		}
	}
	return slices.Concat(rest[:at], xs, rest[at:])
}

// Chains of the benchmark.
var (
	// EmptyChain forwards in -> out unchanged: pure forwarding.
	EmptyChain = Chain{YAML: "chain: []\n", Frames: L2}
	// ExampleChain is ExampleChainYAML, fed routed frames.
	ExampleChain = Chain{YAML: ExampleChainYAML, Frames: Routed}
)

// XNFConfig is the complete config file of an xnf contender: in0 and out0
// in the given XDP mode, one worker pinned to cpu, metrics off, and the
// chain section.
func XNFConfig(mode string, cpu int, chain string) string {
	return XNFConfigQueues(mode, []int{cpu}, chain)
}

// XNFConfigQueues is XNFConfig with one worker per CPU of cpus: worker i
// serves queue i of both ports, pinned to cpus[i].
func XNFConfigQueues(mode string, cpus []int, chain string) string {
	return xnfConfig(mode, cpus, chain, "", "")
}

// xnfConfig is XNFConfigQueues with port lines added to both ports
// (indented as port fields).
func xnfConfig(mode string, cpus []int, chain, port, workers string) string {
	var qs, cs []string
	for i, c := range cpus {
		qs = append(qs, fmt.Sprint(i))
		cs = append(cs, fmt.Sprint(c))
	}
	q, c := strings.Join(qs, ", "), strings.Join(cs, ", ")
	return fmt.Sprintf(`ports:
  - name: in
    interface: in0
    mode: %s
    queues: [%s]
%s  - name: out
    interface: out0
    mode: %s
    queues: [%s]
%sumem:
  frame_size: 2048
  frames: 8192
workers:
  cpus: [%s]
%smetrics:
  listen: "off"
%s`, mode, q, port, mode, q, port, c, workers, chain)
}

// Label is the chain's stage types joined by ">" ("empty" for none).
func (c Chain) Label() string {
	f, err := config.Parse("bench chain", []byte(XNFConfig("native", 1, c.YAML)))
	if err != nil {
		return "invalid"
	}
	if len(f.Chain) == 0 {
		return "empty"
	}
	var t []string
	for _, s := range f.Chain {
		t = append(t, s.Type)
	}
	return strings.Join(t, ">")
}

// XNF runs chain as a user does: `xnf run -c chain.yaml` as a process
// of its own in the DUT namespace, in mode ("native" or "generic"), its
// worker on the env's CPU; with two queues, two workers, worker i on
// queue i and CPU i. It is ready once xnf reports both ports attached and
// is stopped with SIGTERM, after which it must exit 0: its own check that
// every frame came back to its UMEM.
func XNF(mode string, chain Chain) Contender {
	return XNFWith("xnf", "", "", mode, chain)
}

// XNFWith is XNF with port lines added to both ports of its config
// ("    prefer_busy_poll: false\n"), named name: the A/B rows of a data-path
// option.
func XNFWith(name, port, workers, mode string, chain Chain) Contender {
	return xnfProcess(name, port, workers, "", mode, chain)
}

// XNFBinary is XNF run from another xnf binary (a build of an earlier
// commit, --baseline), named name: the side-by-side rows of a change.
func XNFBinary(name, binary, mode string, chain Chain) Contender {
	return xnfProcess(name, "", "", binary, mode, chain)
}

// xnfProcess runs `xnf run` (binary, or the harness's own xnf when empty)
// and, when it stops, reads the kernel's counters of its in0 socket from
// the table it prints (SocketDrops).
func xnfProcess(name, port, workers, binary, mode string, chain Chain) Contender {
	return xnfContender(name, port, workers, mode, chain, func(env *Env, yaml string) (func() error, error) {
		dir, err := os.MkdirTemp("", "xnf-bench-")
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "chain.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		argv, penv := append(slices.Clone(env.Binary), "run", "-c", path), env.BinaryEnv
		if binary != "" {
			argv, penv = []string{binary, "run", "-c", path}, nil
		}
		p, err := startProcess(env.Topo.DUT, "xnf run", argv, penv,
			func(out string) bool { return strings.Count(out, "XDP attached to") >= 2 }, 20*time.Second)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		return func() error {
			err := p.signal(syscall.SIGTERM, 10*time.Second)
			env.socket = parseSocketDrops(p.Output(), "in0")
			return errors.Join(err, os.RemoveAll(dir))
		}, nil
	})
}

// XNFInProcess is XNF run through service.Start inside the harness's own
// process, as the harness did before it ran xnf as a process (the
// "xnf-inproc" rows): kept to measure what the difference is.
func XNFInProcess(mode string, chain Chain) Contender {
	return xnfContender("xnf-inproc", "", "", mode, chain, func(env *Env, yaml string) (func() error, error) {
		f, err := config.Parse("bench chain ("+mode+")", []byte(yaml))
		if err != nil {
			return nil, err
		}
		var s *service.Service
		if err := env.Topo.DUT.Do(func() (err error) {
			s, err = service.Start(f, slog.New(slog.DiscardHandler))
			return err
		}); err != nil {
			return nil, err
		}
		return s.Stop, nil
	})
}

func xnfContender(name, port, workers, mode string, chain Chain, start func(env *Env, yaml string) (func() error, error)) Contender {
	return Contender{Name: name, Mode: mode, Chain: chain.Label(), Frames: chain.Frames, Multiqueue: true, TCP: true,
		Setup: func(env *Env) (func() error, error) {
			cpus := []int{env.CPU}
			if env.Cell.Queues == 2 {
				cpus = []int{0, 1}
			}
			yaml := xnfConfig(mode, cpus, chain.YAML, port, workers)
			if _, err := config.Parse("bench chain ("+mode+")", []byte(yaml)); err != nil {
				return nil, err
			}
			// Generic XDP on a veth: the generator's XDP_TX frames reach
			// in0 only with GRO on (there is no native program).
			gro := mode == "generic"
			if gro {
				if err := env.Topo.DUT.SetGRO("in0", true); err != nil {
					return nil, err
				}
			}
			undo := func() error {
				if gro {
					return env.Topo.DUT.SetGRO("in0", false)
				}
				return nil
			}
			stop, err := start(env, yaml)
			if err != nil {
				return nil, errors.Join(err, undo())
			}
			return func() error { return errors.Join(stop(), undo()) }, nil
		}}
}

// Offload attempts to attach xnf's program in offload mode on in0. On a
// NIC without offload (veth, almost all) the row says why; the redirect
// program can never run offloaded anyway (no XSKMAP on NICs), so there is
// nothing to measure either way.
func Offload() Contender {
	return Contender{Name: "xnf", Mode: "offload", Chain: "-", Frames: L2,
		Setup: func(env *Env) (func() error, error) {
			err := env.Topo.DUT.Do(func() error {
				d, err := afxdp.Attach("in0", afxdp.DeviceConfig{Mode: afxdp.ModeOffload})
				if err == nil {
					d.Close()
				}
				return err
			})
			if err == nil {
				return nil, Skipf("offload attached, but an offloaded program cannot feed AF_XDP sockets: nothing to measure")
			}
			msg := err.Error()
			if i := strings.Index(msg, "not supported by "); i >= 0 {
				msg = msg[i:]
			}
			return nil, &Skip{Reason: msg}
		}}
}

// XDPRedirect is the in-kernel ceiling: xdp_fwd.c (internal/rig/rigbpf)
// on in0 (native) redirects every frame to out0 through a DEVMAP.
func XDPRedirect() Contender {
	return Contender{Name: "xdp-redirect", Mode: "native", Chain: "-", Frames: L2, Multiqueue: true,
		Setup: func(env *Env) (func() error, error) {
			var objs rigbpf.FwdObjects
			if err := rigbpf.LoadFwdObjects(&objs, nil); err != nil {
				return nil, fmt.Errorf("loading xdp_fwd: %w", err)
			}
			in, err := env.Topo.DUT.Link("in0")
			if err != nil {
				objs.Close()
				return nil, err
			}
			out, err := env.Topo.DUT.Link("out0")
			if err != nil {
				objs.Close()
				return nil, err
			}
			var l link.Link
			// The DEVMAP resolves the ifindex in the updating thread's
			// namespace, the attach too: both inside the DUT.
			if err := env.Topo.DUT.Do(func() (err error) {
				if err := objs.FwdPorts.Put(uint32(0), uint32(out.Attrs().Index)); err != nil {
					return fmt.Errorf("xdp_fwd: out0 into the DEVMAP: %w", err)
				}
				l, err = link.AttachXDP(link.XDPOptions{Program: objs.XnfFwd, Interface: in.Attrs().Index, Flags: link.XDPDriverMode})
				return err
			}); err != nil {
				objs.Close()
				return nil, fmt.Errorf("attaching xdp_fwd to in0: %w", err)
			}
			return func() error { return errors.Join(l.Close(), objs.Close()) }, nil
		}}
}

// Linux is kernel IPv4 forwarding in the DUT namespace, no rules
// (rig.KernelForward: a counting XDP_PASS program on in0 lets the
// generator's XDP_TX deliver).
func Linux() Contender {
	return Contender{Name: "linux", Mode: "-", Chain: "-", Frames: Routed, Multiqueue: true, TCP: true, Setup: linuxSetup}
}

func linuxSetup(env *Env) (func() error, error) {
	k, err := rig.KernelForward(env.Topo)
	if err != nil {
		return nil, err
	}
	return func() error {
		return errors.Join(k.Close(), env.Topo.DUT.Sysctl("net.ipv4.ip_forward", "0"))
	}, nil
}

// NFTRuleset is the nftables equivalent of the example chain as the
// project defines it (firewall -> NAT -> router): a stateful forward
// filter of 21 rules, policy drop, whose 20th admits the benchmark's UDP
// traffic (the 21st, ICMP, is for the TCP rows' pings and never reached
// by it), and masquerade out of out0 (conntrack on every packet).
// The generator's flows never see a reply, so conntrack keeps them "new"
// and every packet walks the whole filter.
const NFTRuleset = `table inet xnfbench {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ct state invalid drop
		ip saddr 192.0.2.0/24 drop
		ip saddr 198.51.100.0/24 drop
		ip saddr 203.0.113.0/24 drop
		ip daddr 192.0.2.0/24 drop
		ip daddr 198.51.100.0/24 drop
		ip daddr 203.0.113.0/24 drop
		tcp dport 23 drop
		tcp dport 135-139 drop
		tcp dport 445 drop
		udp dport 137-138 drop
		udp dport 1900 drop
		udp dport 5353 drop
		tcp dport 3389 drop
		tcp dport 5900 drop
		ip daddr 198.18.1.0/24 tcp dport { 22, 80, 443 } accept
		ip daddr 198.18.1.0/24 udp dport 53 accept
		ip daddr 198.18.1.0/24 udp dport 123 accept
		iifname "in0" oifname "out0" ip daddr 198.18.1.0/24 udp dport 7777 accept
		ip protocol icmp accept
	}
}
table ip xnfbench_nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "out0" masquerade
	}
}
`

// LinuxNFT is Linux forwarding with NFTRuleset loaded in the DUT
// namespace (needs the nft binary).
func LinuxNFT() Contender {
	return Contender{Name: "linux", Mode: "-", Chain: "nft-fw21-ct-masq", Frames: Routed, Multiqueue: true, TCP: true,
		Setup: func(env *Env) (func() error, error) {
			if _, err := exec.LookPath("nft"); err != nil {
				return nil, Skipf("skipped: nft not found (apt-get install nftables)")
			}
			if err := nft(env.Topo.DUT, NFTRuleset, "-f", "-"); err != nil {
				return nil, err
			}
			undo := func() error {
				return errors.Join(nft(env.Topo.DUT, "", "delete", "table", "inet", "xnfbench"),
					nft(env.Topo.DUT, "", "delete", "table", "ip", "xnfbench_nat"))
			}
			td, err := linuxSetup(env)
			if err != nil {
				return nil, errors.Join(err, undo())
			}
			return func() error { return errors.Join(td(), undo()) }, nil
		}}
}

// nft runs the nft binary in ns with stdin.
func nft(ns *lab.NS, stdin string, args ...string) error {
	out, err := runIn(context.Background(), ns, 10*time.Second, stdin, append([]string{"nft"}, args...)...)
	if err != nil {
		return fmt.Errorf("nft %s in %s: %w: %s", strings.Join(args, " "), ns.Name, err, strings.TrimSpace(out))
	}
	return nil
}

// attachMode is the XDP mode of ns's device ifname as the kernel reports
// it ("" when none).
func attachMode(ns *lab.NS, ifname string) string {
	l, err := ns.Link(ifname)
	if err != nil || l.Attrs().Xdp == nil || !l.Attrs().Xdp.Attached {
		return ""
	}
	switch l.Attrs().Xdp.AttachMode {
	case 1:
		return "native"
	case 2:
		return "generic"
	case 3:
		return "offload"
	}
	return ""
}

// checkClean makes sure no XDP program is left on the DUT's interfaces
// after a contender's teardown. A legacy (netlink) attachment, which
// survives its owner, is removed; an error says what was left.
func checkClean(topo *lab.Topology) error {
	var errs []error
	for _, ifname := range []string{"in0", "out0"} {
		l, err := topo.DUT.Link(ifname)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		x := l.Attrs().Xdp
		if x == nil || !x.Attached {
			continue
		}
		if err := topo.DUT.Do(func() error { return netlink.LinkSetXdpFd(l, -1) }); err != nil {
			errs = append(errs, fmt.Errorf("bench: XDP program %d left on %s and not removable: %w", x.ProgId, ifname, err))
			continue
		}
		if mode := attachMode(topo.DUT, ifname); mode != "" {
			errs = append(errs, fmt.Errorf("bench: XDP program %d left on %s (%s)", x.ProgId, ifname, mode))
		}
	}
	return errors.Join(errs...)
}
