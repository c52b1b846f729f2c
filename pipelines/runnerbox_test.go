package pipelines

// A runner in a box: the workflows' own `run:` steps (and .gitlab-ci.yml's
// job scripts), read from the files, executed in order as a hosted runner
// would: as a non-root user, in a clean clone with no ../shared beside it,
// with the runner's environment. Stand-ins only for the `uses:` steps that
// need the network (checkout is the clone, setup-go the machine's Go, the
// cache actions a directory kept between runs of this test) and for the
// cloud (gcloud, pulumi, gh and GitLab's API answer as stubs, on
// 127.0.0.1). Everything else is real: hack/deps.sh hermetic, the hermetic
// gate (hack/test.sh --hermetic, the whole of it), the program's build, the
// scripts that pick what to deploy, check the endpoint and write the
// comment.
//
// It runs the hermetic gate in a clone (minutes), so it belongs to the full
// tier; inside the box the gate is the hermetic tier, where this test skips:
// it never runs itself.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/planets-mlops/deploy/internal/testenv"
)

// boxUser is the user the box runs as when the test runs as root.
const boxUser = "mlops-runner"

// boxFingerprint is the stack output modelFingerprint the box's pulumi
// answers, and the fingerprint its model server reports.
const boxFingerprint = "5d41402abc4b"

// box is one runner: a user, a home, a clean clone.
type box struct {
	t        *testing.T
	dir      string // holds the clone, the home and the runner's temp; no "shared" in it
	clone    string
	home     string
	stubs    string // the stand-ins' bin directory, first on PATH
	sysPath  string // the system's part of PATH, after the stand-ins (runnerImage narrows it)
	uid, gid int    // -1: the test's own user
	goBin    string
	sha      string
	remote   string   // a bare repository whose main is sha (GitLab's CI_REPOSITORY_URL)
	env      []string // the runner's environment (without a step's own)
	log      bytes.Buffer
}

func newBox(t *testing.T) *box {
	t.Helper()
	testenv.NeedProof(t, "the full tier (MLOPS_TEST_TIER=full): the box runs the hermetic gate in a clone, for minutes", func() error {
		if testenv.Tier(t) != testenv.Full {
			return fmt.Errorf("%s is %q", testenv.TierVar, testenv.Tier(t))
		}
		return nil
	})
	testenv.NeedCommand(t, "git")
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	goBin, _ = filepath.EvalSymlinks(filepath.Dir(goBin))
	b := &box{t: t, uid: -1, gid: -1, goBin: goBin, sysPath: "/usr/local/bin:/usr/bin:/bin"}
	if os.Geteuid() == 0 {
		b.uid, b.gid = boxAccount(t)
	}
	// Not t.TempDir: the box's user must reach it, and its caches must live on.
	root := filepath.Join(os.TempDir(), fmt.Sprintf("mlops-runner-box-%d", time.Now().UnixNano()))
	b.dir = root
	t.Cleanup(func() { os.RemoveAll(root) })
	b.clone = filepath.Join(root, "work", "planets")
	b.home = filepath.Join(root, "home")
	b.stubs = filepath.Join(root, "stubs")
	for _, d := range []string{b.home, b.stubs, filepath.Join(root, "runner-temp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	// A clean clone of the committed tree (what a push carries), nothing
	// uncommitted, no ../shared beside it.
	b.sha = strings.TrimSpace(b.git(repoPath(t, "."), "rev-parse", "HEAD"))
	b.git(root, "clone", "--quiet", "--no-hardlinks", repoPath(t, "."), b.clone)
	b.git(b.clone, "checkout", "--quiet", b.sha)
	b.remote = filepath.Join(root, "remote.git")
	b.git(root, "init", "--quiet", "--bare", b.remote)
	b.git(b.clone, "push", "--quiet", b.remote, b.sha+":refs/heads/main")
	if _, err := os.Stat(filepath.Join(b.clone, "..", "shared")); err == nil {
		t.Fatal("../shared beside the clone")
	}
	b.persistentCaches()
	if b.uid >= 0 {
		if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", b.uid, b.gid), root).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v: %s", err, out)
		}
	}
	b.env = []string{
		"HOME=" + b.home, "USER=" + boxUser, "LANG=C.UTF-8",
		"PATH=" + b.stubs + ":" + b.sysPath,
		"CI=true", "RUNNER_TEMP=" + filepath.Join(root, "runner-temp"), "RUNNER_OS=Linux",
	}
	return b
}

