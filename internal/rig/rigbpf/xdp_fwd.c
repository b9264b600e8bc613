//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp_fwd is the benchmark harness's in-kernel forwarder: every frame that
 * arrives on the interface it is attached to leaves, unchanged, through the
 * device in slot 0 of fwd_ports (bpf_redirect_map into a DEVMAP). It is the
 * ceiling of the in0 -> out0 path: no socket, no copy, no userspace.
 *
 * Frames the redirect cannot take (an empty slot) are dropped, so a
 * misconfigured run shows zero rather than frames leaking into the stack.
 * A redirect into a veth delivers only if the peer has an XDP program (the
 * sink) or GRO on.
 */
#include "xnf_bpf.h" /* bpf/include, by the -I in gen.go */

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} fwd_ports SEC(".maps");

SEC("xdp")
int xnf_fwd(struct xdp_md *ctx)
{
	return bpf_redirect_map(&fwd_ports, 0, XDP_DROP);
}

char _license[] SEC("license") = "Dual BSD/GPL";
