// Command l2fwd is xnf's hello world: it forwards every frame between two
// interfaces through one shared UMEM, so a frame received on one port
// leaves the other by moving its descriptor, never its bytes.
//
//	sudo l2fwd -a in0 -b out0 -mode auto -for 10s
package main

import (
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/xnfdev/xnf/afxdp"
)

const burst = 64

// forward moves frames a->b and b->a until the deadline. onBatch, if set,
// sees each received batch before it is transmitted.
func forward(a, b *afxdp.Socket, until time.Time, onBatch func([]afxdp.Desc)) {
	u := a.UMEM()
	descs := make([]afxdp.Desc, burst)
	for time.Now().Before(until) {
		moved := 0
		for _, p := range [2][2]*afxdp.Socket{{a, b}, {b, a}} {
			in, out := p[0], p[1]
			n := in.Receive(descs)
			if onBatch != nil && n > 0 {
				onBatch(descs[:n])
			}
			sent := out.Transmit(descs[:n])
			u.FreeDescs(descs[sent:n]) // TX ring full: drop
			out.CompleteToFree()
			in.FillFromFree(1024 - in.FillLevel())
			moved += n
		}
		if moved == 0 { // idle: sleep in poll(2) instead of spinning a core
			a.Poll(time.Millisecond)
		}
	}
}

func open(name string, mode afxdp.AttachMode, u *afxdp.UMEM) (*afxdp.Device, *afxdp.Socket, error) {
	d, err := afxdp.Attach(name, afxdp.DeviceConfig{Mode: mode})
	if err != nil {
		return nil, nil, err
	}
	s, err := d.OpenQueue(0, u, afxdp.SocketConfig{})
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	s.FillFromFree(1024)
	return d, s, nil
}

func main() {
	a := flag.String("a", "in0", "first interface")
	b := flag.String("b", "out0", "second interface")
	m := flag.String("mode", "auto", "XDP mode: auto, native, generic")
	d := flag.Duration("for", 10*time.Second, "how long to forward")
	flag.Parse()
	mode, err := afxdp.ParseAttachMode(*m)
	if err != nil {
		log.Fatal(err)
	}
	u, err := afxdp.NewUMEM(afxdp.UMEMConfig{FrameCount: 4096})
	if err != nil {
		log.Fatal(err)
	}
	da, sa, err := open(*a, mode, u)
	if err != nil {
		log.Fatal(err)
	}
	defer da.Close()
	db, sb, err := open(*b, mode, u)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	fmt.Printf("forwarding %s <-> %s (%s, %s mode) for %v\n", *a, *b, da.Mode(), db.Mode(), *d)
	forward(sa, sb, time.Now().Add(*d), nil)
	fmt.Printf("%s: %+v\n%s: %+v\n", *a, sa.Counters(), *b, sb.Counters())
}
