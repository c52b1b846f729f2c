package pipelines

// The scripts the pipelines run, run here: the step scripts that decide
// whether a deploy goes ahead, and the hack/ scripts both pipelines share.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/planets-mlops/deploy/internal/testenv"
	"gopkg.in/yaml.v3"
)

// requireTool: a command the script needs, which both test tiers install
// (testenv.NeedCommand: missing, the test fails when a tier is set).
func requireTool(t *testing.T, name string) {
	t.Helper()
	testenv.NeedCommand(t, name)
}

// runBash runs a script with bash -eo pipefail (GitHub's shell: bash, and
// GitLab's before_script sets it) in dir, with env added to the test's
// environment. It returns the combined output and the exit code.
func runBash(t *testing.T, dir, script string, env ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("running bash: %v", err)
	return "", -1
}

func repoPath(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGitHubPassphraseOnlyInPulumiSteps: the passphrase reaches the steps
// that run pulumi (preview, up, stack output) and no other step, job or
// workflow; the first of them checks it is not empty before anything runs.
func TestGitHubPassphraseOnlyInPulumiSteps(t *testing.T) {
	for _, f := range workflowFiles(t) {
		w := loadWorkflow(t, f)
		if _, ok := w.Env["PULUMI_CONFIG_PASSPHRASE"]; ok {
			t.Errorf("%s: PULUMI_CONFIG_PASSPHRASE in the workflow's env", f)
		}
		for name, j := range w.Jobs {
			if _, ok := j.Env["PULUMI_CONFIG_PASSPHRASE"]; ok {
				t.Errorf("%s job %s: PULUMI_CONFIG_PASSPHRASE in the job's env; give it to the pulumi steps only", f, name)
			}
			for i, s := range j.Steps {
				runsPulumi := false
				for _, c := range pulumiCommands(s.Run) {
					if sub := subcommand(c); sub != "login" && sub != "version" {
						runsPulumi = true
					}
				}
				has := s.Env["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
				if has != runsPulumi {
					t.Errorf("%s job %s step %d (%s): passphrase %v, runs pulumi %v; want the passphrase exactly where pulumi runs", f, name, i, s.Name, has, runsPulumi)
				}
				for _, c := range pulumiCommands(s.Run) {
					if sub := subcommand(c); sub == "preview" || sub == "up" {
						checkPassphraseFirst(t, fmt.Sprintf("%s job %s step %d", f, name, i), s.Run)
					}
				}
			}
		}
	}
}

// checkPassphraseFirst: the script runs hack/check-passphrase.sh dev
// before its first pulumi command.
func checkPassphraseFirst(t *testing.T, where, script string) {
	t.Helper()
	check := strings.Index(script, "hack/check-passphrase.sh dev")
	first := regexp.MustCompile(`(?m)^\s*pulumi (preview|up)\b`).FindStringIndex(script)
	if check < 0 || first == nil || check > first[0] {
		t.Errorf("%s: does not run hack/check-passphrase.sh dev before pulumi:\n%s", where, script)
	}
}

func TestGitLabPassphraseCheckedFirst(t *testing.T) {
	ci := loadGitLab(t)
	for _, name := range []string{"preview", "deploy"} {
		checkPassphraseFirst(t, ".gitlab-ci.yml job "+name, strings.Join(ci.job(t, name).Script, "\n"))
	}
}

// TestCheckPassphrase runs hack/check-passphrase.sh against stack files of
// the passphrase provider and of another provider.
func TestCheckPassphrase(t *testing.T) {
	script, err := os.ReadFile(repoPath(t, "hack/check-passphrase.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, stackFile, passphrase string
		github                      bool
		fails                       bool
	}{
		{"passphrase stack, empty", "encryptionsalt: v1:abc:def\nconfig: {}\n", "", false, true},
		{"passphrase stack, empty, on GitHub", "encryptionsalt: v1:abc:def\n", "", true, true},
		{"passphrase stack, set", "encryptionsalt: v1:abc:def\n", "correct horse", false, false},
		{"KMS stack, empty", "secretsprovider: gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k\nencryptedkey: abc\n", "", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "hack"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "hack", "check-passphrase.sh"), script, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "Pulumi.dev.yaml"), []byte(tc.stackFile), 0o644); err != nil {
				t.Fatal(err)
			}
			env := []string{"PULUMI_CONFIG_PASSPHRASE=" + tc.passphrase, "PULUMI_CONFIG_PASSPHRASE_FILE=", "GITHUB_ACTIONS="}
			if tc.github {
				env[2] = "GITHUB_ACTIONS=true"
			}
			out, code := runBash(t, dir, "hack/check-passphrase.sh dev", env...)
			if (code != 0) != tc.fails {
				t.Fatalf("exit %d, fails want %v:\n%s", code, tc.fails, out)
			}
			if tc.fails {
				for _, want := range []string{"PULUMI_CONFIG_PASSPHRASE is empty", "README.md#continuous-deployment"} {
					if !strings.Contains(out, want) {
						t.Errorf("message lacks %q:\n%s", want, out)
					}
				}
				if tc.github != strings.HasPrefix(out, "::error::") {
					t.Errorf("GitHub annotation %v, want %v:\n%s", !tc.github, tc.github, out)
				}
			} else if out != "" {
				t.Errorf("prints %q on success", out)
			}
		})
	}
}

