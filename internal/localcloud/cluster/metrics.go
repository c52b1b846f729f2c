package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// metricsServerName is metrics-server's binary, and the name of the Service
// its APIService points at.
const metricsServerName = "metrics-server"

// metricsNodeName is the real node's name with Options.Metrics.
const metricsNodeName = "localhost"

// startMetricsServer runs metrics-server on 127.0.0.1:port and registers it
// as metrics.k8s.io/v1beta1, then waits until the node's figures are served
// through kube-apiserver.
//
// It runs on the host like the rest of the control plane, so its Service is
// an ExternalName one naming 127.0.0.1: the aggregator resolves an
// ExternalName Service to that host (a selector Service's endpoints could
// not be loopback), and verifies metrics-server's certificate, issued by the
// cluster's CA for <service>.<namespace>.svc.
func (c *Cluster) startMetricsServer(ctx context.Context, start func(name string, args ...string) error, kubeconfigPath string, creds *credentials, port int) error {
	if err := start(metricsServerName,
		"--kubeconfig="+kubeconfigPath,
		"--authentication-kubeconfig="+kubeconfigPath,
		"--authorization-kubeconfig="+kubeconfigPath,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(c.Dir, "metrics-server-certs"),
		"--tls-cert-file="+creds.metricsServingCert,
		"--tls-private-key-file="+creds.metricsServingKey,
		// The node is named localhost (see Options.Metrics), which is
		// where its kubelet listens; its serving certificate is
		// self-signed, as a kubelet's is unless it bootstraps one.
		"--kubelet-preferred-address-types=Hostname",
		"--kubelet-use-node-status-port",
		"--kubelet-insecure-tls",
		// The shortest resolution metrics-server allows: the autoscaler
		// sees a load within seconds, not a minute.
		"--metric-resolution=10s",
		// It must be shorter than the resolution.
		"--kubelet-request-timeout=5s",
	); err != nil {
		return err
	}

	clientset, err := kubernetes.NewForConfig(c.restConfig)
	if err != nil {
		return err
	}
	if _, err := clientset.CoreV1().Services(metav1.NamespaceSystem).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: metricsServerName},
		Spec: corev1.ServiceSpec{
			Type:         corev1.ServiceTypeExternalName,
			ExternalName: "127.0.0.1",
			Ports:        []corev1.ServicePort{{Name: "https", Port: int32(port)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("local cluster: metrics-server Service: %w", err)
	}
	dyn, err := dynamic.NewForConfig(c.restConfig)
	if err != nil {
		return err
	}
	apiService := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": "v1beta1.metrics.k8s.io"},
		"spec": map[string]any{
			"group":                "metrics.k8s.io",
			"version":              "v1beta1",
			"groupPriorityMinimum": int64(100),
			"versionPriority":      int64(100),
			"caBundle":             base64.StdEncoding.EncodeToString(creds.caPEM),
			"service": map[string]any{
				"namespace": metav1.NamespaceSystem,
				"name":      metricsServerName,
				"port":      int64(port),
			},
		},
	}}
	apiServices := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	if _, err := dyn.Resource(apiServices).Create(ctx, apiService, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("local cluster: metrics.k8s.io APIService: %w", err)
	}

	return c.waitFor(ctx, "the node's figures from metrics.k8s.io (metrics-server)", func(ctx context.Context) error {
		raw, err := clientset.Discovery().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes").DoRaw(ctx)
		if err != nil {
			return err
		}
		var nodes struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(raw, &nodes); err != nil {
			return err
		}
		if len(nodes.Items) == 0 {
			return errors.New("no node measured yet")
		}
		return nil
	})
}
