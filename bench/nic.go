package bench

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/xnfdev/xnf/internal/lab"
)

// Receive is what in0's receive path (its NAPI: the XDP program, then the
// redirect into a socket or the stack) did during a window, per second,
// from the veth's own counters (ethtool -S in0, summed over queues). It
// shows work the DUT's core spent on frames that went nowhere: frames the
// XDP program ran on but could not hand to a socket (Drops) cost that core
// nearly what a forwarded one does.
type Receive struct {
	// XDPPackets: frames in0's XDP program ran on, per second.
	XDPPackets float64 `json:"xdp_pps"`
	// Redirected: frames redirected (into an AF_XDP socket or a DEVMAP).
	Redirected float64 `json:"redirect_pps"`
	// Drops: frames dropped on receive (for a veth: failed redirects, such
	// as into a socket whose RX ring was full).
	Drops float64 `json:"drop_pps"`
}

// vethStats reads ns's device ifname's ethtool statistics (needs ethtool).
func vethStats(ns *lab.NS, ifname string) (map[string]uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, "ethtool", "-S", ifname).Output()
	if err != nil {
		return nil, fmt.Errorf("ethtool -S %s in %s: %w", ifname, ns.Name, err)
	}
	return parseEthtoolStats(string(out)), nil
}

// parseEthtoolStats reads `ethtool -S` output ("     name: 123" lines).
func parseEthtoolStats(s string) map[string]uint64 {
	m := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			m[strings.TrimSpace(k)] = n
		}
	}
	return m
}

// receiveOf is the Receive between two readings sec seconds apart,
// summed over rx_queue_N_ counters.
func receiveOf(a, b map[string]uint64, sec float64) *Receive {
	sum := func(suffix string) float64 {
		var t uint64
		for k, v := range b {
			if strings.HasPrefix(k, "rx_queue_") && strings.HasSuffix(k, "_"+suffix) {
				t += v - a[k]
			}
		}
		return float64(t) / sec
	}
	return &Receive{XDPPackets: sum("xdp_packets"), Redirected: sum("xdp_redirect"), Drops: sum("drops")}
}