// TestGitHubDeploySkipsAnOlderCommit runs the deploy job's first step, in
// the concurrency group, with the tip the GitHub API reports (gh is a
// stand-in answering as the API would: the API is not reachable here), and
// checks that every later step only runs on the tip.
func TestGitHubDeploySkipsAnOlderCommit(t *testing.T) {
	j := loadWorkflow(t, "deploy.yml").job(t, "deploy")
	i, tip, ok := j.stepWithID("tip")
	if !ok || i != 0 {
		t.Fatalf("deploy job: the tip check (id tip) is step %d, want the first", i)
	}
	if tip.Env["GH_TOKEN"] != "${{ github.token }}" || tip.Env["BRANCH"] != "${{ github.ref_name }}" {
		t.Errorf("tip step env %v", tip.Env)
	}
	for k, s := range j.Steps[1:] {
		if s.If != "steps.tip.outputs.latest == 'true'" {
			t.Errorf("step %d (%s %s): if %q; want it to run only on the tip", k+1, s.Name, s.Uses, s.If)
		}
	}
	const newer, older = "2c1d7e0b5a6f4d3c2b1a09f8e7d6c5b4a3928170", "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807"
	stubs := t.TempDir()
	gh := `#!/usr/bin/env bash
[[ "$*" == "api repos/acme/planets/commits/main --jq .sha" && $GH_TOKEN == token ]] || { echo "unexpected gh $*" >&2; exit 1; }
echo ` + newer + "\n"
	if err := os.WriteFile(filepath.Join(stubs, "gh"), []byte(gh), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ sha, want string }{{newer, "latest=true\n"}, {older, "latest=false\n"}} {
		output := filepath.Join(t.TempDir(), "output")
		out, code := runBash(t, t.TempDir(), tip.Run, "PATH="+stubs+":"+os.Getenv("PATH"),
			"GH_TOKEN=token", "BRANCH=main", "GITHUB_REPOSITORY=acme/planets", "GITHUB_SHA="+tc.sha, "GITHUB_OUTPUT="+output)
		got, _ := os.ReadFile(output)
		if code != 0 || string(got) != tc.want {
			t.Errorf("commit %s: exit %d, output %q, want %q (a skip is a success):\n%s", tc.sha[:7], code, got, tc.want, out)
		}
	}
}

