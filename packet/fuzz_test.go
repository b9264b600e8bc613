package packet

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// seedFrames are the fuzz seeds: every valid frame, plus a few broken ones.
func seedFrames(t testing.TB) map[string][]byte {
	seeds := make(map[string][]byte)
	for _, f := range validFrames {
		seeds[f.name] = f.build(t)
	}
	seeds["eth-ipv4-udp-total-length-too-long"] = put16(16, 200)(frameIPv4UDP(t))
	seeds["eth-ipv4-tcp-data-offset-4"] = putByte(34+12, 4<<4)(frameIPv4TCPOptions(t))
	seeds["eth-ipv6-ext-header-too-long"] = putByte(54+1, 200)(frameIPv6ExtTCP(t))
	// RFC 7045 chains: 9 headers with a routing header, and 17 (past the limit).
	seeds["eth-ipv6-9ext-routing-udp"] = frameIPv6Chain(t, 9, 8)
	seeds["eth-ipv6-17ext-limit"] = frameIPv6Chain(t, 17, 8)
	return seeds
}

func FuzzParse(f *testing.F) {
	for _, frame := range seedFrames(f) {
		f.Add(frame)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		before := bytes.Clone(data)
		p := Packet{Data: data[:len(data):len(data)]}
		err := p.Parse()
		if err != p.Err {
			t.Fatalf("Parse returned %v, Err is %v", err, p.Err)
		}
		checkInvariants(t, &p)
		if !bytes.Equal(before, data) {
			t.Fatalf("Parse changed the frame")
		}
		again := Packet{Data: data}
		again.Parse()
		if parsedFields(&again) != parsedFields(&p) {
			t.Fatalf("Parse is not deterministic")
		}
	})
}

// FuzzRewrite parses, applies rewrites chosen by ops, and checks that a
// packet whose checksums were right still has right checksums.
func FuzzRewrite(f *testing.F) {
	for _, frame := range seedFrames(f) {
		f.Add(frame, uint32(0x0a000001), uint16(8080), uint8(0xff))
	}
	f.Fuzz(func(t *testing.T, data []byte, addr uint32, port uint16, ops uint8) {
		p := Packet{Data: data[:len(data):len(data)]}
		if p.Parse() != ErrNone {
			return
		}
		ipValid := p.Flags&FlagIPv4 == 0 || p.IPv4().ChecksumValid()
		_, hasL4 := p.ComputeL4Checksum()
		l4Valid := hasL4 && p.L4ChecksumValid()
		udpZero := p.Flags&FlagUDP != 0 && p.UDP().Checksum() == 0

		a4 := [4]byte{byte(addr >> 24), byte(addr >> 16), byte(addr >> 8), byte(addr)}
		var a6 [16]byte
		copy(a6[:], a4[:])
		copy(a6[12:], a4[:])
		rewrites := []func(){
			func() { p.SetIPv4Src(a4) },
			func() { p.SetIPv4Dst(a4) },
			func() { p.SetIPv6Src(a6) },
			func() { p.SetIPv6Dst(a6) },
			func() { p.SetSrcPort(port) },
			func() { p.SetDstPort(^port) },
			func() { p.SetICMPEchoID(port) },
			func() { p.DecTTL() },
		}
		for i, rewrite := range rewrites {
			if ops&(1<<i) != 0 {
				rewrite()
			}
		}
		checkInvariants(t, &p)
		if ipValid && p.Flags&FlagIPv4 != 0 && !p.IPv4().ChecksumValid() {
			t.Fatalf("the IPv4 header checksum broke")
		}
		if udpZero && p.UDP().Checksum() != 0 {
			t.Fatalf("a zero UDP checksum changed")
		}
		if l4Valid && !p.L4ChecksumValid() {
			t.Fatalf("the L4 checksum broke")
		}
		if l4Valid && !udpZero {
			want, _ := p.ComputeL4Checksum()
			if got := l4ChecksumField(&p); !sameOnesComplement(got, want) {
				t.Fatalf("L4 checksum %#04x, recomputed %#04x", got, want)
			}
		}
	})
}

// TestWriteFuzzSeedCorpus regenerates testdata/fuzz/FuzzParse from the seed
// frames when XNF_WRITE_FUZZ_CORPUS=1; the files are committed.
func TestWriteFuzzSeedCorpus(t *testing.T) {
	if os.Getenv("XNF_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set XNF_WRITE_FUZZ_CORPUS=1 to regenerate the committed seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, frame := range seedFrames(t) {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", frame)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
