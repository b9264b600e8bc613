package firewall_test

import (
	"fmt"

	"github.com/xnfdev/xnf/nf/firewall"
)

// Stateless drops go first, or the rules that match states shadow them.
func ExamplePlanOffload() {
	rules, err := firewall.ParseRules([]string{
		"drop src 203.0.113.0/24",
		"drop proto udp dport 1900",
		"accept state established,related",
		"drop state invalid",
		"drop proto udp dport 11211",
		"accept in 0 proto tcp dport 443 state new",
		"reject proto tcp dport 113",
	})
	if err != nil {
		panic(err)
	}
	plan, err := firewall.PlanOffload(rules)
	if err != nil {
		panic(err)
	}
	for i := range rules {
		fmt.Printf("rule %d: %s\n", i, plan.Why(i))
	}
	fmt.Println(len(plan.Entries), "entries, the first for rule", plan.Entries[0].Rule)
	// Output:
	// rule 0: offloaded
	// rule 1: offloaded
	// rule 2: accept stays in Go (XDP only drops)
	// rule 3: matches conntrack state
	// rule 4: shadowed by rule 2 (accept state established,related)
	// rule 5: accept stays in Go (XDP only drops)
	// rule 6: reject needs an answer
	// 2 entries, the first for rule 0
}