// TestGitLabDeploySkipsAnOlderCommit runs the deploy job's first script
// entry against a real git remote whose main moved on.
func TestGitLabDeploySkipsAnOlderCommit(t *testing.T) {
	requireTool(t, "git")
	j := loadGitLab(t).job(t, "deploy")
	if len(j.Script) == 0 || !strings.Contains(j.Script[0], `git ls-remote "$CI_REPOSITORY_URL" "refs/heads/$CI_COMMIT_BRANCH"`) {
		t.Fatalf("deploy job: the first script entry does not compare the commit with the branch's tip:\n%q", j.Script)
	}
	dir := t.TempDir()
	remote := filepath.Join(dir, "remote.git")
	work := filepath.Join(dir, "work")
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "init.defaultBranch=main"}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "--bare", remote)
	git("init", "-q", work)
	git("-C", work, "commit", "-q", "--allow-empty", "-m", "older")
	older := git("-C", work, "rev-parse", "HEAD")
	git("-C", work, "commit", "-q", "--allow-empty", "-m", "newer")
	newer := git("-C", work, "rev-parse", "HEAD")
	git("-C", work, "push", "-q", remote, "HEAD:refs/heads/main")

	for _, tc := range []struct {
		sha    string
		deploy bool
	}{{newer, true}, {older, false}} {
		out, code := runBash(t, dir, j.Script[0]+"\necho DEPLOYING",
			"CI_REPOSITORY_URL="+remote, "CI_COMMIT_BRANCH=main", "CI_COMMIT_SHA="+tc.sha)
		if code != 0 || strings.Contains(out, "DEPLOYING") != tc.deploy {
			t.Errorf("commit %s: exit %d, deploys %v, want %v (a skip is a success):\n%s", tc.sha[:7], code, !tc.deploy, tc.deploy, out)
		}
	}
}

// modelServer is a real HTTP server on 127.0.0.1 that answers like the model
// server: /readyz (503 until it has been asked notReadyFor times), /predict
// (a multipart "file"). It records what it was sent.
type modelServer struct {
	notReadyFor int
	label       string
	predictCode int

	mu      sync.Mutex
	readyz  int
	gotFile []byte
}

func (m *modelServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/readyz":
		m.readyz++
		if m.readyz <= m.notReadyFor {
			http.Error(w, "model not loaded", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	case r.Method == http.MethodPost && r.URL.Path == "/predict":
		f, _, err := r.FormFile("file")
		if err != nil {
			http.Error(w, `{"detail":"no file"}`, http.StatusUnprocessableEntity)
			return
		}
		m.gotFile, _ = io.ReadAll(f)
		if m.predictCode != 0 {
			http.Error(w, `{"detail":"model exploded"}`, m.predictCode)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"prediction": m.label, "probabilities": map[string]float64{m.label: 0.98}})
	default:
		http.NotFound(w, r)
	}
}

// heldOutImage and heldOutLabel are what both pipelines check a deploy with.
const (
	heldOutImage = "model/testdata/parity/original_128.jpg"
	heldOutLabel = "Earth"
)

