package lab

import (
	"os"
)

// TB is the part of testing.TB the helpers use (this package does not
// import testing, so the CLI can link it without the test machinery).
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
}

// RequireRoot skips the test unless it runs as root: labs need
// CAP_SYS_ADMIN for namespaces and CAP_NET_ADMIN/CAP_BPF for XDP.
func RequireRoot(t TB) {
	t.Helper()
	if os.Getenv("XNF_NO_LAB") != "" {
		t.Skipf("skipped: XNF_NO_LAB is set (make test runs lab tests in its main pass and the race detector over the logic only)")
	}
	if os.Geteuid() != 0 {
		t.Skipf("skipped: needs root (namespaces, veth and XDP need CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_BPF); CI runs it as root")
	}
}

// ForTest builds a lab for a test, skipping when not root, and removes it
// when the test ends, pass or fail.
func ForTest(t TB, prefix string) *Lab {
	t.Helper()
	RequireRoot(t)
	l, err := New("xt-" + prefix)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Logf("lab cleanup: %v", err)
		}
	})
	return l
}

// MustNS creates a namespace or fails the test.
func (l *Lab) MustNS(t TB, name string) *NS {
	t.Helper()
	ns, err := l.Namespace(name)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return ns
}

// MustVeth creates a veth pair or fails the test.
func (l *Lab) MustVeth(t TB, v Veth) {
	t.Helper()
	if err := l.AddVeth(v); err != nil {
		t.Fatalf("%v", err)
	}
}
