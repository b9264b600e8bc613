// Package lab builds and tears down network topologies for tests, the demo
// and the benchmark harness: network namespaces joined by veth pairs, with
// addresses from 198.18.0.0/15 (RFC 2544's benchmarking range), routes and
// static neighbors. Everything goes through netlink; nothing shells out.
//
// A Lab owns every namespace it creates and Close removes them all, which
// also destroys the veth pairs inside. Namespace names carry a per-lab
// random suffix, so test packages can build labs in parallel. Interface
// names live inside namespaces and need no such care.
//
// The host's own namespace is never changed: links are created inside lab
// namespaces (the peer moved at creation), so no traffic of a lab can
// reach eth0.
package lab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Lab is a set of namespaces created together and removed together.
type Lab struct {
	Prefix string

	mu    sync.Mutex
	nss   []*NS
	fixed [3]string // fixed names for gen, dut, sink (NewTopology)
}

// NS is one network namespace of a lab.
type NS struct {
	// Name is the full name under /var/run/netns (usable with `ip netns exec`).
	Name string
	// Short is the name the lab was asked for ("gen", "dut", ...).
	Short  string
	handle netns.NsHandle
	nl     *netlink.Handle
}

var runNetns sync.Once

// ensureRunNetns makes /run/netns a shared mount point, as `ip netns add`
// does. If it is not one when a lab mounts its namespaces there, a later
// `ip netns add` (any tool's) binds /run/netns over itself and hides those
// mounts: they can then be neither unmounted nor removed (EBUSY).
func ensureRunNetns() {
	runNetns.Do(func() {
		const dir = "/var/run/netns"
		os.MkdirAll(dir, 0o755)
		if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err == nil {
			return
		}
		if unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, "") == nil {
			unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	})
}

// New starts an empty lab whose namespaces are named prefix-<random>-<name>.
func New(prefix string) (*Lab, error) {
	ensureRunNetns()
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return &Lab{Prefix: prefix + "-" + hex.EncodeToString(b[:])}, nil
}

// Namespace creates a new network namespace in the lab, with loopback up.
func (l *Lab) Namespace(name string) (*NS, error) {
	full := l.Prefix + "-" + name
	for i, role := range []string{"gen", "dut", "sink"} {
		if name == role && l.fixed[i] != "" {
			full = l.fixed[i]
			if Exists(full) {
				return nil, fmt.Errorf("lab: namespace %s already exists (a lab is already up? remove it with 'xnf lab down')", full)
			}
		}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("lab: reading current namespace: %w", err)
	}
	defer orig.Close()
	h, err := netns.NewNamed(full) // switches this thread into the new namespace
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("lab: creating namespace %s: %w (needs root or CAP_SYS_ADMIN)", full, err)
		}
		return nil, fmt.Errorf("lab: creating namespace %s: %w", full, err)
	}
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the new namespace: keep it locked so the
		// runtime discards it rather than reusing it elsewhere.
		runtime.LockOSThread()
		return nil, fmt.Errorf("lab: returning to the original namespace: %w", err)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		netns.DeleteNamed(full)
		return nil, fmt.Errorf("lab: netlink handle in %s: %w", full, err)
	}
	ns := &NS{Name: full, Short: name, handle: h, nl: nl}
	l.mu.Lock()
	l.nss = append(l.nss, ns)
	l.mu.Unlock()
	if err := ns.LinkUp("lo"); err != nil {
		return nil, err
	}
	return ns, nil
}