// TestCheckEndpoint runs hack/check-endpoint.sh against a local server.
func TestCheckEndpoint(t *testing.T) {
	requireTool(t, "curl")
	image := repoPath(t, heldOutImage)
	want, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		server   *modelServer
		ok       bool
		readyz   int
		messages []string
	}{
		{"ready after two tries, right label", &modelServer{notReadyFor: 2, label: "Earth"}, true, 3, []string{`labels ` + image + ` "Earth", as expected`}},
		{"wrong label", &modelServer{label: "Mars"}, false, 1, []string{`labelled ` + image + ` "Mars", expected "Earth"`, `{"prediction":"Mars","probabilities":{"Mars":0.98}}`}},
		{"never ready", &modelServer{notReadyFor: 100, label: "Earth"}, false, 4, []string{"did not answer 200 after 4 attempts", "(503)", "model not loaded"}},
		{"predict fails", &modelServer{label: "Earth", predictCode: 500}, false, 1, []string{"answered 500", "model exploded"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.server)
			defer srv.Close()
			out, code := runBash(t, repoPath(t, "."), `hack/check-endpoint.sh "$ENDPOINT" "$IMAGE" Earth`,
				"ENDPOINT="+srv.URL, "IMAGE="+image, "CHECK_ATTEMPTS=4", "CHECK_DELAY=0")
			if (code == 0) != tc.ok {
				t.Fatalf("exit %d, want success %v:\n%s", code, tc.ok, out)
			}
			for _, m := range tc.messages {
				if !strings.Contains(out, m) {
					t.Errorf("output lacks %q:\n%s", m, out)
				}
			}
			tc.server.mu.Lock()
			defer tc.server.mu.Unlock()
			if tc.server.readyz != tc.readyz {
				t.Errorf("/readyz asked %d times, want %d", tc.server.readyz, tc.readyz)
			}
			if tc.server.notReadyFor < tc.readyz && !bytes.Equal(tc.server.gotFile, want) {
				t.Errorf("/predict got %d bytes as file, want the %d bytes of %s", len(tc.server.gotFile), len(want), heldOutImage)
			}
		})
	}
	t.Run("nothing listening", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		out, code := runBash(t, repoPath(t, "."), `hack/check-endpoint.sh "$ENDPOINT" "$IMAGE" Earth`,
			"ENDPOINT="+url, "IMAGE="+image, "CHECK_ATTEMPTS=2", "CHECK_DELAY=0")
		if code == 0 || !strings.Contains(out, "answered 000") {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
	t.Run("bad arguments", func(t *testing.T) {
		for _, args := range []string{"", "ftp://x " + image + " Earth", "http://127.0.0.1:9 /nonexistent.jpg Earth"} {
			if out, code := runBash(t, repoPath(t, "."), "hack/check-endpoint.sh "+args); code != 2 {
				t.Errorf("%q: exit %d, want 2:\n%s", args, code, out)
			}
		}
	})
}

// TestBothPipelinesCheckEveryDeploy: after `pulumi up`, both deploy jobs
// run hack/check-endpoint.sh on the endpoint output with the same held-out
// image and the label the model gave it when the fixtures were made.
func TestBothPipelinesCheckEveryDeploy(t *testing.T) {
	var expected struct {
		Images []struct{ File, Prediction string } `json:"images"`
	}
	if err := json.Unmarshal([]byte(readFile(t, "model/testdata/parity/expected.json")), &expected); err != nil {
		t.Fatal(err)
	}
	label := ""
	for _, im := range expected.Images {
		if im.File == filepath.Base(heldOutImage) {
			label = im.Prediction
		}
	}
	if label != heldOutLabel {
		t.Errorf("expected.json labels %s %q, the pipelines expect %q", heldOutImage, label, heldOutLabel)
	}
	// original_128.jpg is heldout.txt's first image, byte for byte
	// (training/make_fixtures.py): a held-out image of that class.
	first := strings.Fields(readFile(t, "model/artifacts/heldout.txt"))[0]
	if !strings.Contains(first, "/"+heldOutLabel+"/") {
		t.Errorf("heldout.txt's first image %s is not of class %s", first, heldOutLabel)
	}
	check := `hack/check-endpoint.sh "$%s" ` + heldOutImage + " " + heldOutLabel

	j := loadWorkflow(t, "deploy.yml").job(t, "deploy")
	up := -1
	for i, s := range j.Steps {
		for _, c := range pulumiCommands(s.Run) {
			if subcommand(c) == "up" {
				up = i
			}
		}
	}
	oi, outputs, _ := j.stepWithID("outputs")
	last := j.Steps[len(j.Steps)-1]
	if last.Run != fmt.Sprintf(check, "ENDPOINT") || last.Env["ENDPOINT"] != "${{ steps."+outputs.ID+".outputs.endpoint }}" || oi < up || up < 0 {
		t.Errorf("deploy.yml: the last step is %+v; want %q with ENDPOINT from the outputs step, after pulumi up", last, fmt.Sprintf(check, "ENDPOINT"))
	}
	script := loadGitLab(t).job(t, "deploy").Script
	if got := script[len(script)-1]; got != fmt.Sprintf(check, "endpoint") {
		t.Errorf(".gitlab-ci.yml deploy: the last script entry is %q, want %q", got, fmt.Sprintf(check, "endpoint"))
	}
}

// TestPreviewCommentFence: the preview's text, which the pull request
// controls, cannot close the code block it is shown in.
func TestPreviewCommentFence(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, report, admin, outcome string
		wantFence                    int
		wants                        []string
	}{
		{"plain", "+ 1 to create\n", "", "success", 3, []string{":white_check_mark: succeeded"}},
		{"backticks in the text", "a ``` b\n```\n</details>\n`````\n# injected heading\n", "", "failure", 6, []string{":x: failed"}},
		{"admin changes", "~ 1 to update\n", "- the node pool: `cluster-pool` (`gcp:container/nodePool:NodePool`), update\n", "success",
			3, []string{"**Needs an admin before merging.**", "- the node pool: `cluster-pool`"}},
		{"no outcome", "", "", "", 3, []string{"did not run"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runBash(t, repoPath(t, "."), `hack/preview-comment.sh "$REPORT" "$ADMIN"`,
				"REPORT="+write("report.txt", tc.report), "ADMIN="+write("admin.md", tc.admin),
				"OUTCOME="+tc.outcome, "HEAD_SHA=3f9c2e1aaaaaaa", "RUN_URL=https://ci.example/run/1")
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, out)
			}
			if !strings.HasPrefix(out, "<!-- pulumi-preview: mlops/dev -->\n") || !strings.Contains(out, "Commit 3f9c2e1 ·") {
				t.Errorf("no marker first or no short commit:\n%s", out)
			}
			for _, w := range tc.wants {
				if !strings.Contains(out, w) {
					t.Errorf("comment lacks %q:\n%s", w, out)
				}
			}
			open := regexp.MustCompile("(?m)^(`{3,})diff$").FindStringSubmatchIndex(out)
			if open == nil {
				t.Fatalf("no opening fence:\n%s", out)
			}
			fence := out[open[2]:open[3]]
			if len(fence) != tc.wantFence {
				t.Errorf("fence of %d backticks, want %d", len(fence), tc.wantFence)
			}
			body := out[open[1]+1:]
			end := strings.Index(body, "\n"+fence+"\n")
			if end < 0 || strings.TrimSuffix(body[:end+1], "\n") != strings.TrimSuffix(tc.report, "\n") {
				t.Errorf("the block does not hold exactly the report:\n%s", out)
			}
			// CommonMark closes a fence only with at least as many backticks.
			if strings.Contains(body[:end], fence) {
				t.Errorf("the report contains the fence %s:\n%s", fence, out)
			}
		})
	}
	t.Run("long report", func(t *testing.T) {
		out, code := runBash(t, repoPath(t, "."), `hack/preview-comment.sh "$REPORT" "$ADMIN"`,
			"REPORT="+write("long.txt", strings.Repeat("x", 99)+"\n"+strings.Repeat("~ update\n", 20000)+"Resources: 1 to update\n"),
			"ADMIN="+write("none.md", ""), "OUTCOME=success")
		if code != 0 || len(out) > 65536 || !strings.Contains(out, "Resources: 1 to update") {
			t.Errorf("exit %d, %d bytes (max 65536), keeps the end %v", code, len(out), strings.Contains(out, "Resources: 1 to update"))
		}
	})
}

