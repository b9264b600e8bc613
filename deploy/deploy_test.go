package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/xnfdev/xnf/cli"
	"github.com/xnfdev/xnf/config"
)

// The capabilities the DaemonSet adds: docs/deployment.md's table lists
// the same set (TestDocumentedCapabilities), and daemonset.yaml says why
// each is there.
var capabilities = []string{"BPF", "IPC_LOCK", "NET_ADMIN", "NET_RAW", "SYS_NICE"}

// scalar is a YAML scalar of any tag (Kubernetes quantities and
// int-or-string ports come as either).
type scalar string

func (s *scalar) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a scalar", n.Line)
	}
	*s = scalar(n.Value)
	return nil
}

type meta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// object is one manifest document; Spec is decoded by kind.
type object struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   meta              `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	Spec       yaml.Node         `yaml:"spec"`

	file string
	line int
}

type selector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type daemonSetSpec struct {
	Selector       selector `yaml:"selector"`
	UpdateStrategy struct {
		Type          string `yaml:"type"`
		RollingUpdate struct {
			MaxUnavailable scalar `yaml:"maxUnavailable"`
			MaxSurge       scalar `yaml:"maxSurge"`
		} `yaml:"rollingUpdate"`
	} `yaml:"updateStrategy"`
	Template struct {
		Metadata meta    `yaml:"metadata"`
		Spec     podSpec `yaml:"spec"`
	} `yaml:"template"`
}

type podSpec struct {
	HostNetwork                   bool        `yaml:"hostNetwork"`
	DNSPolicy                     string      `yaml:"dnsPolicy"`
	TerminationGracePeriodSeconds *int        `yaml:"terminationGracePeriodSeconds"`
	Containers                    []container `yaml:"containers"`
	InitContainers                []container `yaml:"initContainers"`
	Volumes                       []volume    `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		HostPort      int    `yaml:"hostPort"`
	} `yaml:"ports"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Resources      struct {
		Requests map[string]scalar `yaml:"requests"`
		Limits   map[string]scalar `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *struct {
		RunAsUser                *int  `yaml:"runAsUser"`
		Privileged               *bool `yaml:"privileged"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             *struct {
			Add  []string `yaml:"add"`
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port scalar `yaml:"port"`
	} `yaml:"httpGet"`
}

type volume struct {
	Name      string                 `yaml:"name"`
	ConfigMap *struct{ Name string } `yaml:"configMap"`
	HostPath  *struct{ Path string } `yaml:"hostPath"`
}

type serviceSpec struct {
	ClusterIP string            `yaml:"clusterIP"`
	Selector  map[string]string `yaml:"selector"`
	Ports     []struct {
		Name       string `yaml:"name"`
		Port       int    `yaml:"port"`
		TargetPort scalar `yaml:"targetPort"`
	} `yaml:"ports"`
}

type serviceMonitorSpec struct {
	Selector  selector `yaml:"selector"`
	Endpoints []struct {
		Port string `yaml:"port"`
		Path string `yaml:"path"`
	} `yaml:"endpoints"`
}

// manifests reads every YAML document of deploy/*.yaml.
func manifests(t *testing.T) []*object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no deploy/*.yaml")
	}
	var out []*object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			o := &object{file: f, line: n.Line}
			if err := n.Decode(o); err != nil {
				t.Fatalf("%s:%d: %v", f, n.Line, err)
			}
			if o.Kind == "" || o.APIVersion == "" || o.Metadata.Name == "" {
				t.Fatalf("%s:%d: a document without kind, apiVersion or metadata.name", f, n.Line)
			}
			out = append(out, o)
		}
	}
	return out
}

// only returns the one object of kind, failing unless there is exactly one.
func only(t *testing.T, objs []*object, kind string) *object {
	t.Helper()
	var found []*object
	for _, o := range objs {
		if o.Kind == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d objects of kind %s, want 1", len(found), kind)
	}
	return found[0]
}

func decodeSpec(t *testing.T, o *object, out any) {
	t.Helper()
	if err := o.Spec.Decode(out); err != nil {
		t.Fatalf("%s:%d: %s spec: %v", o.file, o.line, o.Kind, err)
	}
}

// deployment is what the tests look at, read once per test.
type deployment struct {
	objs      []*object
	ds        *object
	dsSpec    daemonSetSpec
	pod       podSpec
	xnf       container
	chainPath string // the -c argument
	chainName string // where the ConfigMap's chain comes from, for errors
	chainData []byte
	chain     *config.File
}

func load(t *testing.T) *deployment {
	t.Helper()
	d := &deployment{objs: manifests(t)}
	d.ds = only(t, d.objs, "DaemonSet")
	decodeSpec(t, d.ds, &d.dsSpec)
	d.pod = d.dsSpec.Template.Spec
	if len(d.pod.Containers) != 1 || len(d.pod.InitContainers) != 0 {
		t.Fatalf("the DaemonSet has %d containers and %d init containers, want the one xnf container", len(d.pod.Containers), len(d.pod.InitContainers))
	}
	d.xnf = d.pod.Containers[0]

	// The arguments as `xnf run` itself parses them.
	if len(d.xnf.Command) != 1 || path.Base(d.xnf.Command[0]) != "xnf" {
		t.Fatalf("container command %q, want the xnf binary alone (arguments in args)", d.xnf.Command)
	}
	root := cli.Root()
	cmd, rest, err := root.Find(d.xnf.Args)
	if err != nil || cmd.Name() != "run" {
		t.Fatalf("container args %q are not `xnf run ...` (found %v, %v)", d.xnf.Args, cmd.Name(), err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("container args %q: %v", d.xnf.Args, err)
	}
	if check, _ := cmd.Flags().GetBool("check"); check {
		t.Fatalf("container args %q only check the file", d.xnf.Args)
	}
	d.chainPath, err = cmd.Flags().GetString("config")
	if err != nil || d.chainPath == "" || !path.IsAbs(d.chainPath) {
		t.Fatalf("container args %q: want -c with an absolute path to the chain file (got %q, %v)", d.xnf.Args, d.chainPath, err)
	}

	// The chain file is a ConfigMap key, mounted as a directory.
	var cmName string
	for _, m := range d.xnf.VolumeMounts {
		if path.Clean(m.MountPath) != path.Dir(d.chainPath) {
			continue
		}
		if m.SubPath != "" {
			t.Errorf("volume %s is mounted with subPath: the kubelet never updates it, so SIGHUP would reload the old file", m.Name)
		}
		for _, v := range d.pod.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				cmName = v.ConfigMap.Name
			}
		}
	}
	if cmName == "" {
		t.Fatalf("no ConfigMap volume is mounted at %s, the directory of the chain file the args name", path.Dir(d.chainPath))
	}
	cm := only(t, d.objs, "ConfigMap")
	if cm.Metadata.Name != cmName {
		t.Fatalf("the volume mounts ConfigMap %q, the manifests define %q", cmName, cm.Metadata.Name)
	}
	key := path.Base(d.chainPath)
	data, ok := cm.Data[key]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %q, the file the args name", cmName, key)
	}
	d.chainName = fmt.Sprintf("%s(%s)", cm.file, key)
	d.chainData = []byte(data)
	// xnf's own loader, as `xnf run --check`: it validates every field and
	// builds every stage in check mode, touching nothing on this host.
	d.chain, err = config.Parse(d.chainName, d.chainData)
	if err != nil {
		t.Fatalf("the ConfigMap's chain does not load: %v", err)
	}
	return d
}

// TestKinds: the objects docs/deployment.md lists, namespace-less, with
// the ServiceMonitor (and its Service) apart from what every cluster can
// apply.
func TestKinds(t *testing.T) {
	objs := manifests(t)
	want := map[string]string{"ConfigMap": "v1", "DaemonSet": "apps/v1", "Service": "v1", "ServiceMonitor": "monitoring.coreos.com/v1"}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.Kind)
		if v, ok := want[o.Kind]; !ok {
			t.Errorf("%s:%d: unexpected kind %s", o.file, o.line, o.Kind)
		} else if o.APIVersion != v {
			t.Errorf("%s:%d: %s has apiVersion %s, want %s", o.file, o.line, o.Kind, o.APIVersion, v)
		}
		if o.Metadata.Namespace != "" {
			t.Errorf("%s:%d: %s %s sets namespace %q; the manifests are namespace-less (kubectl apply -n)", o.file, o.line, o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		}
	}
	for k := range want {
		only(t, objs, k)
	}
	ds, sm, svc := only(t, objs, "DaemonSet"), only(t, objs, "ServiceMonitor"), only(t, objs, "Service")
	if sm.file == ds.file {
		t.Errorf("the ServiceMonitor is in %s with the DaemonSet: it needs the Prometheus operator's CRDs, so it gets a file of its own", sm.file)
	}
	if svc.file != sm.file {
		t.Errorf("the Service is in %s, the ServiceMonitor in %s: they go together", svc.file, sm.file)
	}
	t.Logf("kinds: %v", kinds)
}

func TestDaemonSetPod(t *testing.T) {
	d := load(t)
	if !d.pod.HostNetwork {
		t.Error("hostNetwork is not true: xnf must attach to the node's own interfaces")
	}
	if d.pod.DNSPolicy != "ClusterFirstWithHostNet" {
		t.Errorf("dnsPolicy %q, want ClusterFirstWithHostNet", d.pod.DNSPolicy)
	}
	for k, v := range d.dsSpec.Selector.MatchLabels {
		if d.dsSpec.Template.Metadata.Labels[k] != v {
			t.Errorf("the selector's %s=%s is not a label of the pod template", k, v)
		}
	}
	if len(d.dsSpec.Selector.MatchLabels) == 0 {
		t.Error("the DaemonSet has no selector")
	}
	// No second xnf on a node during an update: it could not attach.
	if ru := d.dsSpec.UpdateStrategy.RollingUpdate; d.dsSpec.UpdateStrategy.Type != "RollingUpdate" || ru.MaxSurge != "0" {
		t.Errorf("updateStrategy %s with maxSurge %q, want RollingUpdate with maxSurge 0", d.dsSpec.UpdateStrategy.Type, ru.MaxSurge)
	}
	// Nothing is pinned on bpffs, so the pod mounts nothing of the host's.
	for _, v := range d.pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s mounts the host's %s: xnf pins nothing (see TestNothingPinned)", v.Name, v.HostPath.Path)
		}
	}
	// SIGTERM stops the metrics server (up to 1 s) and drains the workers
	// one after another (about 1.1 s each at most) before detaching:
	// docs/deployment.md and daemonset.yaml promise that the grace period
	// covers it.
	if g := d.pod.TerminationGracePeriodSeconds; g == nil || *g < 2+2*d.chain.WorkerCount() {
		t.Errorf("terminationGracePeriodSeconds %v is short of xnf's drain for %d workers", g, d.chain.WorkerCount())
	}
}

func TestSecurityContext(t *testing.T) {
	d := load(t)
	sc := d.xnf.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("the xnf container has no securityContext with capabilities")
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("privileged is not false")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	// Added capabilities reach a non-root process only in its bounding set.
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("runAsUser %v, want 0: a non-root xnf would hold none of the added capabilities", sc.RunAsUser)
	}
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("capabilities.drop %q, want [ALL]", sc.Capabilities.Drop)
	}
	add := slices.Clone(sc.Capabilities.Add)
	slices.Sort(add)
	if !slices.Equal(add, capabilities) {
		t.Errorf("capabilities.add %q, want exactly %q (docs/deployment.md)", sc.Capabilities.Add, capabilities)
	}
	// The chain's workers run realtime (or at a negative nice) by
	// default: that is what SYS_NICE is there for.
	if w := d.chain.Workers; w.WorkerRealTime() == 0 && w.WorkerNice() >= 0 && slices.Contains(add, "SYS_NICE") {
		t.Error("SYS_NICE is added, but the chain's workers neither run realtime nor at a negative nice")
	}
}

// TestDocumentedCapabilities: docs/deployment.md's capability table lists
// the set the DaemonSet adds.
func TestDocumentedCapabilities(t *testing.T) {
	data, err := os.ReadFile("../docs/deployment.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## What each capability is for\n")
	if !ok {
		t.Fatal(`docs/deployment.md has no "## What each capability is for" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\|")
	var documented []string
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		documented = append(documented, m[1])
	}
	slices.Sort(documented)
	if !slices.Equal(documented, capabilities) {
		t.Errorf("docs/deployment.md's capability table lists %q, the DaemonSet adds %q", documented, capabilities)
	}
}

