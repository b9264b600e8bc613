// Package nftest holds tests that run xnf's network functions together:
// fuzzing whole chains (firewall -> router, and NAT as it lands) over
// memory ports. It has no API.
package nftest
