package config

import (
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

// testModelDir is the stack's modelDir: Load reads no file, so it need not
// exist (the program reads the model: internal/program).
const testModelDir = "/nonexistent/model"

// load runs Load under mocks with the dev stack's configuration plus overrides.
func load(t *testing.T, overrides map[string]string) (*Config, error) {
	t.Helper()
	base := map[string]string{
		"gcp:project":          "planets-mlops-dev",
		"mlops:ciRepository":   "acme/planets",
		"mlops:ciRepositoryId": "123456789",
		"mlops:modelDir":       testModelDir,
	}
	for k, v := range overrides {
		base[k] = v
	}
	var loaded *Config
	var loadErr error
	err := (&mocktest.Mocks{}).Run(func(ctx *pulumi.Context) error {
		loaded, loadErr = Load(ctx)
		return nil
	}, mocktest.StackConfig(t, "../..", "dev", base))
	if err != nil {
		t.Fatal(err)
	}
	return loaded, loadErr
}

func TestDevStackLoadsWithTheGuidesDefaults(t *testing.T) {
	c, err := load(t, nil)
	if err != nil {
		t.Fatalf("the dev stack does not load: %v", err)
	}
	if c.Target != TargetGKE || c.GCP.Zone != "europe-west6-a" || c.GCP.MachineType != "e2-standard-2" ||
		c.GCP.NodeCount != 2 || c.GCP.ClusterName != "mlops-planets" || c.Serve.Namespace != "live" ||
		c.Serve.Port != 8080 || c.Serve.Type != "LoadBalancer" || c.GCP.DeletionProtection {
		t.Errorf("dev stack = %+v", c)
	}
	if c.Model.Dir != testModelDir || c.Model.Platform != "linux/amd64" {
		t.Errorf("model = %+v", c.Model)
	}
}

func TestBadValuesAreNamedWithWhatIsExpected(t *testing.T) {
	tests := []struct {
		key, value string
		want       string
	}{
		{"mlops:target", "aws", `mlops:target: got "aws"; expected one of gke, kubernetes`},
		{"gcp:project", "", "gcp:project: not set; expected your GCP project id"},
		{"gcp:project", "My_Project", `gcp:project: got "My_Project"; expected a GCP project id`},
		{"mlops:region", "europe west6", `mlops:region: got "europe west6"; expected a GCP region`},
		{"mlops:zone", "us-central1-a", `mlops:zone: got "us-central1-a"; expected a zone of region europe-west6, such as europe-west6-a`},
		{"mlops:clusterName", "MLOps_Cluster", `mlops:clusterName: got "MLOps_Cluster"; expected lowercase letters`},
		{"mlops:clusterName", strings.Repeat("a", 41), "expected lowercase letters, digits and hyphens, starting with a letter, at most 40 characters"},
		{"mlops:nodeCount", "0", `mlops:nodeCount: got "0"; expected a whole number of at least 1`},
		{"mlops:nodeCount", "two", `mlops:nodeCount: got "two"; expected a whole number of at least 1`},
		{"mlops:releaseChannel", "LATEST", `mlops:releaseChannel: got "LATEST"; expected one of RAPID, REGULAR, STABLE, EXTENDED`},
		{"mlops:autopilot", "yes please", `mlops:autopilot: got "yes please"; expected true or false`},
		{"mlops:repositoryId", "Models", `mlops:repositoryId: got "Models"; expected lowercase letters`},
		{"mlops:keepImages", "0", `mlops:keepImages: got "0"; expected a whole number of at least 1`},
		{"mlops:ciServiceAccountId", "ci", `mlops:ciServiceAccountId: got "ci"; expected 6-30 lowercase letters`},
		{"mlops:ciPlatform", "jenkins", `mlops:ciPlatform: got "jenkins"; expected one of github, gitlab, none`},
		{"mlops:ciRepository", "", `mlops:ciRepository: got ""; expected the GitHub repository allowed to deploy, as owner/repo`},
		{"mlops:ciRepository", "https://github.com/acme/planets", `expected the GitHub repository allowed to deploy, as owner/repo`},
		{"mlops:ciRepositoryId", "", `mlops:ciRepositoryId: got ""; expected the repository's numeric id`},
		{"mlops:ciRepositoryId", "acme/planets", `mlops:ciRepositoryId: got "acme/planets"; expected the repository's numeric id`},
		{"mlops:ciDefaultBranch", "refs/heads/main", `mlops:ciDefaultBranch: got "refs/heads/main"; expected the name of the branch that deploys`},
		{"mlops:ciPreviewServiceAccountId", "mlops-ci", `mlops:ciPreviewServiceAccountId: got "mlops-ci"; expected an account id other than ciServiceAccountId`},
		{"mlops:stateBucket", "gs://state", `mlops:stateBucket: got "gs://state"; expected a GCS bucket name (without gs://)`},
		{"mlops:replicas", "0", `mlops:replicas: got "0"; expected a whole number of at least 1`},
		{"mlops:nodeAutoscaling", "on", `mlops:nodeAutoscaling: got "on"; expected true or false`},
		{"mlops:autoscaling", "maybe", `mlops:autoscaling: got "maybe"; expected true or false`},
		{"mlops:servicePort", "70000", `mlops:servicePort: got "70000"; expected a port number from 1 to 65535`},
		{"mlops:servicePort", "http", `mlops:servicePort: got "http"; expected a port number from 1 to 65535`},
		{"mlops:serviceType", "Ingress", `mlops:serviceType: got "Ingress"; expected one of LoadBalancer, NodePort, ClusterIP`},
		{"mlops:namespace", "Live", `mlops:namespace: got "Live"; expected a DNS label`},
		{"mlops:appName", "planet_classifier", `mlops:appName: got "planet_classifier"; expected a DNS label`},
		{"mlops:cpuRequest", "a lot", `mlops:cpuRequest: got "a lot"; expected a positive Kubernetes quantity`},
		{"mlops:memoryLimit", "256MB", `mlops:memoryLimit: got "256MB"; expected a positive Kubernetes quantity`},
		{"mlops:memoryLimit", "64Mi", `mlops:memoryLimit: got "64Mi"; expected at least memoryRequest (128Mi)`},
		{"mlops:memoryLimit", "160Mi", `mlops:memoryLimit: got "160Mi"; expected at least 192Mi, what the model server needs at its defaults`},
		{"mlops:platform", "windows/amd64", `mlops:platform: got "windows/amd64"; expected linux/amd64, the only platform model/Dockerfile builds`},
		{"mlops:platform", "linux/arm64", `mlops:platform: got "linux/arm64"; expected linux/amd64, the only platform model/Dockerfile builds`},
		{"mlops:loadBalancerAddress", "34.65.100.7", `mlops:loadBalancerAddress: got "34.65.100.7"; expected the name (not the IP) of a static external address reserved in region europe-west6`},
		{"mlops:image", "ghcr.io/acme/planets:latest", `mlops:image: got "ghcr.io/acme/planets:latest"; expected an image reference pinned by digest`},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			_, err := load(t, map[string]string{tt.key: tt.value})
			if err == nil {
				t.Fatalf("%s=%q was accepted", tt.key, tt.value)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error does not say %q:\n%v", tt.want, err)
			}
			if !strings.HasPrefix(err.Error(), "invalid configuration, nothing was changed:") {
				t.Fatalf("error does not say nothing was changed:\n%v", err)
			}
		})
	}
}

