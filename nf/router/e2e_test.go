package router_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/internal/dut"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/nf/router"
	"github.com/xnfdev/xnf/pipeline"
)

func mac(s string) [6]byte { m, _ := net.ParseMAC(s); return [6]byte(m) }

// routerLab runs xnf as the only router between gen and sink.
// outMTU, when not 0, is the router's MTU toward the sink: a step in the
// middle of the path that neither end's MSS knows of.
func routerLab(t *testing.T, mode afxdp.AttachMode, outMTU int) (*lab.Topology, *router.Router, *pipeline.Worker) {
	topo := lab.TopologyForTest(t, "router", lab.TopologyOptions{})
	r, err := router.NewRouter(router.Config{Interfaces: []router.Interface{
		{Port: 0, MAC: mac(lab.DUTInMAC), Addrs: []netip.Prefix{netip.MustParsePrefix(lab.DUTInAddr + "/24")}},
		{Port: 1, MAC: mac(lab.DUTOutMAC), Addrs: []netip.Prefix{netip.MustParsePrefix(lab.DUTOutAddr + "/24")}, MTU: outMTU},
	}})
	if err != nil {
		t.Fatal(err)
	}
	d := dut.Start(t, topo, []pipeline.Stage{r}, dut.Options{Mode: mode})
	return topo, r, d.Worker
}

func ping(ns *lab.NS, dst string, id uint16) error { return ns.Ping(dst, id, 3) }

func TestRoutesBetweenTwoSubnets(t *testing.T) {
	for _, mode := range []afxdp.AttachMode{afxdp.ModeNative, afxdp.ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			topo, r, _ := routerLab(t, mode, 0)

			t.Run("ARP for the router's address is answered by xnf", func(t *testing.T) {
				if err := ping(topo.Gen, lab.DUTInAddr, 1); err != nil {
					t.Fatal(err)
				}
				c := r.Counters()
				if c.ARPReplies == 0 || c.EchoReplies == 0 {
					t.Errorf("router counters %+v: want ARP and echo answered by xnf", c)
				}
			})
			t.Run("ping crosses the router both ways", func(t *testing.T) {
				if err := ping(topo.Gen, lab.SinkAddr, 2); err != nil {
					t.Fatal(err)
				}
				if err := ping(topo.Sink, lab.GenAddr, 3); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("a TCP transfer crosses the router", func(t *testing.T) {
				transfer(t, topo, 1<<20)
			})
			t.Run("TTL-limited UDP gets time exceeded from the router", func(t *testing.T) {
				err := topo.Gen.Do(func() error {
					icmp, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
					if err != nil {
						return err
					}
					defer icmp.Close()
					u, err := net.Dial("udp4", lab.SinkAddr+":33434")
					if err != nil {
						return err
					}
					defer u.Close()
					raw, _ := u.(*net.UDPConn).SyscallConn()
					raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, 1) })
					u.Write([]byte("traceroute probe"))
					buf := make([]byte, 1500)
					icmp.SetReadDeadline(time.Now().Add(2 * time.Second))
					for {
						n, from, err := icmp.ReadFrom(buf)
						if err != nil {
							return errors.New("no time exceeded received")
						}
						if n >= 8 && buf[0] == 11 && from.String() == lab.DUTInAddr {
							return nil
						}
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				if c := r.Counters(); c.TimeExceeded == 0 {
					t.Errorf("counters %+v", c)
				}
			})
		})
	}
}

// transfer sends size bytes over TCP from gen to the sink through the
// router and checks they all arrive, in order.
func transfer(t *testing.T, topo *lab.Topology, size int) {
	t.Helper()
	if err := topo.Gen.SendTCP(topo.Sink, lab.SinkAddr, 8080, size, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// Path-MTU discovery through the router: a 1280-byte step toward the sink
// that neither end's MSS knows of. The sender's full-size segments (DF
// set, as Linux sends them) are answered with fragmentation needed
// carrying 1280, its kernel lowers the path MTU, and a 4 MiB transfer
// completes.
func TestPathMTUDiscoveryAcrossAStep(t *testing.T) {
	for _, mode := range []afxdp.AttachMode{afxdp.ModeNative, afxdp.ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			topo, r, _ := routerLab(t, mode, 1280)
			transfer(t, topo, 4<<20)
			if c := r.Counters(); c.FragNeeded == 0 || c.TooBig < c.FragNeeded {
				t.Errorf("counters %+v: want fragmentation needed sent for the first full-size segments", c)
			}
		})
	}
}
