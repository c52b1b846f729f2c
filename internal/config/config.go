// Package config is the program's one typed configuration: it reads every
// setting of the stack and validates all of them at once, before a single
// resource is declared. It reads no file: the model the settings point at is
// read by the program (internal/program). Keys, types, defaults and
// descriptions are declared in Pulumi.yaml; this package holds the rules.
package config

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	pulumiconfig "github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/planets-mlops/deploy/internal/fingerprint"
	"github.com/planets-mlops/deploy/internal/modelreport"
)

// Namespace is the Pulumi project name, the namespace of its config keys.
const Namespace = "mlops"

// Target says where the model runs.
type Target string

const (
	// TargetGKE creates the whole GCP side: APIs, CI identity, registry, cluster.
	TargetGKE Target = "gke"
	// TargetKubernetes deploys to an existing cluster; nothing on GCP is declared.
	TargetKubernetes Target = "kubernetes"
)

// CIPlatform says which CI system gets keyless access.
type CIPlatform string

const (
	CIGitHub CIPlatform = "github"
	CIGitLab CIPlatform = "gitlab"
	CINone   CIPlatform = "none"
)

// Config is every setting of a stack, validated.
type Config struct {
	Target Target
	GCP    GCP      // only for TargetGKE
	CI     CI       // only for TargetGKE
	Remote Existing // only for TargetKubernetes
	Model  Model
	Serve  Service
}

// GCP is the Google Cloud side of a GKE stack.
type GCP struct {
	Project            string
	Region             string
	Zone               string
	ClusterName        string
	Autopilot          bool
	MachineType        string
	NodeCount          int
	ReleaseChannel     string
	DeletionProtection bool
	RepositoryID       string
	KeepImages         int
	// NodeAutoscaling lets GKE's cluster autoscaler size the node pool
	// between MinNodes and MaxNodes (Standard clusters; Autopilot sizes its
	// nodes itself). NodeCount is then not applied.
	NodeAutoscaling    bool
	MinNodes, MaxNodes int
	// DetachClusterIdentifier declares the cluster's Kubernetes provider
	// without a clusterIdentifier: the first of the two `up`s that move a
	// stack from an older identifier to the DNS endpoint without replacing
	// the workloads (infra.ClusterIdentifier, README).
	DetachClusterIdentifier bool
	// LoadBalancerAddress names an existing regional static external IP
	// address in Region for the LoadBalancer Service; empty means the
	// program reserves one for the stack.
	LoadBalancerAddress string
}

// CI is the identity CI deploys with, and the read-only one it previews with.
type CI struct {
	ServiceAccountID        string
	PreviewServiceAccountID string
	Platform                CIPlatform
	Repository              string // owner/repo on GitHub, group/project on GitLab
	// RepositoryID is the repository's numeric id (GitHub repository_id,
	// GitLab project_id): a name can be freed and taken by someone else.
	RepositoryID string
	// DefaultBranch is the only branch whose pipelines get the deploy identity.
	DefaultBranch string
	GitLabURL     string
	JSONKey       bool
	StateBucket   string
}

// Existing is an existing Kubernetes cluster and registry (TargetKubernetes).
type Existing struct {
	Kubeconfig       pulumi.StringInput // secret; nil means the ambient kubeconfig
	KubeContext      string
	Registry         string
	RegistryServer   string // the registry's host, derived from Registry
	RegistryUsername string
	// RegistryPassword is a secret; nil when not set, and then the push
	// authenticates through the docker CLI's credentials (docker login or a
	// credential helper), which stores nothing in the state.
	RegistryPassword pulumi.StringInput
	// DeployUser and PreviewUser are the Kubernetes users CI deploys and
	// previews as; when set, the stack declares their RBAC (infra.DeployAccess).
	DeployUser, PreviewUser string
}

// Model is the model image.
type Model struct {
	Dir      string
	Platform string
	// Image is a prebuilt image pinned by digest; empty means build from Dir.
	Image string
	// Gate is what the model's report must pass (mlops:minAccuracy,
	// mlops:maxAccuracyDrop), against the default branch's report at
	// BaselineReport (BaselineReportEnv; "" when not given).
	Gate           modelreport.Gate
	BaselineReport string
	// DVCFile, when not empty, is the dvc.lock or `.dvc` file recording the
	// model file (modelreport.ModelPath in Dir) as a DVC output: the model
	// is then known by the MD5 DVC recorded and fetched from DVCRemote (""
	// is .dvc/config's default remote) only to build an image.
	DVCFile   string
	DVCRemote string
}

