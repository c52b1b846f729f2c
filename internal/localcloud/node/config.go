package node

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The node's fixed network layout. Only one local node runs on a machine at
// a time (see lockPath), so the names can be fixed, which lets Stop and the
// tests find exactly what the node made.
const (
	// BridgeName is the Linux bridge the CNI bridge plugin creates for the
	// pods; the host reaches pods (probes, kube-proxy's forwarding) over it.
	BridgeName = "mlops-node0"
	// PodCIDR holds the pods' addresses (host-local IPAM); they are reached
	// from this host only.
	PodCIDR = "10.244.0.0/24"
	// NodePortAddresses is where kube-proxy serves NodePorts: loopback only.
	NodePortAddresses = "127.0.0.0/8"
	// SandboxImage is the pause image's name; it is imported, never pulled.
	SandboxImage = "localcloud.invalid/pause:v1"
	// criNamespace is the containerd namespace the CRI plugin uses.
	criNamespace = "k8s.io"
	// cniNetworkName names the CNI network; CNI's own state is keyed by it.
	cniNetworkName = "mlops-node"
)

// The node's state (images, containers, the kubelet's pods and volumes) and
// its sockets live under short fixed paths: unix socket paths are limited to
// 104 bytes, too short for a test's temporary directory, and the kubelet
// serves sockets under its root. One node runs at a time (lockPath). Start
// removes what a killed run may have left there; Stop removes both.
const (
	stateDir  = "/var/lib/mlops-node"
	socketDir = "/run/mlops-node"
)

// paths are the node's files: configuration and logs under its directory,
// state under stateDir, sockets under socketDir.
type paths struct {
	dir              string
	containerdRoot   string
	containerdState  string
	containerdSocket string
	containerdConfig string
	registryHostsDir string
	cniConfDir       string
	cniIPAMDir       string
	kubeletRoot      string
	kubeletConfig    string
	podLogsDir       string
	kubeProxyConfig  string
	kubeconfig       string
	pauseArchive     string
	containerdOptDir string
	containerdCDIDir string
	runcRoot         string
}

func newPaths(dir, kubeconfig string) paths {
	return paths{
		dir:              dir,
		containerdRoot:   filepath.Join(stateDir, "containerd", "root"),
		containerdState:  filepath.Join(stateDir, "containerd", "state"),
		containerdSocket: filepath.Join(socketDir, "containerd.sock"),
		containerdConfig: filepath.Join(dir, "containerd", "config.toml"),
		registryHostsDir: filepath.Join(dir, "containerd", "certs.d"),
		containerdOptDir: filepath.Join(stateDir, "containerd", "opt"),
		containerdCDIDir: filepath.Join(dir, "containerd", "cdi"),
		runcRoot:         filepath.Join(stateDir, "containerd", "runc"),
		cniConfDir:       filepath.Join(dir, "cni", "net.d"),
		cniIPAMDir:       filepath.Join(stateDir, "cni", "ipam"),
		kubeletRoot:      filepath.Join(stateDir, "kubelet"),
		kubeletConfig:    filepath.Join(dir, "kubelet.yaml"),
		podLogsDir:       filepath.Join(dir, "pod-logs"),
		kubeProxyConfig:  filepath.Join(dir, "kube-proxy.yaml"),
		kubeconfig:       kubeconfig,
		pauseArchive:     filepath.Join(dir, "pause.oci.tar"),
	}
}

