// Package node runs a real Kubernetes node on this machine for the local
// cloud: containerd v2 with runc as the CRI runtime, the CNI bridge plugin
// for pod networking, the kubelet, and kube-proxy serving NodePorts on
// 127.0.0.1. Pods run for real; their sandbox ("pause") image is our own
// program (./pause), imported into containerd, since no image registry can be
// reached, and other images come from plain-HTTP registries on 127.0.0.1.
//
// Everything the node makes on the host is found and removed again by Stop:
// processes (kubelet, kube-proxy, containerd, shims, containers), mounts
// under its directory, the bridge and the pods' veths, kube-proxy's iptables
// chains, the pods' cgroups, and the kernel settings its parts change. One
// node runs on a machine at a time (a lock serializes them), as the bridge,
// the iptables chains and the cgroup root are machine-wide.
//
// The binaries come from hack/toolchain.sh; runc, iptables, iproute2 and the
// CNI plugins are Debian packages (HostPrograms).
package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/planets-mlops/deploy/internal/localcloud/goimage"
	"github.com/planets-mlops/deploy/internal/localcloud/loopback"
	"github.com/planets-mlops/deploy/internal/localcloud/process"
)

// Binaries that Start expects in Options.BinDir.
var Binaries = []string{"containerd", "containerd-shim-runc-v2", "ctr", "kubelet", "kube-proxy"}

// DefaultName is the node's name unless Options.Name says otherwise.
const DefaultName = "localnode"

// pausePackage is the pause program, built into the sandbox image.
const pausePackage = "github.com/planets-mlops/deploy/internal/localcloud/node/pause"

// Options configure Start.
type Options struct {
	// BinDir holds the binaries listed in Binaries.
	BinDir string
	// Dir receives the node's configuration and one log file per process;
	// it must exist. (Its state goes to a fixed short path, see stateDir.)
	Dir string
	// Kubeconfig is a path to an admin kubeconfig of the control plane.
	Kubeconfig string
	// Name is the Node's name; default DefaultName.
	Name string
	// Registries are registries on 127.0.0.1 ("127.0.0.1:<port>") that
	// containerd pulls from over plain HTTP.
	Registries []string
	// Logf, if set, receives progress messages.
	Logf func(format string, args ...any)
}

// Node is a running node.
type Node struct {
	Name string

	opts    Options
	paths   paths
	logf    func(string, ...any)
	lock    *os.File
	sysctls map[string]string
	// madeDirs are machine-wide directories the node's parts create that
	// did not exist before it started, removed by Stop when empty.
	madeDirs  []string
	processes map[string]*process.Process
	order     []string // start order
	env       []string
}

