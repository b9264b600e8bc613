package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	if err := Replay(f, "../port/pcap/testdata/in.pcap", out, &log); err != nil {
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