// Close deletes every namespace of the lab (and with them their veths).
// It is safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	nss := l.nss
	l.nss = nil
	l.mu.Unlock()
	var errs []error
	for i := len(nss) - 1; i >= 0; i-- {
		ns := nss[i]
		ns.nl.Close()
		ns.handle.Close()
		if err := netns.DeleteNamed(ns.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("lab: deleting namespace %s: %w", ns.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Namespaces lists the full names of the lab's live namespaces.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ns := range l.nss {
		out = append(out, ns.Name)
	}
	return out
}

// Exists reports whether a named namespace is present under /var/run/netns.
func Exists(name string) bool {
	_, err := os.Stat(filepath.Join("/var/run/netns", name))
	return err == nil
}

// Leftovers lists namespaces whose names start with prefix: what a test
// asserts is empty after a lab is closed.
func Leftovers(prefix string) []string {
	ents, _ := os.ReadDir("/var/run/netns")
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// Do runs fn on an OS thread switched into the namespace. Sockets created by
// fn belong to the namespace and may be used from any goroutine afterwards.
func (n *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(n.handle); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: entering %s: %w", n.Name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: the runtime kills it with the goroutine.
		return errors.Join(ferr, fmt.Errorf("lab: leaving %s: %w", n.Name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Handle is the namespace's handle (for netlink.NsFd and the like).
func (n *NS) Handle() netns.NsHandle { return n.handle }

// Netlink is a netlink handle operating inside the namespace.
func (n *NS) Netlink() *netlink.Handle { return n.nl }

// Link returns the named link of the namespace.
func (n *NS) Link(name string) (netlink.Link, error) {
	l, err := n.nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("lab: %s: link %s: %w", n.Name, name, err)
	}
	return l, nil
}

// LinkUp sets a link administratively up.
func (n *NS) LinkUp(name string) error {
	l, err := n.Link(name)
	if err != nil {
		return err
	}
	if err := n.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("lab: %s: set %s up: %w", n.Name, name, err)
	}
	return nil
}

// AddAddr adds an address in CIDR form ("198.18.0.1/24") to a link.
func (n *NS) AddAddr(link, cidr string) error {
	l, err := n.Link(link)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return fmt.Errorf("lab: address %q: %w", cidr, err)
	}
	// IPv6 addresses are usable at once: no duplicate address detection wait.
	a.Flags |= unix.IFA_F_NODAD
	if err := n.nl.AddrAdd(l, a); err != nil {
		return fmt.Errorf("lab: %s: add %s to %s: %w", n.Name, cidr, link, err)
	}
	return nil
}

// AddRoute adds a route to dst ("198.19.0.0/24" or "default") via gw (may be
// empty for a connected route) out of link.
func (n *NS) AddRoute(dst, gw, link string) error {
	r, err := n.route(dst, gw, link)
	if err != nil {
		return err
	}
	if err := n.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("lab: %s: route %s via %q dev %s: %w", n.Name, dst, gw, link, err)
	}
	return nil
}

// DelRoute removes a route added with AddRoute.
func (n *NS) DelRoute(dst, gw, link string) error {
	r, err := n.route(dst, gw, link)
	if err != nil {
		return err
	}
	return n.nl.RouteDel(r)
}

// route builds the route AddRoute and DelRoute name.
func (n *NS) route(dst, gw, link string) (*netlink.Route, error) {
	l, err := n.Link(link)
	if err != nil {
		return nil, err
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index}
	if dst != "default" {
		_, ipnet, err := net.ParseCIDR(dst)
		if err != nil {
			return nil, fmt.Errorf("lab: route destination %q: %w", dst, err)
		}
		r.Dst = ipnet
	}
	if gw != "" {
		r.Gw = net.ParseIP(gw)
		if r.Gw == nil {
			return nil, fmt.Errorf("lab: route gateway %q is not an IP address", gw)
		}
	}
	return r, nil
}

// AddNeigh installs a permanent neighbor entry (no ARP/NDP needed).
func (n *NS) AddNeigh(link, ip, mac string) error {
	l, err := n.Link(link)
	if err != nil {
		return err
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return fmt.Errorf("lab: neighbor MAC %q: %w", mac, err)
	}
	addr := net.ParseIP(ip)
	if addr == nil {
		return fmt.Errorf("lab: neighbor address %q is not an IP address", ip)
	}
	fam := netlink.FAMILY_V4
	if addr.To4() == nil {
		fam = netlink.FAMILY_V6
	}
	nb := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: fam, State: netlink.NUD_PERMANENT, IP: addr, HardwareAddr: hw}
	if err := n.nl.NeighSet(nb); err != nil {
		return fmt.Errorf("lab: %s: neighbor %s lladdr %s dev %s: %w", n.Name, ip, mac, link, err)
	}
	return nil
}

// Sysctl writes a per-namespace sysctl such as "net/ipv4/ip_forward".
func (n *NS) Sysctl(key, value string) error {
	return n.Do(func() error {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("lab: %s: sysctl %s=%s: %w", n.Name, key, value, err)
		}
		return nil
	})
}

// Open returns a handle on an existing named namespace (for a helper
// process that joins a lab built by another). It does not own it: Close
// on a lab never sees it.
func Open(name string) (*NS, error) {
	h, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("lab: namespace %s: %w", name, err)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		return nil, err
	}
	return &NS{Name: name, handle: h, nl: nl}, nil
}

// DeleteNamespaces removes named namespaces (for 'xnf lab down'); missing
// ones are skipped. It returns the names it removed.
func DeleteNamespaces(names ...string) ([]string, error) {
	var done []string
	var errs []error
	for _, n := range names {
		if !Exists(n) {
			continue
		}
		if err := netns.DeleteNamed(n); err != nil {
			errs = append(errs, fmt.Errorf("lab: deleting namespace %s: %w", n, err))
			continue
		}
		done = append(done, n)
	}
	return done, errors.Join(errs...)
}