// Start runs containerd, the kubelet and kube-proxy and returns when the
// runtime and its network are ready and kube-proxy is healthy; the caller
// waits for the Node to be Ready in the API (it owns the client). Start
// checks its inputs before it changes anything; on error, everything already
// started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Node, err error) {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := checkOptions(opts); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n := &Node{
		Name:      opts.Name,
		opts:      opts,
		paths:     newPaths(opts.Dir, opts.Kubeconfig),
		logf:      logf,
		processes: map[string]*process.Process{},
		// The shim is found on PATH (ours first), runc and iptables by
		// kubelet and kube-proxy too.
		env: append(os.Environ(), "PATH="+opts.BinDir+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
	}
	if n.lock, err = lockHost(ctx, logf); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.sysctls = readSysctls()
	// A run that was killed (no Stop) may have left things behind: start
	// clean.
	if err := n.removeLeftovers(ctx); err != nil {
		return nil, fmt.Errorf("node: remove what a killed run left: %w", err)
	}
	for _, dir := range []string{shimSocketDir, filepath.Dir(shimSocketDir)} {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			n.madeDirs = append(n.madeDirs, dir)
		}
	}
	defer func() {
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			err = errors.Join(err, n.Stop(stopCtx))
		}
	}()

	// The pause image is built before anything starts: a build error is an
	// input problem, and the build is the slowest step when cold.
	if err := goimage.Build(ctx, goimage.Image{
		Package: pausePackage, Ref: SandboxImage, Binary: "/pause", User: "65535:65535",
	}, n.paths.pauseArchive); err != nil {
		return nil, fmt.Errorf("node: pause image: %w", err)
	}

	ports, err := loopback.FreePorts(4)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	kubeletPort, kubeletHealthzPort, proxyHealthzPort, proxyMetricsPort := ports[0], ports[1], ports[2], ports[3]
	cni, err := cniConfig(n.paths)
	if err != nil {
		return nil, err
	}
	files := map[string]string{
		n.paths.containerdConfig:                               containerdConfig(n.paths),
		filepath.Join(n.paths.cniConfDir, "10-mlops.conflist"): string(cni),
		n.paths.kubeletConfig:                                  kubeletConfig(n.paths, kubeletPort, kubeletHealthzPort),
		n.paths.kubeProxyConfig:                                kubeProxyConfig(n.paths, opts.Name, proxyHealthzPort, proxyMetricsPort),
	}
	for _, registry := range opts.Registries {
		files[filepath.Join(n.paths.registryHostsDir, registry, "hosts.toml")] = registryHosts(registry)
	}
	if err := writeFiles(files); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	for _, dir := range []string{n.paths.cniIPAMDir, n.paths.kubeletRoot, n.paths.podLogsDir, socketDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	// The kubelet expects its cgroup root to exist in every hierarchy.
	points, err := cgroupMounts()
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	for _, point := range points {
		if err := os.MkdirAll(filepath.Join(point, cgroupRoot), 0o755); err != nil {
			return nil, fmt.Errorf("node: cgroup root: %w", err)
		}
	}

	if err := n.start("containerd", "--config", n.paths.containerdConfig); err != nil {
		return nil, err
	}
	if err := n.waitFor(ctx, "containerd's CRI runtime and network ready", n.criReady); err != nil {
		return nil, err
	}
	if err := n.ctr(ctx, "images", "import", "--label", "io.cri-containerd.pinned=pinned", n.paths.pauseArchive); err != nil {
		return nil, fmt.Errorf("node: import the pause image: %w", err)
	}
	logf("node: containerd ready, pause image %s imported", SandboxImage)

	if err := n.start("kubelet",
		"--config="+n.paths.kubeletConfig,
		"--kubeconfig="+n.paths.kubeconfig,
		"--root-dir="+n.paths.kubeletRoot,
		"--hostname-override="+opts.Name,
		"--v=1",
	); err != nil {
		return nil, err
	}
	if err := n.waitFor(ctx, "kubelet /healthz", httpOK("http://127.0.0.1:"+strconv.Itoa(kubeletHealthzPort)+"/healthz")); err != nil {
		return nil, err
	}
	if err := n.start("kube-proxy", "--config="+n.paths.kubeProxyConfig, "--v=1"); err != nil {
		return nil, err
	}
	if err := n.waitFor(ctx, "kube-proxy /healthz", httpOK("http://127.0.0.1:"+strconv.Itoa(proxyHealthzPort)+"/healthz")); err != nil {
		return nil, err
	}
	logf("node: %s running (kubelet, kube-proxy, containerd); logs in %s", opts.Name, opts.Dir)
	return n, nil
}

func checkOptions(opts Options) error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("a real node needs root (containers, mounts, iptables)"))
	}
	for _, name := range Binaries {
		path := filepath.Join(opts.BinDir, name)
		if info, err := os.Stat(path); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			errs = append(errs, fmt.Errorf("%s is not an executable in %q (run hack/toolchain.sh)", name, opts.BinDir))
		}
	}
	for path, pkg := range HostPrograms {
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s is missing: install the Debian package %s", path, pkg))
		}
	}
	if info, err := os.Stat(opts.Dir); err != nil || !info.IsDir() {
		errs = append(errs, fmt.Errorf("directory %q: expected an existing directory", opts.Dir))
	}
	if _, err := os.Stat(opts.Kubeconfig); err != nil {
		errs = append(errs, fmt.Errorf("kubeconfig %q: %w", opts.Kubeconfig, err))
	}
	for _, registry := range opts.Registries {
		errs = append(errs, validRegistry(registry))
	}
	return errors.Join(errs...)
}

// ImportImage imports an OCI image archive (see goimage) into the node's
// containerd, where the kubelet finds it without pulling.
func (n *Node) ImportImage(ctx context.Context, archive string) error {
	return n.ctr(ctx, "images", "import", archive)
}