// Service is how the model is served.
type Service struct {
	Namespace string
	AppName   string
	// Replicas is the fixed number of pods when Autoscaling is off; with
	// Autoscaling on it is not applied, the HorizontalPodAutoscaler keeps
	// the count between MinReplicas and MaxReplicas.
	Replicas    int
	Autoscaling bool
	MinReplicas int
	MaxReplicas int
	// TargetCPUUtilization is the average CPU use, in percent of the CPU
	// request, the autoscaler keeps the pods at.
	TargetCPUUtilization int
	// ScaleDownStabilizationSeconds is how long the autoscaler remembers
	// its highest recommendation before it removes pods, so that a bursty
	// load does not make it flap.
	ScaleDownStabilizationSeconds int
	CPURequest                    string
	CPULimit                      string
	MemoryRequest                 string
	MemoryLimit                   string
	Type                          string
	Port                          int
	// ProgressDeadlineSeconds bounds a rollout that makes no progress.
	ProgressDeadlineSeconds int
}

// BuildInputs are the image build's inputs other than the context, the ones
// the fingerprint covers.
func (m Model) BuildInputs() fingerprint.Inputs {
	return fingerprint.Inputs{Platform: m.Platform}
}

// Load reads and validates the stack's configuration. All problems are
// reported together, each naming the key, the value and what is expected.
func Load(ctx *pulumi.Context) (*Config, error) {
	r := &reader{cfg: pulumiconfig.New(ctx, Namespace)}
	c := &Config{
		Target: Target(r.oneOf("target", "gke", "kubernetes")),
		Model: Model{
			Dir:      r.str("modelDir"),
			Platform: r.str("platform"),
			Image:    r.str("image"),

			DVCFile:   r.str("modelDvcFile"),
			DVCRemote: r.str("modelDvcRemote"),
		},
		Serve: Service{
			Namespace:     r.dnsLabel("namespace"),
			AppName:       r.dnsLabel("appName"),
			Replicas:      r.intAtLeast("replicas", 1),
			CPURequest:    r.quantity("cpuRequest"),
			CPULimit:      r.quantity("cpuLimit"),
			MemoryRequest: r.optionalQuantity("memoryRequest"),
			MemoryLimit:   r.quantity("memoryLimit"),
			Type:          r.oneOf("serviceType", "LoadBalancer", "NodePort", "ClusterIP"),
			Port:          r.port("servicePort"),

			ProgressDeadlineSeconds: r.intAtLeast("progressDeadlineSeconds", 10),
		},
	}
	r.autoscaling(&c.Serve)
	r.platform("platform", c.Model.Platform)
	r.pinnedImage("image", c.Model.Image)
	r.modelGate(&c.Model)
	r.modelDVC(c.Model)

	switch c.Target {
	case TargetGKE:
		c.GCP, c.CI = r.gcp(ctx), r.ci()
	case TargetKubernetes:
		c.Remote = r.existing(c.Model.Image)
	}
	autopilot := c.Target == TargetGKE && c.GCP.Autopilot
	if c.Serve.MemoryRequest == "" {
		c.Serve.MemoryRequest = defaultMemoryRequest(c.Serve.CPURequest, autopilot)
	}
	r.requestWithinLimit("cpuRequest", c.Serve.CPURequest, "cpuLimit", c.Serve.CPULimit)
	r.requestWithinLimit("memoryRequest", c.Serve.MemoryRequest, "memoryLimit", c.Serve.MemoryLimit)
	r.atLeastQuantity("memoryLimit", c.Serve.MemoryLimit, MinMemoryLimit, "what the model server needs at its defaults")
	if autopilot {
		r.autopilotResources(c.Serve)
	}

	if c.Model.Dir == "" {
		r.fail("modelDir", "", "the path of the image's build context, such as model")
	}
	if len(r.errs) > 0 {
		return nil, Invalid(r.errs...)
	}
	return c, nil
}

// Invalid is the error of a configuration with problems, each naming the
// setting, what it holds and what is expected: it says nothing was changed,
// and lists them all. The program reports what it finds in the files the
// settings name (mlops:modelDir, the baseline report) the same way.
func Invalid(problems ...error) error {
	return fmt.Errorf("invalid configuration, nothing was changed:\n%w", errors.Join(problems...))
}