// boxAccount is the uid and gid of boxUser, created when missing.
func boxAccount(t *testing.T) (int, int) {
	t.Helper()
	u, err := user.Lookup(boxUser)
	if err != nil {
		if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/bash", boxUser).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v: %s", boxUser, err, out)
		}
		if u, err = user.Lookup(boxUser); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// persistentCaches stands in for the cache actions: the Go module and build
// caches and ~/.cache/mlops live in a directory of the box's user kept
// between runs (as the runner's cache service keeps them between jobs), and
// the box's home links to them.
func (b *box) persistentCaches() {
	t := b.t
	keep := filepath.Join(os.TempDir(), "mlops-runner-box-caches")
	for link, dir := range map[string]string{
		filepath.Join(b.home, "go", "pkg", "mod"):            filepath.Join(keep, "gomod"),
		filepath.Join(b.home, ".cache", "go-build"):          filepath.Join(keep, "go-build"),
		filepath.Join(b.home, ".cache", "mlops"):             filepath.Join(keep, "mlops"),
		filepath.Join(b.home, ".pulumi", "plugins"):          filepath.Join(keep, "pulumi-plugins"),
		filepath.Join(b.clone, ".cache", "go", "pkg", "mod"): filepath.Join(keep, "gomod"),
		filepath.Join(b.clone, ".cache", "go-build"):         filepath.Join(keep, "go-build"),
		filepath.Join(b.clone, ".cache", "mlops"):            filepath.Join(keep, "mlops"),
	} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(dir, link); err != nil {
			t.Fatal(err)
		}
	}
	if b.uid >= 0 {
		if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", b.uid, b.gid), keep).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v: %s", err, out)
		}
	}
	if err := os.Chmod(keep, 0o755); err != nil {
		t.Fatal(err)
	}
}

func (b *box) git(dir string, args ...string) string {
	b.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "safe.directory=*"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// stub writes a stand-in command into the box's PATH.
func (b *box) stub(name, script string) {
	b.t.Helper()
	p := filepath.Join(b.stubs, name)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		b.t.Fatal(err)
	}
}

