package conntrack

import (
	"syscall"
	"unsafe"
)

// adviseHuge asks the kernel to back the n bytes at p with transparent huge
// pages (where THP is in "madvise" mode, as it often is): lookups in a large
// table hit random entries, and with 4 KiB pages nearly every one would also
// miss the TLB. The advice is best effort; errors are ignored.
func adviseHuge(p unsafe.Pointer, n uintptr) {
	const huge = 2 << 20
	if n < 2*huge {
		return
	}
	// madvise wants a page-aligned start; advise the whole pages inside.
	const page = 4096
	skip := -uintptr(p) & (page - 1)
	end := (uintptr(p) + n) &^ (page - 1)
	b := unsafe.Slice((*byte)(unsafe.Add(p, skip)), end-uintptr(p)-skip)
	_ = syscall.Madvise(b, syscall.MADV_HUGEPAGE)
}