// TestPreviewsListAdminChanges: both previews write the engine's event log
// and read the changes that need an admin from it.
func TestPreviewsListAdminChanges(t *testing.T) {
	j := loadWorkflow(t, "pull-request.yml").job(t, "preview")
	pi, preview, _ := j.stepWithID("preview")
	if !strings.Contains(preview.Run, `--event-log "$RUNNER_TEMP/events.jsonl"`) {
		t.Errorf("the preview step writes no event log:\n%s", preview.Run)
	}
	ai := -1
	for i, s := range j.Steps {
		if strings.Contains(s.Run, `go run ./hack/admin-changes < "$RUNNER_TEMP/events.jsonl" > "$RUNNER_TEMP/admin.md"`) {
			ai = i
			if !strings.HasPrefix(s.If, "${{ !cancelled()") {
				t.Errorf("admin changes step if %q: want it also after a failed preview", s.If)
			}
		}
	}
	ci, _, _ := j.stepWithID("comment")
	if !(pi < ai && ai < ci) {
		t.Errorf("steps: preview %d, admin changes %d, comment text %d; want this order", pi, ai, ci)
	}
	g := loadGitLab(t).job(t, "preview")
	if !strings.Contains(strings.Join(g.Script, "\n"), "--event-log events.jsonl") ||
		!strings.Contains(strings.Join(g.AfterScript, "\n"), "go run ./hack/admin-changes < events.jsonl") {
		t.Errorf(".gitlab-ci.yml preview: script %q, after_script %q; want the event log and hack/admin-changes", g.Script, g.AfterScript)
	}
}

