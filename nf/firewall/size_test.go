package firewall

import (
	"testing"
	"unsafe"
)

func TestCompiledRuleFillsOneCacheLine(t *testing.T) {
	if s := unsafe.Sizeof(crule{}); s != 64 {
		t.Errorf("crule is %d bytes, want 64", s)
	}
}
