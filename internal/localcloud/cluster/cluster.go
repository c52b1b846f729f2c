// Package cluster runs a real Kubernetes control plane on 127.0.0.1 for
// end-to-end tests: etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler, and either kwok playing the kubelet for fake Nodes (fast:
// Deployments schedule, their pods become Ready and the Deployments become
// Available without any container runtime) or one real node
// (internal/localcloud/node: containerd, kubelet, kube-proxy) whose pods run
// and serve, reached through NodePorts on 127.0.0.1. With the real node,
// metrics-server can serve metrics.k8s.io to HorizontalPodAutoscalers
// (Options.Metrics).
//
// The binaries come from hack/toolchain.sh. Every process is started in its
// own process group and stopped by process group id; nothing listens on or
// sends traffic to anything but loopback (the service CIDR is only routed by
// the real node's kube-proxy, on this host).
package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/planets-mlops/deploy/internal/localcloud/loopback"
	"github.com/planets-mlops/deploy/internal/localcloud/node"
	"github.com/planets-mlops/deploy/internal/localcloud/process"
)

// FakeNodeAnnotation marks a Node as simulated by kwok.
const FakeNodeAnnotation = "kwok.x-k8s.io/node"

// ContextName is the name of the cluster, user and context in Kubeconfig.
const ContextName = "localcluster"

// Binaries that Start expects in Options.BinDir (with RealNode, kwok's
// place is taken by node.Binaries).
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// Options configure Start.
type Options struct {
	// BinDir holds the binaries listed in Binaries (hack/toolchain.sh prints it).
	BinDir string
	// Nodes is the number of fake Nodes; default 1. Ignored with RealNode.
	Nodes int
	// RealNode runs one real node (internal/localcloud/node, named
	// node.DefaultName) instead of kwok's fake ones. It needs root.
	RealNode bool
	// Metrics runs metrics-server (from BinDir) and registers it as
	// metrics.k8s.io, so HorizontalPodAutoscalers get pods' CPU use. It
	// needs RealNode: the kubelet measures real containers. The node is
	// then named "localhost" (metricsNodeName).
	Metrics bool
	// Registries are plain-HTTP registries on 127.0.0.1 ("127.0.0.1:<port>")
	// the real node pulls from.
	Registries []string
	// Dir receives certificates, data and one log file per process. When
	// empty, a temporary directory is created and removed by Stop.
	Dir string
	// ReadyTimeout bounds the wait for the control plane; default 2 minutes,
	// 5 with RealNode.
	ReadyTimeout time.Duration
	// Logf, if set, receives progress messages.
	Logf func(format string, args ...any)
}

// Cluster is a running local control plane.
type Cluster struct {
	// Kubeconfig authenticates as a cluster admin with a bearer token and
	// verifies the server against the cluster's own CA.
	Kubeconfig []byte
	// Dir holds certificates, etcd data and the processes' logs.
	Dir string

	// Node is the real node, if Options.RealNode.
	Node *node.Node

	restConfig *rest.Config
	processes  []*process.Process // in start order
	removeDir  bool
}

