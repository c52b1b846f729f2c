package pipelines

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/planets-mlops/deploy/internal/markdown"
)

// root is the repository root, seen from this package's directory (go test
// runs a package's tests in its directory).
const root = ".."

const (
	stack         = "dev"
	pulumiVersion = "3.274.1" // the CLI; must match the Go SDK in go.mod
	deployGroup   = "pulumi-up-mlops-dev"
	resourceGroup = "mlops-dev"
	gitlabAud     = "https://iam.googleapis.com/${GCP_WORKLOAD_IDENTITY_PROVIDER}"
)

// pins are the only action repositories the workflows may use (an action in
// a subdirectory, like actions/cache/save, counts as its repository), each at
// a full commit SHA with a "# <tag>" comment. The SHAs were read from the tags
// of snapshots of the actions' repositories (git rev-parse <tag>^{commit});
// update both columns together.
var pins = map[string]struct{ sha, tag string }{
	"actions/cache":              {"27d5ce7f107fe9357f9df03efb73ab90386fccae", "v5.0.5"},
	"actions/checkout":           {"3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"},
	"actions/setup-go":           {"b7ad1dad31e06c5925ef5d2fc7ad053ef454303e", "v7.0.0"},
	"google-github-actions/auth": {"7c6bc770dae815cd3e89ee6cdf493a5fab2cc093", "v3.0.0"},
	"pulumi/actions":             {"8e5e406f4007fca908480587cb9893c07090f58d", "v7.0.0"},
}

// ---------------------------------------------------------------------------
// GitHub Actions model: only the fields the tests look at.

type workflow struct {
	file        string
	raw         string
	On          map[string]yaml.Node `yaml:"on"`
	Permissions *map[string]string   `yaml:"permissions"`
	Concurrency *concurrency         `yaml:"concurrency"`
	Env         map[string]string    `yaml:"env"`
	Jobs        map[string]job       `yaml:"jobs"`
}

type concurrency struct {
	Group            string `yaml:"group"`
	CancelInProgress *bool  `yaml:"cancel-in-progress"`
}

type job struct {
	If             string             `yaml:"if"`
	TimeoutMinutes int                `yaml:"timeout-minutes"`
	Needs          stringList         `yaml:"needs"`
	Permissions    *map[string]string `yaml:"permissions"`
	Concurrency    *concurrency       `yaml:"concurrency"`
	Environment    *struct {
		Name string `yaml:"name"`
		URL  string `yaml:"url"`
	} `yaml:"environment"`
	Env     map[string]string `yaml:"env"`
	Outputs map[string]string `yaml:"outputs"`
	Steps   []step            `yaml:"steps"`
	node    yaml.Node
}

type step struct {
	ID             string            `yaml:"id"`
	If             string            `yaml:"if"`
	TimeoutMinutes int               `yaml:"timeout-minutes"`
	Name           string            `yaml:"name"`
	Uses           string            `yaml:"uses"`
	With           map[string]string `yaml:"with"`
	Env            map[string]string `yaml:"env"`
	Run            string            `yaml:"run"`
}

// stringList is a YAML value that is either one string or a list of them.
type stringList []string