// TestCIToolsKeepsOnlyTheCurrentBuilds runs hack/ci-tools.sh with stand-ins
// for the two installers (which take ~20 min for real and are tested by
// hack/test.sh's own run), in a cache holding builds of older pins.
func TestCIToolsKeepsOnlyTheCurrentBuilds(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	files := map[string]string{
		"hack/toolchain.sh":                         "#!/usr/bin/env bash\nmkdir -p \"$MLOPS_CACHE/toolchain/new/bin\"\necho \"$MLOPS_CACHE/toolchain/new/bin\"\n",
		"model/hack/onnxruntime.sh":                 "#!/usr/bin/env bash\nmkdir -p \"$MLOPS_CACHE/onnxruntime/1.2\"\ntouch \"$MLOPS_CACHE/onnxruntime/1.2/libonnxruntime.so.1\"\necho \"$MLOPS_CACHE/onnxruntime/1.2/libonnxruntime.so.1\"\n",
		"cache/toolchain/old/bin/pulumi":            "old",
		"cache/toolchain/older/bin/pulumi":          "older",
		"cache/onnxruntime/1.1/libonnxruntime.so.1": "old",
		"cache/bin/actionlint-v1.7.12":              "kept",
		"cache/toolchain/new/bin/pulumi":            "current",
	}
	script, err := os.ReadFile(repoPath(t, "hack/ci-tools.sh"))
	if err != nil {
		t.Fatal(err)
	}
	files["hack/ci-tools.sh"] = string(script)
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, code := runBash(t, dir, "hack/ci-tools.sh", "MLOPS_CACHE="+cache); code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for name, kept := range map[string]bool{
		"toolchain/new/bin/pulumi":            true,
		"onnxruntime/1.2/libonnxruntime.so.1": true,
		"bin/actionlint-v1.7.12":              true,
		"toolchain/old":                       false,
		"toolchain/older":                     false,
		"onnxruntime/1.1":                     false,
	} {
		if _, err := os.Stat(filepath.Join(cache, name)); (err == nil) != kept {
			t.Errorf("%s: kept %v, want %v", name, err == nil, kept)
		}
	}
}