func TestGitLabNeedsAGroupProjectAndAnHTTPSInstance(t *testing.T) {
	_, err := load(t, map[string]string{
		"mlops:ciPlatform":   "gitlab",
		"mlops:ciRepository": "planets",
		"mlops:gitlabUrl":    "http://gitlab.example.com",
	})
	for _, want := range []string{
		`mlops:ciRepository: got "planets"; expected the GitLab project allowed to deploy, as group/project`,
		`mlops:gitlabUrl: got "http://gitlab.example.com"; expected the https URL of the GitLab instance`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	c, err := load(t, map[string]string{
		"mlops:ciPlatform":     "gitlab",
		"mlops:ciRepository":   "data-science/planets",
		"mlops:gitlabUrl":      "https://gitlab.example.com/",
		"mlops:ciRepositoryId": "42",
	})
	if err != nil {
		t.Fatalf("a valid GitLab setup was refused: %v", err)
	}
	if c.CI.GitLabURL != "https://gitlab.example.com" {
		t.Errorf("gitlabUrl kept its trailing slash: %q", c.CI.GitLabURL)
	}
}

func TestAutoscalingKeysAreValidatedWhenItIsOn(t *testing.T) {
	on := func(overrides map[string]string) map[string]string {
		overrides["mlops:autoscaling"] = "true"
		return overrides
	}
	tests := []struct {
		overrides map[string]string
		want      string
	}{
		{map[string]string{"mlops:minReplicas": "0"}, `mlops:minReplicas: got "0"; expected a whole number of at least 1`},
		{map[string]string{"mlops:maxReplicas": "0"}, `mlops:maxReplicas: got "0"; expected a whole number of at least 1`},
		{map[string]string{"mlops:minReplicas": "4", "mlops:maxReplicas": "3"}, `mlops:maxReplicas: got "3"; expected at least minReplicas (4)`},
		{map[string]string{"mlops:targetCPUUtilization": "5"}, `mlops:targetCPUUtilization: got "5"; expected a whole number from 10 to 95 (percent of the CPU request)`},
		{map[string]string{"mlops:targetCPUUtilization": "100"}, `mlops:targetCPUUtilization: got "100"; expected a whole number from 10 to 95 (percent of the CPU request)`},
		{map[string]string{"mlops:targetCPUUtilization": "70%"}, `mlops:targetCPUUtilization: got "70%"; expected a whole number from 10 to 95`},
		{map[string]string{"mlops:scaleDownStabilizationSeconds": "-1"}, `mlops:scaleDownStabilizationSeconds: got "-1"; expected a whole number from 0 to 3600 (seconds)`},
		{map[string]string{"mlops:scaleDownStabilizationSeconds": "7200"}, `mlops:scaleDownStabilizationSeconds: got "7200"; expected a whole number from 0 to 3600 (seconds)`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := load(t, on(tt.overrides))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error does not say %q:\n%v", tt.want, err)
			}
		})
	}

	c, err := load(t, on(map[string]string{"mlops:minReplicas": "3", "mlops:maxReplicas": "3", "mlops:targetCPUUtilization": "60", "mlops:scaleDownStabilizationSeconds": "0"}))
	if err != nil {
		t.Fatalf("a valid autoscaling setup was refused: %v", err)
	}
	if s := c.Serve; !s.Autoscaling || s.MinReplicas != 3 || s.MaxReplicas != 3 || s.TargetCPUUtilization != 60 || s.ScaleDownStabilizationSeconds != 0 {
		t.Errorf("autoscaling = %+v", s)
	}
	c, err = load(t, map[string]string{"mlops:autoscaling": "true"})
	if err != nil {
		t.Fatalf("autoscaling with the defaults was refused: %v", err)
	}
	if s := c.Serve; s.MinReplicas != 2 || s.MaxReplicas != 6 || s.TargetCPUUtilization != 70 || s.ScaleDownStabilizationSeconds != 300 {
		t.Errorf("autoscaling defaults = %+v", s)
	}
	// Off (the default), its keys are not read: a stack that never turned
	// it on is not refused for them.
	c, err = load(t, map[string]string{"mlops:minReplicas": "0", "mlops:targetCPUUtilization": "500"})
	if err != nil || c.Serve.Autoscaling {
		t.Fatalf("autoscaling off: %+v, %v", c.Serve, err)
	}
}