// KillContainer sends SIGKILL to a container's process, as the kernel's OOM
// killer or a crash would end it: no graceful shutdown. containerID is the
// one in a pod's status ("containerd://<id>").
func (n *Node) KillContainer(ctx context.Context, containerID string) error {
	id, ok := strings.CutPrefix(containerID, "containerd://")
	if !ok || id == "" {
		return fmt.Errorf("node: container id %q: expected containerd://<id>", containerID)
	}
	return n.ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", id)
}

func (n *Node) ctr(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(n.opts.BinDir, "ctr"),
		append([]string{"--address", n.paths.containerdSocket, "--namespace", criNamespace}, args...)...)
	cmd.Env = n.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctr %v: %v\n%s", args, err, out)
	}
	return nil
}

func (n *Node) start(name string, args ...string) error {
	p, err := process.Start(name, filepath.Join(n.opts.BinDir, name), filepath.Join(n.opts.Dir, name+".log"), args, n.env)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.processes[name] = p
	n.order = append(n.order, name)
	n.logf("node: started %s (pid %d)", name, p.Pid())
	return nil
}

// Stop stops the node and removes what it made on the host, in the order
// that lets each part clean up after itself: the kubelet first (so nothing
// restarts pods), then every pod sandbox through the CRI (which runs the CNI
// teardown), kube-proxy and its iptables chains, containerd; then whatever
// is still left: processes in the node's cgroups, shims, mounts, the bridge,
// cgroups, kernel settings. It reports what it could not remove, and is safe
// to call more than once.
func (n *Node) Stop(ctx context.Context) error {
	if n.lock == nil {
		return nil
	}
	var errs []error
	stopProcess := func(name string) {
		if p := n.processes[name]; p != nil {
			errs = append(errs, p.Stop(ctx))
			delete(n.processes, name)
		}
	}
	stopProcess("kubelet")
	if n.processes["containerd"] != nil {
		errs = append(errs, n.removeAllPods(ctx))
	}
	stopProcess("kube-proxy")
	stopProcess("containerd")
	errs = append(errs, n.removeLeftovers(ctx))
	errs = append(errs, restoreSysctls(n.sysctls))
	for _, dir := range n.madeDirs {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if left := n.Leftovers(ctx); len(left) > 0 {
		errs = append(errs, fmt.Errorf("node: left behind after stop: %v", left))
	}
	n.lock.Close() // releases the flock
	n.lock = nil
	return errors.Join(errs...)
}

// Leftovers lists what of the node is still on the host: processes of its
// binaries, mounts under its directory, the bridge, cgroups, iptables
// chains of kube-proxy and the kubelet, changed kernel settings.
func (n *Node) Leftovers(ctx context.Context) []string {
	var left []string
	var binaries []string
	for _, name := range Binaries {
		binaries = append(binaries, filepath.Join(n.opts.BinDir, name))
	}
	for _, pid := range append(processesOf(binaries...), shimsOf(n.paths.containerdSocket)...) {
		left = append(left, fmt.Sprintf("process %d", pid))
	}
	for _, dir := range []string{stateDir, socketDir, n.opts.Dir} {
		if points, err := MountsUnder(dir); err != nil || len(points) > 0 {
			left = append(left, fmt.Sprintf("mounts %v %v", points, err))
		}
	}
	for _, dir := range []string{stateDir, socketDir} {
		if _, err := os.Stat(dir); err == nil {
			left = append(left, "directory "+dir)
		}
	}
	if linkExists(BridgeName) {
		left = append(left, "network interface "+BridgeName)
	}
	if dirs, err := nodeCgroups(); err != nil || len(dirs) > 0 {
		left = append(left, fmt.Sprintf("cgroups %v %v", dirs, err))
	}
	if chains, err := IptablesChains(ctx, "KUBE-", "CNI-"); err != nil || len(chains) > 0 {
		left = append(left, fmt.Sprintf("iptables chains %v %v", chains, err))
	}
	now := readSysctls()
	for name, value := range n.sysctls {
		if now[name] != value {
			left = append(left, fmt.Sprintf("sysctl %s=%s (was %s)", name, now[name], value))
		}
	}
	return left
}

// removeAllPods stops and removes every container and pod sandbox through
// the CRI, so containerd tears down their networks (veths, addresses) and
// mounts.
func (n *Node) removeAllPods(ctx context.Context) error {
	conn, runtime, err := n.criClient()
	if err != nil {
		return err
	}
	defer conn.Close()
	var errs []error
	containers, err := runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return fmt.Errorf("node: list containers: %w", err)
	}
	for _, c := range containers.Containers {
		if _, err := runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c.Id, Timeout: 5}); err != nil {
			errs = append(errs, err)
		}
		if _, err := runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.Id}); err != nil {
			errs = append(errs, err)
		}
	}
	sandboxes, err := runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("node: list pod sandboxes: %w", err)
	}
	for _, s := range sandboxes.Items {
		if _, err := runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, err)
		}
		if _, err := runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("node: remove pods: %w", errors.Join(errs...))
	}
	return nil
}