// GCP naming rules, from the APIs' documentation.
var (
	projectIDPattern      = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	regionPattern         = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+$`)
	clusterNamePattern    = regexp.MustCompile(`^[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?$`)
	machineTypePattern    = regexp.MustCompile(`^[a-z][a-z0-9]*-[a-z0-9-]+$`)
	repositoryIDPattern   = regexp.MustCompile(`^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$`)
	accountIDPattern      = regexp.MustCompile(`^[a-z][-a-z0-9]{4,28}[a-z0-9]$`)
	bucketPattern         = regexp.MustCompile(`^[a-z0-9][-a-z0-9_.]{1,61}[a-z0-9]$`)
	numericIDPattern      = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)
	branchPattern         = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._/-]{0,243}$`)
	githubRepoPattern     = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$`)
	gitlabProjectPattern  = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_.][A-Za-z0-9_.-]*)+$`)
	addressNamePattern    = regexp.MustCompile(`^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$`)
	releaseChannelChoices = []string{"RAPID", "REGULAR", "STABLE", "EXTENDED"}
)

func (r *reader) gcp(ctx *pulumi.Context) GCP {
	g := GCP{
		Project:            pulumiconfig.Get(ctx, "gcp:project"),
		Region:             r.match("region", regionPattern, "a GCP region such as europe-west6"),
		Zone:               r.str("zone"),
		ClusterName:        r.match("clusterName", clusterNamePattern, "lowercase letters, digits and hyphens, starting with a letter, at most 40 characters"),
		Autopilot:          r.boolean("autopilot"),
		MachineType:        r.match("machineType", machineTypePattern, "a GCE machine type such as e2-standard-2"),
		NodeCount:          r.intAtLeast("nodeCount", 1),
		ReleaseChannel:     r.oneOf("releaseChannel", releaseChannelChoices...),
		DeletionProtection: r.boolean("deletionProtection"),
		RepositoryID:       r.match("repositoryId", repositoryIDPattern, "lowercase letters, digits and hyphens, starting with a letter, at most 63 characters"),
		KeepImages:         r.intAtLeast("keepImages", 1),

		DetachClusterIdentifier: r.boolean("detachClusterIdentifier"),
	}
	if g.LoadBalancerAddress = r.str("loadBalancerAddress"); g.LoadBalancerAddress != "" && !addressNamePattern.MatchString(g.LoadBalancerAddress) {
		r.fail("loadBalancerAddress", g.LoadBalancerAddress, "the name (not the IP) of a static external address reserved in region "+g.Region+", or empty to reserve one")
	}
	switch {
	case g.Project == "":
		r.errs = append(r.errs, errors.New(`gcp:project: not set; expected your GCP project id: pulumi config set gcp:project <project-id>`))
	case !projectIDPattern.MatchString(g.Project):
		r.errs = append(r.errs, fmt.Errorf("gcp:project: got %q; expected a GCP project id: 6-30 lowercase letters, digits and hyphens, starting with a letter", g.Project))
	}
	if g.NodeAutoscaling = r.boolean("nodeAutoscaling"); g.NodeAutoscaling {
		if g.Autopilot {
			r.fail("nodeAutoscaling", "true", "false with autopilot: Autopilot adds and removes nodes itself")
		}
		g.MinNodes = r.intAtLeast("minNodes", 1)
		g.MaxNodes = r.intAtLeast("maxNodes", 1)
		if g.MinNodes >= 1 && g.MaxNodes < g.MinNodes {
			r.fail("maxNodes", strconv.Itoa(g.MaxNodes), fmt.Sprintf("at least minNodes (%d)", g.MinNodes))
		}
	}
	if !g.Autopilot && g.Region != "" && !isZoneOf(g.Zone, g.Region) {
		r.fail("zone", g.Zone, fmt.Sprintf("a zone of region %s, such as %s-a", g.Region, g.Region))
	}
	return g
}

// Bounds of the autoscaler's CPU target, in percent of the request: below
// 10 the pods would be scaled out at idle, above 95 no headroom is left to
// answer a burst while new pods start.
const (
	MinTargetCPUUtilization = 10
	MaxTargetCPUUtilization = 95
)

