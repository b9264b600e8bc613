// Package rigbpf holds the benchmark rig's XDP programs and their loaders:
// the traffic generator (xdp_gen.c, Generator), the counting sink
// (xdp_sink.c, Sink, with its latency histogram) and the in-kernel L2
// forwarder that bench measures as the ceiling of the path (xdp_fwd.c,
// FwdObjects). None of them runs in an xnf data path, so they live here,
// out of users' binaries and out of package bpf's API; rig drives them in
// lab namespaces.
//
// Like package bpf's, the programs are C compiled with bpf2go, and the
// generated Go and little-endian objects are committed: `go build` needs no
// clang, `make generate` rebuilds them and `make generate-check` fails when
// they are stale. The C sources include bpf/include/xnf_bpf.h through a
// relative -I, so the kernel definitions have one copy.
//
// Loading needs CAP_BPF (or root); errors for want of it wrap
// bpf.ErrPermission. Nothing here attaches a program: rig and bench do.
package rigbpf
