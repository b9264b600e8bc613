package afxdp

import (
	"strings"
	"testing"
)

func TestUMEMRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  UMEMConfig
		want string
	}{
		{"frame size not 2048 or 4096", UMEMConfig{FrameSize: 3000}, "must be 2048 or 4096"},
		{"negative frame count", UMEMConfig{FrameCount: -1}, "frame count -1"},
		{"headroom that leaves no room for a frame", UMEMConfig{FrameSize: 2048, Headroom: 1700}, "headroom 1700"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewUMEM(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestUMEMAccountingCatchesDoubleFree(t *testing.T) {
	u, err := NewUMEM(UMEMConfig{FrameSize: 2048, FrameCount: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	addrs := make([]uint64, 10)
	if n := u.Alloc(addrs); n != 10 {
		t.Fatalf("allocated %d frames, want 10", n)
	}
	a := u.Accounting()
	if !a.Balanced() || a.App != 10 || a.Free != 54 {
		t.Fatalf("after alloc: %v", a)
	}
	u.Free(addrs[:5])
	u.Free(addrs[:1]) // double free: refused
	a = u.Accounting()
	if a.Free != 59 || a.App != 5 {
		t.Fatalf("after frees: %v", a)
	}
	if u.Violations() != 1 || a.Balanced() {
		t.Fatalf("double free not caught: violations %d, %v", u.Violations(), a)
	}
	// A frame outside the UMEM is refused too.
	u.Free([]uint64{64 * 2048})
	if u.Violations() != 2 {
		t.Fatalf("free of an address outside the UMEM not refused")
	}
}

func TestUMEMFrameViewStaysInsideItsChunk(t *testing.T) {
	u, err := NewUMEM(UMEMConfig{FrameSize: 2048, FrameCount: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	f := u.Frame(2048+256, 60)
	if len(f) != 60 || cap(f) != 2048-256 {
		t.Fatalf("frame view len %d cap %d, want 60 and %d", len(f), cap(f), 2048-256)
	}
}

func TestUMEMAllocFreeAllocatesNothing(t *testing.T) {
	u, err := NewUMEM(UMEMConfig{FrameSize: 2048, FrameCount: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	addrs := make([]uint64, 64)
	if a := testing.AllocsPerRun(100, func() { n := u.Alloc(addrs); u.Free(addrs[:n]) }); a != 0 {
		t.Errorf("alloc+free allocates %.1f times per batch", a)
	}
}

func TestParseAttachMode(t *testing.T) {
	for in, want := range map[string]AttachMode{"auto": ModeAuto, "native": ModeNative, "driver": ModeNative, "generic": ModeGeneric, "skb": ModeGeneric, "offload": ModeOffload} {
		if got, err := ParseAttachMode(in); err != nil || got != want {
			t.Errorf("ParseAttachMode(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseAttachMode("turbo"); err == nil || !strings.Contains(err.Error(), "expected auto, native, generic or offload") {
		t.Errorf("ParseAttachMode(turbo) error %v", err)
	}
}