// TestGitLabImagePinnedToGoMod: the job image is the exact Go version of
// go.mod (what GitHub's setup-go installs), so the toolchain's cache key
// does not move with every Go patch release.
func TestGitLabImagePinnedToGoMod(t *testing.T) {
	var top struct {
		Default struct {
			Image string `yaml:"image"`
		} `yaml:"default"`
	}
	if err := yamlUnmarshal(readFile(t, ".gitlab-ci.yml"), &top); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+\.\d+)$`).FindStringSubmatch(readFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go line with a patch version")
	}
	if want := "golang:" + m[1] + "-trixie"; top.Default.Image != want && !strings.HasPrefix(top.Default.Image, want+"@sha256:") {
		t.Errorf("default image %q, want %s (optionally @sha256:<digest>)", top.Default.Image, want)
	}
	test := loadGitLab(t).job(t, "test")
	if len(test.Script) < 2 || test.Script[0] != "hack/ci-tools.sh" {
		t.Errorf("test job script %q: want hack/ci-tools.sh (which prunes older builds) first", test.Script)
	}
}

func yamlUnmarshal(text string, v any) error { return yaml.Unmarshal([]byte(text), v) }

// fakeGitHubComments is a stand-in for the `gh api` calls of the comment
// job (GitHub's API is not reachable here), keeping the pull request's
// comments in a JSON file and applying --jq filters with the real jq.
const fakeGitHubComments = `#!/usr/bin/env bash
set -euo pipefail
store=$COMMENTS_FILE
[[ $1 == api ]] || { echo "gh stand-in: unexpected $*" >&2; exit 1; }
shift
method=GET paginate=false filter= input=
while [[ $1 == --* ]]; do
  case $1 in
    --method) method=$2; shift 2 ;;
    --paginate) paginate=true; shift ;;
    --jq) filter=$2; shift 2 ;;
    --input) input=$2; shift 2 ;;
    *) echo "gh stand-in: unexpected flag $1" >&2; exit 1 ;;
  esac
done
path=$1; shift
while (($#)); do
  case $1 in
    --jq) filter=$2; shift 2 ;;
    --input) input=$2; shift 2 ;;
    *) echo "gh stand-in: unexpected argument $1" >&2; exit 1 ;;
  esac
done
echo "$method $path" >> "$COMMENTS_FILE.calls"
case "$method $path" in
  "GET repos/acme/planets/issues/7/comments") jq -r "$filter" "$store" ;;
  "GET repos/acme/planets/issues/comments/"*) jq -r --argjson id "${path##*/}" ".[] | select(.id == \$id) | $filter" "$store" ;;
  "PATCH repos/acme/planets/issues/comments/"*)
    jq --argjson id "${path##*/}" --slurpfile p "$input" 'map(if .id == $id then .body = $p[0].body else . end)' "$store" > "$store.new"
    mv "$store.new" "$store" ;;
  "POST repos/acme/planets/issues/7/comments")
    jq --slurpfile p "$input" '. + [{id: (100 + length), user: {login: "github-actions[bot]"}, body: $p[0].body}]' "$store" > "$store.new"
    mv "$store.new" "$store" ;;
  *) echo "gh stand-in: unexpected $method $path" >&2; exit 1 ;;