// Start runs the control plane and returns once the API server is ready, the
// controllers work (the default ServiceAccount exists) and every fake Node is
// Ready. On error, everything already started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 1
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 2 * time.Minute
		if opts.RealNode {
			opts.ReadyTimeout = 5 * time.Minute
		}
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	binaries := map[string]string{}
	needed := Binaries
	if opts.RealNode {
		needed = Binaries[:len(Binaries)-1] // kwok: the node checks its own
	}
	if opts.Metrics {
		if !opts.RealNode {
			return nil, errors.New("local cluster: Metrics needs RealNode: kwok's pods use no CPU to measure")
		}
		needed = append(slices.Clip(needed), metricsServerName)
	}
	for _, name := range needed {
		path := filepath.Join(opts.BinDir, name)
		if info, err := os.Stat(path); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("local cluster: %s is not an executable in %q (run hack/toolchain.sh)", name, opts.BinDir)
		}
		binaries[name] = path
	}

	c := &Cluster{Dir: opts.Dir}
	if c.Dir != "" {
		if err := os.MkdirAll(c.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("local cluster: %w", err)
		}
	} else {
		if c.Dir, err = os.MkdirTemp("", "local-cluster-"); err != nil {
			return nil, err
		}
		c.removeDir = true
	}
	defer func() {
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			err = errors.Join(err, c.Stop(stopCtx))
		}
	}()

	creds, err := writeCredentials(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("local cluster: credentials: %w", err)
	}
	ports, err := loopback.FreePorts(4)
	if err != nil {
		return nil, fmt.Errorf("local cluster: %w", err)
	}
	etcdClientPort, etcdPeerPort, apiserverPort, metricsPort := ports[0], ports[1], ports[2], ports[3]
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClientPort)

	c.Kubeconfig, err = kubeconfig("https://127.0.0.1:"+strconv.Itoa(apiserverPort), creds)
	if err != nil {
		return nil, err
	}
	kubeconfigPath := filepath.Join(c.Dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, c.Kubeconfig, 0o600); err != nil {
		return nil, err
	}
	if c.restConfig, err = clientcmd.RESTConfigFromKubeConfig(c.Kubeconfig); err != nil {
		return nil, err
	}

	// HOME points into the cluster dir so that no tool reads or writes the
	// user's own configuration (kwok reads ~/.kwok/kwok.yaml).
	env := append(os.Environ(), "HOME="+c.Dir)
	start := func(name string, args ...string) error {
		p, err := process.Start(name, binaries[name], filepath.Join(c.Dir, name+".log"), args, env)
		if err != nil {
			return fmt.Errorf("local cluster: %w", err)
		}
		c.processes = append(c.processes, p)
		logf("local cluster: started %s (pid %d)", name, p.Pid())
		return nil
	}

	if err := start("etcd",
		"--name=localcluster",
		"--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls=http://127.0.0.1:"+strconv.Itoa(etcdPeerPort),
		"--initial-advertise-peer-urls=http://127.0.0.1:"+strconv.Itoa(etcdPeerPort),
		"--initial-cluster=localcluster=http://127.0.0.1:"+strconv.Itoa(etcdPeerPort),
		// Throwaway data: durability only costs time.
		"--unsafe-no-fsync",
	); err != nil {
		return nil, err
	}
	if err := start("kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiserverPort),
		"--cert-dir="+filepath.Join(c.Dir, "apiserver-certs"),
		"--tls-cert-file="+creds.servingCert,
		"--tls-private-key-file="+creds.servingKey,
		"--token-auth-file="+creds.tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+creds.serviceAcctKey,
		"--service-account-signing-key-file="+creds.serviceAcctKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		// The default reconciler publishes the advertise address as the
		// endpoint of the `kubernetes` Service, and loopback is not a valid
		// endpoint; nothing here uses that Service.
		"--endpoint-reconciler-type=none",
		// The aggregation layer (for metrics.k8s.io): requests proxied to
		// an extension API server carry the user in these headers, vouched
		// for by the proxy client certificate.
		"--requestheader-client-ca-file="+creds.caCert,
		"--requestheader-allowed-names="+proxyClientName,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file="+creds.proxyClientCert,
		"--proxy-client-key-file="+creds.proxyClientKey,
	); err != nil {
		return nil, err
	}

	clientset, err := kubernetes.NewForConfig(c.restConfig)
	if err != nil {
		return nil, err
	}
	readyCtx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()
	if err := c.waitFor(readyCtx, "kube-apiserver /readyz", func(ctx context.Context) error {
		return clientset.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	}); err != nil {
		return nil, err
	}
	logf("local cluster: kube-apiserver ready on 127.0.0.1:%d", apiserverPort)

	commonArgs := []string{
		"--kubeconfig=" + kubeconfigPath,
		"--authentication-kubeconfig=" + kubeconfigPath,
		"--authorization-kubeconfig=" + kubeconfigPath,
		"--leader-elect=false",
		"--secure-port=0", // no serving endpoint: nothing scrapes it
	}
	if err := start("kube-controller-manager", append(commonArgs,
		"--service-account-private-key-file="+creds.serviceAcctKey,
		"--root-ca-file="+creds.caCert,
		"--use-service-account-credentials=false",
	)...); err != nil {
		return nil, err
	}
	if err := start("kube-scheduler", commonArgs...); err != nil {
		return nil, err
	}
	if opts.RealNode {
		nodeDir := filepath.Join(c.Dir, "node")
		if err := os.MkdirAll(nodeDir, 0o700); err != nil {
			return nil, err
		}
		nodeOpts := node.Options{
			BinDir:     opts.BinDir,
			Dir:        nodeDir,
			Kubeconfig: kubeconfigPath,
			Registries: opts.Registries,
			Logf:       logf,
		}
		if opts.Metrics {
			// metrics-server reaches a kubelet at one of its Node's
			// addresses, and this kubelet listens on loopback only: the
			// Hostname address "localhost" is the one that resolves there.
			nodeOpts.Name = metricsNodeName
		}
		if c.Node, err = node.Start(ctx, nodeOpts); err != nil {
			return nil, fmt.Errorf("local cluster: %w", err)
		}
	} else {
		if err := start("kwok",
			"--kubeconfig="+kubeconfigPath,
			"--manage-all-nodes=true",
		); err != nil {
			return nil, err
		}
		for i := range opts.Nodes {
			if _, err := clientset.CoreV1().Nodes().Create(readyCtx, fakeNode(fmt.Sprintf("kwok-node-%d", i)), metav1.CreateOptions{}); err != nil {
				return nil, fmt.Errorf("local cluster: create fake node: %w", err)
			}
		}
	}
	if err := c.waitFor(readyCtx, "nodes Ready", func(ctx context.Context) error {
		nodes, err := clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(nodes.Items) == 0 {
			return errors.New("no node registered yet")
		}
		for _, node := range nodes.Items {
			if !nodeReady(&node) {
				return fmt.Errorf("node %s not Ready", node.Name)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	// Pods are only admitted once their namespace's default ServiceAccount
	// exists, which proves kube-controller-manager is working.
	if err := c.waitFor(readyCtx, "default ServiceAccount (kube-controller-manager)", func(ctx context.Context) error {
		_, err := clientset.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return nil, err
	}
	if opts.Metrics {
		if err := c.startMetricsServer(readyCtx, start, kubeconfigPath, creds, metricsPort); err != nil {
			return nil, err
		}
		logf("local cluster: metrics-server serves metrics.k8s.io on 127.0.0.1:%d", metricsPort)
	}
	if opts.RealNode {
		logf("local cluster: ready with real node %s; logs in %s", c.Node.Name, c.Dir)
	} else {
		logf("local cluster: ready with %d fake node(s); logs in %s", opts.Nodes, c.Dir)
	}
	return c, nil
}

// RESTConfig returns a copy of the admin client configuration.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// PIDs returns the process ids of the running control-plane processes, each
// the leader of its own process group.
func (c *Cluster) PIDs() []int {
	pids := make([]int, 0, len(c.processes))
	for _, p := range c.processes {
		pids = append(pids, p.Pid())
	}
	return pids
}

// Stop stops the real node (if any), then every process Start started,
// newest first, by process group, and removes the directory if Start created
// it. It is safe to call more than once.
func (c *Cluster) Stop(ctx context.Context) error {
	var errs []error
	if c.Node != nil {
		errs = append(errs, c.Node.Stop(ctx))
	}
	for i := len(c.processes) - 1; i >= 0; i-- {
		errs = append(errs, c.processes[i].Stop(ctx))
	}
	c.processes = nil
	if c.removeDir {
		errs = append(errs, os.RemoveAll(c.Dir))
		c.removeDir = false
	}
	return errors.Join(errs...)
}

// waitFor polls check until it succeeds, failing fast with the log tail of any
// control-plane process that died, and otherwise with check's last error and
// the log tails of all processes.
func (c *Cluster) waitFor(ctx context.Context, what string, check func(context.Context) error) error {
	var lastErr error
	pollErr := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		for _, p := range c.processes {
			if err := p.Running(); err != nil {
				return false, err
			}
		}
		lastErr = check(ctx)
		return lastErr == nil, nil
	})
	if pollErr == nil {
		return nil
	}
	if !wait.Interrupted(pollErr) {
		return fmt.Errorf("local cluster: waiting for %s: %w", what, pollErr)
	}
	msg := fmt.Sprintf("local cluster: timed out waiting for %s: %v", what, lastErr)
	for _, p := range c.processes {
		msg += fmt.Sprintf("\n--- end of %s ---\n%s", p.LogPath, process.TailFile(p.LogPath, 15))
	}
	return errors.New(msg)
}

func kubeconfig(server string, creds *credentials) ([]byte, error) {
	config := clientcmdapi.NewConfig()
	config.Clusters[ContextName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: creds.caPEM}
	config.AuthInfos[ContextName] = &clientcmdapi.AuthInfo{Token: creds.adminToken}
	config.Contexts[ContextName] = &clientcmdapi.Context{Cluster: ContextName, AuthInfo: ContextName}
	config.CurrentContext = ContextName
	return clientcmd.Write(*config)
}

func fakeNode(name string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{FakeNodeAnnotation: "fake"},
			Labels: map[string]string{
				corev1.LabelHostname:   name,
				corev1.LabelOSStable:   "linux",
				corev1.LabelArchStable: "amd64",
				"type":                 "kwok",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
}

func nodeReady(node *corev1.Node) bool {
	for _, condition := range node.Status.Conditions {
		if condition.Type == corev1.NodeReady {
			return condition.Status == corev1.ConditionTrue
		}
	}
	return false
}
