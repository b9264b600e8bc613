package main

import (
	"fmt"
	"strings"

	"github.com/xnfdev/xnf/config"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

func init() { config.Register("example/dnsblock", build) }

// Config is the stage's YAML:
//
//   - type: example/dnsblock
//     names: [ads.example.com, tracker.example.net]
//     subdomains: true
type Config struct {
	// Names to block (case-insensitive, without the trailing dot).
	Names []string `yaml:"names"`
	// Subdomains also blocks every name under a listed one.
	Subdomains bool `yaml:"subdomains"`
	// Port is the DNS server port (default 53).
	Port uint16 `yaml:"port"`
}

// MaxNames bounds the blocklist, and with it the per-name counters.
const MaxNames = 4096

// DNSBlock drops DNS queries over UDP whose first question asks for a
// blocked name, and counts hits per name. Other traffic, responses and
// queries it cannot parse pass untouched.
type DNSBlock struct {
	pipeline.Counters // StageMetrics: queries, blocked, unparsed, hit:<name>
	names             map[string]*pipeline.Counter
	subdomains        bool
	port              uint16
	queries, blocked  *pipeline.Counter
	unparsed          *pipeline.Counter
	name              [255]byte // per-worker scratch: stages are built per worker
}

// New makes the stage; names are validated and lower-cased.
func New(c Config) (*DNSBlock, error) {
	if len(c.Names) > MaxNames {
		return nil, fmt.Errorf("names: %d of them, at most %d", len(c.Names), MaxNames)
	}
	s := &DNSBlock{names: make(map[string]*pipeline.Counter, len(c.Names)), subdomains: c.Subdomains, port: c.Port}
	if s.port == 0 {
		s.port = 53
	}
	for i, n := range c.Names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if n == "" || len(n) > 253 || strings.Contains(n, "..") {
			return nil, fmt.Errorf("names[%d]: %q is not a domain name", i, c.Names[i])
		}
		if s.names[n] != nil {
			return nil, fmt.Errorf("names[%d]: %q is listed twice", i, c.Names[i])
		}
		s.names[n] = s.Counter("hit:" + n)
	}
	s.queries, s.blocked, s.unparsed = s.Counter("queries"), s.Counter("blocked"), s.Counter("unparsed")
	return s, nil
}

func build(_ *config.BuildContext, sc *config.StageConfig) (pipeline.Stage, error) {
	var c Config
	if err := sc.Decode(&c); err != nil {
		return nil, err
	}
	s, err := New(c)
	if err != nil {
		field, msg, _ := strings.Cut(err.Error(), ": ")
		return nil, sc.Errorf(field, "%s", msg) // the error's line is the field's
	}
	return s, nil
}

func (s *DNSBlock) Name() string { return "dnsblock" }

func (s *DNSBlock) Process(b *packet.Batch) {
	var queries, blocked, unparsed uint64 // counted here, published once per batch
	for i := range b.Slice() {
		p := &b.Packets[i]
		if !p.Has(packet.FlagUDP) || p.DstPort() != s.port || p.Has(packet.FlagLaterFragment) {
			continue
		}
		n, ok := queryName(p.Payload(), &s.name)
		if !ok {
			unparsed++
			continue
		}
		queries++
		if hit := s.lookup(s.name[:n]); hit != nil {
			hit.Add(1)
			blocked++
			p.SetDrop(packet.DropPolicy)
		}
	}
	s.queries.Add(queries)
	s.blocked.Add(blocked)
	s.unparsed.Add(unparsed)
}

// lookup finds name, or with Subdomains the nearest listed parent. The
// map index with string(bytes) does not allocate.
func (s *DNSBlock) lookup(name []byte) *pipeline.Counter {
	for {
		if c := s.names[string(name)]; c != nil || !s.subdomains {
			return c
		}
		dot := 0
		for dot < len(name) && name[dot] != '.' {
			dot++
		}
		if dot >= len(name) {
			return nil
		}
		name = name[dot+1:]
	}
}

// queryName writes the first question's name of a DNS query message into
// out, lower-cased and dotted ("ads.example.com"), and returns its length.
// It refuses responses, questionless messages and compressed or
// malformed names (a query has no reason to compress its only name).
func queryName(msg []byte, out *[255]byte) (int, bool) {
	const header = 12
	if len(msg) < header || msg[2]&0x80 != 0 || msg[4] == 0 && msg[5] == 0 {
		return 0, false
	}
	n := 0
	for i := header; i < len(msg); {
		l := int(msg[i])
		i++
		if l == 0 {
			return n, n > 0
		}
		if l > 63 || i+l > len(msg) || n+l+1 > len(out) {
			return 0, false // a pointer (0xc0), a reserved type, or too long
		}
		if n > 0 {
			out[n] = '.'
			n++
		}
		for _, c := range msg[i : i+l] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			out[n] = c
			n++
		}
		i += l
	}
	return 0, false
}
