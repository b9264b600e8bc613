// Package kernelsync makes a router follow the kernel: it mirrors the main
// routing table and the neighbor table of a network namespace into a
// router.Tables (the FIB and neighbor table of one router, or of every
// worker's) through netlink subscriptions, so that routes added by `ip
// route` or a routing daemon (FRR, BIRD) take effect in the data path as
// soon as the kernel announces them, and removals too. Only routes and
// neighbors on interfaces that map to a pipeline port are mirrored. For
// each prefix the FIB holds the kernel's choice, the route of lowest
// metric: deleting it falls back to the next one, and when the choice
// leaves through an interface xnf does not serve the prefix is removed
// from the FIB (xnf cannot deliver there).
//
// It is the router's control plane, kept out of nf/router so that the data
// path links no socket. A Sync owns two netlink sockets and goroutines
// (its own, and netlink's for each subscription) from Start to Close; the
// FIB and the neighbor table are safe to update while workers route.
package kernelsync

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/nf/router"
)

// Sync mirrors one namespace's routes and neighbors into one router.Tables.
type Sync struct {
	fib       *router.FIB
	neighs    *router.Neighbors
	ports     map[int]uint16 // ifindex -> port
	done      chan struct{}  // closed by Close: netlink closes the sockets
	closeOnce sync.Once
	wg        sync.WaitGroup
	mu        sync.Mutex
	errs      []error
	applied   atomic.Uint64

	// The kernel's routes by prefix and metric, as announced: the kernel
	// routes by the lowest metric, and so does the FIB. Only the sync
	// goroutine touches them.
	routes    map[netip.Prefix]map[int][]router.NextHop
	installed map[netip.Prefix]bool // prefixes this Sync put in the FIB
}

// Start mirrors the namespace ns (the caller's own namespace when ns is
// nil) into t's FIB and neighbor table, the routes and neighbors that
// exist now first. ports maps interface names in that namespace to
// pipeline ports. One Sync feeds one Tables, however many workers' routers
// share it (router.Config.Tables); Close it when the routers are done.
func Start(t *router.Tables, ns *netns.NsHandle, ports map[string]uint16) (*Sync, error) {
	var h *netlink.Handle
	var err error
	if ns != nil {
		h, err = netlink.NewHandleAt(*ns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("router: kernel mode: netlink: %w", err)
	}
	defer h.Close()
	k := &Sync{fib: t.FIB, neighs: t.Neighbors, ports: map[int]uint16{}, done: make(chan struct{}),
		routes: map[netip.Prefix]map[int][]router.NextHop{}, installed: map[netip.Prefix]bool{}}
	for name, port := range ports {
		l, err := h.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("router: kernel mode: interface %q: %w", name, err)
		}
		k.ports[l.Attrs().Index] = port
	}
	routes := make(chan netlink.RouteUpdate, 256)
	neighs := make(chan netlink.NeighUpdate, 256)
	onErr := func(err error) {
		if k.stopping() {
			return // the sockets closing under their readers on Close
		}
		k.mu.Lock()
		k.errs = append(k.errs, err)
		k.mu.Unlock()
	}
	if err := netlink.RouteSubscribeWithOptions(routes, k.done, netlink.RouteSubscribeOptions{Namespace: ns, ListExisting: true, ErrorCallback: onErr}); err != nil {
		close(k.done) // closes the socket, if the subscription got that far
		return nil, fmt.Errorf("router: kernel mode: route subscription: %w", err)
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, k.done, netlink.NeighSubscribeOptions{Namespace: ns, ListExisting: true, ErrorCallback: onErr}); err != nil {
		// The route subscription runs: drain it until it has closed.
		k.wg.Add(1)
		go k.run(routes, nil)
		k.Close()
		return nil, fmt.Errorf("router: kernel mode: neighbor subscription: %w", err)
	}
	k.wg.Add(1)
	go k.run(routes, neighs)
	return k, nil
}

// run applies the kernel's updates until both subscriptions have ended:
// netlink closes a subscription's channel once its socket is closed (on
// Close) or has failed (the error is in Errors). After Close it only
// drains, so that netlink's readers, which may be blocked sending, see
// their sockets closed and end.
func (k *Sync) run(routes <-chan netlink.RouteUpdate, neighs <-chan netlink.NeighUpdate) {
	defer k.wg.Done()
	for routes != nil || neighs != nil {
		select {
		case u, ok := <-routes:
			if !ok {
				routes = nil
			} else if !k.stopping() {
				k.route(u)
			}
		case u, ok := <-neighs:
			if !ok {
				neighs = nil
			} else if !k.stopping() {
				k.neigh(u)
			}
		}
	}
}

