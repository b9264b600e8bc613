package rigbpf

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/bpf"
)

// loadError wraps an error loading the program what, as bpf.ErrPermission
// when the kernel refused for want of privilege.
func loadError(what string, err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("rigbpf: %w: %v", bpf.ErrPermission, err)
	}
	return fmt.Errorf("rigbpf: loading %s: %w", what, err)
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
