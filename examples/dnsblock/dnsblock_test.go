package main

import (
	"os"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

func query(name string, opts ...pt.Option) []byte {
	return pt.UDP4("198.18.0.1:40000", "198.18.1.2:53", pt.DNSQuery(name), opts...)
}

func newStage(t testing.TB, c Config) *DNSBlock {
	t.Helper()
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDropsQueriesForBlockedNamesOnly(t *testing.T) {
	s := newStage(t, Config{Names: []string{"ads.example.com", "Tracker.Example.NET."}})
	h := pt.New(t, s)
	allowed := query("www.example.com")
	res := h.Send(0,
		query("ads.example.com"),
		allowed,
		query("ADS.Example.Com"),                 // names are case-insensitive
		query("tracker.example.net", pt.VLAN(7)), // tags do not hide the query
		query("x.ads.example.com"),               // not without subdomains: true
		pt.UDP4("198.18.1.2:53", "198.18.0.1:40000", "response or not, source port 53 is not a query"),
		pt.TCP4("198.18.0.1:40000", "198.18.1.2:53", "\x00\x1dtcp/53 is out of scope"),
		pt.UDP6("[2001:db8::1]:40000", "[2001:db8::53]:53", pt.DNSQuery("ads.example.com", layers.DNSTypeAAAA)),
		pt.UDP4("198.18.0.1:40000", "198.18.1.2:53", "short"),
	)
	h.Expect(res,
		pt.Dropped(packet.DropPolicy),
		pt.Forwarded(1).Bytes(allowed),
		pt.Dropped(packet.DropPolicy),
		pt.Dropped(packet.DropPolicy),
		pt.Forwarded(1),
		pt.Forwarded(1),
		pt.Forwarded(1),
		pt.Dropped(packet.DropPolicy),
		pt.Forwarded(1),
	)
	h.ExpectMetrics(0, map[string]uint64{
		"queries": 6, "blocked": 4, "unparsed": 1,
		"hit:ads.example.com": 3, "hit:tracker.example.net": 1,
	})
	h.ExpectDropped(0, map[packet.DropReason]uint64{packet.DropPolicy: 4})
}

func TestSubdomains(t *testing.T) {
	h := pt.New(t, newStage(t, Config{Names: []string{"example.com"}, Subdomains: true}))
	res := h.Send(0, query("example.com"), query("a.b.example.com"), query("notexample.com"), query("example.com.evil.org"))
	h.Expect(res, pt.Dropped(packet.DropPolicy), pt.Dropped(packet.DropPolicy), pt.Forwarded(1), pt.Forwarded(1))
	h.ExpectMetrics(0, map[string]uint64{"hit:example.com": 2})
}

func TestQueryName(t *testing.T) {
	hdr := "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
	for _, tc := range []struct {
		name, msg, want string
		ok              bool
	}{
		{"simple", hdr + "\x03ads\x07example\x03com\x00\x00\x01\x00\x01", "ads.example.com", true},
		{"root name refused", hdr + "\x00\x00\x01\x00\x01", "", false},
		{"response", "\x12\x34\x81\x80" + hdr[4:] + "\x01a\x00", "", false},
		{"no question", hdr[:4] + "\x00\x00" + hdr[6:] + "\x01a\x00", "", false},
		{"compression pointer", hdr + "\x01a\xc0\x0c", "", false},
		{"label past the end", hdr + "\x05ab", "", false},
		{"no terminating zero", hdr + "\x01a", "", false},
		{"upper case folded", hdr + "\x02Ab\x00", "ab", true},
		{"too long", hdr + strings.Repeat("\x3f"+strings.Repeat("a", 63), 5) + "\x00", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out [255]byte
			n, ok := queryName([]byte(tc.msg), &out)
			if ok != tc.ok || string(out[:n]) != tc.want && ok {
				t.Errorf("queryName = %q, %v; want %q, %v", out[:n], ok, tc.want, tc.ok)
			}
		})
	}
}

func TestConfigFromTheExampleChain(t *testing.T) {
	f, err := config.Load("chain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	stages, err := f.Stages(&config.BuildContext{File: f, Check: true})
	if err != nil {
		t.Fatal(err)
	}
	s := stages[0].(*DNSBlock)
	if len(s.names) != 2 || !s.subdomains || s.port != 53 {
		t.Errorf("built %d names, subdomains %v, port %d from chain.yaml", len(s.names), s.subdomains, s.port)
	}
}

func TestConfigErrorsNameTheLine(t *testing.T) {
	base, _ := os.ReadFile("chain.yaml")
	for _, tc := range []struct{ from, to, want string }{
		{"subdomains: true", "subdomain: true", "chain.yaml:15: chain[0].subdomain: unknown field (expected one of names, subdomains, port)"},
		{"tracker.example.net]", "tracker..net]", `chain.yaml:14: chain[0].names[1]: "tracker..net" is not a domain name`},
		{"tracker.example.net]", "ads.example.com]", `chain[0].names[1]: "ads.example.com" is listed twice`},
	} {
		_, err := config.Parse("chain.yaml", []byte(strings.Replace(string(base), tc.from, tc.to, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s: got %v, want %q", tc.from, tc.to, err, tc.want)
		}
	}
}

// mix is a batch as a resolver's uplink might see it: mostly other
// traffic, some allowed queries, a few blocked ones.
func mix() [][]byte {
	var f [][]byte
	for i := range 64 {
		switch {
		case i%8 == 0:
			f = append(f, query("ads.example.com"))
		case i%4 == 1:
			f = append(f, query("www.example.org"))
		default:
			f = append(f, pt.UDP4("198.18.0.1:40000", "198.18.1.2:443", strings.Repeat("q", 100)))
		}
	}
	return f
}

func TestAllocatesNothing(t *testing.T) {
	pt.ZeroAllocs(t, newStage(t, Config{Names: []string{"ads.example.com", "tracker.example.net"}, Subdomains: true}), mix()...)
}

func BenchmarkDNSBlock(b *testing.B) {
	names := []string{"ads.example.com", "tracker.example.net"}
	for i := range 1000 {
		names = append(names, "n"+strings.Repeat("x", i%40)+".example.net"+string(rune('a'+i%26))+string(rune('a'+i/26%26)))
	}
	b.Run("mix", func(b *testing.B) { pt.Benchmark(b, newStage(b, Config{Names: names, Subdomains: true}), mix()...) })
	b.Run("all-queries", func(b *testing.B) {
		pt.Benchmark(b, newStage(b, Config{Names: names, Subdomains: true}), query("a.b.www.example.org"), query("ads.example.com"))
	})
	b.Run("baseline-empty-stage", func(b *testing.B) {
		pt.Benchmark(b, pipeline.StageFunc{StageName: "empty", Fn: func(*packet.Batch) {}}, mix()...)
	})
}
