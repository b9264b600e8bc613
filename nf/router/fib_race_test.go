//go:build race

package router

// raceEnabled makes the property tests lighter under the race detector,
// where each of the 16M atomic stores of an IPv4 default route is slow.
const raceEnabled = true
