package lb_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xnfdev/xnf/cli"
	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/xnftest"
)

// TestMain lets the test binary act as the xnf command for the
// end-to-end tests (run in the DUT namespace with `ip netns exec`).
func TestMain(m *testing.M) { xnftest.Main(m, func() { cli.Main() }) }

// The lab of examples/chains/l4lb.yaml: the standard topology, with the
// sink namespace turned into a switch (a bridge of out0's peer and one
// veth per backend) and three backend namespaces on the server subnet,
// each running a real HTTP server (Go's net/http, its sockets in the
// backend's namespace) that answers with its own address.
//
//	gen (client) -- in0 [xnf: lb -> router] out0 -- br0 (sink) --+-- b0 198.18.1.10
//	198.18.0.1                                                   +-- b1 198.18.1.11
//	route 198.18.3.0/24 (VIPs) via 198.18.0.2                    +-- b2 198.18.1.12
//	                                                  (default route via 198.18.1.1)
const (
	vipNet      = "198.18.3.0/24"
	vipAddr     = "198.18.3.100:80"
	metricsAddr = "127.0.0.1:9464"
)

var backendAddrs = []string{"198.18.1.10", "198.18.1.11", "198.18.1.12"}

type lbLab struct {
	*lab.Topology
	backends []*lab.NS
}

func newLBLab(t *testing.T) *lbLab {
	t.Helper()
	topo := lab.TopologyForTest(t, "lb", lab.TopologyOptions{})
	l := &lbLab{Topology: topo}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC))
	must(topo.Gen.AddRoute(vipNet, lab.DUTInAddr, "g0"))
	// The sink becomes a switch: its end of out0 and the backends' links
	// in one bridge, its own address gone.
	nl := topo.Sink.Netlink()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	must(nl.LinkAdd(br))
	s0, err := topo.Sink.Link("s0")
	must(err)
	addrs, err := nl.AddrList(s0, netlink.FAMILY_V4)
	must(err)
	for _, a := range addrs {
		must(nl.AddrDel(s0, &a))
	}
	must(nl.LinkSetMaster(s0, br))
	for i, addr := range backendAddrs {
		ns := topo.MustNS(t, fmt.Sprintf("b%d", i))
		must(ns.Sysctl("net.ipv6.conf.all.disable_ipv6", "1"))
		must(ns.Sysctl("net.ipv6.conf.default.disable_ipv6", "1"))
		port := fmt.Sprintf("b%d", i)
		topo.MustVeth(t, lab.Veth{A: topo.Sink, AName: port, B: ns, BName: "eth0", BAddrs: []string{addr + "/24"}})
		p, err := topo.Sink.Link(port)
		must(err)
		must(nl.LinkSetMaster(p, br))
		must(ns.AddRoute("default", lab.DUTOutAddr, "eth0"))
		must(ns.AddNeigh("eth0", lab.DUTOutAddr, lab.DUTOutMAC))
		l.backends = append(l.backends, ns)
		serveHTTP(t, ns, addr)
	}
	must(topo.Sink.LinkUp("br0"))
	return l
}

// serveHTTP runs an HTTP server on addr:8080 in ns until the test ends;
// it answers every request with addr.
func serveHTTP(t *testing.T, ns *lab.NS, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", addr+":8080"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, addr)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// dial opens a TCP connection from the client namespace.
func (l *lbLab) dial(ctx context.Context, addr string) (net.Conn, error) {
	var c net.Conn
	err := l.Gen.Do(func() (err error) {
		d := net.Dialer{Timeout: 3 * time.Second}
		c, err = d.DialContext(ctx, "tcp4", addr)
		return err
	})
	return c, err
}

// client is an HTTP client in the client namespace that opens a new
// connection for every request.
func (l *lbLab) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return l.dial(ctx, addr) },
	}}
}

// get asks the VIP which backend answers, on a new connection.
func get(c *http.Client) (string, error) {
	r, err := c.Get("http://" + vipAddr + "/")
	if err != nil {
		return "", err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	return string(b), err
}

// startXNF writes chain to a file and runs xnf on it in the DUT namespace
// until it serves metrics; it returns the process and the file's path.
func startXNF(t *testing.T, l *lbLab, chain string) (*xnftest.Process, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "l4lb.yaml")
	if err := os.WriteFile(path, []byte(chain), 0o644); err != nil {
		t.Fatal(err)
	}
	x := xnftest.Start(t, l.DUT, "run", "-c", path)
	x.WaitFor(t, "metrics: http://"+metricsAddr+"/metrics", 10*time.Second)
	return x, path
}