func TestNodeAutoscalingNeedsAStandardClusterAndBounds(t *testing.T) {
	_, err := load(t, map[string]string{"mlops:nodeAutoscaling": "true", "mlops:minNodes": "3", "mlops:maxNodes": "2"})
	if want := `mlops:maxNodes: got "2"; expected at least minNodes (3)`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error does not say %q:\n%v", want, err)
	}
	_, err = load(t, map[string]string{"mlops:nodeAutoscaling": "true", "mlops:minNodes": "0"})
	if want := `mlops:minNodes: got "0"; expected a whole number of at least 1`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error does not say %q:\n%v", want, err)
	}
	_, err = load(t, map[string]string{"mlops:nodeAutoscaling": "true", "mlops:autopilot": "true"})
	if want := `mlops:nodeAutoscaling: got "true"; expected false with autopilot: Autopilot adds and removes nodes itself`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error does not say %q:\n%v", want, err)
	}
	c, err := load(t, map[string]string{"mlops:nodeAutoscaling": "true", "mlops:minNodes": "1", "mlops:maxNodes": "5"})
	if err != nil {
		t.Fatalf("a valid node autoscaling setup was refused: %v", err)
	}
	if g := c.GCP; !g.NodeAutoscaling || g.MinNodes != 1 || g.MaxNodes != 5 {
		t.Errorf("node autoscaling = %+v", g)
	}
}