// TestChainMetrics: the port xnf listens on (metrics.listen) is the
// container's metrics port, the annotations', the probes', the
// Service's and the ServiceMonitor's; and the path is the one xnf serves.
func TestChainMetrics(t *testing.T) {
	d := load(t)
	listen := d.chain.Metrics.Listen
	if listen == "" || listen == "off" {
		t.Fatalf("%s: metrics.listen is %q: the probes and Prometheus need the endpoint", d.chainName, listen)
	}
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		t.Errorf("%s: metrics.listen %s is loopback: neither the kubelet's probes nor Prometheus reach it on the node's address", d.chainName, listen)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatal(err)
	}
	var portName string
	for _, p := range d.xnf.Ports {
		if p.ContainerPort == port {
			portName = p.Name
			if p.HostPort != 0 && p.HostPort != port {
				t.Errorf("hostPort %d differs from containerPort %d (hostNetwork makes them one)", p.HostPort, port)
			}
		}
	}
	if portName == "" {
		t.Fatalf("no containerPort %d, the port of metrics.listen %s", port, listen)
	}

	metricsPath := servedPath(t)
	ann := d.dsSpec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" {
		t.Errorf("prometheus.io/scrape %q, want \"true\"", ann["prometheus.io/scrape"])
	}
	if ann["prometheus.io/port"] != portStr {
		t.Errorf("prometheus.io/port %q, metrics.listen's port is %s", ann["prometheus.io/port"], portStr)
	}
	if ann["prometheus.io/path"] != metricsPath {
		t.Errorf("prometheus.io/path %q, xnf serves %s", ann["prometheus.io/path"], metricsPath)
	}
	isPort := func(s scalar) bool { return string(s) == portName || string(s) == portStr }
	for name, p := range map[string]*probe{"readinessProbe": d.xnf.ReadinessProbe, "livenessProbe": d.xnf.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("no %s with httpGet", name)
			continue
		}
		if p.HTTPGet.Path != metricsPath || !isPort(p.HTTPGet.Port) {
			t.Errorf("%s gets %s on port %s, want %s on %s (%s)", name, p.HTTPGet.Path, p.HTTPGet.Port, metricsPath, portName, portStr)
		}
	}

	var svc serviceSpec
	svcObj := only(t, d.objs, "Service")
	decodeSpec(t, svcObj, &svc)
	if svc.ClusterIP != "None" {
		t.Errorf("the Service's clusterIP is %q, want None (headless: one endpoint per node)", svc.ClusterIP)
	}
	for k, v := range svc.Selector {
		if d.dsSpec.Template.Metadata.Labels[k] != v {
			t.Errorf("the Service selects %s=%s, which the pods do not carry", k, v)
		}
	}
	if len(svc.Selector) == 0 {
		t.Error("the Service selects nothing")
	}
	svcPort := ""
	for _, p := range svc.Ports {
		if isPort(p.TargetPort) {
			svcPort = p.Name
		}
	}
	if svcPort == "" {
		t.Errorf("no Service port targets the container's metrics port %s", portName)
	}
	var sm serviceMonitorSpec
	smObj := only(t, d.objs, "ServiceMonitor")
	decodeSpec(t, smObj, &sm)
	for k, v := range sm.Selector.MatchLabels {
		if svcObj.Metadata.Labels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s, which the Service does not carry", k, v)
		}
	}
	if len(sm.Endpoints) != 1 || sm.Endpoints[0].Port != svcPort || sm.Endpoints[0].Path != metricsPath {
		t.Errorf("ServiceMonitor endpoints %+v, want port %q path %s", sm.Endpoints, svcPort, metricsPath)
	}
}