func exampleChain(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../examples/chains/l4lb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHTTPOnNewConnectionsFollowsTheWeights runs examples/chains/l4lb.yaml
// (lb -> router, backends weighted 1:2:3) between a client and three real
// HTTP servers: 3000 requests, each on a new connection, all answered,
// each backend's share within 5 points of its weight's share; the
// stage's per-backend flow counters agree with what the servers answered.
func TestHTTPOnNewConnectionsFollowsTheWeights(t *testing.T) {
	l := newLBLab(t)
	x, _ := startXNF(t, l, exampleChain(t))
	defer x.Stop(t)
	const n = 3000
	got := map[string]int{}
	var mu sync.Mutex
	var failed []error
	var wg sync.WaitGroup
	next := make(chan struct{})
	go func() {
		for range n {
			next <- struct{}{}
		}
		close(next)
	}()
	for range 4 { // four clients at once, each request on a new connection
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := l.client()
			for range next {
				be, err := get(c)
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				} else {
					got[be]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d requests failed, the first: %v", len(failed), n, failed[0])
	}
	t.Logf("answers per backend: %v", got)
	for i, w := range []float64{1, 2, 3} {
		share := float64(got[backendAddrs[i]]) / n
		if want := w / 6; share < want-0.05 || share > want+0.05 {
			t.Errorf("%s answered %.3f of the requests, want %.3f +- 0.05", backendAddrs[i], share, want)
		}
	}
	m := xnftest.Metrics(t, l.DUT, metricsAddr)
	total := uint64(0)
	for _, be := range backendAddrs {
		flows := xnftest.Value(m, xnftest.StageEvent("lb", "backend/tcp/198.18.3.100:80/"+be+":8080/flows"))
		if int(flows) != got[be] {
			t.Errorf("%s: the stage counted %d flows, the server answered %d connections", be, flows, got[be])
		}
		total += flows
	}
	if v := xnftest.Value(m, xnftest.StageEvent("lb", "vip/tcp/198.18.3.100:80/flows")); v != n || total != n {
		t.Errorf("the service counted %d flows, its backends %d: want %d", v, total, n)
	}
}

// keepAlive is an HTTP/1.1 connection to the VIP for many requests.
type keepAlive struct {
	c net.Conn
	r *bufio.Reader
}

func (k *keepAlive) get() (string, error) {
	k.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		return "", err
	}
	r, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return "", err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	return string(b), err
}

// TestReloadKeepsEstablishedConnections: long-lived connections, one to a
// backend that stays and one to the backend a reload removes, carry
// requests every 50 ms for 4 seconds while xnf reloads the pool without
// that backend; not one request fails, each connection stays on its
// backend (the removed one's too: in NAT mode its flows go on until they
// end), and new connections after the reload never reach the removed
// backend.
func TestReloadKeepsEstablishedConnections(t *testing.T) {
	l := newLBLab(t)
	chain := exampleChain(t)
	x, path := startXNF(t, l, chain)
	defer x.Stop(t)
	ctx := context.Background()
	removed := backendAddrs[2]
	// One connection to the backend to be removed, one to another.
	conns := map[string]*keepAlive{} // by the backend that answers it
	other := false
	for tries := 0; tries < 64 && (conns[removed] == nil || !other); tries++ {
		c, err := l.dial(ctx, vipAddr)
		if err != nil {
			t.Fatal(err)
		}
		k := &keepAlive{c: c, r: bufio.NewReader(c)}
		be, err := k.get()
		if err != nil {
			t.Fatal(err)
		}
		if conns[be] != nil || be != removed && other {
			c.Close()
			continue
		}
		conns[be] = k
		other = other || be != removed
		t.Cleanup(func() { c.Close() })
	}
	if conns[removed] == nil || !other {
		t.Fatalf("no connections to %s and another backend after 64 tries: %v", removed, conns)
	}
	errs := make(chan error, len(conns))
	var wg sync.WaitGroup
	for be, k := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				got, err := k.get()
				if err != nil {
					errs <- fmt.Errorf("connection to %s: %v", be, err)
					return
				}
				if got != be {
					errs <- fmt.Errorf("connection to %s answered by %s", be, got)
					return
				}
			}
		}()
	}
	time.Sleep(time.Second)
	without := strings.Replace(chain, `          - {addr: "198.18.1.12:8080", weight: 3}`+"\n", "", 1)
	if without == chain {
		t.Fatal("test bug: the removed backend is not in the example chain")
	}
	if err := os.WriteFile(path, []byte(without), 0o644); err != nil {
		t.Fatal(err)
	}
	x.Signal(syscall.SIGHUP)
	x.WaitFor(t, "reloaded", 5*time.Second)
	// New connections while the old ones go on: none to the removed one.
	c := l.client()
	after := map[string]int{}
	for range 300 {
		be, err := get(c)
		if err != nil {
			t.Fatal(err)
		}
		after[be]++
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if after[removed] != 0 || after[backendAddrs[0]] == 0 || after[backendAddrs[1]] == 0 {
		t.Errorf("new connections after the reload, per backend: %v; want none to %s", after, removed)
	}
	m := xnftest.Metrics(t, l.DUT, metricsAddr)
	re := `xnf_stage_gauges\{gauge="backend/tcp/198.18.3.100:80/` + removed + `:8080/active_flows",index="0",stage="lb",worker="0"\}`
	if v := xnftest.Value(m, re); v < 1 {
		t.Errorf("the removed backend's active flows: %d, want at least the connection kept", v)
	}
}
