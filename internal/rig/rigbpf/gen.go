package rigbpf

// The programs include bpf/include/xnf_bpf.h, the one copy of the kernel
// definitions xnf's XDP programs share.
//go:generate go tool bpf2go -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -I../../../bpf/include" trafficgen xdp_gen.c
//go:generate go tool bpf2go -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -I../../../bpf/include" sink xdp_sink.c
//go:generate go tool bpf2go -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -I../../../bpf/include" Fwd xdp_fwd.c