// servedPath is the path service.ServeMetrics serves, read from its
// source so that moving it fails this test rather than the probes.
func servedPath(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("../service/run.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`mux\.Handle\("([^"]+)"`).FindAllSubmatch(src, -1)
	if len(m) != 1 {
		t.Fatalf("service/run.go: found %d mux.Handle paths, want the one metrics path", len(m))
	}
	return string(m[0][1])
}

// TestResources: whole cores, requests equal to limits (Guaranteed QoS,
// which the kubelet's static CPU manager needs to give exclusive cores),
// a core per worker and one more, and memory for the workers' UMEMs.
func TestResources(t *testing.T) {
	d := load(t)
	r := d.xnf.Resources
	for _, res := range []string{"cpu", "memory"} {
		if r.Requests[res] == "" || r.Requests[res] != r.Limits[res] {
			t.Errorf("%s: request %q, limit %q: want them set and equal (Guaranteed QoS)", res, r.Requests[res], r.Limits[res])
		}
	}
	cpu, err := strconv.Atoi(string(r.Limits["cpu"]))
	if err != nil {
		t.Errorf("cpu %q is not a whole number of cores: the static CPU manager gives exclusive cores only for those", r.Limits["cpu"])
	} else if workers := d.chain.WorkerCount(); cpu < workers+1 {
		t.Errorf("cpu %d for %d workers: want a core per worker and one for the rest", cpu, workers)
	}
	mem, err := bytesOf(string(r.Limits["memory"]))
	if err != nil {
		t.Fatal(err)
	}
	// The defaults are those docs/config.md gives for umem.
	frames, size := d.chain.UMEM.Frames, d.chain.UMEM.FrameSize
	if frames == 0 {
		frames = 4096 * len(d.chain.Ports)
	}
	if size == 0 {
		size = 4096
	}
	umem := int64(d.chain.WorkerCount() * frames * size)
	if mem < 2*umem {
		t.Errorf("memory %s for %d bytes of UMEM: want room for the UMEMs and as much again (conntrack, the Go heap)", r.Limits["memory"], umem)
	}
	if d.chain.UMEM.HugePages {
		if _, ok := r.Limits["hugepages-2Mi"]; !ok {
			t.Error("umem.huge_pages is on but the pod requests no hugepages-2Mi: its huge page limit is zero")
		}
	}
}

// bytesOf reads a Kubernetes memory quantity with a binary suffix.
func bytesOf(q string) (int64, error) {
	for i, suf := range []string{"Ki", "Mi", "Gi", "Ti"} {
		if n, ok := strings.CutSuffix(q, suf); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v << (10 * (i + 1)), err
		}
	}
	return strconv.ParseInt(q, 10, 64)
}

// TestChainFile: workers.cpus is unset (a CPU outside the pod's
// kubelet-chosen set would stop the worker), the chain has stages, a
// broken copy of it fails to load, and a copy on two queues loads with a
// steering for the hand-off (configmap.yaml and docs/deployment.md say
// the stateful firewall runs on more queues, each flow on its owner).
func TestChainFile(t *testing.T) {
	d := load(t)
	if len(d.chain.Workers.CPUs) != 0 {
		t.Errorf("%s: workers.cpus %v: the kubelet chooses the pod's cores, a fixed CPU may be outside them", d.chainName, d.chain.Workers.CPUs)
	}
	if len(d.chain.Chain) == 0 {
		t.Errorf("%s: an empty chain", d.chainName)
	}
	// A chain that breaks must fail here: the loader is the real one.
	broken := bytes.Replace(d.chainData, []byte("realtime:"), []byte("realtim:"), 1)
	if bytes.Equal(broken, d.chainData) {
		t.Fatalf("%s: no workers.realtime to break", d.chainName)
	}
	if _, err := config.Parse(d.chainName, broken); err == nil || !strings.Contains(err.Error(), "workers.realtim") {
		t.Errorf("a chain with an unknown field loads (%v): the check is not xnf's loader", err)
	}
	var twoQueues []string
	for _, l := range strings.SplitAfter(string(d.chainData), "\n") {
		twoQueues = append(twoQueues, l)
		if s := strings.TrimLeft(l, " "); strings.HasPrefix(s, "interface:") {
			twoQueues = append(twoQueues, l[:len(l)-len(s)]+"queues: [0, 1]\n")
		}
	}
	f, err := config.Parse(d.chainName, []byte(strings.Join(twoQueues, "")))
	if err != nil {
		t.Fatalf("the chain on two queues: %v", err)
	}
	if st, err := f.Steering(); err != nil || st == nil || f.WorkerCount() != 2 {
		t.Errorf("the chain on two queues (%d workers): steering %v, %v; configmap.yaml and docs/deployment.md say its workers hand flows to their owners", f.WorkerCount(), st, err)
	}
}

// TestNothingPinned: no hostPath for /sys/fs/bpf because xnf pins no BPF
// object. If the code starts pinning (cilium/ebpf's Pin, PinPath,
// LoadPinned...), the manifests need the bpffs mount and this fails.
func TestNothingPinned(t *testing.T) {
	pin := regexp.MustCompile(`\.Pin\(|PinPath|LoadPinned|PinByName|/sys/fs/bpf`)
	for _, dir := range []string{"afxdp", "bpf", "port", "service", "cli", "config", "pipeline", "nf"} {
		err := filepath.WalkDir(filepath.Join("..", dir), func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			src, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if loc := pin.FindIndex(src); loc != nil {
				t.Errorf("%s:%d: %s: xnf pins a BPF object; the DaemonSet mounts no /sys/fs/bpf", p, bytes.Count(src[:loc[0]], []byte("\n"))+1, src[loc[0]:loc[1]])
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
