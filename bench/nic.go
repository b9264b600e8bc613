package bench

import (
	"bufio"
	"context"
	"fmt"
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
	// as into a socket with no fill buffer).
	Drops float64 `json:"drop_pps"`
}

// vethStats reads ns's device ifname's ethtool statistics (needs ethtool).
func vethStats(ns *lab.NS, ifname string) (map[string]uint64, error) {
	out, err := runIn(context.Background(), ns, 5*time.Second, "", "ethtool", "-S", ifname)
	if err != nil {
		return nil, fmt.Errorf("ethtool -S %s in %s: %w: %s", ifname, ns.Name, err, strings.TrimSpace(out))
	}
	return parseEthtoolStats(out), nil
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

// SocketDrops are the kernel's XDP_STATISTICS of xnf's in0 socket, as
// `xnf run` prints them when it stops: totals over the process's life
// (setup, warm-up and window), not rates of the window.
type SocketDrops struct {
	// RXDropped: no fill buffer, or a frame too big for a chunk.
	RXDropped uint64 `json:"rx_dropped"`
	// RXRingFull: copied into the UMEM, then dropped at a full RX ring.
	RXRingFull uint64 `json:"rx_ring_full"`
	// FillRingEmpty: times the kernel found the fill ring empty.
	FillRingEmpty uint64 `json:"fill_ring_empty"`
}

// parseSocketDrops finds ifname's row in the kernel-counters table `xnf
// run` prints on exit ("port interface xdp redirected passed filtered
// socket rx_dropped rx_ring_full fill_ring_empty tx_invalid"); nil when
// there is none.
func parseSocketDrops(out, ifname string) *SocketDrops {
	sc := bufio.NewScanner(strings.NewReader(out))
	header := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && f[0] == "port" && strings.Contains(sc.Text(), "rx_ring_full") {
			header = true
			continue
		}
		if !header || len(f) < 9 || f[1] != ifname {
			continue
		}
		var v [3]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[5+i], 10, 64)
			if err != nil {
				return nil
			}
			v[i] = n
		}
		return &SocketDrops{RXDropped: v[0], RXRingFull: v[1], FillRingEmpty: v[2]}
	}
	return nil
}