func (s *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = []string{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

func (j *job) UnmarshalYAML(n *yaml.Node) error {
	type plain job
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*j = job(p)
	j.node = *n
	return nil
}

func loadWorkflow(t *testing.T, name string) workflow {
	t.Helper()
	path := filepath.Join(root, ".github", "workflows", name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w := workflow{file: name, raw: string(b)}
	if err := yaml.Unmarshal(b, &w); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return w
}

func (w workflow) job(t *testing.T, name string) job {
	t.Helper()
	j, ok := w.Jobs[name]
	if !ok {
		t.Fatalf("%s: no job %q (have %v)", w.file, name, keys(w.Jobs))
	}
	return j
}

// stepUsing returns the index and the step that uses action (owner/repo).
func (j job) stepUsing(action string) (int, step, bool) {
	for i, s := range j.Steps {
		if strings.HasPrefix(s.Uses, action+"@") {
			return i, s, true
		}
	}
	return -1, step{}, false
}

func (j job) scripts() []string {
	var out []string
	for _, s := range j.Steps {
		if s.Run != "" {
			out = append(out, s.Run)
		}
	}
	return out
}

// workflowFiles lists every workflow, so a new file is held to the same rules.
func workflowFiles(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, pat := range []string{"*.yml", "*.yaml"} {
		m, err := filepath.Glob(filepath.Join(root, ".github", "workflows", pat))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m {
			names = append(names, filepath.Base(p))
		}
	}
	sort.Strings(names)
	if want := []string{"deploy.yml", "proofs.yml", "pull-request.yml"}; !slices.Equal(names, want) {
		t.Fatalf("workflows = %v, want %v (add a new one to these tests)", names, want)
	}
	return names
}

// ---------------------------------------------------------------------------
// Shell scripts: the pulumi commands they run and what they must never do.

var (
	continuation = regexp.MustCompile(`\\\n\s*`)
	// separators split a line into simple commands: ; && || | $( ) and the
	// shell keywords after which a command starts.
	separators  = regexp.MustCompile(`;|&&|\|\||\||\$\(|\)|\b(?:then|else|do)\b`)
	redirection = regexp.MustCompile(`\s+(?:\d?>>?|<)\s*(?:&\d|\S+)`)
	spaces      = regexp.MustCompile(`\s+`)
)

// pulumiCommands returns each simple command of a script that starts with
// `pulumi`, without redirections and with whitespace normalized. Text inside
// quotes is not parsed: `echo "x; pulumi up"` counts as running pulumi up,
// which errs on the strict side.
func pulumiCommands(script string) []string {
	var out []string
	for _, line := range strings.Split(continuation.ReplaceAllString(script, " "), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, seg := range separators.Split(line, -1) {
			seg = strings.TrimSpace(spaces.ReplaceAllString(seg, " "))
			if !strings.HasPrefix(seg, "pulumi ") {
				continue
			}
			out = append(out, strings.TrimSpace(redirection.ReplaceAllString(seg, "")))
		}
	}
	return out
}

// subcommand is "preview", "up", "stack output", "login", ...
func subcommand(cmd string) string {
	f := strings.Fields(cmd)
	if len(f) < 2 {
		return ""
	}
	if f[1] == "stack" || f[1] == "config" {
		if len(f) > 2 && !strings.HasPrefix(f[2], "-") {
			return f[1] + " " + f[2]
		}
	}
	return f[1]
}

func hasFlags(cmd string, flags ...string) bool {
	f := strings.Fields(cmd)
	for _, flag := range flags {
		parts := strings.Fields(flag)
		if !containsSeq(f, parts) {
			return false
		}
	}
	return true
}

func containsSeq(s, seq []string) bool {
	for i := 0; i+len(seq) <= len(s); i++ {
		if slices.Equal(s[i:i+len(seq)], seq) {
			return true
		}
	}
	return false
}

// secretNames are variables whose value must never reach a log.
var secretNames = []string{
	"PULUMI_CONFIG_PASSPHRASE", "PULUMI_ACCESS_TOKEN", "GCP_ID_TOKEN",
	"GOOGLE_CREDENTIALS", "GCP_SERVICE_ACCOUNT_KEY", "GH_TOKEN", "GITHUB_TOKEN",
	"GITLAB_PREVIEW_TOKEN",
}

// stackOutputsShown are the only stack outputs CI may read: plain values.
// kubeconfig and ciServiceAccountKey are secrets.
var stackOutputsShown = []string{"endpoint", "modelFingerprint", "image"}

var (
	printing   = regexp.MustCompile(`\b(echo|printf|cat|tee|base64)\b`)
	toFile     = regexp.MustCompile(`[^2&]>\s*"?\$`)
	forbidden  = regexp.MustCompile(`--show-secrets|\bset\s+-[a-z]*x|set\s+-o\s+xtrace|\bbash\s+-x|\bprintenv\b|\bexport\s+-p\b|\bdeclare\s+-p\b|^\s*env\s*$|pulumi\s+stack\s+export|pulumi\s+config\b|\bcat\b[^|]*cred`)
	secretRefs = func() *regexp.Regexp {
		return regexp.MustCompile(`\$\{?(` + strings.Join(secretNames, "|") + `)\b`)
	}()
)

// leaks returns the reasons a script may print a secret.
func leaks(script string) []string {
	var out []string
	for _, line := range strings.Split(continuation.ReplaceAllString(script, " "), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if m := forbidden.FindString(line); m != "" {
			out = append(out, fmt.Sprintf("%q in %q", m, line))
		}
		if secretRefs.MatchString(line) && printing.MatchString(line) && !toFile.MatchString(line) {
			out = append(out, fmt.Sprintf("prints a secret: %q", line))
		}
	}
	for _, c := range pulumiCommands(script) {
		if subcommand(c) != "stack output" {
			continue
		}
		f := strings.Fields(c)
		if len(f) < 4 || !slices.Contains(stackOutputsShown, f[3]) {
			out = append(out, fmt.Sprintf("reads a stack output other than %v: %q", stackOutputsShown, c))
		}
	}
	return out
}

func TestHelpers(t *testing.T) {
	// The checks below are only as good as these helpers.
	got := pulumiCommands("x=$(pulumi stack output endpoint --stack dev)\n" +
		"pulumi preview --stack dev \\\n  --diff 2>&1 | tee out\n# pulumi up\nif a; then pulumi login \"gs://b\"; fi\n" +
		"echo \"`pulumi preview` of\"\necho x; pulumi up --yes > log")
	want := []string{"pulumi stack output endpoint --stack dev", "pulumi preview --stack dev --diff", `pulumi login "gs://b"`, "pulumi up --yes"}
	for _, tc := range []struct {
		cmd, want string
		ok        bool
	}{
		{"pulumi up --stack dev --yes --diff", "up --stack dev --yes", true},
		{"pulumi up --yes --stack dev", "up --stack dev --yes", true},
		{"pulumi up --stack prod --yes", "up --stack dev --yes", false},
		{"pulumi preview --stack dev", "up --stack dev", false},
		{"pulumi stack output endpoint --stack dev", "stack output endpoint --stack dev", true},
		{"pulumi stack output image --stack dev", "stack output endpoint --stack dev", false},
	} {
		if got := runs(tc.cmd, tc.want); got != tc.ok {
			t.Errorf("runs(%q, %q) = %v, want %v", tc.cmd, tc.want, got, tc.ok)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("pulumiCommands = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		script string
		leak   bool
	}{
		{`printf '%s' "$GCP_ID_TOKEN" > "$dir/token"`, false},
		{`if [[ -n "$PULUMI_ACCESS_TOKEN" ]]; then pulumi login; fi`, false},
		{`echo "$PULUMI_CONFIG_PASSPHRASE"`, true},
		{`echo "${GCP_ID_TOKEN}" | base64`, true},
		{`printf '%s' "$GCP_ID_TOKEN" 2>&1`, true},
		{`set -x`, true},
		{`set -euxo pipefail`, true},
		{`pulumi stack output kubeconfig --stack dev`, true},
		{`pulumi stack output --stack dev`, true},
		{`pulumi stack output endpoint --stack dev --show-secrets`, true},
		{`pulumi config get foo`, true},
		{`cat "$creds_dir/credentials.json"`, true},
		{`pulumi stack output endpoint --stack dev`, false},
	} {
		if got := len(leaks(tc.script)) > 0; got != tc.leak {
			t.Errorf("leaks(%q) = %v, want %v", tc.script, leaks(tc.script), tc.leak)
		}
	}
}

// ---------------------------------------------------------------------------
// GitHub Actions

func TestGitHubTriggers(t *testing.T) {
	for _, tc := range []struct {
		file     string
		triggers []string
		branches map[string][]string // trigger -> branch filter
	}{
		{"pull-request.yml", []string{"pull_request"}, map[string][]string{"pull_request": {"main"}}},
		{"deploy.yml", []string{"push", "workflow_dispatch"}, map[string][]string{"push": {"main"}}},
		// The full tier: by hand only.
		{"proofs.yml", []string{"workflow_dispatch"}, nil},
	} {
		t.Run(tc.file, func(t *testing.T) {
			w := loadWorkflow(t, tc.file)
			if got := keys(w.On); !slices.Equal(got, tc.triggers) {
				t.Errorf("on = %v, want %v", got, tc.triggers)
			}
			for trigger, want := range tc.branches {
				n := w.On[trigger]
				var f struct {
					Branches []string `yaml:"branches"`
				}
				if err := n.Decode(&f); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(f.Branches, want) {
					t.Errorf("on.%s.branches = %v, want %v", trigger, f.Branches, want)
				}
			}
		})
	}
}

// TestGitHubCommands: preview only in the pull request workflow, up only in
// the deploy workflow, always on the dev stack, from the GCS backend.
func TestGitHubCommands(t *testing.T) {
	for _, tc := range []struct {
		file, job string
		want      []string // subcommand + flags that must be run
		never     []string // subcommands that must not be run
	}{
		{"pull-request.yml", "test", nil, []string{"preview", "up", "login"}},
		{"pull-request.yml", "preview", []string{"preview --stack dev --diff --non-interactive"}, []string{"up", "destroy", "refresh", "import", "cancel", "state"}},
		{"pull-request.yml", "comment", nil, []string{"preview", "up", "login"}},
		{"deploy.yml", "test", nil, []string{"preview", "up", "login"}},
		{"deploy.yml", "deploy", []string{"up --stack dev --yes --non-interactive", "stack output endpoint --stack dev", "stack output modelFingerprint --stack dev"}, []string{"destroy", "refresh", "import", "cancel", "state", "preview"}},
		{"proofs.yml", "proofs", nil, []string{"preview", "up", "login"}},
	} {
		t.Run(tc.file+"/"+tc.job, func(t *testing.T) {
			j := loadWorkflow(t, tc.file).job(t, tc.job)
			var cmds []string
			for _, s := range j.scripts() {
				cmds = append(cmds, pulumiCommands(s)...)
			}
			checkCommands(t, cmds, tc.want, tc.never, len(tc.want) > 0)
		})
	}
}

func checkCommands(t *testing.T, cmds, want, never []string, needsLogin bool) {
	t.Helper()
	for _, w := range want {
		if !slices.ContainsFunc(cmds, func(c string) bool { return runs(c, w) }) {
			t.Errorf("no `pulumi %s` among %q", w, cmds)
		}
	}
	for _, c := range cmds {
		sub := subcommand(c)
		if sub == "" {
			t.Errorf("%q: no subcommand", c)
			continue
		}
		if slices.Contains(never, strings.Fields(sub)[0]) {
			t.Errorf("must not run %q", c)
		}
		switch sub {
		case "login", "version":
		default:
			if !hasFlags(c, "--stack "+stack) {
				t.Errorf("%q: not on --stack %s", c, stack)
			}
		}
	}
	if needsLogin && !slices.Contains(cmds, `pulumi login "gs://${PULUMI_STATE_BUCKET}"`) {
		t.Errorf(`no pulumi login "gs://${PULUMI_STATE_BUCKET}" among %q`, cmds)
	}
}

// runs reports whether cmd is `pulumi <w's words before its first flag>`
// with each of w's flags (a flag and, unless it starts with -, its value).
func runs(cmd, w string) bool {
	words := strings.Fields(w)
	i := slices.IndexFunc(words, func(s string) bool { return strings.HasPrefix(s, "-") })
	if i < 0 {
		i = len(words)
	}
	if !strings.HasPrefix(cmd+" ", "pulumi "+strings.Join(words[:i], " ")+" ") {
		return false
	}
	for j := i; j < len(words); j++ {
		flag := words[j]
		if j+1 < len(words) && !strings.HasPrefix(words[j+1], "-") {
			j++
			flag += " " + words[j]
		}
		if !hasFlags(cmd, flag) {
			return false
		}
	}
	return true
}

func TestGitHubPermissions(t *testing.T) {
	for _, tc := range []struct {
		file, job string
		want      map[string]string
	}{
		{"pull-request.yml", "test", map[string]string{"contents": "read"}},
		{"pull-request.yml", "preview", map[string]string{"contents": "read", "id-token": "write"}},
		{"pull-request.yml", "comment", map[string]string{"pull-requests": "write"}},
		{"deploy.yml", "test", map[string]string{"contents": "read"}},
		// checks: read and actions: read: whether newer commits' tests passed,
		// in a push run of deploy.yml (hack/deploy-target.sh).
		{"deploy.yml", "deploy", map[string]string{"contents": "read", "checks": "read", "actions": "read", "id-token": "write"}},
		{"proofs.yml", "proofs", map[string]string{"contents": "read"}},
	} {
		t.Run(tc.file+"/"+tc.job, func(t *testing.T) {
			w := loadWorkflow(t, tc.file)
			if w.Permissions == nil || len(*w.Permissions) != 0 {
				t.Errorf("workflow permissions = %v, want {} (nothing by default)", w.Permissions)
			}
			j := w.job(t, tc.job)
			if j.Permissions == nil {
				t.Fatalf("no explicit permissions")
			}
			if got := *j.Permissions; !equalMaps(got, tc.want) {
				t.Errorf("permissions = %v, want %v", got, tc.want)
			}
		})
	}
	// Every job is in the table above.
	for _, f := range workflowFiles(t) {
		w := loadWorkflow(t, f)
		if len(w.Jobs) != map[string]int{"pull-request.yml": 3, "deploy.yml": 2, "proofs.yml": 1}[f] {
			t.Errorf("%s: jobs %v not all covered by this test", f, keys(w.Jobs))
		}
	}
}

func TestGitHubJobConditions(t *testing.T) {
	pr := loadWorkflow(t, "pull-request.yml")
	deploy := loadWorkflow(t, "deploy.yml")
	for _, tc := range []struct {
		w       workflow
		job, If string
		needs   []string
	}{
		{pr, "test", "", nil},
		// Forks: tests only, no credentials.
		// Dependabot: no secrets, so no preview (README says how to get one).
		// Beside the tests, not after them.
		{pr, "preview", "github.event.pull_request.head.repo.full_name == github.repository && github.actor != 'dependabot[bot]'", nil},
		// Also after failed tests, to say so.
		{pr, "comment", "${{ !cancelled() && github.event.pull_request.head.repo.full_name == github.repository && github.actor != 'dependabot[bot]' }}", []string{"test", "preview"}},
		{deploy, "test", "", nil},
		// workflow_dispatch may start on any branch: only main deploys, after
		// the hermetic gate only (never the proofs).
		{deploy, "deploy", "github.ref == 'refs/heads/main'", []string{"test"}},
		// A root runner that keeps its cache: main's code only (and the
		// environment's reviewers; docs/first-real-run.md).
		{loadWorkflow(t, "proofs.yml"), "proofs", "github.ref == 'refs/heads/main'", nil},
	} {
		t.Run(tc.w.file+"/"+tc.job, func(t *testing.T) {
			j := tc.w.job(t, tc.job)
			if j.If != tc.If {
				t.Errorf("if = %q, want %q", j.If, tc.If)
			}
			if !slices.Equal(j.Needs, tc.needs) {
				t.Errorf("needs = %v, want %v", j.Needs, tc.needs)
			}
			if tc.job == "proofs" && (j.Environment == nil || j.Environment.Name != "proofs") {
				t.Errorf("environment = %+v, want proofs (required reviewers, deployment branches main)", j.Environment)
			}
		})
	}
}

func TestGitHubConcurrency(t *testing.T) {
	deploy := loadWorkflow(t, "deploy.yml")
	// A workflow-level group could cancel a deploy; the group is on the job.
	if deploy.Concurrency != nil {
		t.Errorf("deploy.yml: workflow-level concurrency %+v; put it on the deploy job only", *deploy.Concurrency)
	}
	c := deploy.job(t, "deploy").Concurrency
	if c == nil {
		t.Fatal("deploy job: no concurrency group")
	}
	if c.Group != deployGroup {
		t.Errorf("deploy job: concurrency group %q, want the fixed %q (one up at a time, whatever the ref)", c.Group, deployGroup)
	}
	if c.CancelInProgress == nil || *c.CancelInProgress {
		t.Errorf("deploy job: cancel-in-progress must be explicitly false")
	}
	pr := loadWorkflow(t, "pull-request.yml")
	if pr.Concurrency == nil || !strings.Contains(pr.Concurrency.Group, "github.event.pull_request.number") || pr.Concurrency.Group == deployGroup {
		t.Errorf("pull-request.yml: concurrency %+v, want a per-pull-request group", pr.Concurrency)
	}
	for name, j := range pr.Jobs {
		if j.Concurrency != nil && j.Concurrency.Group == deployGroup {
			t.Errorf("pull-request.yml job %s shares the deploy group", name)
		}
	}
	if e := deploy.job(t, "deploy").Environment; e == nil || e.Name != stack || e.URL != "${{ steps.outputs.outputs.endpoint }}" {
		t.Errorf("deploy job: environment %+v, want dev with the endpoint as URL", e)
	}
}

// TestGitHubSetup: the auth plumbing of the jobs that talk to the cloud, and
// none of it in the jobs that do not; the test jobs run the hermetic tier,
// the proofs job the full one.
func TestGitHubSetup(t *testing.T) {
	for _, tc := range []struct {
		file, job string
		cloud     bool
		account   string // the variable naming the service account it runs as
		run       string // the test command, for the jobs without cloud access
	}{
		{"pull-request.yml", "test", false, "", "hack/test.sh --hermetic"},
		// Pull requests run their own code: the read-only account.
		{"pull-request.yml", "preview", true, "GCP_PREVIEW_SERVICE_ACCOUNT", ""},
		{"deploy.yml", "test", false, "", "hack/test.sh --hermetic"},
		{"deploy.yml", "deploy", true, "GCP_SERVICE_ACCOUNT", ""},
		{"proofs.yml", "proofs", false, "", ".ci/run"},
	} {
		t.Run(tc.file+"/"+tc.job, func(t *testing.T) {
			j := loadWorkflow(t, tc.file).job(t, tc.job)
			ci, checkout, ok := j.stepUsing("actions/checkout")
			if !ok || checkout.With["persist-credentials"] != "false" {
				t.Errorf("checkout %+v: want persist-credentials false", checkout)
			}
			// setup-go installs Go only: the Go caches are steps of their own
			// (TestGitHubGoCaches), keyed on the Go version too.
			if _, s, ok := j.stepUsing("actions/setup-go"); !ok || s.With["go-version-file"] != "go.mod" || s.With["cache"] != "false" {
				t.Errorf("setup-go %+v: want go-version-file go.mod, cache false", s)
			}
			yamlText := nodeText(t, &j.node)
			ai, auth, hasAuth := j.stepUsing("google-github-actions/auth")
			if !tc.cloud {
				if !slices.Contains(j.scripts(), tc.run) {
					t.Errorf("does not run %s: %q", tc.run, j.scripts())
				}
				if hasAuth || strings.Contains(yamlText, "secrets.") || strings.Contains(yamlText, "vars.") {
					t.Errorf("the test jobs run pull request code: they must get no credentials, secrets or variables")
				}
				return
			}
			if !hasAuth {
				t.Fatal("no google-github-actions/auth")
			}
			if ai < ci {
				t.Errorf("auth (step %d) before checkout (step %d): checkout would delete the credentials", ai, ci)
			}
			// A checkout after auth would delete its credentials file.
			for i, s := range j.Steps[ai+1:] {
				if strings.HasPrefix(s.Uses, "actions/checkout@") {
					t.Errorf("checkout at step %d, after auth (step %d)", ai+1+i, ai)
				}
			}
			want := map[string]string{
				"workload_identity_provider": "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}",
				"service_account":            "${{ vars." + tc.account + " }}",
			}
			if !equalMaps(auth.With, want) {
				t.Errorf("auth with %v, want exactly %v (keyless)", auth.With, want)
			}
			// The runner's gcloud and the plugin alone, after auth (gcloud
			// takes auth's credentials from its environment).
			pi := slices.IndexFunc(j.Steps, func(s step) bool { return s.Run == "hack/gke-auth-plugin.sh" })
			if pi < ai {
				t.Errorf("hack/gke-auth-plugin.sh at step %d, auth at %d: want the plugin installed after auth", pi, ai)
			}
			if _, _, ok := j.stepUsing("google-github-actions/setup-gcloud"); ok {
				t.Errorf("setup-gcloud installs a whole Cloud SDK: the runner has gcloud, hack/gke-auth-plugin.sh adds the plugin")
			}
			if _, s, ok := j.stepUsing("pulumi/actions"); !ok || s.With["pulumi-version"] != pulumiVersion || s.With["command"] != "" {
				t.Errorf("pulumi/actions %+v: want install only, pulumi-version %s", s, pulumiVersion)
			}
		})
	}
}

// TestGitHubPreviewComment: the preview job makes the comment's text (it
// already runs the pull request's code), the comment job only posts it,
// runs no code of the pull request, and marks the earlier comment stale
// when the tests failed.
func TestGitHubPreviewComment(t *testing.T) {
	pr := loadWorkflow(t, "pull-request.yml")
	preview := pr.job(t, "preview")
	if got := preview.Outputs["comment"]; got != "${{ steps.comment.outputs.body }}" {
		t.Errorf("preview job output comment = %q", got)
	}
	_, text, ok := preview.stepWithID("comment")
	if !ok || !strings.Contains(text.Run, `hack/preview-comment.sh "$RUNNER_TEMP/preview.txt" "$RUNNER_TEMP/admin.md"`) ||
		text.Env["OUTCOME"] != "${{ steps.preview.outcome }}" || !strings.HasPrefix(text.If, "${{ !cancelled()") {
		t.Errorf("preview job: comment step %+v; want hack/preview-comment.sh with the preview's outcome, also after a failed preview", text)
	}
	c := pr.job(t, "comment")
	if len(c.Steps) != 1 {
		t.Fatalf("comment job: %d steps, want 1 (no checkout, no third-party code)", len(c.Steps))
	}
	s := c.Steps[0]
	if s.Env["COMMENT"] != "${{ needs.preview.outputs.comment }}" || s.Env["TESTS"] != "${{ needs.test.result }}" || s.Env["GH_TOKEN"] != "${{ github.token }}" {
		t.Errorf("comment env %v: want COMMENT from the preview job, TESTS = needs.test.result and GH_TOKEN = github.token", s.Env)
	}
	for _, want := range []string{
		"marker='<!-- pulumi-preview: mlops/dev -->'",
		`startswith(\"$marker\")`,                             // finds the earlier comment ...
		`--method PATCH "repos/$GH_REPO/issues/comments/$id"`, // ... and updates it
		`--method POST "repos/$GH_REPO/issues/$PR_NUMBER/comments"`,
		`if [[ "$TESTS" == success && "$COMMENT" == "$marker"* ]]`,
		"**Stale:** the tests failed on commit", // failed tests mark it stale
	} {
		if !strings.Contains(s.Run, want) {
			t.Errorf("comment script lacks %q", want)
		}
	}
	deploy := loadWorkflow(t, "deploy.yml").job(t, "deploy")
	summary := ""
	for _, s := range deploy.Steps {
		if strings.Contains(s.Run, "GITHUB_STEP_SUMMARY") {
			summary = s.Run
		}
	}
	for _, want := range []string{"$endpoint", "$fingerprint"} {
		if !strings.Contains(summary, want) {
			t.Errorf("deploy job summary lacks %s", want)
		}
	}
}

func (j job) stepWithID(id string) (int, step, bool) {
	for i, s := range j.Steps {
		if s.ID == id {
			return i, s, true
		}
	}
	return -1, step{}, false
}

// TestGitHubNoSecretsPrinted: scripts get data only through env (no ${{ }} in
// a script, so no injection and no secret pasted into a command line), and
// never print a secret.
func TestGitHubNoSecretsPrinted(t *testing.T) {
	for _, f := range workflowFiles(t) {
		w := loadWorkflow(t, f)
		for name, j := range w.Jobs {
			for i, s := range j.Steps {
				where := fmt.Sprintf("%s job %s step %d", f, name, i)
				if strings.Contains(s.Run, "${{") {
					t.Errorf("%s: ${{ }} in a script; pass it through env", where)
				}
				for _, l := range leaks(s.Run) {
					t.Errorf("%s: %s", where, l)
				}
			}
		}
		for _, bad := range []string{"pull_request_target", "workflow_run", "credentials_json", "GCP_SERVICE_ACCOUNT_KEY"} {
			if strings.Contains(stripComments(w.raw), bad) {
				t.Errorf("%s uses %s", f, bad)
			}
		}
	}
}

var usesLine = regexp.MustCompile(`^\s*(?:-\s+)?uses:\s*(\S+?)@(\S+)(?:\s+#\s*(\S+))?\s*$`)

func TestGitHubActionsPinned(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range workflowFiles(t) {
		for i, line := range strings.Split(loadWorkflow(t, f).raw, "\n") {
			if !strings.Contains(line, "uses:") || strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			m := usesLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("%s:%d: %q: want owner/repo@<sha> # <tag>", f, i+1, line)
				continue
			}
			repo := actionRepo(m[1])
			pin, ok := pins[repo]
			switch {
			case !ok:
				t.Errorf("%s:%d: action %s is not in the reviewed pins", f, i+1, m[1])
			case m[2] != pin.sha || m[3] != pin.tag:
				t.Errorf("%s:%d: %s@%s # %s, want @%s # %s", f, i+1, m[1], m[2], m[3], pin.sha, pin.tag)
			}
			seen[repo] = true
		}
	}
	for a := range pins {
		if !seen[a] {
			t.Errorf("pin for %s is unused; remove it", a)
		}
	}
}

// actionRepo is the repository of an action: "actions/cache" for
// "actions/cache/save". A malformed name is returned as is (and is not pinned).
func actionRepo(action string) string {
	if p := strings.SplitN(action, "/", 3); len(p) >= 2 {
		return p[0] + "/" + p[1]
	}
	return action
}

// goCachePaths are Go's module and build caches on GitHub's runners.
const goCachePaths = "~/go/pkg/mod\n~/.cache/go-build"

// TestGitHubGoCaches: the hermetic gate's Go caches are keyed on both
// modules' go.sum and the Go version, start from an older entry when go.sum
// changes (restore-keys), are saved also after failed tests (restore and
// save are separate steps; plain actions/cache saves only when the whole
// job succeeds) and never over an exact hit. The preview and deploy jobs
// read the same entry and write none. No hosted job builds the end-to-end
// toolchain or caches it: that is the proofs job's, on its own runner.
func TestGitHubGoCaches(t *testing.T) {
	var key string // the Go caches' key, the same in every job
	for _, tc := range []struct {
		file, job string
		saves     bool
	}{
		{"pull-request.yml", "test", true},
		{"deploy.yml", "test", true},
		{"pull-request.yml", "preview", false},
		{"deploy.yml", "deploy", false},
	} {
		t.Run(tc.file+"/"+tc.job, func(t *testing.T) {
			j := loadWorkflow(t, tc.file).job(t, tc.job)
			if i, _, ok := j.stepUsing("actions/cache"); ok {
				t.Errorf("step %d uses actions/cache, which saves only when the whole job succeeds; use actions/cache/restore and actions/cache/save", i)
			}
			gi, setupGo, _ := j.stepUsing("actions/setup-go")
			var restore, save, unfinished *step
			ri, si := -1, -1
			for i, s := range j.Steps {
				s := s
				if strings.TrimSpace(s.With["path"]) != goCachePaths {
					continue
				}
				switch {
				case strings.HasPrefix(s.Uses, "actions/cache/restore@"):
					restore, ri = &s, i
				case strings.HasPrefix(s.Uses, "actions/cache/save@") && strings.Contains(s.With["key"], "-unfinished-"):
					unfinished = &s
				case strings.HasPrefix(s.Uses, "actions/cache/save@"):
					save, si = &s, i
				}
			}
			if restore == nil {
				t.Fatalf("no actions/cache/restore of %q", goCachePaths)
			}
			first := slices.IndexFunc(j.Steps, func(s step) bool {
				return strings.Contains(s.Run, "go ") || strings.Contains(s.Run, "hack/test.sh")
			})
			if !(gi < ri && ri < first) || gi < 0 {
				t.Errorf("steps: setup-go %d, restore %d, first go command %d; want this order", gi, ri, first)
			}
			want := "go-${{ runner.os }}-go${{ steps." + setupGo.ID + ".outputs.go-version }}-${{ hashFiles('go.sum', 'model/go.sum') }}"
			if setupGo.ID == "" || restore.With["key"] != want {
				t.Errorf("key %q, want %q (both go.sum files and setup-go's Go version, id %q)", restore.With["key"], want, setupGo.ID)
			}
			if key == "" {
				key = restore.With["key"]
			} else if restore.With["key"] != key {
				t.Errorf("key %q differs from the test job's %q: the jobs would not share the compiled packages", restore.With["key"], key)
			}
			if got, want := strings.TrimSpace(restore.With["restore-keys"]), "go-${{ runner.os }}-go${{ steps."+setupGo.ID+".outputs.go-version }}-"; got != want {
				t.Errorf("restore-keys %q, want %q: a go.sum change would compile all of pulumi-gcp again", got, want)
			}
			if !tc.saves {
				if save != nil || unfinished != nil {
					t.Errorf("step %d saves the Go caches: only the test jobs do", si)
				}
				return
			}
			if save == nil || si < ri {
				t.Fatalf("no actions/cache/save of the Go caches after the restore (step %d)", ri)
			}
			if restore.ID == "" || save.With["key"] != "${{ steps."+restore.ID+".outputs.cache-primary-key }}" {
				t.Errorf("save key %q, want the restore step's (id %q) cache-primary-key", save.With["key"], restore.ID)
			}
			for _, want := range []string{"!cancelled()", "steps." + restore.ID + ".outputs.cache-hit != 'true'"} {
				if !strings.Contains(save.If, want) {
					t.Errorf("save if %q lacks %s", save.If, want)
				}
			}
			if strings.Contains(save.If, "always()") {
				t.Errorf("save if %q: never a cancelled run under the key itself", save.If)
			}
			// A job that reaches its timeout-minutes is cancelled and would
			// save nothing: the tests' step has a limit of its own, shorter,
			// and every other end saves under a key of its own.
			ti := slices.IndexFunc(j.Steps, func(s step) bool { return strings.Contains(s.Run, "hack/test.sh") })
			if ti < 0 {
				t.Fatal("no hack/test.sh step")
			}
			tests := j.Steps[ti]
			if tests.ID == "" || tests.TimeoutMinutes == 0 || tests.TimeoutMinutes > j.TimeoutMinutes-5 {
				t.Errorf("tests step (id %q): timeout-minutes %d, want one at least 5 under the job's %d", tests.ID, tests.TimeoutMinutes, j.TimeoutMinutes)
			}
			if !strings.Contains(save.If, "steps."+tests.ID+".outcome == 'success'") {
				t.Errorf("save if %q: only a run whose tests passed saves under the key", save.If)
			}
			if unfinished == nil {
				t.Fatal("no save of the Go caches of an unfinished run (failed, timed out, cancelled)")
			}
			if want := "${{ steps." + restore.ID + ".outputs.cache-primary-key }}-unfinished-${{ github.run_id }}-${{ github.run_attempt }}"; unfinished.With["key"] != want {
				t.Errorf("unfinished save key %q, want %q (a key of its own, never the complete cache's)", unfinished.With["key"], want)
			}
			for _, want := range []string{"always()", "steps." + restore.ID + ".outputs.cache-hit != 'true'", "steps." + tests.ID + ".outcome != 'success'", "steps." + tests.ID + ".outcome != 'skipped'"} {
				if !strings.Contains(unfinished.If, want) {
					t.Errorf("unfinished save if %q lacks %s", unfinished.If, want)
				}
			}
		})
	}
	for _, f := range workflowFiles(t) {
		for name, j := range loadWorkflow(t, f).Jobs {
			for _, s := range j.Steps {
				if (strings.Contains(s.Run, "hack/toolchain.sh") || strings.Contains(s.Run, "hack/ci-tools.sh")) && f != "proofs.yml" {
					t.Errorf("%s job %s builds the end-to-end toolchain (%q): only the proofs job does", f, name, s.Run)
				}
			}
		}
	}
}

// TestGitHubPluginsCache: the preview and deploy jobs restore
// ~/.pulumi/plugins (keyed on go.sum, which pins the providers); the deploy
// job, on main, whose caches pull requests can read, saves them.
func TestGitHubPluginsCache(t *testing.T) {
	for _, tc := range []struct {
		file, job string
		saves     bool
	}{{"pull-request.yml", "preview", false}, {"deploy.yml", "deploy", true}} {
		t.Run(tc.file, func(t *testing.T) {
			j := loadWorkflow(t, tc.file).job(t, tc.job)
			var restore, save step
			for _, s := range j.Steps {
				if s.With["path"] != "~/.pulumi/plugins" {
					continue
				}
				if strings.HasPrefix(s.Uses, "actions/cache/restore@") {
					restore = s
				} else if strings.HasPrefix(s.Uses, "actions/cache/save@") {
					save = s
				}
			}
			if restore.With["key"] != "pulumi-plugins-${{ runner.os }}-${{ hashFiles('go.sum') }}" || strings.TrimSpace(restore.With["restore-keys"]) != "pulumi-plugins-${{ runner.os }}-" {
				t.Errorf("plugins restore %+v: want the key on go.sum, with restore-keys", restore)
			}
			if (save.Uses != "") != tc.saves {
				t.Errorf("saves the plugins: %v, want %v", save.Uses != "", tc.saves)
			}
			if tc.saves && (restore.ID == "" || save.With["key"] != "${{ steps."+restore.ID+".outputs.cache-primary-key }}" || !strings.Contains(save.If, "steps."+restore.ID+".outputs.cache-hit != 'true'")) {
				t.Errorf("plugins save %+v: want the restore's primary key, not over an exact hit", save)
			}
		})
	}
}

// TestTheProgramIsBuiltOncePerJob: Pulumi.yaml runs the prebuilt program
// through hack/program.sh, and each job that runs pulumi builds it in one
// step, before its first pulumi command (GitLab: before preview or up).
func TestTheProgramIsBuiltOncePerJob(t *testing.T) {
	var project struct {
		Runtime struct {
			Name    string            `yaml:"name"`
			Options map[string]string `yaml:"options"`
		} `yaml:"runtime"`
	}
	if err := yamlUnmarshal(readFile(t, "Pulumi.yaml"), &project); err != nil {
		t.Fatalf("Pulumi.yaml: %v", err)
	}
	if project.Runtime.Name != "go" || project.Runtime.Options["binary"] != "hack/program.sh" {
		t.Errorf("Pulumi.yaml runtime %+v, want name go with options.binary hack/program.sh", project.Runtime)
	}
	const build = "go build -o bin/mlops ."
	for _, tc := range []struct{ file, job string }{{"pull-request.yml", "preview"}, {"deploy.yml", "deploy"}} {
		j := loadWorkflow(t, tc.file).job(t, tc.job)
		builds, firstPulumi, bi := 0, -1, -1
		for i, s := range j.Steps {
			if s.Run == build {
				builds++
				bi = i
			}
			for _, c := range pulumiCommands(s.Run) {
				if sub := subcommand(c); firstPulumi < 0 && sub != "login" && sub != "version" {
					firstPulumi = i
				}
			}
		}
		if builds != 1 || bi > firstPulumi {
			t.Errorf("%s job %s: %d steps run %q (at %d), first pulumi command at %d; want one, before it", tc.file, tc.job, builds, build, bi, firstPulumi)
		}
	}
	ci := loadGitLab(t)
	for _, name := range []string{"preview", "deploy"} {
		script := ci.job(t, name).Script
		bi := slices.Index(script, build)
		pi := slices.IndexFunc(script, func(s string) bool { return regexp.MustCompile(`(?m)^\s*pulumi (preview|up)\b`).MatchString(s) })
		if bi < 0 || pi < 0 || bi > pi || strings.Count(strings.Join(ci.job(t, name).allScripts(), "\n"), build) != 1 {
			t.Errorf(".gitlab-ci.yml %s: build at %d, pulumi preview/up at %d in %q; want one build before it", name, bi, pi, script)
		}
	}
}

// TestPulumiVersionMatchesSDK: the CLI in CI is the SDK's version.
func TestPulumiVersionMatchesSDK(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/pulumi/pulumi/sdk/v3 v(\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod does not require github.com/pulumi/pulumi/sdk/v3")
	}
	if string(m[1]) != pulumiVersion {
		t.Errorf("go.mod has the Pulumi SDK %s, CI installs the CLI %s: bump both workflows and .gitlab-ci.yml", m[1], pulumiVersion)
	}
	if !strings.Contains(readFile(t, ".gitlab-ci.yml"), `PULUMI_VERSION: "`+pulumiVersion+`"`) {
		t.Errorf(".gitlab-ci.yml: PULUMI_VERSION is not %s", pulumiVersion)
	}
}

// ---------------------------------------------------------------------------
// GitLab CI

type gitlabJob struct {
	Stage         string                       `yaml:"stage"`
	Timeout       string                       `yaml:"timeout"`
	Cache         gitlabCaches                 `yaml:"cache"`
	Extends       string                       `yaml:"extends"`
	Needs         gitlabNeeds                  `yaml:"needs"`
	Tags          []string                     `yaml:"tags"`
	Rules         []rule                       `yaml:"rules"`
	Script        []string                     `yaml:"script"`
	BeforeScript  []string                     `yaml:"before_script"`
	IDTokens      map[string]map[string]string `yaml:"id_tokens"`
	Variables     map[string]string            `yaml:"variables"`
	Interruptible *bool                        `yaml:"interruptible"`
	ResourceGroup string                       `yaml:"resource_group"`
	Environment   *struct {
		Name   string `yaml:"name"`
		URL    string `yaml:"url"`
		Action string `yaml:"action"`
	} `yaml:"environment"`
	AfterScript []string `yaml:"after_script"`
}

// gitlabCache is one entry of `cache:` (a job's may be one entry or a list).
type gitlabCache struct {
	Key    gitlabCacheKey `yaml:"key"`
	Paths  []string       `yaml:"paths"`
	When   string         `yaml:"when"`
	Policy string         `yaml:"policy"`
}

// gitlabCacheKey is `key: <name>` or `key: {prefix, files}`.
type gitlabCacheKey struct {
	Name   string   `yaml:"-"`
	Prefix string   `yaml:"prefix"`
	Files  []string `yaml:"files"`
}

func (k *gitlabCacheKey) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*k = gitlabCacheKey{Name: n.Value}
		return nil
	}
	type plain gitlabCacheKey
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*k = gitlabCacheKey(p)
	return nil
}

type gitlabCaches []gitlabCache

// gitlabNeeds are the job names of `needs:`, whose entries are a name or
// {job: name, artifacts: ...}. Not nil when given, even empty: `needs: []`
// (start at once) is not the same as no needs (wait for the earlier stages).
type gitlabNeeds []string

func (g *gitlabNeeds) UnmarshalYAML(n *yaml.Node) error {
	out := gitlabNeeds{}
	for _, e := range n.Content {
		if e.Kind == yaml.ScalarNode {
			out = append(out, e.Value)
			continue
		}
		var m struct {
			Job string `yaml:"job"`
		}
		if err := e.Decode(&m); err != nil {
			return err
		}
		out = append(out, m.Job)
	}
	*g = out
	return nil
}

func (c *gitlabCaches) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		var one gitlabCache
		if err := n.Decode(&one); err != nil {
			return err
		}
		*c = gitlabCaches{one}
		return nil
	}
	var l []gitlabCache
	if err := n.Decode(&l); err != nil {
		return err
	}
	*c = l
	return nil
}

