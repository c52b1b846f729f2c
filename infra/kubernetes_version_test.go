package infra

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/localcloud/cluster"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

func TestKubernetesVersionsOlderThan130AreRefused(t *testing.T) {
	for v, ok := range map[string]bool{
		"v1.29.15-gke.1000": false, "1.28.3": false, "v1.30.0": true, "1.30.14-gke.1": true, "v1.36.3": true,
	} {
		err := CheckKubernetesVersion("the cluster", v)
		if ok != (err == nil) {
			t.Errorf("%s: error %v", v, err)
		}
		if err != nil && !strings.Contains(err.Error(), "the cluster runs Kubernetes "+v+"; the model's Deployment needs 1.30 or newer") {
			t.Errorf("%s: unclear error %v", v, err)
		}
	}
	if err := CheckKubernetesVersion("the cluster", "master"); err == nil {
		t.Errorf("an unparsable version passed")
	}
}

// An existing GKE cluster's version is known in the preview: an old one
// stops it, with the version and what is needed.
func TestAPreviewAgainstAnOldGKEClusterFails(t *testing.T) {
	for version, wantErr := range map[string]string{
		"1.29.10-gke.1227000":  "the GKE cluster mlops-kubernetes runs Kubernetes 1.29.10-gke.1227000; the model's Deployment needs 1.30 or newer",
		mocktest.MasterVersion: "",
	} {
		mocks := &mocktest.Mocks{
			Preview:  true,
			InState:  map[string]bool{mocktest.Key("gcp:container/cluster:Cluster", "cluster"): true},
			Reported: map[string]map[string]any{mocktest.Key("gcp:container/cluster:Cluster", "cluster"): {"masterVersion": version}},
		}
		err := mocks.Run(func(ctx *pulumi.Context) error {
			repo, err := testRepository(ctx)
			if err != nil {
				return err
			}
			cluster, err := NewGKECluster(ctx, "cluster", withRepository(devCluster, repo))
			if err != nil {
				return err
			}
			return RequireGKEVersion(ctx, cluster)
		}, map[string]string{})
		if (wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("master %s: error %v, want %q", version, err, wantErr)
		}
	}
}

// An existing cluster answers GET /version; this server answers it as an
// API server of the given version would.
func versionServer(t *testing.T, gitVersion string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/version" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"major":"1","minor":"29","gitVersion":%q}`, gitVersion)
	}))
	t.Cleanup(srv.Close)
	return fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: %s\ncontexts:\n- name: old\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user: {}\ncurrent-context: old\n", srv.URL)
}

func TestAnExistingClusterOlderThan130IsRefused(t *testing.T) {
	for gitVersion, wantErr := range map[string]string{
		"v1.29.2": "the cluster of context old runs Kubernetes v1.29.2; the model's Deployment needs 1.30 or newer",
		"v1.31.0": "",
	} {
		kubeconfig := versionServer(t, gitVersion)
		err := (&mocktest.Mocks{}).Run(func(ctx *pulumi.Context) error {
			return RequireServerVersion(ctx, pulumi.ToSecret(pulumi.String(kubeconfig)).(pulumi.StringOutput), "old")
		}, map[string]string{})
		if (wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("%s: error %v, want %q", gitVersion, err, wantErr)
		}
	}
}

// The real API server (the local control plane, the version hack/toolchain.sh
// pins) reports a version the check reads and accepts.
func TestTheLocalControlPlanePassesTheVersionCheck(t *testing.T) {
	local := fixture.Cluster(t.Context(), t, cluster.Options{})
	kubeconfig := string(local.Kubeconfig)
	got, err := ServerVersion(&kubeconfig, cluster.ContextName)
	if err != nil {
		t.Fatalf("reading the version of the local API server: %v", err)
	}
	if !strings.HasPrefix(got, "v1.") {
		t.Fatalf("the local API server reports %q", got)
	}
	if err := CheckKubernetesVersion("the local control plane", got); err != nil {
		t.Fatal(err)
	}
	t.Logf("local API server: %s", got)
}