// autoscaling reads the HorizontalPodAutoscaler's keys; they are only
// read, and so only validated, with autoscaling on.
func (r *reader) autoscaling(s *Service) {
	if s.Autoscaling = r.boolean("autoscaling"); !s.Autoscaling {
		return
	}
	s.MinReplicas = r.intAtLeast("minReplicas", 1)
	s.MaxReplicas = r.intAtLeast("maxReplicas", 1)
	if s.MinReplicas >= 1 && s.MaxReplicas < s.MinReplicas {
		r.fail("maxReplicas", strconv.Itoa(s.MaxReplicas), fmt.Sprintf("at least minReplicas (%d)", s.MinReplicas))
	}
	s.TargetCPUUtilization = r.intBetween("targetCPUUtilization", MinTargetCPUUtilization, MaxTargetCPUUtilization, "percent of the CPU request")
	// Kubernetes' own bounds (autoscaling/v2 HPAScalingRules).
	s.ScaleDownStabilizationSeconds = r.intBetween("scaleDownStabilizationSeconds", 0, 3600, "seconds")
}

// Autopilot's rules for a general-purpose pod's requests (GKE, "Resource
// requests in Autopilot"): at least 50m CPU and 52Mi memory, and between 1
// and 6.5 GiB of memory per vCPU. Autopilot raises requests outside them at
// admission, so the Deployment the cluster holds would differ from the one
// declared: every preview would show an update and every `up` apply it again.
// The ephemeral-storage request Autopilot adds is not compared: the
// Kubernetes provider diffs against the live object pruned to the keys the
// program sets (pulumi-kubernetes v4 pruneLiveState).
const (
	AutopilotMinCPU           = "50m"
	AutopilotMinMemory        = "52Mi"
	AutopilotMinMemoryPerVCPU = 1.0 // GiB
	AutopilotMaxMemoryPerVCPU = 6.5 // GiB
	bytesPerGiB               = 1 << 30
	millicoresPerVCPU         = 1000
)

// autopilotResources checks the pod's requests against Autopilot's rules.
func (r *reader) autopilotResources(s Service) {
	cpu, err1 := resource.ParseQuantity(s.CPURequest)
	memory, err2 := resource.ParseQuantity(s.MemoryRequest)
	if err1 != nil || err2 != nil || cpu.Sign() <= 0 || memory.Sign() <= 0 {
		return // reported as a bad quantity already
	}
	if cpu.Cmp(resource.MustParse(AutopilotMinCPU)) < 0 {
		r.fail("cpuRequest", s.CPURequest, "at least "+AutopilotMinCPU+" with autopilot (Autopilot raises smaller requests)")
		return
	}
	if memory.Cmp(resource.MustParse(AutopilotMinMemory)) < 0 {
		r.fail("memoryRequest", s.MemoryRequest, "at least "+AutopilotMinMemory+" with autopilot (Autopilot raises smaller requests)")
		return
	}
	vcpus := float64(cpu.MilliValue()) / millicoresPerVCPU
	perVCPU := float64(memory.Value()) / bytesPerGiB / vcpus
	least := int64(AutopilotMinMemoryPerVCPU * vcpus * bytesPerGiB)
	most := int64(AutopilotMaxMemoryPerVCPU * vcpus * bytesPerGiB)
	switch {
	case perVCPU < AutopilotMinMemoryPerVCPU:
		r.fail("memoryRequest", s.MemoryRequest, fmt.Sprintf("at least %s with autopilot and cpuRequest %s: Autopilot gives at least %g GiB per vCPU and raises memoryRequest to it, so every preview would show the Deployment changed (or lower cpuRequest)",
			mebibytes(least), s.CPURequest, AutopilotMinMemoryPerVCPU))
	case perVCPU > AutopilotMaxMemoryPerVCPU:
		r.fail("cpuRequest", s.CPURequest, fmt.Sprintf("at least %dm with autopilot and memoryRequest %s: Autopilot gives at most %g GiB per vCPU and raises cpuRequest to it, so every preview would show the Deployment changed (or lower memoryRequest, at most %s)",
			int64(math.Ceil(float64(memory.Value())/bytesPerGiB/AutopilotMaxMemoryPerVCPU*millicoresPerVCPU)), s.MemoryRequest, AutopilotMaxMemoryPerVCPU, mebibytes(most)))
	}
}