type rule struct {
	If           string `yaml:"if"`
	When         string `yaml:"when"`
	AllowFailure bool   `yaml:"allow_failure"`
}

type gitlabCI struct {
	raw      string
	workflow []rule
	vars     map[string]string
	cache    gitlabCaches         // default:cache
	jobs     map[string]gitlabJob // extends resolved; hidden (.x) jobs left out
}

var gitlabReserved = []string{"workflow", "stages", "variables", "default", "include", "image", "services", "cache", "before_script", "after_script"}

func loadGitLab(t *testing.T) gitlabCI {
	t.Helper()
	raw := readFile(t, ".gitlab-ci.yml")
	var top map[string]yaml.Node
	if err := yaml.Unmarshal([]byte(raw), &top); err != nil {
		t.Fatal(err)
	}
	ci := gitlabCI{raw: raw, jobs: map[string]gitlabJob{}}
	var wf struct {
		Rules []rule `yaml:"rules"`
	}
	if n, ok := top["workflow"]; ok {
		if err := n.Decode(&wf); err != nil {
			t.Fatal(err)
		}
	}
	ci.workflow = wf.Rules
	if n, ok := top["variables"]; ok {
		if err := n.Decode(&ci.vars); err != nil {
			t.Fatal(err)
		}
	}
	var def struct {
		Interruptible *bool        `yaml:"interruptible"`
		Cache         gitlabCaches `yaml:"cache"`
	}
	if n, ok := top["default"]; ok {
		if err := n.Decode(&def); err != nil {
			t.Fatal(err)
		}
	}
	ci.cache = def.Cache
	// resolve merges a job over what it extends, as GitLab does: maps deep,
	// everything else replaced.
	var resolve func(name string, depth int) map[string]any
	resolve = func(name string, depth int) map[string]any {
		n, ok := top[name]
		if !ok || depth > 3 {
			t.Fatalf("extends: no job %q", name)
		}
		var m map[string]any
		if err := n.Decode(&m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if parent, ok := m["extends"].(string); ok {
			m = deepMerge(resolve(parent, depth+1), m)
		}
		return m
	}
	for name := range top {
		if strings.HasPrefix(name, ".") || slices.Contains(gitlabReserved, name) {
			continue
		}
		b, err := yaml.Marshal(resolve(name, 0))
		if err != nil {
			t.Fatal(err)
		}
		var j gitlabJob
		if err := yaml.Unmarshal(b, &j); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if j.Interruptible == nil {
			j.Interruptible = def.Interruptible
		}
		if j.Cache == nil {
			j.Cache = def.Cache
		}
		ci.jobs[name] = j
	}
	return ci
}

func deepMerge(base, over map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		bm, ok1 := out[k].(map[string]any)
		om, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = deepMerge(bm, om)
		} else {
			out[k] = v
		}
	}
	return out
}