// removeLeftovers removes what the node's parts leave on the host once their
// processes are gone (or were killed with the test): kube-proxy's and the
// kubelet's iptables chains, processes in the pods' cgroups and the cgroups,
// shims, mounts and state, the bridge.
func (n *Node) removeLeftovers(ctx context.Context) error {
	errs := []error{n.cleanupKubeProxy(ctx), killCgroups(ctx)}
	for _, pid := range shimsOf(n.paths.containerdSocket) {
		errs = append(errs, syscall.Kill(pid, syscall.SIGKILL))
	}
	errs = append(errs, removeState(), deleteLink(ctx, BridgeName))
	return errors.Join(errs...)
}

// cleanupKubeProxy removes kube-proxy's iptables chains with its own
// cleanup mode, then any other KUBE- chain (the kubelet's canaries).
func (n *Node) cleanupKubeProxy(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, filepath.Join(n.opts.BinDir, "kube-proxy"), "--cleanup")
	cmd.Env = n.env
	out, cleanupErr := cmd.CombinedOutput()
	if cleanupErr != nil {
		cleanupErr = fmt.Errorf("node: kube-proxy --cleanup: %v\n%s", cleanupErr, out)
	}
	chains, err := IptablesChains(ctx, "KUBE-")
	if err != nil {
		return errors.Join(cleanupErr, err)
	}
	return errors.Join(cleanupErr, deleteChains(ctx, chains))
}

func (n *Node) criClient() (*grpc.ClientConn, runtimeapi.RuntimeServiceClient, error) {
	conn, err := grpc.NewClient("unix://"+n.paths.containerdSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	return conn, runtimeapi.NewRuntimeServiceClient(conn), nil
}

// criReady checks that the runtime and its network (the CNI config) are ready.
func (n *Node) criReady(ctx context.Context) error {
	conn, runtime, err := n.criClient()
	if err != nil {
		return err
	}
	defer conn.Close()
	status, err := runtime.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return err
	}
	ready := map[string]bool{}
	for _, condition := range status.Status.Conditions {
		ready[condition.Type] = condition.Status
		if !condition.Status && (condition.Type == runtimeapi.RuntimeReady || condition.Type == runtimeapi.NetworkReady) {
			return fmt.Errorf("%s: %s %s", condition.Type, condition.Reason, condition.Message)
		}
	}
	if !ready[runtimeapi.RuntimeReady] || !ready[runtimeapi.NetworkReady] {
		return fmt.Errorf("runtime conditions %v", ready)
	}
	return nil
}

// waitFor polls check for up to two minutes, failing fast with the log of
// any process that died.
func (n *Node) waitFor(ctx context.Context, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var lastErr error
	for {
		for _, name := range n.order {
			if p := n.processes[name]; p != nil {
				if err := p.Running(); err != nil {
					return fmt.Errorf("node: waiting for %s: %w", what, err)
				}
			}
		}
		callCtx, cancelCall := context.WithTimeout(ctx, 5*time.Second)
		lastErr = check(callCtx)
		cancelCall()
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("node: timed out waiting for %s: %v", what, lastErr)
			for _, name := range n.order {
				if p := n.processes[name]; p != nil {
					msg += fmt.Sprintf("\n--- end of %s ---\n%s", p.LogPath, process.TailFile(p.LogPath, 20))
				}
			}
			return errors.New(msg)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func httpOK(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}