// run runs a script as the box's user (bash -eo pipefail, GitHub's shell)
// in the clone, with the runner's environment and env, bounded by timeout.
// It returns the combined output and the exit code.
func (b *box) run(script string, timeout time.Duration, env ...string) (string, int) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := []string{"bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script}
	if b.uid >= 0 {
		args = append([]string{"setpriv", "--reuid=" + strconv.Itoa(b.uid), "--regid=" + strconv.Itoa(b.gid), "--init-groups", "--"}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = b.clone
	cmd.Env = append(slices.Clone(b.env), env...)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	fmt.Fprintf(&b.log, "$ %s\n%s", firstLineOf(script), out)
	if ctx.Err() != nil {
		return string(out) + "\n(timed out after " + timeout.String() + ")", -1
	}
	code := 0
	if err != nil {
		code = -1
		if e, ok := err.(*exec.ExitError); ok {
			code = e.ExitCode()
		}
	}
	return string(out), code
}

func firstLineOf(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// readKV reads the KEY=VALUE and KEY<<DELIM lines of a $GITHUB_OUTPUT or
// $GITHUB_ENV file.
func readKV(path string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<24)
	for s.Scan() {
		line := s.Text()
		if k, delim, ok := strings.Cut(line, "<<"); ok && !strings.Contains(k, "=") {
			var v []string
			for s.Scan() && s.Text() != delim {
				v = append(v, s.Text())
			}
			out[k] = strings.Join(v, "\n")
		} else if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = v
		}
	}
	return out
}

// ghJob runs a GitHub job's steps in the box, in order. ctx resolves the
// ${{ }} expressions a step's env, with and if use (secrets, vars, github.*,
// needs.*); steps.<id>.* come from the steps run before. It returns each
// step's outcome by index ("success", "failure", "skipped") and the outputs
// of each step id.
type ghResult struct {
	outcomes []string
	outputs  map[string]map[string]string
	failed   string // the first failed step and its output's end
}

var expr = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

func (b *box) ghJob(w workflow, name string, ctx map[string]string, uses func(s step, with map[string]string, env map[string]string) (map[string]string, error)) ghResult {
	t := b.t
	t.Helper()
	j := w.job(t, name)
	res := ghResult{outputs: map[string]map[string]string{}}
	outcome := map[string]string{}
	lookup := func(e string) string {
		if v, ok := ctx[e]; ok {
			return v
		}
		if strings.HasPrefix(e, "hashFiles(") {
			return "hash" // a cache key: the stand-in cache has one entry
		}
		p := strings.Split(e, ".")
		switch {
		case len(p) == 4 && p[0] == "steps" && p[2] == "outputs":
			return res.outputs[p[1]][p[3]]
		case len(p) == 3 && p[0] == "steps" && p[2] == "outcome":
			return outcome[p[1]]
		}
		t.Fatalf("%s job %s: the box does not know ${{ %s }}", w.file, name, e)
		return ""
	}
	subst := func(s string) string {
		return expr.ReplaceAllStringFunc(s, func(m string) string { return lookup(expr.FindStringSubmatch(m)[1]) })
	}
	jobEnv := []string{"GITHUB_ACTIONS=true", "GITHUB_WORKSPACE=" + b.clone, "GITHUB_SHA=" + ctx["github.sha"],
		"GITHUB_REPOSITORY=" + ctx["github.repository"], "GITHUB_REF_NAME=" + ctx["github.ref_name"]}
	addedPath := []string{}
	addedEnv := map[string]string{}
	anyFailed := false
	for i, s := range j.Steps {
		label := fmt.Sprintf("step %d (%s%s)", i, s.Name, s.Uses)
		if !b.ghIf(subst, s.If, anyFailed) {
			res.outcomes = append(res.outcomes, "skipped")
			if s.ID != "" {
				outcome[s.ID] = "skipped"
			}
			continue
		}
		stepStart := time.Now()
		env := map[string]string{}
		for k, v := range s.Env {
			env[k] = subst(v)
		}
		ok := true
		out := map[string]string{}
		if s.Uses != "" {
			with := map[string]string{}
			for k, v := range s.With {
				with[k] = subst(v)
			}
			got, err := uses(s, with, env)
			if err != nil {
				ok = false
				res.failed = fmt.Sprintf("%s: %v", label, err)
			}
			for k, v := range got {
				if strings.HasPrefix(k, "PATH+") {
					addedPath = append([]string{v}, addedPath...)
				} else if strings.HasPrefix(k, "ENV+") {
					addedEnv[strings.TrimPrefix(k, "ENV+")] = v
				} else {
					out[k] = v
				}
			}
		} else {
			files := map[string]string{}
			for _, f := range []string{"GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY"} {
				files[f] = filepath.Join(b.dir, "runner-temp", fmt.Sprintf("%s-%s-%d", name, strings.ToLower(f), i))
				_ = os.WriteFile(files[f], nil, 0o666)
				if b.uid >= 0 {
					_ = os.Chown(files[f], b.uid, b.gid)
				}
			}
			stepEnv := slices.Clone(jobEnv)
			for k, v := range files {
				stepEnv = append(stepEnv, k+"="+v)
			}
			for k, v := range addedEnv {
				stepEnv = append(stepEnv, k+"="+v)
			}
			for k, v := range env {
				stepEnv = append(stepEnv, k+"="+v)
			}
			if len(addedPath) > 0 {
				stepEnv = append(stepEnv, "PATH="+b.stubs+":"+strings.Join(addedPath, ":")+":"+b.sysPath)
			}
			output, code := b.run(s.Run, 40*time.Minute, stepEnv...)
			if code != 0 {
				ok = false
				tail := output
				if len(tail) > 4000 {
					tail = "..." + tail[len(tail)-4000:]
				}
				res.failed = fmt.Sprintf("%s exited %d:\n%s", label, code, tail)
			}
			out = readKV(files["GITHUB_OUTPUT"])
			for k, v := range readKV(files["GITHUB_ENV"]) {
				addedEnv[k] = v
			}
		}
		state := "success"
		if !ok {
			state, anyFailed = "failure", true
		}
		t.Logf("TIMING %s job %s %s: %s in %.1f s", w.file, name, label, state, time.Since(stepStart).Seconds())
		res.outcomes = append(res.outcomes, state)
		if s.ID != "" {
			outcome[s.ID] = state
			res.outputs[s.ID] = out
		}
		if !ok {
			t.Logf("%s failed", label)
		}
	}
	return res
}

// ghIf evaluates the few forms of `if:` the workflows use: comparisons with
// == and != joined by &&, !cancelled(), and the default success().
func (b *box) ghIf(subst func(string) string, cond string, anyFailed bool) bool {
	c := strings.TrimSpace(cond)
	c = strings.TrimSuffix(strings.TrimPrefix(c, "${{"), "}}")
	if strings.TrimSpace(c) == "" {
		return !anyFailed
	}
	usesStatus := false
	result := true
	for _, part := range strings.Split(c, "&&") {
		part = strings.TrimSpace(part)
		switch part {
		case "!cancelled()", "always()":
			usesStatus = true
			continue
		case "success()":
			usesStatus = true
			result = result && !anyFailed
			continue
		}
		op := " != "
		if !strings.Contains(part, op) {
			op = " == "
		}
		l, r, ok := strings.Cut(part, op)
		if !ok {
			b.t.Fatalf("the box cannot evaluate if: %q", cond)
		}
		val := func(x string) string {
			x = strings.TrimSpace(x)
			if strings.HasPrefix(x, "'") {
				return strings.Trim(x, "'")
			}
			return subst("${{ " + x + " }}")
		}
		eq := val(l) == val(r)
		result = result && (eq == (op == " == "))
	}
	if !usesStatus && anyFailed {
		return false
	}
	return result
}

// cloudStubs: gcloud, pulumi and gh, as the cloud
// would answer, recording their calls; pulumi's `stack output endpoint` is
// endpoint (a stand-in model server on 127.0.0.1).
func (b *box) cloudStubs(endpoint, ghWorld string) string {
	calls := filepath.Join(b.dir, "runner-temp", "cloud-calls.log")
	record := `echo "$(basename "$0") $*" >> ` + calls + "\n"
	b.stub("gcloud", "#!/usr/bin/env bash\n"+record)
	// A new VM's apt, without gke-gcloud-auth-plugin: the jobs install it.
	b.runnerImage()
	b.stub("pulumi", `#!/usr/bin/env bash
set -euo pipefail
`+record+`
case "$1" in
  login|version) echo "Logged in (stand-in)" ;;
  preview)
    log=
    while (($#)); do [[ $1 == --event-log ]] && log=$2; shift; done
    [[ -n $log ]] && : > "$log"
    printf 'Previewing update (dev):\n    pulumi:pulumi:Stack: (same)\nResources:\n    15 unchanged\n' ;;
  up) printf 'Updating (dev):\nResources:\n    15 unchanged\n' ;;
  stack)
    case "$2" in
      history) echo '[]' ;;
      output)
        case "$3" in
          endpoint) echo "`+endpoint+`" ;;
          modelFingerprint) echo `+boxFingerprint+` ;;
          image) echo "europe-west6-docker.pkg.dev/p/mlops/planet-classifier@sha256:9b2c" ;;
        esac ;;
    esac ;;
  *) echo "pulumi stand-in: unexpected $*" >&2; exit 1 ;;
esac
`)
	if ghWorld != "" {
		if err := os.WriteFile(filepath.Join(b.dir, "runner-temp", "world.json"), []byte(ghWorld), 0o644); err != nil {
			b.t.Fatal(err)
		}
		b.stub("gh", fakeGitHubHistory)
	}
	return calls
}

// ghUses stands in for the `uses:` steps. checkout: the clone (at ref when
// given); setup-go: the machine's Go; cache restore and save: the kept
// directories (always a miss here, so the save steps run); auth: a
// credentials file; pulumi/actions: the pulumi stand-in (already on PATH).
func (b *box) ghUses(s step, with, env map[string]string) (map[string]string, error) {
	action := actionRepo(s.Uses[:strings.Index(s.Uses, "@")])
	full := s.Uses[:strings.Index(s.Uses, "@")]
	switch {
	case action == "actions/checkout":
		if ref := with["ref"]; ref != "" {
			if out, code := b.run(`git checkout --quiet "$REF"`, time.Minute, "REF="+ref); code != 0 {
				return nil, fmt.Errorf("checkout %s: %s", ref, out)
			}
		}
		return nil, nil
	case action == "actions/setup-go":
		v, err := exec.Command(filepath.Join(b.goBin, "go"), "env", "GOVERSION").Output()
		if err != nil {
			return nil, err
		}
		return map[string]string{"PATH+go": b.goBin, "go-version": strings.TrimPrefix(strings.TrimSpace(string(v)), "go")}, nil
	case full == "actions/cache/restore":
		return map[string]string{"cache-hit": "false", "cache-primary-key": with["key"]}, nil
	case full == "actions/cache/save":
		return nil, nil
	case action == "google-github-actions/auth":
		creds := filepath.Join(b.dir, "runner-temp", "gha-creds.json")
		if err := os.WriteFile(creds, []byte(`{"type":"external_account","stand-in":true}`), 0o644); err != nil {
			return nil, err
		}
		return map[string]string{"ENV+GOOGLE_APPLICATION_CREDENTIALS": creds, "ENV+CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE": creds}, nil
	case action == "pulumi/actions":
		return nil, nil
	}
	return nil, fmt.Errorf("the box has no stand-in for %s", s.Uses)
}

// githubContext is what the box's runs know of GitHub.
func (b *box) githubContext(event string) map[string]string {
	return map[string]string{
		"github.sha": b.sha, "github.repository": "acme/planets", "github.ref_name": "main",
		"github.token": "token", "github.server_url": "https://github.example", "github.run_id": "1",
		"github.event.pull_request.head.sha": b.sha, "github.event_name": event, "github.base_ref": "main",
		"runner.os":                           "Linux",
		"vars.GCP_WORKLOAD_IDENTITY_PROVIDER": "projects/1/locations/global/workloadIdentityPools/p/providers/github",
		"vars.GCP_SERVICE_ACCOUNT":            "deploy@p.iam.gserviceaccount.com", "vars.GCP_PREVIEW_SERVICE_ACCOUNT": "preview@p.iam.gserviceaccount.com",
		"vars.PULUMI_STATE_BUCKET": "acme-state", "secrets.PULUMI_ACCESS_TOKEN": "",
		"secrets.PULUMI_CONFIG_PASSPHRASE": "correct horse battery staple",
	}
}

// TestRunnerInABox runs, in one box: the hermetic gate as GitHub's test job
// (pull-request.yml's; deploy.yml's is the same steps) and GitLab's test
// job; then, with the cloud stubbed, GitHub's preview job, deploy job and
// comment job, and GitLab's preview, comment and deploy scripts.
func TestRunnerInABox(t *testing.T) {
	b := newBox(t)
	pr, deploy := loadWorkflow(t, "pull-request.yml"), loadWorkflow(t, "deploy.yml")
	prTest, deployTest := pr.job(t, "test"), deploy.job(t, "test")
	if a, d := nodeText(t, &prTest.node), nodeText(t, &deployTest.node); a != d {
		t.Errorf("the test jobs of pull-request.yml and deploy.yml differ; the box runs only the first:\n%s\n---\n%s", a, d)
	}
	defer func() {
		if t.Failed() {
			t.Logf("the box's log:\n%s", b.log.String())
		}
	}()

	t.Run("github/test", func(t *testing.T) {
		b.t = t
		started := time.Now()
		res := b.ghJob(pr, "test", b.githubContext("pull_request"), b.ghUses)
		t.Logf("the hermetic gate in the box: %.0f s", time.Since(started).Seconds())
		if res.failed != "" {
			t.Fatalf("the test job failed in the box: %s", res.failed)
		}
	})

	srv := httptest.NewServer(&modelServer{label: heldOutLabel, fingerprint: boxFingerprint})
	defer srv.Close()
	world := fmt.Sprintf(`{"main": [%q], "messages": {}, "passed": [%q]}`, b.sha, b.sha)

	t.Run("github/preview", func(t *testing.T) {
		b.t = t
		calls := b.cloudStubs(srv.URL, world)
		res := b.ghJob(pr, "preview", b.githubContext("pull_request"), b.ghUses)
		if res.failed != "" {
			t.Fatalf("the preview job failed in the box: %s", res.failed)
		}
		body := res.outputs["comment"]["body"]
		if !strings.HasPrefix(body, "<!-- pulumi-preview: mlops/dev -->") || !strings.Contains(body, ":white_check_mark: succeeded") || !strings.Contains(body, "15 unchanged") {
			t.Errorf("comment body:\n%s", body)
		}
		log, _ := os.ReadFile(calls)
		if !strings.Contains(string(log), "pulumi preview --stack dev") || strings.Contains(string(log), "pulumi up") {
			t.Errorf("cloud calls:\n%s", log)
		}
		if _, err := os.Stat(filepath.Join(b.clone, "bin", "mlops")); err != nil {
			t.Errorf("the program was not built: %v", err)
		}
		// The comment job, with the preview's text.
		b.stub("gh", fakeGitHubComments)
		store := filepath.Join(b.dir, "runner-temp", "comments.json")
		_ = os.WriteFile(store, []byte("[]"), 0o666)
		if b.uid >= 0 {
			_ = os.Chown(store, b.uid, b.gid)
		}
		ctx := b.githubContext("pull_request")
		ctx["needs.test.result"], ctx["needs.preview.outputs.comment"] = "success", body
		ctx["github.event.pull_request.number"] = "7"
		b.env = append(b.env, "COMMENTS_FILE="+store)
		if res := b.ghJob(pr, "comment", ctx, b.ghUses); res.failed != "" {
			t.Fatalf("the comment job failed in the box: %s", res.failed)
		}
		if got, _ := os.ReadFile(store); !strings.Contains(string(got), "15 unchanged") {
			t.Errorf("comments: %s", got)
		}
	})

	t.Run("github/deploy", func(t *testing.T) {
		b.t = t
		b.stub("gh", fakeGitHubHistory)
		calls := b.cloudStubs(srv.URL, world)
		b.env = append(b.env, "WORLD="+filepath.Join(b.dir, "runner-temp", "world.json"))
		res := b.ghJob(deploy, "deploy", b.githubContext("push"), b.ghUses)
		if res.failed != "" {
			t.Fatalf("the deploy job failed in the box: %s", res.failed)
		}
		if got := res.outputs["target"]["sha"]; got != b.sha {
			t.Errorf("target %q, want the tip %s", got, b.sha)
		}
		log, _ := os.ReadFile(calls)
		if !strings.Contains(string(log), "pulumi up --stack dev --yes") {
			t.Errorf("cloud calls:\n%s", log)
		}
		// On the tip only the second checkout (of another commit) is skipped.
		for i, o := range res.outcomes {
			if (o == "skipped") != (i == 2) {
				t.Errorf("step %d: %s (outcomes %v); want only step 2, the checkout of another commit, skipped", i, o, res.outcomes)
			}
		}
	})

	t.Run("gitlab", func(t *testing.T) {
		b.t = t
		ci := loadGitLab(t)
		vars := []string{"GITLAB_CI=true", "CI_PROJECT_DIR=" + b.clone, "CI_COMMIT_SHA=" + b.sha, "CI_COMMIT_BRANCH=main",
			"CI_DEFAULT_BRANCH=main", "CI_REPOSITORY_URL=" + b.remote, "CI_PIPELINE_ID=99", "CI_PIPELINE_URL=https://gitlab.example/p/99",
			"PATH=" + b.stubs + ":" + b.goBin + ":/usr/local/bin:/usr/bin:/bin"}
		for k, v := range ci.vars {
			vars = append(vars, k+"="+strings.ReplaceAll(v, "$CI_PROJECT_DIR", b.clone))
		}
		// The test job: GitLab runs before_script and script as one shell.
		test := ci.job(t, "test")
		started := time.Now()
		out, code := b.run(strings.Join(append(slices.Clone(test.BeforeScript), test.Script...), "\n"), 40*time.Minute, vars...)
		t.Logf("GitLab's test job in the box: %.0f s", time.Since(started).Seconds())
		if code != 0 {
			t.Fatalf("GitLab's test job failed in the box (exit %d):\n%s", code, tailOf(out, 4000))
		}
		// preview and deploy: their scripts, after the before_script's
		// installers (network) and keyless login (cloud), which the stubs
		// stand for.
		b.cloudStubs(srv.URL, "")
		for _, name := range []string{"preview", "deploy"} {
			j := ci.job(t, name)
			env := append(slices.Clone(vars), "PULUMI_CONFIG_PASSPHRASE=correct horse battery staple")
			for k, v := range j.Variables {
				env = append(env, k+"="+strings.ReplaceAll(v, "$CI_PROJECT_DIR", b.clone))
			}
			out, code := b.run(strings.Join(j.Script, "\n"), 15*time.Minute, env...)
			if code != 0 {
				t.Errorf("GitLab's %s script failed in the box (exit %d):\n%s", name, code, tailOf(out, 4000))
			}
			if len(j.AfterScript) > 0 {
				if out, code := b.run(strings.Join(j.AfterScript, "\n"), 5*time.Minute, append(env, "CI_JOB_STATUS=success")...); code != 0 {
					t.Errorf("GitLab's %s after_script failed in the box (exit %d):\n%s", name, code, tailOf(out, 4000))
				}
			}
		}
		// The comment job without its token: it says so and passes.
		j := ci.job(t, "comment")
		out, code = b.run(strings.Join(j.Script, "\n"), time.Minute, vars...)
		if code != 0 || !strings.Contains(out, "set the CI/CD variable GITLAB_PREVIEW_TOKEN") {
			t.Errorf("GitLab's comment job without a token: exit %d:\n%s", code, out)
		}
	})
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