func (ci gitlabCI) job(t *testing.T, name string) gitlabJob {
	t.Helper()
	j, ok := ci.jobs[name]
	if !ok {
		t.Fatalf(".gitlab-ci.yml: no job %q (have %v)", name, keys(ci.jobs))
	}
	return j
}

func (j gitlabJob) allScripts() []string {
	return append(append(slices.Clone(j.BeforeScript), j.Script...), j.AfterScript...)
}

// TestGitLabTriggers evaluates the rules in the pipelines GitLab would create
// and checks which jobs run: preview only for merge requests of this
// project, deploy only on the default branch.
func TestGitLabTriggers(t *testing.T) {
	ci := loadGitLab(t)
	if got := keys(ci.jobs); !slices.Equal(got, []string{"comment", "deploy", "preview", "proofs", "test"}) {
		t.Fatalf("jobs = %v, want comment, deploy, preview, proofs, test", got)
	}
	for _, tc := range []struct {
		name string
		vars map[string]string
		want []string
	}{
		// proofs: on the default branch only, and manual (TestGitLabProofsAreOptIn).
		{"merge request", mergeRequest, []string{"comment", "preview", "test"}},
		{"merge request from a fork", forkMergeRequest, []string{"test"}},
		{"push to main", pushMain, []string{"deploy", "proofs", "test"}},
		{"run pipeline on main", webMain, []string{"deploy", "proofs", "test"}},
		{"push to a branch", pushBranch, nil},
		{"run pipeline on a branch", webBranch, nil},
		{"schedule on main", scheduleMain, nil},
		{"tag", tag, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			if ok, _ := matchRules(t, ci.workflow, tc.vars); ok {
				for name, j := range ci.jobs {
					if len(j.Rules) == 0 {
						got = append(got, name)
					} else if ok, when := matchRules(t, j.Rules, tc.vars); ok && when != "never" {
						got = append(got, name)
					}
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("jobs = %v, want %v", got, tc.want)
			}
		})
	}
}