func TestEveryProblemIsReportedAtOnce(t *testing.T) {
	_, err := load(t, map[string]string{"mlops:replicas": "0", "mlops:servicePort": "0", "mlops:zone": "mars-1a"})
	for _, key := range []string{"mlops:replicas", "mlops:servicePort", "mlops:zone"} {
		if err == nil || !strings.Contains(err.Error(), key+":") {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}

func TestKubernetesTargetNeedsARegistryOrAnImage(t *testing.T) {
	_, err := load(t, map[string]string{"mlops:target": "kubernetes", "gcp:project": ""})
	if err == nil || !strings.Contains(err.Error(), `mlops:registry: got ""; expected the registry repository to push the model image to`) {
		t.Fatalf("error = %v", err)
	}
	_, err = load(t, map[string]string{"mlops:target": "kubernetes", "mlops:registry": "localhost:5001/planets:v1"})
	if err == nil || !strings.Contains(err.Error(), "expected a repository without tag or digest") {
		t.Fatalf("error = %v", err)
	}
	c, err := load(t, map[string]string{"mlops:target": "kubernetes", "mlops:registry": "localhost:5001/planets", "gcp:project": ""})
	if err != nil {
		t.Fatalf("a valid existing-cluster stack was refused: %v", err)
	}
	if c.Remote.RegistryServer != "localhost:5001" || c.Remote.Kubeconfig != nil {
		t.Errorf("existing cluster = %+v", c.Remote)
	}
}

// TestAJSONKeyIsRefusedWithKeylessPreviews: the key would be a stack
// output in the state, which keyless previews (any branch's code, with the
// passphrase) can decrypt. Without federation (ciPlatform none) it is the
// only way in, and allowed.
func TestAJSONKeyIsRefusedWithKeylessPreviews(t *testing.T) {
	for _, platform := range []string{"github", "gitlab"} {
		_, err := load(t, map[string]string{"mlops:ciJsonKey": "true", "mlops:ciPlatform": platform,
			"mlops:ciRepository": "data-science/planets", "mlops:gitlabUrl": "https://gitlab.example.com"})
		want := `mlops:ciJsonKey: got "true"; expected false with ciPlatform ` + platform + `: the JSON key would be kept in the state`
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "any branch would hold a deploy key that never expires") {
			t.Errorf("ciPlatform %s with ciJsonKey true: error %v, want one saying %q and why", platform, err, want)
		}
	}
	c, err := load(t, map[string]string{"mlops:ciJsonKey": "true", "mlops:ciPlatform": "none"})
	if err != nil || !c.CI.JSONKey {
		t.Errorf("ciPlatform none with ciJsonKey true: %v, %+v", err, c)
	}
}

// TestAutopilotRequestsAreOnesAutopilotKeeps: Autopilot raises requests
// below 1 GiB of memory per vCPU (and CPU above 6.5 GiB per vCPU), below
// 50m CPU or 52Mi memory; the Deployment would then never match what the
// program declares. 250m with 128Mi is such a case; a stack that sets no
// memoryRequest gets one Autopilot keeps instead.
func TestAutopilotRequestsAreOnesAutopilotKeeps(t *testing.T) {
	for _, tc := range []struct {
		cpu, memory string
		want        string // "" when accepted
	}{
		{"250m", "128Mi", `mlops:memoryRequest: got "128Mi"; expected at least 256Mi with autopilot and cpuRequest 250m: Autopilot gives at least 1 GiB per vCPU`},
		{"1", "512Mi", `mlops:memoryRequest: got "512Mi"; expected at least 1024Mi with autopilot and cpuRequest 1`},
		{"250m", "2Gi", `mlops:cpuRequest: got "250m"; expected at least 308m with autopilot and memoryRequest 2Gi: Autopilot gives at most 6.5 GiB per vCPU`},
		{"25m", "256Mi", `mlops:cpuRequest: got "25m"; expected at least 50m with autopilot`},
		{"250m", "256Mi", ""},
		{"500m", "1Gi", ""},
		{"250m", "1664Mi", ""}, // 6.5 GiB per vCPU exactly
	} {
		t.Run(tc.cpu+"/"+tc.memory, func(t *testing.T) {
			_, err := load(t, map[string]string{"mlops:autopilot": "true", "mlops:cpuRequest": tc.cpu, "mlops:memoryRequest": tc.memory, "mlops:memoryLimit": "2Gi"})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	// A stack that sets no memory request gets one Autopilot keeps: 1 GiB
	// per vCPU of cpuRequest, and the Standard default elsewhere.
	for _, tc := range []struct {
		overrides map[string]string
		want      string
	}{
		{map[string]string{"mlops:autopilot": "true"}, "256Mi"},
		{map[string]string{"mlops:autopilot": "true", "mlops:cpuRequest": "500m", "mlops:memoryLimit": "1Gi"}, "512Mi"},
		{map[string]string{"mlops:autopilot": "true", "mlops:cpuRequest": "100m"}, "128Mi"},
		{map[string]string{}, "128Mi"},
		{map[string]string{"mlops:target": "kubernetes", "mlops:registry": "localhost:5001/planets"}, "128Mi"},
	} {
		c, err := load(t, tc.overrides)
		if err != nil {
			t.Errorf("%v without a memoryRequest: refused: %v", tc.overrides, err)
			continue
		}
		if c.Serve.MemoryRequest != tc.want {
			t.Errorf("%v without a memoryRequest: memoryRequest %s, want %s", tc.overrides, c.Serve.MemoryRequest, tc.want)
		}
	}
	// A request the user set is theirs: too small for Autopilot is refused, not raised.
	if _, err := load(t, map[string]string{"mlops:autopilot": "true", "mlops:memoryRequest": "128Mi"}); err == nil {
		t.Error("autopilot with memoryRequest 128Mi set by the user: accepted")
	}
	// A Standard cluster keeps any request within its limit.
	if _, err := load(t, map[string]string{"mlops:cpuRequest": "250m", "mlops:memoryRequest": "128Mi"}); err != nil {
		t.Errorf("a Standard cluster refuses the defaults: %v", err)
	}
}

// The model from DVC: the settings are checked here (what the files hold is
// checked by the program as it reads them).
func TestModelDVCSettings(t *testing.T) {
	c, err := load(t, map[string]string{"mlops:modelDvcFile": "dvc.lock", "mlops:modelDvcRemote": "storage"})
	if err != nil || c.Model.DVCFile != "dvc.lock" || c.Model.DVCRemote != "storage" {
		t.Fatalf("dvc.lock and a remote: %+v, %v", c, err)
	}
	if c, err := load(t, map[string]string{"mlops:modelDvcFile": "model/artifacts/planets.onnx.dvc"}); err != nil || c.Model.DVCRemote != "" {
		t.Fatalf(".dvc file, default remote: %+v, %v", c, err)
	}
	for _, bad := range []struct {
		overrides map[string]string
		want      string
	}{
		{map[string]string{"mlops:modelDvcFile": "dvc.yaml"}, `mlops:modelDvcFile: got "dvc.yaml"; expected the path of the dvc.lock or the .dvc file`},
		{map[string]string{"mlops:modelDvcFile": ".dvc"}, `mlops:modelDvcFile: got ".dvc"`},
		{map[string]string{"mlops:modelDvcRemote": "storage"}, `mlops:modelDvcRemote: got "storage"; expected empty unless modelDvcFile`},
		{map[string]string{"mlops:modelDvcFile": "dvc.lock", "mlops:modelDvcRemote": `my "remote"`}, `mlops:modelDvcRemote: got "my \"remote\""; expected the name of a remote in .dvc/config`},
	} {
		_, err := load(t, bad.overrides)
		if err == nil || !strings.Contains(err.Error(), "invalid configuration, nothing was changed") || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: %v; want %q", bad.overrides, err, bad.want)
		}
	}
}