esac
`

// TestGitHubCommentJob runs the comment job's script through a sequence of
// pushes: the first preview creates the comment, the next updates it, failed
// tests mark it stale (once, however often they fail), and a new preview
// replaces it again. Another user's comment with the marker is left alone.
func TestGitHubCommentJob(t *testing.T) {
	requireTool(t, "jq")
	script := loadWorkflow(t, "pull-request.yml").job(t, "comment").Steps[0].Run
	dir := t.TempDir()
	store := filepath.Join(dir, "comments.json")
	human := `{"id": 1, "user": {"login": "alice"}, "body": "<!-- pulumi-preview: mlops/dev --> quoted by a human"}`
	if err := os.WriteFile(store, []byte("["+human+"]"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gh"), []byte(fakeGitHubComments), 0o755); err != nil {
		t.Fatal(err)
	}
	const marker = "<!-- pulumi-preview: mlops/dev -->"
	push := func(tests, comment, sha string) string {
		t.Helper()
		out, code := runBash(t, dir, script, "PATH="+dir+":"+os.Getenv("PATH"), "COMMENTS_FILE="+store, "RUNNER_TEMP="+t.TempDir(),
			"GH_TOKEN=token", "GH_REPO=acme/planets", "PR_NUMBER=7", "HEAD_SHA="+sha, "RUN_URL=https://ci.example/run/"+sha[:3],
			"TESTS="+tests, "COMMENT="+comment)
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		return out
	}
	ours := func() []string {
		t.Helper()
		var comments []struct {
			ID   int
			User struct{ Login string }
			Body string
		}
		b, _ := os.ReadFile(store)
		if err := json.Unmarshal(b, &comments); err != nil {
			t.Fatal(err)
		}
		var bodies []string
		for _, c := range comments {
			if c.User.Login == "github-actions[bot]" {
				bodies = append(bodies, strings.TrimRight(c.Body, "\n")+"\n")
			} else if c.Body != `<!-- pulumi-preview: mlops/dev --> quoted by a human` {
				t.Errorf("another user's comment was changed: %q", c.Body)
			}
		}
		return bodies
	}

	if out := push("failure", "", "aaaaaaa1"); !strings.Contains(out, "no earlier preview comment") || len(ours()) != 0 {
		t.Fatalf("failed tests before any preview: %q, comments %q", out, ours())
	}
	first := marker + "\n#### preview of aaaaaaa2\n```diff\n+ create\n```\n"
	push("success", first, "aaaaaaa2")
	if got := ours(); len(got) != 1 || got[0] != first {
		t.Fatalf("after the first preview: %q", got)
	}
	second := marker + "\n#### preview of bbbbbbb1\n"
	push("success", second, "bbbbbbb1")
	if got := ours(); len(got) != 1 || got[0] != second {
		t.Fatalf("after the second preview: %q", got)
	}
	for _, sha := range []string{"ccccccc1", "ddddddd1"} {
		push("failure", "", sha)
		got := ours()
		if len(got) != 1 || !strings.HasPrefix(got[0], marker+"\n> [!CAUTION]\n> **Stale:** the tests failed on commit "+sha[:7]) ||
			!strings.HasSuffix(got[0], "#### preview of bbbbbbb1\n") || strings.Count(got[0], "**Stale:**") != 1 {
			t.Fatalf("after failed tests on %s: %q", sha, got)
		}
	}
	push("success", "", "eeeeeee1") // the preview job died before the comment step
	if got := ours(); len(got) != 1 || !strings.Contains(got[0], "did not run") || strings.Contains(got[0], "Stale") {
		t.Fatalf("after a preview that did not run: %q", got)
	}
	third := marker + "\n#### preview of fffffff1\n"
	push("success", third, "fffffff1")
	if got := ours(); len(got) != 1 || got[0] != third {
		t.Fatalf("after the third preview: %q", got)
	}
}

// TestScriptsPassShellcheck: actionlint shellchecks the GitHub workflows'
// scripts; this does the same for the hack/ scripts both pipelines run and
// for every job script of .gitlab-ci.yml (as GitLab runs them: one bash
// script per job, before_script then script).
func TestScriptsPassShellcheck(t *testing.T) {
	requireTool(t, "shellcheck")
	shellcheck := func(t *testing.T, path string) {
		t.Helper()
		// SC2154: variables GitLab or the environment set are not assigned here.
		if out, err := exec.Command("shellcheck", "--shell=bash", "--exclude=SC2154", path).CombinedOutput(); err != nil {
			t.Errorf("shellcheck %s: %v\n%s", path, err, out)
		}
	}
	for _, name := range []string{"check-endpoint.sh", "check-passphrase.sh", "ci-tools.sh", "preview-comment.sh"} {
		shellcheck(t, repoPath(t, filepath.Join("hack", name)))
	}
	for name, j := range loadGitLab(t).jobs {
		for part, lines := range map[string][]string{"script": append(slices.Clone(j.BeforeScript), j.Script...), "after_script": j.AfterScript} {
			if len(lines) == 0 {
				continue
			}
			p := filepath.Join(t.TempDir(), name+"-"+part+".sh")
			if err := os.WriteFile(p, []byte("#!/usr/bin/env bash\n"+strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			shellcheck(t, p)
		}
	}
}
