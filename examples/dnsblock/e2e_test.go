package main

import (
	"net"
	"testing"
	"time"

	"github.com/xnfdev/xnf/internal/lab"
	"github.com/xnfdev/xnf/internal/xnftest"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

func TestMain(m *testing.M) { xnftest.Main(m, main) }

// TestBlocksQueriesBetweenRealHosts runs this binary with chain.yaml in
// the lab and sends real DNS queries from gen to a listener on sink.
func TestBlocksQueriesBetweenRealHosts(t *testing.T) {
	topo := lab.TopologyForTest(t, "dns", lab.TopologyOptions{})
	if err := topo.Gen.AddNeigh("g0", lab.DUTInAddr, lab.DUTInMAC); err != nil {
		t.Fatal(err)
	}
	var srv *net.UDPConn
	if err := topo.Sink.Do(func() (err error) {
		srv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(lab.SinkAddr), Port: 53})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	x := xnftest.Start(t, topo.DUT, "run", "-c", "chain.yaml")
	x.WaitFor(t, "metrics: http://", 10*time.Second)

	const metrics = "127.0.0.1:9464"
	sends := []struct {
		name    string
		n       int
		blocked bool
	}{{"ads.example.com", 20, true}, {"cdn.Tracker.example.NET", 10, true}, {"www.example.org", 30, false}}
	if err := topo.Gen.Do(func() error {
		c, err := net.Dial("udp4", lab.SinkAddr+":53")
		if err != nil {
			return err
		}
		defer c.Close()
		for _, s := range sends {
			for range s.n {
				c.Write(pt.DNSQuery(s.name))
				time.Sleep(100 * time.Microsecond) // one socket buffer, no kernel drops
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	buf := make([]byte, 512)
	for {
		srv.SetReadDeadline(time.Now().Add(time.Second))
		n, err := srv.Read(buf)
		if err != nil {
			break
		}
		var name [255]byte
		if l, ok := queryName(buf[:n], &name); ok {
			got[string(name[:l])]++
		}
	}
	if len(got) != 1 || got["www.example.org"] != 30 {
		t.Errorf("the server received %v, want only 30 queries for www.example.org", got)
	}
	if v := xnftest.Settle(t, topo.DUT, metrics, xnftest.StageEvent("dnsblock", "queries"), 60); v != 60 {
		t.Errorf("queries counted %d, sent 60", v)
	}
	text := xnftest.Metrics(t, topo.DUT, metrics)
	for ev, want := range map[string]uint64{"blocked": 30, "hit:ads.example.com": 20, "hit:tracker.example.net": 10, "unparsed": 0} {
		if v := xnftest.Value(text, xnftest.StageEvent("dnsblock", ev)); v != want {
			t.Errorf("%s = %d, want %d", ev, v, want)
		}
	}
	x.Stop(t)
}