// Pipeline contexts, as the CI_ variables GitLab sets in them.
var (
	mergeRequest = map[string]string{"CI_PIPELINE_SOURCE": "merge_request_event", "CI_DEFAULT_BRANCH": "main",
		"CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "7", "CI_MERGE_REQUEST_PROJECT_ID": "7"}
	forkMergeRequest = with(mergeRequest, "CI_MERGE_REQUEST_SOURCE_PROJECT_ID", "8")
	pushMain         = map[string]string{"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"}
	webMain          = with(pushMain, "CI_PIPELINE_SOURCE", "web")
	scheduleMain     = with(pushMain, "CI_PIPELINE_SOURCE", "schedule")
	pushBranch       = with(pushMain, "CI_COMMIT_BRANCH", "feature")
	webBranch        = with(pushBranch, "CI_PIPELINE_SOURCE", "web")
	tag              = map[string]string{"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "v1", "CI_DEFAULT_BRANCH": "main"}
)

// TestGitLabJobRules: the jobs' own rules keep preview to merge requests and
// deploy to the default branch, even if workflow:rules are loosened later.
func TestGitLabJobRules(t *testing.T) {
	ci := loadGitLab(t)
	for _, tc := range []struct {
		job, name string
		vars      map[string]string
		want      bool
	}{
		{"preview", "merge request", mergeRequest, true},
		{"preview", "merge request from a fork", forkMergeRequest, false},
		{"preview", "push to main", pushMain, false},
		{"preview", "push to a branch", pushBranch, false},
		{"deploy", "push to main", pushMain, true},
		{"deploy", "run pipeline on main", webMain, true},
		{"deploy", "push to a branch", pushBranch, false},
		{"deploy", "run pipeline on a branch", webBranch, false},
		{"deploy", "merge request", mergeRequest, false},
		{"deploy", "schedule on main", scheduleMain, false},
		{"deploy", "tag", tag, false},
		{"comment", "merge request", mergeRequest, true},
		{"comment", "merge request from a fork", forkMergeRequest, false},
		{"comment", "push to main", pushMain, false},
		{"proofs", "merge request", mergeRequest, false},
		{"proofs", "merge request from a fork", forkMergeRequest, false},
		{"proofs", "push to main", pushMain, true},
		{"proofs", "push to a branch", pushBranch, false},
	} {
		t.Run(tc.job+"/"+tc.name, func(t *testing.T) {
			j := ci.job(t, tc.job)
			if len(j.Rules) == 0 {
				t.Fatal("no rules: the job would run in every pipeline")
			}
			if got, _ := matchRules(t, j.Rules, tc.vars); got != tc.want {
				t.Errorf("runs = %v, want %v", got, tc.want)
			}
		})
	}
}

func matchRules(t *testing.T, rules []rule, vars map[string]string) (bool, string) {
	t.Helper()
	for _, r := range rules {
		ok, err := evalRule(r.If, vars)
		if err != nil {
			t.Fatalf("rule %q: %v", r.If, err)
		}
		if ok {
			return r.When != "never", r.When
		}
	}
	return false, ""
}

func TestGitLabJobs(t *testing.T) {
	ci := loadGitLab(t)
	for _, tc := range []struct {
		job           string
		want, never   []string
		cloud         bool
		interruptible bool
		resourceGroup string
		account       string // the variable naming the service account it runs as
		envAction     string
		needs         []string // nil: the earlier stages
	}{
		{"test", nil, []string{"preview", "up", "login"}, false, true, "", "", "", nil},
		// Beside the tests.
		{"preview", []string{"preview --stack dev --diff --non-interactive"}, []string{"up", "destroy", "refresh", "import", "cancel", "state"}, true, true, "", "GCP_PREVIEW_SERVICE_ACCOUNT", "prepare", []string{}},
		// After the hermetic tests only, never the proofs.
		{"deploy", []string{"up --stack dev --yes --non-interactive", "stack output endpoint --stack dev", "stack output modelFingerprint --stack dev"}, []string{"destroy", "refresh", "import", "cancel", "state", "preview"}, true, false, resourceGroup, "GCP_SERVICE_ACCOUNT", "", []string{"test"}},
		{"comment", nil, []string{"preview", "up", "login"}, false, true, "", "", "prepare", []string{"test", "preview"}},
		{"proofs", nil, []string{"preview", "up", "login"}, false, true, "", "", "", []string{}},
	} {
		t.Run(tc.job, func(t *testing.T) {
			j := ci.job(t, tc.job)
			var cmds []string
			for _, s := range j.allScripts() {
				cmds = append(cmds, pulumiCommands(s)...)
			}
			checkCommands(t, cmds, tc.want, tc.never, tc.cloud)
			if j.Interruptible == nil || *j.Interruptible != tc.interruptible {
				t.Errorf("interruptible = %v, want %v", ptr(j.Interruptible), tc.interruptible)
			}
			if j.ResourceGroup != tc.resourceGroup {
				t.Errorf("resource_group = %q, want %q", j.ResourceGroup, tc.resourceGroup)
			}
			if (j.Needs == nil) != (tc.needs == nil) || !slices.Equal(j.Needs, tc.needs) {
				t.Errorf("needs = %#v, want %#v", j.Needs, tc.needs)
			}
			if !tc.cloud {
				if len(j.IDTokens) != 0 {
					t.Errorf("id_tokens %v: want no identity", j.IDTokens)
				}
				switch tc.job {
				case "test":
					if !slices.Equal(j.Script, []string{"hack/deps.sh hermetic", "timeout 25m hack/test.sh --hermetic"}) {
						t.Errorf("test job: script %q; want hack/deps.sh hermetic, timeout 25m hack/test.sh --hermetic", j.Script)
					}
					// Variables scoped to an environment reach only jobs that
					// name it: the test job runs merge request code.
					if j.Environment != nil || len(j.Variables) != 0 {
						t.Errorf("test job: environment %+v, variables %v; want neither (no CI/CD variable may reach it)", j.Environment, j.Variables)
					}
				case "proofs":
					if !slices.Equal(j.Script, []string{".ci/run", "hack/ci-tools.sh"}) || j.Environment != nil || !slices.Equal(j.Tags, []string{"mlops-proofs"}) {
						t.Errorf("proofs job: script %q, environment %+v, tags %v; want .ci/run on the mlops-proofs runner, no environment", j.Script, j.Environment, j.Tags)
					}
				case "comment":
					// The note token is scoped to dev: the job names it, and
					// creates no deployment.
					if j.Environment == nil || j.Environment.Name != stack || j.Environment.Action != tc.envAction {
						t.Errorf("comment job: environment %+v, want dev with action prepare", j.Environment)
					}
				}
				return
			}
			if j.Environment == nil || j.Environment.Name != stack || j.Environment.Action != tc.envAction {
				t.Errorf("environment %+v, want %s with action %q (the variables are scoped to it)", j.Environment, stack, tc.envAction)
			}
			if got := j.Variables["SERVICE_ACCOUNT"]; got != "$"+tc.account {
				t.Errorf("SERVICE_ACCOUNT = %q, want $%s", got, tc.account)
			}
			if got := j.IDTokens["GCP_ID_TOKEN"]["aud"]; got != gitlabAud || len(j.IDTokens) != 1 {
				t.Errorf("id_tokens = %v, want only GCP_ID_TOKEN with aud %s", j.IDTokens, gitlabAud)
			}
			all := strings.Join(j.allScripts(), "\n")
			for _, want := range []string{
				`gcloud iam workload-identity-pools create-cred-config "$GCP_WORKLOAD_IDENTITY_PROVIDER"`,
				`--service-account="$SERVICE_ACCOUNT"`,
				`--credential-source-file="$creds_dir/id-token"`,
				"google-cloud-cli-gke-gcloud-auth-plugin",
				"pulumi-v${PULUMI_VERSION}-linux-x64.tar.gz",
			} {
				if !strings.Contains(all, want) {
					t.Errorf("scripts lack %q", want)
				}
			}
		})
	}
	if e := ci.job(t, "deploy").Environment; e == nil || e.Name != stack {
		t.Errorf("deploy: environment %+v, want dev", e)
	}
}

// TestGitLabProofsAreOptIn: the full tier's job is manual, may fail without
// failing the pipeline, and nothing needs it.
func TestGitLabProofsAreOptIn(t *testing.T) {
	ci := loadGitLab(t)
	for _, r := range ci.job(t, "proofs").Rules {
		if r.When != "manual" || !r.AllowFailure {
			t.Errorf("proofs rule %+v: want when manual, allow_failure true", r)
		}
	}
	for name, j := range ci.jobs {
		if slices.Contains(j.Needs, "proofs") {
			t.Errorf("%s needs proofs: the full tier is never a gate", name)
		}
	}
}

// TestGitLabCaches: GitLab caches only paths inside the project directory,
// so Go's caches, $MLOPS_CACHE and $PULUMI_HOME live there. The test job
// uploads the Go caches (keyed on both go.sum files, under a prefix naming
// the image's Go version), also after failed tests; preview and deploy only
// download them (policy pull). The plugins: preview pulls, deploy uploads.
// No job but proofs builds or caches the end-to-end toolchain.
func TestGitLabCaches(t *testing.T) {
	ci := loadGitLab(t)
	inProject := func(name string) string {
		t.Helper()
		v, ok := ci.vars[name]
		if !ok {
			for _, j := range ci.jobs {
				if v, ok = j.Variables[name]; ok {
					break
				}
			}
		}
		rel, found := strings.CutPrefix(v, "$CI_PROJECT_DIR/")
		if !ok || !found || rel == "" || filepath.IsAbs(rel) || rel != filepath.Clean(rel) || strings.HasPrefix(rel, "..") {
			t.Errorf("variables: %s = %q, want $CI_PROJECT_DIR/<a directory inside the project>", name, v)
			return ""
		}
		return rel
	}
	mlops, gopath, gocache, pulumiHome := inProject("MLOPS_CACHE"), inProject("GOPATH"), inProject("GOCACHE"), inProject("PULUMI_HOME")
	if t.Failed() {
		return
	}
	cached := func(c gitlabCaches, path string) (gitlabCache, bool) {
		for _, e := range c {
			if slices.Contains(e.Paths, path) {
				return e, true
			}
		}
		return gitlabCache{}, false
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(readFile(t, "go.mod"))[1]

	test := ci.job(t, "test")
	// A job that reaches its timeout uploads no cache; a script that fails
	// does (cache when: always), so the tests have a limit of their own.
	testTimeout, ok := parseGitLabDuration(test.Timeout)
	if !ok || testTimeout > 40 {
		t.Errorf("test job: timeout %q, want at most 40 minutes for the hermetic tier", test.Timeout)
	}
	if m := regexp.MustCompile(`(?m)^timeout (\d+)m hack/test\.sh --hermetic$`).FindStringSubmatch(strings.Join(test.Script, "\n")); m == nil {
		t.Errorf("test job: script %q, want `timeout <N>m hack/test.sh --hermetic`, N at least 5 under the job's timeout", test.Script)
	} else if n, _ := strconv.Atoi(m[1]); n > testTimeout-5 {
		t.Errorf("test job: the tests' timeout %d min, want at least 5 under the job's %d: the cache upload needs the rest", n, testTimeout)
	}
	goCache, ok := cached(test.Cache, gocache)
	if !ok {
		t.Fatalf("test job: cache %+v does not cache %s", test.Cache, gocache)
	}
	if !slices.Contains(goCache.Paths, gopath+"/pkg/mod") || !slices.Equal(goCache.Key.Files, []string{"go.sum", "model/go.sum"}) || goCache.Key.Prefix != "go"+goVersion {
		t.Errorf("test job: Go cache %+v; want %s/pkg/mod and %s keyed on go.sum and model/go.sum, prefix go%s", goCache, gopath, gocache, goVersion)
	}
	if goCache.When != "always" || (goCache.Policy != "" && goCache.Policy != "pull-push") {
		t.Errorf("test job: Go cache when %q, policy %q; want it uploaded also after failed tests", goCache.When, goCache.Policy)
	}
	if c, ok := cached(test.Cache, mlops); !ok || slices.Contains(c.Key.Files, "hack/toolchain.sh") {
		t.Errorf("test job: %s cache %+v; want one keyed on actionlint's and onnxruntime's pins, not the toolchain's", mlops, c)
	}
	for _, tc := range []struct{ job, pluginsPolicy string }{{"preview", "pull"}, {"deploy", "pull-push"}} {
		j := ci.job(t, tc.job)
		c, ok := cached(j.Cache, gocache)
		if !ok || !reflect.DeepEqual(c.Key, goCache.Key) || c.Policy != "pull" {
			t.Errorf("%s: Go cache %+v, want the test job's key with policy pull", tc.job, c)
		}
		p, ok := cached(j.Cache, pulumiHome+"/plugins")
		if !ok || !slices.Equal(p.Key.Files, []string{"go.sum"}) || p.Policy != tc.pluginsPolicy {
			t.Errorf("%s: plugins cache %+v, want keyed on go.sum with policy %s", tc.job, p, tc.pluginsPolicy)
		}
		if _, ok := cached(j.Cache, mlops); ok {
			t.Errorf("%s job downloads %s, which it never uses", tc.job, mlops)
		}
	}
	for name, j := range ci.jobs {
		all := strings.Join(j.allScripts(), "\n")
		if name != "proofs" && (strings.Contains(all, "hack/toolchain.sh") || strings.Contains(all, "hack/ci-tools.sh")) {
			t.Errorf("%s builds the end-to-end toolchain: only proofs does", name)
		}
	}
}

// parseGitLabDuration reads the few forms of `timeout:` used here, in minutes:
// "75 minutes", "75m", "1h 15m".
func parseGitLabDuration(s string) (int, bool) {
	m := regexp.MustCompile(`^\s*(?:(\d+)\s*(?:h|hours?))?\s*(?:(\d+)\s*(?:m|min|minutes?))?\s*$`).FindStringSubmatch(s)
	if m == nil || (m[1] == "" && m[2] == "") {
		return 0, false
	}
	h, _ := strconv.Atoi(m[1]) // "" is 0
	min, _ := strconv.Atoi(m[2])
	return h*60 + min, true
}

func TestGitLabNoSecretsPrinted(t *testing.T) {
	ci := loadGitLab(t)
	for name, j := range ci.jobs {
		for _, s := range j.allScripts() {
			for _, l := range leaks(s) {
				t.Errorf("%s: %s", name, l)
			}
		}
	}
	for _, bad := range []string{"GCP_SERVICE_ACCOUNT_KEY", "base64 -d", "CI_JOB_JWT"} {
		if strings.Contains(stripComments(ci.raw), bad) {
			t.Errorf(".gitlab-ci.yml uses %s", bad)
		}
	}
}

// ---------------------------------------------------------------------------
// The docs name every variable and secret exactly as the pipelines use them.

var (
	githubRef = regexp.MustCompile(`\b(vars|secrets)\.([A-Z][A-Z0-9_]*)`)
	shellRef  = regexp.MustCompile(`\$\{?([A-Z][A-Z0-9_]*)`)
	assigned  = regexp.MustCompile(`(?m)(?:^|\s|export\s+)([A-Z][A-Z0-9_]*)=`)
)

func TestDocsNameEverySetting(t *testing.T) {
	github := map[string]bool{}
	for _, f := range workflowFiles(t) {
		for _, m := range githubRef.FindAllStringSubmatch(loadWorkflow(t, f).raw, -1) {
			github[m[2]] = true
		}
	}
	if got, want := keys(github), []string{"GCP_PREVIEW_SERVICE_ACCOUNT", "GCP_SERVICE_ACCOUNT", "GCP_WORKLOAD_IDENTITY_PROVIDER", "PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_STATE_BUCKET"}; !slices.Equal(got, want) {
		t.Errorf("GitHub variables and secrets = %v, want %v", got, want)
	}

	// GitLab: every $NAME the scripts read that neither GitLab, the file nor
	// the script itself defines must be set as a CI/CD variable.
	ci := loadGitLab(t)
	gitlab := map[string]bool{}
	defined := map[string]bool{"PATH": true, "DEPLOY_ENDPOINT": true}
	for k := range ci.vars {
		defined[k] = true
	}
	for _, j := range ci.jobs {
		for k := range j.IDTokens {
			defined[k] = true
		}
		for k := range j.Variables {
			defined[k] = true
		}
		for _, s := range j.allScripts() {
			for _, m := range assigned.FindAllStringSubmatch(s, -1) {
				defined[m[1]] = true
			}
		}
	}
	// PULUMI_CONFIG_PASSPHRASE is read by pulumi and hack/check-passphrase.sh.
	gitlab["PULUMI_CONFIG_PASSPHRASE"] = true
	for _, j := range ci.jobs {
		texts := j.allScripts()
		for _, v := range j.Variables {
			texts = append(texts, v)
		}
		for _, s := range texts {
			for _, m := range shellRef.FindAllStringSubmatch(s, -1) {
				if !defined[m[1]] && !strings.HasPrefix(m[1], "CI_") {
					gitlab[m[1]] = true
				}
			}
		}
	}
	if got, want := keys(gitlab), []string{"GCP_PREVIEW_SERVICE_ACCOUNT", "GCP_SERVICE_ACCOUNT", "GCP_WORKLOAD_IDENTITY_PROVIDER", "GITLAB_PREVIEW_TOKEN", "PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_STATE_BUCKET"}; !slices.Equal(got, want) {
		t.Errorf("GitLab variables read = %v, want %v", got, want)
	}

	docs := docTexts(t)
	for name := range github {
		gitlab[name] = true
	}
	for _, want := range append(keys(gitlab),
		"pulumi stack output workloadIdentityProvider",
		"pulumi stack output ciServiceAccountEmail",
		"pulumi stack output ciPreviewServiceAccountEmail",
		"mlops:ciRepositoryId",
		"mlops:ciDefaultBranch",
		"Environment scope",
		"process_mode=newest_first",
		"Prevent outdated deployment jobs",
		"openssl rand -hex 32",
		"Dependabot",
		"rejected by the attribute condition",
		"pulumi stack init dev",
		"pulumi login gs://",
		"mlops:ciPlatform",
		"mlops:ciRepository",
		"mlops:stateBucket",
		"mlops:ciJsonKey",
		"hack/test.sh",
	) {
		for path, text := range docs {
			if !strings.Contains(text, want) {
				t.Errorf("%s does not mention %q", path, want)
			}
		}
	}
}

// TestDocLinks: the setup pointers in the pipeline files lead somewhere: a
// README.md#anchor names a heading of README.md, a docs/ path exists (the
// setup guide moved from docs/continuous-deployment.md into the README).
func TestDocLinks(t *testing.T) {
	readme := readFile(t, "README.md")
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`).FindAllStringSubmatch(readme, -1) {
		anchors[markdown.Anchor(m[1])] = true
	}
	link := regexp.MustCompile(`README\.md#([A-Za-z0-9_-]+)|\bdocs/[A-Za-z0-9_./-]*[A-Za-z0-9_]`)
	files := []string{".gitlab-ci.yml"}
	for _, f := range workflowFiles(t) {
		files = append(files, filepath.Join(".github", "workflows", f))
	}
	for _, f := range files {
		text := readFile(t, f)
		found := link.FindAllStringSubmatch(text, -1)
		if !slices.ContainsFunc(found, func(m []string) bool { return m[1] == "continuous-deployment" }) {
			t.Errorf("%s does not point to README.md#continuous-deployment for its setup", f)
		}
		for _, m := range found {
			switch {
			case m[1] != "" && !anchors[m[1]]:
				t.Errorf("%s: %s: README.md has no such heading", f, m[0])
			case m[1] == "":
				if _, err := os.Stat(filepath.Join(root, m[0])); err != nil {
					t.Errorf("%s: %s: %v", f, m[0], err)
				}
			}
		}
	}
	if got := markdown.Anchor("Continuous deployment (GitHub, GitLab)"); got != "continuous-deployment-github-gitlab" {
		t.Errorf("githubAnchor = %q", got)
	}
}

// docTexts is the setup of continuous deployment: the README's "Continuous
// deployment" section, where the pipelines point, and the pages it leads
// to (the GKE steps, CI on GitHub and GitLab, the security model,
// troubleshooting), read as one.
func docTexts(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "## Continuous deployment")
	if i < 0 {
		t.Fatal(`README.md has no "## Continuous deployment" section`)
	}
	section := text[i:]
	if j := strings.Index(section[3:], "\n## "); j >= 0 {
		section = section[:j+3]
	}
	pages := []string{"docs/gke.md", "docs/ci-github.md", "docs/ci-gitlab.md", "docs/security.md", "docs/troubleshooting.md"}
	for _, page := range pages {
		b, err := os.ReadFile(filepath.Join(root, page))
		if err != nil {
			t.Fatal(err)
		}
		section += "\n" + string(b)
	}
	return map[string]string{"README.md#continuous-deployment and " + strings.Join(pages, ", "): section}
}

// ---------------------------------------------------------------------------
// A small evaluator for GitLab `rules:if` expressions: $VAR, "string",
// ==, !=, &&, ||, parentheses. Anything else is an error, so a rule this
// test cannot read fails it rather than passing it.

type value struct {
	s   string
	set bool
}

func evalRule(expr string, vars map[string]string) (bool, error) {
	if strings.TrimSpace(expr) == "" {
		return true, nil // a rule without if always matches
	}
	p := &parser{toks: tokenize(expr), vars: vars}
	v, err := p.or()
	if err != nil {
		return false, err
	}
	if p.i != len(p.toks) {
		return false, fmt.Errorf("unexpected %q", p.toks[p.i])
	}
	return v, nil
}

var token = regexp.MustCompile(`\s*(\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|"[^"]*"|'[^']*'|==|!=|=~|!~|&&|\|\||\(|\)|\S+)`)

func tokenize(s string) []string {
	var out []string
	for _, m := range token.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

type parser struct {
	toks []string
	i    int
	vars map[string]string
}

func (p *parser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *parser) or() (bool, error) {
	v, err := p.and()
	for err == nil && p.peek() == "||" {
		p.i++
		var r bool
		r, err = p.and()
		v = v || r
	}
	return v, err
}

func (p *parser) and() (bool, error) {
	v, err := p.cmp()
	for err == nil && p.peek() == "&&" {
		p.i++
		var r bool
		r, err = p.cmp()
		v = v && r
	}
	return v, err
}

func (p *parser) cmp() (bool, error) {
	if p.peek() == "(" {
		p.i++
		v, err := p.or()
		if err != nil {
			return false, err
		}
		if p.peek() != ")" {
			return false, fmt.Errorf("missing )")
		}
		p.i++
		return v, nil
	}
	l, err := p.operand()
	if err != nil {
		return false, err
	}
	switch op := p.peek(); op {
	case "==", "!=":
		p.i++
		r, err := p.operand()
		if err != nil {
			return false, err
		}
		return (l == r) == (op == "=="), nil
	case "=~", "!~":
		return false, fmt.Errorf("%s is not supported by this test", op)
	}
	return l.set && l.s != "", nil
}

func (p *parser) operand() (value, error) {
	tok := p.peek()
	p.i++
	switch {
	case strings.HasPrefix(tok, "$"):
		name := strings.Trim(tok, "${}")
		s, ok := p.vars[name]
		return value{s, ok}, nil
	case len(tok) >= 2 && (tok[0] == '"' || tok[0] == '\''):
		return value{tok[1 : len(tok)-1], true}, nil
	case tok == "null":
		return value{}, nil
	}
	return value{}, fmt.Errorf("unexpected %q", tok)
}

func TestEvalRule(t *testing.T) {
	vars := map[string]string{"A": "x", "B": "x", "C": "y"}
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{`$A == "x"`, true},
		{`$A == $B`, true},
		{`$A == $C`, false},
		{`$A != $C && $C == "y"`, true},
		{`$A == "y" || ($C == "y" && $B == "x")`, true},
		{`$A == "y" || ($C == "y" && $B == "z")`, false},
		{`$UNSET == "x"`, false},
		{`$UNSET == null`, true},
		{`$A`, true},
		{`$UNSET`, false},
	} {
		got, err := evalRule(tc.expr, vars)
		if err != nil || got != tc.want {
			t.Errorf("evalRule(%q) = %v, %v; want %v", tc.expr, got, err, tc.want)
		}
	}
	if _, err := evalRule(`$A =~ /x/`, vars); err == nil {
		t.Error("=~ accepted; the evaluator must refuse what it cannot evaluate")
	}
}

// ---------------------------------------------------------------------------

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func nodeText(t *testing.T, n *yaml.Node) string {
	t.Helper()
	b, err := yaml.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return stripComments(string(b))
}

// stripComments drops YAML comment lines and trailing " # ..." comments.
func stripComments(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if i := strings.Index(line, " # "); i >= 0 {
			line = line[:i]
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for k2, v2 := range m {
		if k2 != k {
			out[k2] = v2
		}
	}
	return out
}

func ptr(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}