// containerdConfig is containerd's config.toml: everything under the node's
// directory, the CRI plugin with runc (cgroupfs), overlayfs, the CNI
// configuration of cniConfig, our pause image, and registries' host files.
// Plugins the node does not use are disabled so that they touch nothing.
func containerdConfig(p paths) string {
	q := strconv.Quote
	return fmt.Sprintf(`version = 3
root = %s
state = %s
disabled_plugins = [
  "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.snapshotter.v1.native",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = %s

[ttrpc]
  address = %s

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %s

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %s
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = %s

[plugins."io.containerd.cri.v1.runtime"]
  cdi_spec_dirs = [%s]
  # Pods' network namespaces are pinned under the node's directory, not in
  # /var/run/netns, so whatever Stop unmounts is all there.
  netns_mounts_under_state_dir = true
  # Lowering oom_score_adj takes CAP_SYS_RESOURCE, which machines like this
  # one (and many containers) do not grant even to root: never go below
  # containerd's own score.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [%s]
    conf_dir = %s
    max_conf_num = 1
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = %s
        Root = %s
        SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`,
		q(p.containerdRoot), q(p.containerdState),
		q(p.containerdSocket), q(p.containerdSocket+".ttrpc"),
		q(p.containerdOptDir),
		q(SandboxImage), q(p.registryHostsDir),
		q(p.containerdCDIDir),
		q(cniBinDir), q(p.cniConfDir),
		q(runcPath), q(p.runcRoot))
}

// registryHosts is containerd's hosts.toml for a registry on 127.0.0.1 that
// speaks plain HTTP.
func registryHosts(hostPort string) string {
	return fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n",
		"http://"+hostPort, "http://"+hostPort)
}

// cniConfig is the pods' network: one bridge on the host, addresses from
// PodCIDR, no masquerading (pods talk to nothing outside this host).
func cniConfig(p paths) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       cniNetworkName,
		"plugins": []any{map[string]any{
			"type":        "bridge",
			"bridge":      BridgeName,
			"isGateway":   true,
			"ipMasq":      false,
			"hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": PodCIDR}}},
				"dataDir": p.cniIPAMDir,
			},
		}},
	}, "", "  ")
}

// kubeletConfig is the KubeletConfiguration: serving on loopback only,
// cgroupfs on this cgroup v1 host (failCgroupV1: false, since 1.35 the
// kubelet refuses cgroup v1 otherwise), every pod cgroup under cgroupRoot so
// Stop can find and remove them, and no image garbage collection or eviction
// in the way of tests.
func kubeletConfig(p paths, port, healthzPort int) string {
	q := strconv.Quote
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
containerRuntimeEndpoint: %s
cgroupDriver: cgroupfs
cgroupRoot: %s
failCgroupV1: false
failSwapOn: false
podLogsDir: %s
# Callers (metrics-server) present a cluster token; the kubelet asks the
# API server who it is and whether it may (TokenReview, SubjectAccessReview).
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
authorization:
  mode: Webhook
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
protectKernelDefaults: false
# The kubelet's default (-999) needs CAP_SYS_RESOURCE (see containerd's
# restrict_oom_score_adj).
oomScoreAdj: 0
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
fileCheckFrequency: 10s
`, port, healthzPort, q("unix://"+p.containerdSocket), q(cgroupRoot), q(p.podLogsDir))
}

// kubeProxyConfig is kube-proxy in iptables mode serving NodePorts on
// loopback only (it sets route_localnet for that), and leaving the host's
// conntrack sysctls alone.
func kubeProxyConfig(p paths, nodeName string, healthzPort, metricsPort int) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %q
hostnameOverride: %q
mode: iptables
clusterCIDR: %q
nodePortAddresses: [%q]
bindAddress: 127.0.0.1
oomScoreAdj: 0
healthzBindAddress: "127.0.0.1:%d"
metricsBindAddress: "127.0.0.1:%d"
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, p.kubeconfig, nodeName, PodCIDR, NodePortAddresses, healthzPort, metricsPort)
}

func writeFiles(files map[string]string) error {
	for path, content := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// validRegistry accepts host:port on 127.0.0.1 only.
func validRegistry(hostPort string) error {
	host, port, ok := strings.Cut(hostPort, ":")
	if !ok || host != "127.0.0.1" {
		return fmt.Errorf("registry %q: expected 127.0.0.1:<port>", hostPort)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("registry %q: expected 127.0.0.1:<port> with a port from 1 to 65535", hostPort)
	}
	return nil
}