func (k *Sync) stopping() bool {
	select {
	case <-k.done:
		return true
	default:
		return false
	}
}

// Applied counts the kernel updates mirrored so far.
func (k *Sync) Applied() uint64 { return k.applied.Load() }

// Errors returns the errors met so far (subscription and FIB errors).
func (k *Sync) Errors() []error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]error(nil), k.errs...)
}

// Close stops mirroring and returns once the netlink sockets are closed
// and every goroutine of the Sync has ended; what was mirrored stays in
// the tables. Calling it again does nothing.
func (k *Sync) Close() {
	k.closeOnce.Do(func() { close(k.done) })
	k.wg.Wait()
}

func ipToAddr(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}

func (k *Sync) route(u netlink.RouteUpdate) {
	rt := u.Route
	if rt.Table != unix.RT_TABLE_MAIN || rt.Type != unix.RTN_UNICAST {
		return
	}
	var prefix netip.Prefix
	if rt.Dst == nil {
		if rt.Family == unix.AF_INET6 {
			prefix = netip.MustParsePrefix("::/0")
		} else {
			prefix = netip.MustParsePrefix("0.0.0.0/0")
		}
	} else {
		a, ok := ipToAddr(rt.Dst.IP)
		if !ok {
			return
		}
		ones, _ := rt.Dst.Mask.Size()
		prefix = netip.PrefixFrom(a, ones)
	}
	if prefix.Addr().Is6() && prefix.Addr().IsLinkLocalUnicast() {
		return // fe80::/64 per interface: not routed
	}
	var hops []router.NextHop
	add := func(ifindex int, gw net.IP) {
		port, ok := k.ports[ifindex]
		if !ok {
			return
		}
		nh := router.NextHop{Port: port}
		if gw != nil {
			if a, ok := ipToAddr(gw); ok {
				nh.Gateway = a
			}
		}
		hops = append(hops, nh)
	}
	if len(rt.MultiPath) > 0 {
		for _, p := range rt.MultiPath {
			add(p.LinkIndex, p.Gw)
		}
	} else {
		add(rt.LinkIndex, rt.Gw)
	}
	byMetric := k.routes[prefix]
	switch u.Type {
	case unix.RTM_NEWROUTE:
		// A route through no served interface is recorded too: when it
		// is the kernel's choice, xnf must not keep routing the prefix
		// through an old next hop.
		if byMetric == nil {
			byMetric = map[int][]router.NextHop{}
			k.routes[prefix] = byMetric
		}
		byMetric[rt.Priority] = hops
	case unix.RTM_DELROUTE:
		if _, ok := byMetric[rt.Priority]; !ok {
			return
		}
		delete(byMetric, rt.Priority)
		if len(byMetric) == 0 {
			delete(k.routes, prefix)
		}
	default:
		return
	}
	if err := k.apply(prefix, byMetric); err != nil {
		k.mu.Lock()
		k.errs = append(k.errs, fmt.Errorf("router: kernel route %v: %w", prefix, err))
		k.mu.Unlock()
		return
	}
	k.applied.Add(1)
}

// apply makes the FIB's route to prefix the kernel's best (lowest metric)
// one: its next hops when they are on served interfaces, else no route
// from this Sync.
func (k *Sync) apply(prefix netip.Prefix, byMetric map[int][]router.NextHop) error {
	best, found := 0, false
	for m := range byMetric {
		if !found || m < best {
			best, found = m, true
		}
	}
	if found && len(byMetric[best]) > 0 {
		k.installed[prefix] = true
		return k.fib.Replace(prefix, byMetric[best]...)
	}
	if !k.installed[prefix] {
		return nil // never ours: leave what configuration put there
	}
	delete(k.installed, prefix)
	return k.fib.Delete(prefix)
}

func (k *Sync) neigh(u netlink.NeighUpdate) {
	n := u.Neigh
	port, ok := k.ports[n.LinkIndex]
	if !ok || len(n.HardwareAddr) != 6 {
		return
	}
	a, ok := ipToAddr(n.IP)
	if !ok {
		return
	}
	usable := n.State&(netlink.NUD_PERMANENT|netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_NOARP) != 0
	if u.Type == unix.RTM_DELNEIGH || !usable {
		k.neighs.Delete(port, a)
	} else {
		k.neighs.SetStatic(router.Neighbor{Port: port, Addr: a, MAC: [6]byte(n.HardwareAddr)})
	}
	k.applied.Add(1)
}
