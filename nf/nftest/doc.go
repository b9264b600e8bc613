// Package nftest holds tests that run xnf's network functions together
// rather than one at a time: a fuzzer over memory ports (FuzzChain,
// firewall -> router), and lab tests through a live firewall -> NAT ->
// router chain on veth pairs: hostile frames get the verdict the design
// gives them, an overload is counted and recovered from, and a churn soak
// keeps conntrack within its bound; and IPv6 end to end, the firewall ->
// router chain of a chain file between kernels that do their own neighbor
// discovery (TestIPv6EndToEndWithKernelPeers). It has no API.
package nftest