// DefaultMemoryRequest is a model server pod's memory request when
// mlops:memoryRequest is not set, on a Standard cluster or an existing one:
// the server's working set at rest is about 60 MiB, and the default limit
// (256Mi) leaves room for bursts.
const DefaultMemoryRequest = "128Mi"

// defaultMemoryRequest is the memory request of a stack that sets none. On
// Autopilot, DefaultMemoryRequest with the default cpuRequest (250m) is
// below Autopilot's 1 GiB per vCPU, and a setting the user never touched
// must not be the error: the request becomes 1 GiB per vCPU of cpuRequest
// (256Mi at 250m), never less than DefaultMemoryRequest. An invalid
// cpuRequest is reported on its own; the default then stays as it is.
func defaultMemoryRequest(cpuRequest string, autopilot bool) string {
	cpu, err := resource.ParseQuantity(cpuRequest)
	if !autopilot || err != nil || cpu.Sign() <= 0 {
		return DefaultMemoryRequest
	}
	floor := resource.MustParse(DefaultMemoryRequest)
	least := floor.Value()
	perVCPU := int64(math.Ceil(AutopilotMinMemoryPerVCPU * float64(cpu.MilliValue()) / millicoresPerVCPU * bytesPerGiB))
	return mebibytes(max(least, perVCPU))
}

// mebibytes is n bytes as a quantity in Mi, rounded up.
func mebibytes(n int64) string { return fmt.Sprintf("%dMi", (n+(1<<20)-1)>>20) }

// isZoneOf tells whether zone is "<region>-<letter>".
func isZoneOf(zone, region string) bool {
	suffix, ok := strings.CutPrefix(zone, region+"-")
	return ok && len(suffix) == 1 && suffix[0] >= 'a' && suffix[0] <= 'z'
}

func (r *reader) ci() CI {
	c := CI{
		ServiceAccountID:        r.match("ciServiceAccountId", accountIDPattern, "6-30 lowercase letters, digits and hyphens, starting with a letter"),
		PreviewServiceAccountID: r.match("ciPreviewServiceAccountId", accountIDPattern, "6-30 lowercase letters, digits and hyphens, starting with a letter"),
		Platform:                CIPlatform(r.oneOf("ciPlatform", string(CIGitHub), string(CIGitLab), string(CINone))),
		Repository:              r.str("ciRepository"),
		RepositoryID:            r.str("ciRepositoryId"),
		DefaultBranch:           r.str("ciDefaultBranch"),
		GitLabURL:               r.str("gitlabUrl"),
		JSONKey:                 r.boolean("ciJsonKey"),
		StateBucket:             r.str("stateBucket"),
	}
	if c.PreviewServiceAccountID == c.ServiceAccountID {
		r.fail("ciPreviewServiceAccountId", c.PreviewServiceAccountID, "an account id other than ciServiceAccountId: previews get a read-only account of their own")
	}
	switch c.Platform {
	case CIGitHub:
		if !githubRepoPattern.MatchString(c.Repository) {
			r.fail("ciRepository", c.Repository, "the GitHub repository allowed to deploy, as owner/repo, spelled as `gh api repos/<owner>/<repo> --jq .full_name` prints it (its OIDC tokens carry that spelling, compared case-sensitively)")
		}
		if !numericIDPattern.MatchString(c.RepositoryID) {
			r.fail("ciRepositoryId", c.RepositoryID, "the repository's numeric id: gh api repos/<owner>/<repo> --jq .id")
		}
	case CIGitLab:
		if !gitlabProjectPattern.MatchString(c.Repository) {
			r.fail("ciRepository", c.Repository, "the GitLab project allowed to deploy, as group/project, spelled as its path_with_namespace (its ID tokens carry that spelling, compared case-sensitively)")
		}
		if !numericIDPattern.MatchString(c.RepositoryID) {
			r.fail("ciRepositoryId", c.RepositoryID, "the project's numeric id (Settings > General, Project ID)")
		}
		if u, err := url.Parse(c.GitLabURL); err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			r.fail("gitlabUrl", c.GitLabURL, "the https URL of the GitLab instance, such as https://gitlab.com")
		}
		c.GitLabURL = strings.TrimSuffix(c.GitLabURL, "/")
	}
	if c.Platform != CINone && (!branchPattern.MatchString(c.DefaultBranch) || strings.Contains(c.DefaultBranch, "..") || strings.HasPrefix(c.DefaultBranch, "refs/") || strings.HasSuffix(c.DefaultBranch, "/") || strings.HasSuffix(c.DefaultBranch, ".lock")) {
		r.fail("ciDefaultBranch", c.DefaultBranch, "the name of the branch that deploys, such as main (no refs/heads/ prefix)")
	}
	if c.JSONKey && c.Platform != CINone {
		// The key is the secret stack output ciServiceAccountKey, kept in the
		// state; the keyless previews read the state and run the pull
		// request's own code with the passphrase, so any branch could
		// decrypt a deploy key that never expires.
		r.fail("ciJsonKey", "true", fmt.Sprintf("false with ciPlatform %s: the JSON key would be kept in the state (the secret output ciServiceAccountKey), which every keyless preview, running a pull request's own code with the passphrase, can decrypt: any branch would hold a deploy key that never expires. Keep keyless, or set ciPlatform to none for a CI without OIDC (docs/security.md, \"Alternatives\")", c.Platform))
	}
	if c.StateBucket != "" && !bucketPattern.MatchString(c.StateBucket) {
		r.fail("stateBucket", c.StateBucket, "a GCS bucket name (without gs://), or empty")
	}
	return c
}

