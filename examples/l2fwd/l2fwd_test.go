package main

import (
	"testing"
	"time"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/internal/lab"
)

// TestL2FwdForwardsEveryFrameWithoutCopy sends N kernel UDP datagrams from
// gen through l2fwd on the DUT to a kernel socket in sink. gen's neighbor
// entry for its gateway carries the sink's MAC, so pure L2 forwarding
// (no MAC rewrite) delivers to the sink's stack.
func TestL2FwdForwardsEveryFrameWithoutCopy(t *testing.T) {
	for _, mode := range []afxdp.AttachMode{afxdp.ModeNative, afxdp.ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			topo := lab.TopologyForTest(t, "l2fwd", lab.TopologyOptions{})
			if err := topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.SinkMAC); err != nil {
				t.Fatal(err)
			}
			u, err := afxdp.NewUMEM(afxdp.UMEMConfig{FrameCount: 4096})
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			var da, db *afxdp.Device
			var sa, sb *afxdp.Socket
			if err := topo.DUT.Do(func() (err error) {
				if da, sa, err = open("in0", mode, u); err != nil {
					return err
				}
				db, sb, err = open("out0", mode, u)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer da.Close()
			defer db.Close()

			sink, err := topo.Sink.ListenUDP(lab.SinkAddr, 9000)
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()

			const n = 2000
			rxAddrs := 0
			done := make(chan struct{})
			go func() {
				forward(sa, sb, time.Now().Add(3*time.Second), func(d []afxdp.Desc) { rxAddrs += len(d) })
				close(done)
			}()
			// Paced to stay within the rings of a copy-mode forwarder.
			if err := topo.Gen.SendUDP(lab.SinkAddr+":9000", n, "frame-%d", 256, time.Millisecond); err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			buf := make([]byte, 2048)
			sink.SetReadDeadline(time.Now().Add(3 * time.Second))
			for len(seen) < n {
				k, _, err := sink.ReadFromUDP(buf)
				if err != nil {
					break
				}
				seen[string(buf[:k])] = true
			}
			<-done
			if len(seen) != n {
				pa, _ := da.Counters()
				st, _ := sb.Stats()
				t.Fatalf("sink received %d of %d datagrams (in0 %+v, program %+v; out0 %+v %+v)", len(seen), n, sa.Counters(), pa, sb.Counters(), st)
			}
			// Zero copy: the loop never allocates a frame, and Transmit refuses
			// any frame the application does not hold (Violations), so every
			// frame sent on out0 is a frame received on in0, moved by address.
			ca, cb := sa.Counters(), sb.Counters()
			if ca.RXPackets != n || cb.TXPackets != n || rxAddrs != n {
				t.Errorf("in0 rx %d, out0 tx %d, batches saw %d; want %d each", ca.RXPackets, cb.TXPackets, rxAddrs, n)
			}
			if v := u.Violations(); v != 0 {
				t.Errorf("%d frame ownership violations", v)
			}
			if a := u.Accounting(); !a.Balanced() || a.App != 0 {
				t.Errorf("UMEM accounting: %v", a)
			}
		})
	}
}
