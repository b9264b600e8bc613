package cli

import (
	"bytes"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xnfdev/xnf/config"
)

var updateReplay = flag.Bool("update-replay", false, "rewrite testdata/replay-want.pcap from the current output")

// TestReplayGivesTheExpectedCapture replays port/pcap/testdata/in.pcap
// (IPv4, IPv6, ARP, ICMP, a runt, a jumbo...) through the router chain of
// testdata/replay.yaml and compares the output packet by packet with the
// committed testdata/replay-want.pcap. Regenerate it, after checking the
// change is right, with: go test ./cli -run Replay -update-replay
func TestReplayGivesTheExpectedCapture(t *testing.T) {
	f, err := config.Load("testdata/replay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.pcap")
	var log bytes.Buffer
	if err := Replay(f, "../port/pcap/testdata/in.pcap", out, &log, ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Log(log.String())
	if !strings.Contains(log.String(), "20 packets in") {
		t.Errorf("summary %q", log.String())
	}
	got, _ := os.ReadFile(out)
	if *updateReplay {
		os.WriteFile("testdata/replay-want.pcap", got, 0o644)
	}
	want, err := os.ReadFile("testdata/replay-want.pcap")
	if err != nil {
		t.Fatal(err)
	}
	gr, err := pcapgo.NewReader(bytes.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	wr, err := pcapgo.NewReader(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; ; i++ {
		gd, gci, gerr := gr.ReadPacketData()
		wd, wci, werr := wr.ReadPacketData()
		if gerr != nil || werr != nil {
			if (gerr == nil) != (werr == nil) {
				t.Fatalf("packet %d: output ended %v, expected ended %v", i, gerr, werr)
			}
			break
		}
		if !bytes.Equal(gd, wd) || !gci.Timestamp.Equal(wci.Timestamp) {
			t.Fatalf("packet %d differs:\n got  %x\n want %x", i, gd, wd)
		}
	}
}

const replayFirewall = `ports:
  - name: in
    interface: in0
  - name: out
    interface: out0
chain:
  - type: firewall
    default: drop
    rules:
      - accept state established,related
      - accept in in state new
metrics:
  listen: "off"
`

// twoSided writes a pcapng taken on both ports (interfaces named after
// them): flows requests on in0, each answered on out0, then strays
// unsolicited packets on out0.
func twoSided(t *testing.T, flows, strays int) string {
	return twoSidedGap(t, flows, strays, time.Microsecond)
}

// twoSidedGap is twoSided with each reply gap after its request.
func twoSidedGap(t *testing.T, flows, strays int, gap time.Duration) string {
	t.Helper()
	var buf bytes.Buffer
	nw, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{Name: "in0", LinkType: layers.LinkTypeEthernet}, pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nw.AddInterface(pcapgo.NgInterface{Name: "out0", LinkType: layers.LinkTypeEthernet}); err != nil {
		t.Fatal(err)
	}
	inMAC, _ := net.ParseMAC("02:00:00:00:00:01")
	outMAC, _ := net.ParseMAC("02:00:00:00:01:02")
	ts := time.Unix(1700000000, 0)
	write := func(iface int, src, dst net.IP, sport, dport uint16, after time.Duration) {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src, DstIP: dst}
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		u.SetNetworkLayerForChecksum(ip)
		eth := &layers.Ethernet{SrcMAC: inMAC, DstMAC: outMAC, EthernetType: layers.EthernetTypeIPv4}
		if iface == 1 {
			eth.SrcMAC, eth.DstMAC = outMAC, inMAC
		}
		b := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, u, gopacket.Payload("q")); err != nil {
			t.Fatal(err)
		}
		ts = ts.Add(after)
		ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b.Bytes()), Length: len(b.Bytes()), InterfaceIndex: iface}
		if err := nw.WritePacket(ci, b.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	client, server := net.IP{198, 18, 0, 1}, net.IP{198, 19, 0, 1}
	for i := range flows {
		sport := uint16(10000 + i)
		write(0, client, server, sport, 53, time.Microsecond)
		write(1, server, client, 53, sport, gap)
	}
	for i := range strays {
		write(1, server, client, 53, uint16(60000+i), time.Microsecond)
	}
	if err := nw.Flush(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "two-sided.pcapng")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A two-sided capture with more flows than --check's small tables hold
// replays as it ran: each packet enters the port it was captured on, the
// replies of all 3000 flows pass as established and the strays that
// arrive outside without a request are dropped by policy. Fed all into
// the first port (as replay did), the strays would pass as new flows
// from inside; with 1024-flow tables most replies would be refused.
func TestReplayTwoSidedCapture(t *testing.T) {
	f, err := config.Parse("fw.yaml", []byte(replayFirewall))
	if err != nil {
		t.Fatal(err)
	}
	in := twoSided(t, 3000, 10)
	var log bytes.Buffer
	out := filepath.Join(t.TempDir(), "out.pcap")
	if err := Replay(f, in, out, &log, ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	want := "6010 packets in, 6000 out to " + out + ", 10 dropped"
	if !strings.Contains(log.String(), want) || !strings.Contains(log.String(), "port in       in 3000 out 3000") {
		t.Errorf("summary:\n%s\nwant %q and 3000 in/out per port", log.String(), want)
	}

	// --port-by-mac gives the same split from the MACs.
	macs, err := parsePortByMAC(f, []string{"02:00:00:00:00:01=in", "02:00:00:00:01:02=out"})
	if err != nil {
		t.Fatal(err)
	}
	log.Reset()
	if err := Replay(f, in, out, &log, ReplayOptions{PortByMAC: macs}); err != nil || !strings.Contains(log.String(), want) {
		t.Errorf("by MAC: %v\n%s", err, log.String())
	}

	// What cannot be placed is an error that says why.
	for _, tc := range []struct {
		by   []string
		want string
	}{
		{[]string{"02:00:00:00:00:01=in"}, "packet 2: source MAC 02:00:00:00:01:02 is in no --port-by-mac"},
		{[]string{"02:00:00:00:00:01=wan"}, `--port-by-mac "02:00:00:00:00:01=wan": fw.yaml has no port "wan" (ports: in, out)`},
		{[]string{"02:00:00:00:00:01"}, "expected MAC=port"},
	} {
		macs, err := parsePortByMAC(f, tc.by)
		if err == nil {
			err = Replay(f, in, out, &log, ReplayOptions{PortByMAC: macs})
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.by, err, tc.want)
		}
	}
	g, err := config.Parse("other.yaml", []byte(strings.ReplaceAll(replayFirewall, "interface: out0", "interface: wan0")))
	if err != nil {
		t.Fatal(err)
	}
	if err := Replay(g, in, out, &log, ReplayOptions{}); err == nil || !strings.Contains(err.Error(), "packet 2: capture interface 1 (out0) is no port of other.yaml (ports: in, out)") {
		t.Errorf("unknown interface: %v", err)
	}
}

// Timeouts run on the capture's clock: a reply 40 s after its request
// (conntrack's UDP timeout is 30 s) finds its flow expired and is dropped
// by policy, though the replay itself takes milliseconds; 20 s later it
// passes.
func TestReplayRunsOnTheCapturesClock(t *testing.T) {
	f, err := config.Parse("fw.yaml", []byte(strings.Replace(replayFirewall, "      - accept in in state new\n",
		"      - accept in in state new\n    conntrack:\n      timeouts: {udp: 30s}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.pcap")
	for _, tc := range []struct {
		gap  time.Duration
		want string
	}{
		{20 * time.Second, "2 packets in, 2 out"},
		{40 * time.Second, "2 packets in, 1 out"},
	} {
		var log bytes.Buffer
		if err := Replay(f, twoSidedGap(t, 1, 0, tc.gap), out, &log, ReplayOptions{}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log.String(), tc.want) {
			t.Errorf("reply %v after its request: %s, want %q", tc.gap, log.String(), tc.want)
		}
	}
}