func (r *reader) existing(image string) Existing {
	e := Existing{
		KubeContext:      r.str("kubeContext"),
		Registry:         r.str("registry"),
		RegistryUsername: r.str("registryUsername"),
	}
	if r.str("registryPassword") != "" {
		e.RegistryPassword = r.cfg.GetSecret("registryPassword")
	}
	e.DeployUser, e.PreviewUser = r.str("deployUser"), r.str("previewUser")
	switch {
	case (e.DeployUser == "") != (e.PreviewUser == ""):
		r.fail("previewUser", e.PreviewUser, fmt.Sprintf("a user name with deployUser %q (both or neither: the deploy and the preview identity get their RBAC together)", e.DeployUser))
	case e.DeployUser != "" && e.DeployUser == e.PreviewUser:
		r.fail("previewUser", e.PreviewUser, "a user other than deployUser: previews get read-only access of their own")
	}
	switch {
	case e.Registry == "" && image == "":
		r.fail("registry", "", "the registry repository to push the model image to, such as localhost:5001/planets (or set image to a prebuilt one)")
	case e.Registry != "":
		named, err := reference.ParseNormalizedNamed(e.Registry)
		if err != nil || !reference.IsNameOnly(named) {
			r.fail("registry", e.Registry, "a repository without tag or digest, such as localhost:5001/planets")
		} else {
			e.RegistryServer = reference.Domain(named)
		}
	}
	// Read as a secret whatever way it was set; absent means ambient config.
	if r.str("kubeconfig") != "" {
		e.Kubeconfig = r.cfg.GetSecret("kubeconfig")
	}
	return e
}

// reader reads keys of one namespace, collecting errors instead of stopping
// at the first, so a user fixes their stack in one go.
type reader struct {
	cfg  *pulumiconfig.Config
	errs []error
}

func (r *reader) fail(key, value, expected string) {
	r.errs = append(r.errs, fmt.Errorf("%s:%s: got %q; expected %s", Namespace, key, value, expected))
}

func (r *reader) str(key string) string { return strings.TrimSpace(r.cfg.Get(key)) }

func (r *reader) match(key string, pattern *regexp.Regexp, expected string) string {
	v := r.str(key)
	if !pattern.MatchString(v) {
		r.fail(key, v, expected)
	}
	return v
}

func (r *reader) oneOf(key string, choices ...string) string {
	v := r.str(key)
	for _, c := range choices {
		if v == c {
			return v
		}
	}
	r.fail(key, v, "one of "+strings.Join(choices, ", "))
	return v
}

func (r *reader) boolean(key string) bool {
	v := r.str(key)
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(key, v, "true or false")
	}
	return b
}

func (r *reader) intAtLeast(key string, least int) int {
	v := r.str(key)
	n, err := strconv.Atoi(v)
	if err != nil || n < least {
		r.fail(key, v, fmt.Sprintf("a whole number of at least %d", least))
	}
	return n
}

func (r *reader) intBetween(key string, least, most int, unit string) int {
	v := r.str(key)
	n, err := strconv.Atoi(v)
	if err != nil || n < least || n > most {
		r.fail(key, v, fmt.Sprintf("a whole number from %d to %d (%s)", least, most, unit))
	}
	return n
}

func (r *reader) port(key string) int {
	v := r.str(key)
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		r.fail(key, v, "a port number from 1 to 65535")
	}
	return n
}

func (r *reader) dnsLabel(key string) string {
	v := r.str(key)
	if problems := validation.IsDNS1123Label(v); len(problems) > 0 {
		r.fail(key, v, "a DNS label (lowercase letters, digits and hyphens, at most 63 characters): "+strings.Join(problems, "; "))
	}
	return v
}

func (r *reader) quantity(key string) string {
	v := r.str(key)
	if q, err := resource.ParseQuantity(v); err != nil || q.Sign() <= 0 {
		r.fail(key, v, "a positive Kubernetes quantity such as 250m, 1, 128Mi or 1Gi")
	}
	return v
}

// optionalQuantity is a quantity that may be left empty ("" is returned).
func (r *reader) optionalQuantity(key string) string {
	if r.str(key) == "" {
		return ""
	}
	return r.quantity(key)
}

// MinMemoryLimit is the least memory a model server pod may be given. The
// server refuses to start when its settings do not fit its container's
// limit (model/main.go): 96 MiB for itself and onnxruntime, 32 MiB of
// request bodies and 37 MiB to decode one image of the largest size make
// 165 MiB, so a smaller limit would give pods that never become ready.
const MinMemoryLimit = "192Mi"

func (r *reader) atLeastQuantity(key, v, least, why string) {
	q, err1 := resource.ParseQuantity(v)
	floor, err2 := resource.ParseQuantity(least)
	if err1 == nil && err2 == nil && q.Sign() > 0 && q.Cmp(floor) < 0 {
		r.fail(key, v, fmt.Sprintf("at least %s, %s", least, why))
	}
}

func (r *reader) requestWithinLimit(requestKey, request, limitKey, limit string) {
	req, err1 := resource.ParseQuantity(request)
	lim, err2 := resource.ParseQuantity(limit)
	if err1 == nil && err2 == nil && req.Cmp(lim) > 0 {
		r.fail(limitKey, limit, fmt.Sprintf("at least %s (%s)", requestKey, request))
	}
}

// dvcRemoteNamePattern is a DVC remote name this program can find in
// .dvc/config (internal/dvc.RemoteNamePattern).
var dvcRemoteNamePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// modelDVC checks the settings that take the model from DVC; what the files
// they name hold is checked by the program as it reads them.
func (r *reader) modelDVC(m Model) {
	if m.DVCFile == "" {
		if m.DVCRemote != "" {
			r.fail("modelDvcRemote", m.DVCRemote, "empty unless modelDvcFile names the dvc.lock or .dvc file that records the model")
		}
		return
	}
	base := filepath.Base(m.DVCFile)
	if base != "dvc.lock" && (!strings.HasSuffix(base, ".dvc") || base == ".dvc") {
		r.fail("modelDvcFile", m.DVCFile, "the path of the dvc.lock or the .dvc file that records the model file, such as dvc.lock or model/artifacts/planets.onnx.dvc")
	}
	if m.DVCRemote != "" && !dvcRemoteNamePattern.MatchString(m.DVCRemote) {
		r.fail("modelDvcRemote", m.DVCRemote, "the name of a remote in .dvc/config (letters, digits, _, . and -), or empty for its default remote")
	}
}

// BuiltPlatform is the only platform model/Dockerfile builds: it pins amd64
// base images and the x64 onnxruntime, so any other platform would be an
// amd64 image under another name.
const BuiltPlatform = "linux/amd64"

func (r *reader) platform(key, v string) {
	if v != BuiltPlatform {
		r.fail(key, v, BuiltPlatform+", the only platform model/Dockerfile builds (amd64 base images and the x64 onnxruntime)")
	}
}

func (r *reader) pinnedImage(key, v string) {
	if v == "" {
		return
	}
	named, err := reference.ParseNormalizedNamed(v)
	if err != nil {
		r.fail(key, v, "an image reference pinned by digest, name@sha256:<64 hex digits>")
		return
	}
	if _, ok := named.(reference.Digested); !ok {
		r.fail(key, v, "an image reference pinned by digest, name@sha256:<64 hex digits> (a tag can move)")
	}
}
