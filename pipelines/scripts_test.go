package pipelines

// The scripts the pipelines run, run here: the step scripts that decide
// whether a deploy goes ahead, and the hack/ scripts both pipelines share.

import (
	"bytes"
	"cmp"
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

// fakeGitHubHistory is a stand-in for the `gh api` calls of
// hack/deploy-target.sh (GitHub's API is not reachable here), answering from
// a JSON world: {"main": [oldest ... tip], "messages": {sha: message},
// "passed": [shas whose hermetic gate passed]}, with the real jq.
const fakeGitHubHistory = `#!/usr/bin/env bash
set -euo pipefail
[[ $1 == api ]] || { echo "gh stand-in: unexpected $*" >&2; exit 1; }
shift
filter= fields=() args=()
while (($#)); do
  case $1 in
    --method) [[ $2 == GET ]] || { echo "gh stand-in: only reads" >&2; exit 1; }; shift 2 ;;
    --jq) filter=$2; shift 2 ;;
    -f) fields+=("$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ $GH_TOKEN == token ]] || { echo "gh stand-in: no token" >&2; exit 1; }
path=${args[0]}
case $path in
  repos/acme/planets/commits/main) obj=$(jq '{sha: .main[-1]}' "$WORLD") ;;
  repos/acme/planets/compare/*)
    range=${path#repos/acme/planets/compare/}
    obj=$(jq --arg a "${range%...*}" --arg b "${range#*...}" '. as $w | (.main | index($a)) as $i | (.main | index($b)) as $j |
      if $i == null or $j == null then {status: "diverged", commits: []}
      elif $j > $i then {status: "ahead", commits: [.main[$i+1:$j+1][] | {sha: ., commit: {message: ($w.messages[.] // "a change")}}]}
      elif $j == $i then {status: "identical", commits: []}
      else {status: "behind", commits: []} end' "$WORLD") ;;
  repos/acme/planets/commits/*/check-runs)
    # GitHub's answer: the check runs of that name on the commit, of the
    # app app_id (when given). A passed commit's is GitHub Actions' in the
    # check suite of its push run (id 1000 + its index); "impostors" have a
    # successful check run of the same name from another app (a suite of
    # its own) or from a pull request's run (GitHub Actions, a suite with
    # no push run).
    sha=${path#repos/acme/planets/commits/}
    sha=${sha%/check-runs}
    app=
    for f in "${fields[@]}"; do
      case $f in
        "check_name=tests (hermetic)") ;;
        app_id=*) app=${f#app_id=} ;;
        *) echo "gh stand-in: unexpected field $f" >&2; exit 1 ;;
      esac
    done
    obj=$(jq --arg s "$sha" --arg app "$app" '. as $w | {check_runs: [
        (if (.passed | index($s)) == null then empty else {name: "tests (hermetic)", conclusion: "success", app: {id: 15368, slug: "github-actions"}, check_suite: {id: (1000 + ($w.main | index($s)))}} end),
        (if ($w.impostors // {})[$s] == "other-app" then {name: "tests (hermetic)", conclusion: "success", app: {id: 4242, slug: "acme-ci"}, check_suite: {id: 4242}} else empty end),
        (if ($w.impostors // {})[$s] == "pull-request" then {name: "tests (hermetic)", conclusion: "success", app: {id: 15368, slug: "github-actions"}, check_suite: {id: 7777}} else empty end)
      ] | map(select($app == "" or (.app.id | tostring) == $app))}' "$WORLD") ;;
  repos/acme/planets/actions/workflows/deploy.yml/runs)
    sha= event=
    for f in "${fields[@]}"; do
      case $f in
        head_sha=*) sha=${f#head_sha=} ;;
        event=*) event=${f#event=} ;;
        *) echo "gh stand-in: unexpected field $f" >&2; exit 1 ;;
      esac
    done
    obj=$(jq --arg s "$sha" --arg e "$event" '. as $w | {workflow_runs: [
        (if (.passed | index($s)) == null then empty else {head_sha: $s, event: "push", path: ".github/workflows/deploy.yml", check_suite_id: (1000 + ($w.main | index($s)))} end)
      ] | map(select($e == "" or .event == $e))}' "$WORLD") ;;
  *) echo "gh stand-in: unexpected $path" >&2; exit 1 ;;
esac
jq -r "$filter" <<< "$obj"
`

// deployWorld is a history of main and what each commit's pipeline did.
type deployWorld struct {
	Main     []string          `json:"main"`
	Messages map[string]string `json:"messages"`
	Passed   []string          `json:"passed"`
	// Impostors: commits with a successful check run named like the gate
	// that is not the gate: "other-app" (another GitHub App's) or
	// "pull-request" (GitHub Actions', from a pull request's run).
	Impostors map[string]string `json:"impostors,omitempty"`
}

// githubDeployTarget runs hack/deploy-target.sh github as the deploy job of
// commit own would, in the world w, and returns the sha it picked.
func githubDeployTarget(t *testing.T, w deployWorld, own string) (string, string) {
	t.Helper()
	requireTool(t, "jq")
	dir := t.TempDir()
	world, _ := json.Marshal(w)
	if err := os.WriteFile(filepath.Join(dir, "world.json"), world, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gh"), []byte(fakeGitHubHistory), 0o755); err != nil {
		t.Fatal(err)
	}
	out, code := runBash(t, repoPath(t, "."), "hack/deploy-target.sh github", "PATH="+dir+":"+os.Getenv("PATH"),
		"WORLD="+filepath.Join(dir, "world.json"), "GH_TOKEN=token", "GITHUB_REPOSITORY=acme/planets",
		"GITHUB_SHA="+own, "BRANCH=main", "GATE=tests (hermetic)", "GATE_WORKFLOW=deploy.yml", "GITHUB_ACTIONS=true")
	if code != 0 {
		t.Fatalf("hack/deploy-target.sh github: exit %d:\n%s", code, out)
	}
	m := regexp.MustCompile(`(?m)^sha=(\S*)\nreason=(.+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no sha= and reason= lines:\n%s", out)
	}
	return m[1], m[2]
}

// githubCovered runs hack/deploy-target.sh covered against the world.
func githubCovered(t *testing.T, w deployWorld, deployed, target string) bool {
	t.Helper()
	dir := t.TempDir()
	world, _ := json.Marshal(w)
	_ = os.WriteFile(filepath.Join(dir, "world.json"), world, 0o644)
	_ = os.WriteFile(filepath.Join(dir, "gh"), []byte(fakeGitHubHistory), 0o755)
	out, code := runBash(t, repoPath(t, "."), `hack/deploy-target.sh covered "$DEPLOYED" "$TARGET"`, "PATH="+dir+":"+os.Getenv("PATH"),
		"WORLD="+filepath.Join(dir, "world.json"), "GH_TOKEN=token", "GITHUB_REPOSITORY=acme/planets", "GITHUB_ACTIONS=true",
		"DEPLOYED="+deployed, "TARGET="+target)
	if code > 1 {
		t.Fatalf("covered: exit %d:\n%s", code, out)
	}
	return code == 0
}

// TestGitHubDeployJobPicksItsTarget: the deploy job's steps, in order: the
// run's commit, hack/deploy-target.sh (in the concurrency group), a checkout
// of its pick, and every later step only when it picked one; `pulumi up`
// skips when the stack already runs a newer commit.
func TestGitHubDeployJobPicksItsTarget(t *testing.T) {
	j := loadWorkflow(t, "deploy.yml").job(t, "deploy")
	i, target, ok := j.stepWithID("target")
	if !ok || i != 1 || !strings.HasPrefix(j.Steps[0].Uses, "actions/checkout@") || j.Steps[0].If != "" {
		t.Fatalf("deploy job: the target step (id target) is step %d, want the second, after a checkout of the run's commit", i)
	}
	if target.Run != `hack/deploy-target.sh github | tee -a "$GITHUB_OUTPUT"` || target.Env["GH_TOKEN"] != "${{ github.token }}" ||
		target.Env["BRANCH"] != "${{ github.ref_name }}" || target.Env["GATE"] != loadWorkflow(t, "deploy.yml").job(t, "test").name() ||
		target.Env["GATE_WORKFLOW"] != "deploy.yml" {
		t.Errorf("target step %+v; want hack/deploy-target.sh github with GH_TOKEN, BRANCH, GATE (the test job's name) and GATE_WORKFLOW (this file)", target)
	}
	second := j.Steps[2]
	if !strings.HasPrefix(second.Uses, "actions/checkout@") || second.With["ref"] != "${{ steps.target.outputs.sha }}" ||
		second.If != "steps.target.outputs.sha != '' && steps.target.outputs.sha != github.sha" {
		t.Errorf("step 2 %+v; want a checkout of the target when it is another commit", second)
	}
	for k, s := range j.Steps[3:] {
		if !strings.Contains(s.If, "steps.target.outputs.sha != ''") {
			t.Errorf("step %d (%s %s): if %q; want it to run only when there is a target", k+3, s.Name, s.Uses, s.If)
		}
	}
	var up step
	for _, s := range j.Steps {
		if strings.Contains(s.Run, "pulumi up ") {
			up = s
		}
	}
	if up.Env["TARGET"] != "${{ steps.target.outputs.sha }}" || !strings.Contains(up.Run, `hack/deploy-target.sh covered "$deployed" "$TARGET"`) ||
		strings.Index(up.Run, "covered") > strings.Index(up.Run, "pulumi up ") {
		t.Errorf("pulumi up step: env %v; want it to skip, before `pulumi up`, when the stack already runs a newer commit:\n%s", up.Env, up.Run)
	}
}

func (j job) name() string {
	var n struct {
		Name string `yaml:"name"`
	}
	_ = j.node.Decode(&n)
	return n.Name
}

// TestGitHubNewestCommitAlwaysDeploys walks the interleavings of GitHub's
// concurrency group (one job running, one pending; an arrival cancels the
// pending one) with the real hack/deploy-target.sh: whatever the order in
// which the tests finish, main's newest commit whose tests passed (or the
// [skip ci] commits on top of it) ends up deployed, and nothing older is
// applied over it.
func TestGitHubNewestCommitAlwaysDeploys(t *testing.T) {
	const c1, c2, c3, c4 = "1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222", "3333333333333333333333333333333333333333", "4444444444444444444444444444444444444444"
	for _, tc := range []struct {
		name     string
		world    deployWorld
		arrivals []string // deploy jobs in the order they enter the group
		busy     bool     // a deploy holds the group while they arrive: only the last runs
		want     string   // deployed at the end
	}{
		{"C3 then C2 arriving while C1 deploys: C2 runs and deploys C3",
			deployWorld{Main: []string{c1, c2, c3}, Passed: []string{c1, c2, c3}}, []string{c3, c2}, true, c3},
		{"C3 then C2, each running at once: C2 finds C3 deployed",
			deployWorld{Main: []string{c1, c2, c3}, Passed: []string{c1, c2, c3}}, []string{c3, c2}, false, c3},
		{"a [skip ci] tip: C2 deploys it",
			deployWorld{Main: []string{c1, c2, c3}, Messages: map[string]string{c3: "docs [skip ci]"}, Passed: []string{c1, c2}}, []string{c2}, false, c3},
		{"the tip's tests still running: C2 deploys C2, C3 after",
			deployWorld{Main: []string{c1, c2, c3}, Passed: []string{c1, c2}}, []string{c2}, false, c2},
		{"C4 [ci skip] on C3, C3's run cancelled by C2's",
			deployWorld{Main: []string{c1, c2, c3, c4}, Messages: map[string]string{c4: "[CI SKIP] typo"}, Passed: []string{c1, c2, c3}}, []string{c3, c2}, true, c4},
		{"in order", deployWorld{Main: []string{c1, c2, c3}, Passed: []string{c1, c2, c3}}, []string{c2, c3}, false, c3},
		// A check run named like the gate that is not the gate's: C3's own
		// run is still testing, C2's must not deploy C3 on its word.
		{"C3 has a passing check run of another app only: C2 deploys C2",
			deployWorld{Main: []string{c1, c2, c3}, Passed: []string{c1, c2}, Impostors: map[string]string{c3: "other-app"}}, []string{c2}, false, c2},
		{"C3 has a passing check run of a pull request's run only: C2 deploys C2",
			deployWorld{Main: []string{c1, c2, c3}, Passed: []string{c1, c2}, Impostors: map[string]string{c3: "pull-request"}}, []string{c2}, false, c2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runs := tc.arrivals
			if tc.busy {
				runs = runs[len(runs)-1:] // the others were cancelled while pending
			}
			deployed := c1
			for _, own := range runs {
				target, reason := githubDeployTarget(t, tc.world, own)
				if target == "" {
					t.Logf("%s: %s", own[:7], reason)
					continue
				}
				if githubCovered(t, tc.world, deployed, target) {
					t.Logf("%s: skips %s, the stack runs %s", own[:7], target[:7], deployed[:7])
					continue
				}
				t.Logf("%s: %s", own[:7], reason)
				deployed = target
			}
			if deployed != tc.want {
				t.Errorf("deployed %s at the end, want %s", deployed[:7], tc.want[:7])
			}
		})
	}
	t.Run("main rewritten without the run's commit", func(t *testing.T) {
		if target, reason := githubDeployTarget(t, deployWorld{Main: []string{c1, c3}}, c2); target != "" || !strings.Contains(reason, "does not contain it") {
			t.Errorf("target %q (%s), want none", target, reason)
		}
	})
	t.Run("covered", func(t *testing.T) {
		w := deployWorld{Main: []string{c1, c2, c3}}
		for _, tc := range []struct {
			deployed, target string
			want             bool
		}{{c3, c3, true}, {c3, c2, true}, {c2, c3, false}, {"", c2, false}} {
			if got := githubCovered(t, w, tc.deployed, tc.target); got != tc.want {
				t.Errorf("covered(deployed %.7s, target %.7s) = %v, want %v", tc.deployed, tc.target, got, tc.want)
			}
		}
	})
}

// TestGitLabNewestCommitAlwaysDeploys runs the deploy job's first script
// entry and hack/deploy-target.sh covered against a real git remote: a
// [skip ci] tip is deployed by the pipeline below it; with GitLab's resource
// group (newest first, never cancelled) C3's deploy runs before C2's, which
// then finds C3 deployed and skips; a rewritten branch deploys nothing.
func TestGitLabNewestCommitAlwaysDeploys(t *testing.T) {
	requireTool(t, "git")
	j := loadGitLab(t).job(t, "deploy")
	if len(j.Script) == 0 || !strings.Contains(j.Script[0], "hack/deploy-target.sh gitlab") {
		t.Fatalf("deploy job: the first script entry does not run hack/deploy-target.sh gitlab:\n%q", j.Script)
	}
	covered := slices.IndexFunc(j.Script, func(s string) bool { return strings.Contains(s, `hack/deploy-target.sh covered "$deployed" "$target"`) })
	up := slices.IndexFunc(j.Script, func(s string) bool { return strings.HasPrefix(s, "pulumi up ") })
	if covered < 0 || up < covered {
		t.Errorf("deploy job: covered check at %d, pulumi up at %d; want the check first", covered, up)
	}
	dir := t.TempDir()
	remote := filepath.Join(dir, "remote.git")
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
	author := filepath.Join(dir, "author")
	git("init", "-q", author)
	commit := func(msg string) string {
		git("-C", author, "commit", "-q", "--allow-empty", "-m", msg)
		return git("-C", author, "rev-parse", "HEAD")
	}
	c1, c2, c3 := commit("one"), commit("two"), commit("three")
	git("-C", author, "push", "-q", remote, "HEAD:refs/heads/main")
	// A pipeline's clone of its own commit, as GitLab makes it.
	clone := func(t *testing.T, sha string) string {
		t.Helper()
		work := filepath.Join(t.TempDir(), "clone")
		git("clone", "-q", remote, work)
		git("-C", work, "checkout", "-q", sha)
		return work
	}
	deployTarget := func(t *testing.T, sha string) (string, string) {
		t.Helper()
		work := clone(t, sha)
		// The first entry, with a stand-in PATH entry for the repository's
		// script (the clone holds only empty commits).
		out, code := runBash(t, work, strings.ReplaceAll(j.Script[0], "hack/deploy-target.sh", repoPath(t, "hack/deploy-target.sh"))+"\necho TARGET=$target",
			"CI_REPOSITORY_URL="+remote, "CI_COMMIT_BRANCH=main", "CI_COMMIT_SHA="+sha)
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		m := regexp.MustCompile(`(?m)^TARGET=(\S*)$`).FindStringSubmatch(out)
		head := git("-C", work, "rev-parse", "HEAD")
		if m == nil {
			return "", out // exit 0 before: deploys nothing
		}
		if head != m[1] {
			t.Errorf("the clone is at %s, not at the target %s", head[:7], m[1][:7])
		}
		return m[1], out
	}
	isCovered := func(t *testing.T, deployed, target string) bool {
		out, code := runBash(t, clone(t, target), repoPath(t, "hack/deploy-target.sh")+` covered "$DEPLOYED" "$TARGET"`,
			"CI_REPOSITORY_URL="+remote, "CI_COMMIT_BRANCH=main", "DEPLOYED="+deployed, "TARGET="+target, "GITHUB_ACTIONS=")
		if code > 1 {
			t.Fatalf("covered: exit %d:\n%s", code, out)
		}
		return code == 0
	}

	t.Run("the tip's own pipeline", func(t *testing.T) {
		if got, out := deployTarget(t, c3); got != c3 {
			t.Errorf("target %q, want the tip:\n%s", got, out)
		}
	})
	t.Run("C3 then C2 (newest first): C2 finds C3 deployed", func(t *testing.T) {
		deployed := c1
		for _, own := range []string{c3, c2} {
			target, _ := deployTarget(t, own)
			if target != "" && !isCovered(t, deployed, target) {
				deployed = target
			}
		}
		if deployed != c3 {
			t.Errorf("deployed %s, want C3", deployed[:7])
		}
	})
	c4 := commit("docs only [skip ci]")
	git("-C", author, "push", "-q", remote, "HEAD:refs/heads/main")
	t.Run("a [skip ci] tip: C3's pipeline deploys it", func(t *testing.T) {
		if got, out := deployTarget(t, c3); got != c4 {
			t.Errorf("target %q, want the [skip ci] tip %s:\n%s", got, c4[:7], out)
		}
	})
	t.Run("an older pipeline with a newer one to come: its own commit", func(t *testing.T) {
		if got, out := deployTarget(t, c2); got != c2 {
			t.Errorf("target %q, want C2 (C3's pipeline deploys after it):\n%s", got, out)
		}
	})
	git("-C", author, "reset", "-q", "--hard", c1)
	c5 := commit("rewritten")
	git("-C", author, "push", "-q", "--force", remote, "HEAD:refs/heads/main")
	t.Run("a rewritten branch: nothing", func(t *testing.T) {
		if got, out := deployTarget(t, c3); got != "" || !strings.Contains(out, "does not contain it") {
			t.Errorf("target %q, want none (main is at %s):\n%s", got, c5[:7], out)
		}
	})
}

// modelServer is a real HTTP server on 127.0.0.1 that answers like the model
// server: /readyz (503 until it has been asked notReadyFor times; then
// "modelFingerprint": fingerprint, for staleFor more times oldFingerprint),
// /predict (a multipart "file"; the X-Model-Fingerprint header is
// predictFingerprint, or fingerprint). It records what it was sent.
type modelServer struct {
	notReadyFor        int
	label              string
	predictCode        int
	fingerprint        string
	staleFor           int
	oldFingerprint     string
	predictFingerprint string

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
		ready := map[string]string{"status": "ready"}
		if fp := m.fingerprint; m.readyz <= m.notReadyFor+m.staleFor {
			ready["modelFingerprint"] = m.oldFingerprint
		} else if fp != "" {
			ready["modelFingerprint"] = fp
		}
		_ = json.NewEncoder(w).Encode(ready)
	case r.Method == http.MethodPost && r.URL.Path == "/predict":
		f, _, err := r.FormFile("file")
		if err != nil {
			http.Error(w, `{"detail":"no file"}`, http.StatusUnprocessableEntity)
			return
		}
		m.gotFile, _ = io.ReadAll(f)
		if fp := cmp.Or(m.predictFingerprint, m.fingerprint); fp != "" {
			w.Header().Set("X-Model-Fingerprint", fp)
		}
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
	const fp = "5d41402abc4b"
	for _, tc := range []struct {
		name     string
		server   *modelServer
		ok       bool
		readyz   int
		messages []string
	}{
		{"ready after two tries, right model and label", &modelServer{notReadyFor: 2, label: "Earth", fingerprint: fp}, true, 3, []string{`ready with model ` + fp + ` and labels ` + image + ` "Earth", as expected`}},
		{"the old model drains first", &modelServer{label: "Earth", fingerprint: fp, staleFor: 2, oldFingerprint: "0ld"}, true, 3, []string{`ready with model "0ld", not ` + fp + ` (attempt 2 of 4)`}},
		{"wrong label", &modelServer{label: "Mars", fingerprint: fp}, false, 1, []string{`labelled ` + image + ` "Mars", expected "Earth"`, `{"prediction":"Mars","probabilities":{"Mars":0.98}}`}},
		{"right label, another model", &modelServer{label: "Earth", fingerprint: "0ld"}, false, 4, []string{`serves model "0ld" (its /readyz modelFingerprint), not the stack's modelFingerprint ` + fp}},
		{"right label, a server that names no model", &modelServer{label: "Earth"}, false, 4, []string{`serves model "" (its /readyz modelFingerprint)`}},
		{"ready with the model, /predict answered by another", &modelServer{label: "Earth", fingerprint: fp, predictFingerprint: "0ld"}, false, 1, []string{`/predict was answered by model "0ld" (its X-Model-Fingerprint header)`}},
		{"never ready", &modelServer{notReadyFor: 100, label: "Earth", fingerprint: fp}, false, 4, []string{"did not answer 200 after 4 attempts", "(503)", "model not loaded"}},
		{"predict fails", &modelServer{label: "Earth", fingerprint: fp, predictCode: 500}, false, 1, []string{"answered 500", "model exploded"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.server)
			defer srv.Close()
			out, code := runBash(t, repoPath(t, "."), `hack/check-endpoint.sh "$ENDPOINT" "$IMAGE" Earth `+fp,
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
			if tc.ok && !bytes.Equal(tc.server.gotFile, want) {
				t.Errorf("/predict got %d bytes as file, want the %d bytes of %s", len(tc.server.gotFile), len(want), heldOutImage)
			}
		})
	}
	t.Run("nothing listening", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		out, code := runBash(t, repoPath(t, "."), `hack/check-endpoint.sh "$ENDPOINT" "$IMAGE" Earth `+fp,
			"ENDPOINT="+url, "IMAGE="+image, "CHECK_ATTEMPTS=2", "CHECK_DELAY=0")
		if code == 0 || !strings.Contains(out, "answered 000") {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
	// The program's endpoint for a ClusterIP or NodePort Service is its
	// in-cluster name, which no runner resolves: not an error, not a pass
	// in silence either. No request is made (CHECK_ATTEMPTS=30 and the
	// default delay would take minutes).
	t.Run("a Service inside the cluster", func(t *testing.T) {
		for _, github := range []bool{false, true} {
			out, code := runBash(t, repoPath(t, "."), `hack/check-endpoint.sh http://planet-classifier.live.svc.cluster.local:8080 "$IMAGE" Earth `+fp,
				"IMAGE="+image, fmt.Sprintf("GITHUB_ACTIONS=%v", github))
			wantMsg := "NOT CHECKED: http://planet-classifier.live.svc.cluster.local:8080 is the in-cluster address of a Service of type ClusterIP or NodePort"
			byHand := "kubectl -n live port-forward svc/planet-classifier 8080:8080"
			if code != 0 || !strings.Contains(out, wantMsg) || !strings.Contains(out, byHand) || strings.Contains(out, "::warning::") != github {
				t.Errorf("GitHub %v: exit %d:\n%s", github, code, out)
			}
		}
	})
	t.Run("bad arguments", func(t *testing.T) {
		for _, args := range []string{"", "ftp://x " + image + " Earth " + fp, "http://127.0.0.1:9 /nonexistent.jpg Earth " + fp,
			"http://127.0.0.1:9 " + image + " Earth", "http://127.0.0.1:9 " + image + " Earth 'a b'"} {
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
	check := `hack/check-endpoint.sh "$%s" ` + heldOutImage + " " + heldOutLabel + ` "$%s"`

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
	if last.Run != fmt.Sprintf(check, "ENDPOINT", "FINGERPRINT") || last.Env["ENDPOINT"] != "${{ steps."+outputs.ID+".outputs.endpoint }}" ||
		last.Env["FINGERPRINT"] != "${{ steps."+outputs.ID+".outputs.fingerprint }}" || oi < up || up < 0 ||
		!strings.Contains(outputs.Run, "fingerprint=$(pulumi stack output modelFingerprint --stack dev)") || !strings.Contains(outputs.Run, `echo "fingerprint=$fingerprint"`) {
		t.Errorf("deploy.yml: the last step is %+v; want %q with ENDPOINT and FINGERPRINT (the stack output modelFingerprint) from the outputs step, after pulumi up", last, fmt.Sprintf(check, "ENDPOINT", "FINGERPRINT"))
	}
	script := loadGitLab(t).job(t, "deploy").Script
	if got := script[len(script)-1]; got != fmt.Sprintf(check, "endpoint", "fingerprint") ||
		!strings.Contains(strings.Join(script, "\n"), "fingerprint=$(pulumi stack output modelFingerprint --stack dev)") {
		t.Errorf(".gitlab-ci.yml deploy: the last script entry is %q, want %q after fingerprint=$(pulumi stack output modelFingerprint --stack dev)", got, fmt.Sprintf(check, "endpoint", "fingerprint"))
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
	if len(test.Script) < 2 || test.Script[0] != "hack/deps.sh hermetic" {
		t.Errorf("test job script %q: want hack/deps.sh hermetic (what the image lacks) first", test.Script)
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
	// The preview runs beside the tests: when they fail, it is shown under
	// a warning.
	push("failure", marker+"\n#### preview of ggggggg1\n", "ggggggg1")
	if got := ours(); len(got) != 1 || got[0] != marker+"\n> [!CAUTION]\n> **Tests failed** on commit ggggggg ([logs](https://ci.example/run/ggg)): fix them before merging; main deploys only commits whose tests pass.\n\n#### preview of ggggggg1\n" {
		t.Fatalf("after a preview beside failed tests: %q", got)
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
	for _, name := range []string{"check-endpoint.sh", "check-passphrase.sh", "ci-tools.sh", "deploy-target.sh", "gitlab-note.sh", "gke-auth-plugin.sh", "preview-comment.sh", "program.sh"} {
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

// fakeGitLab is a stand-in for GitLab's API (not reachable here) on
// 127.0.0.1: the pipeline's jobs, the token's user, and a merge request's
// notes, which it keeps. It records the token each request carried.
type fakeGitLab struct {
	testStatus string

	mu     sync.Mutex
	notes  []map[string]any
	tokens map[string]bool
}

func (g *fakeGitLab) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tokens == nil {
		g.tokens = map[string]bool{}
	}
	g.tokens[r.Header.Get("PRIVATE-TOKEN")] = true
	w.Header().Set("Content-Type", "application/json")
	const notes = "/api/v4/projects/7/merge_requests/3/notes"
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v4/projects/7/pipelines/99/jobs":
		_ = json.NewEncoder(w).Encode([]map[string]any{{"name": "preview", "status": "success"}, {"name": "test", "status": g.testStatus}})
	case r.Method == http.MethodGet && r.URL.Path == "/api/v4/user":
		_ = json.NewEncoder(w).Encode(map[string]any{"username": "project_7_bot"})
	case r.Method == http.MethodGet && r.URL.Path == notes:
		if r.URL.Query().Get("page") != "1" {
			_ = json.NewEncoder(w).Encode([]any{})
			return
		}
		_ = json.NewEncoder(w).Encode(g.notes)
	case (r.Method == http.MethodPost && r.URL.Path == notes) || (r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, notes+"/")):
		var body struct{ Body string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Body == "" {
			http.Error(w, `{"message":"body is missing"}`, http.StatusBadRequest)
			return
		}
		if r.Method == http.MethodPost {
			g.notes = append(g.notes, map[string]any{"id": 100 + len(g.notes), "author": map[string]any{"username": "project_7_bot"}, "body": body.Body})
		} else {
			id := strings.TrimPrefix(r.URL.Path, notes+"/")
			for _, n := range g.notes {
				if fmt.Sprint(n["id"]) == id {
					n["body"] = body.Body
				}
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": 1})
	default:
		http.Error(w, `{"message":"404 Not Found"}`, http.StatusNotFound)
	}
}

// TestGitLabNote runs the comment job's script (hack/gitlab-note.sh behind
// it) against a stand-in of GitLab's API: without the token it says so and
// succeeds; with it, the first preview creates the note, the next updates
// it, failed tests put a warning above it, a human's note with the marker is
// left alone, and the token never reaches the log.
func TestGitLabNote(t *testing.T) {
	requireTool(t, "jq")
	requireTool(t, "curl")
	j := loadGitLab(t).job(t, "comment")
	script := strings.Join(j.Script, "\n")
	const token = "glpat-secret-token-value"
	gl := &fakeGitLab{notes: []map[string]any{{"id": 1, "author": map[string]any{"username": "alice"}, "body": "<!-- pulumi-preview: mlops/dev --> quoted"}}}
	srv := httptest.NewServer(gl)
	defer srv.Close()
	run := func(t *testing.T, tokenValue, preview, outcome string) string {
		t.Helper()
		dir := t.TempDir()
		for name, text := range map[string]string{"preview.txt": preview, "admin-changes.md": "", "preview-outcome.txt": outcome + "\n"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(repoPath(t, "hack"), filepath.Join(dir, "hack")); err != nil {
			t.Fatal(err)
		}
		out, code := runBash(t, dir, script, "GITLAB_PREVIEW_TOKEN="+tokenValue, "CI_API_V4_URL="+srv.URL+"/api/v4",
			"CI_PROJECT_ID=7", "CI_PIPELINE_ID=99", "CI_MERGE_REQUEST_IID=3", "CI_COMMIT_SHA=abcdef0123456789",
			"CI_PIPELINE_URL=https://gitlab.example/p/99")
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		if strings.Contains(out, token) {
			t.Errorf("the token is in the log:\n%s", out)
		}
		return out
	}
	ours := func() []string {
		gl.mu.Lock()
		defer gl.mu.Unlock()
		var bodies []string
		for _, n := range gl.notes {
			if n["author"].(map[string]any)["username"] == "project_7_bot" {
				bodies = append(bodies, n["body"].(string))
			} else if n["body"] != "<!-- pulumi-preview: mlops/dev --> quoted" {
				t.Errorf("a human's note was changed: %v", n["body"])
			}
		}
		return bodies
	}

	if out := run(t, "", "+ 1 to create\n", "success"); !strings.Contains(out, "No merge request note: set the CI/CD variable GITLAB_PREVIEW_TOKEN") || len(ours()) != 0 {
		t.Fatalf("without a token: %q, notes %q", out, ours())
	}
	gl.testStatus = "success"
	run(t, token, "+ 1 to create\n", "success")
	if got := ours(); len(got) != 1 || !strings.HasPrefix(got[0], "<!-- pulumi-preview: mlops/dev -->\n#### :tropical_drink:") ||
		!strings.Contains(got[0], ":white_check_mark: succeeded") || !strings.Contains(got[0], "+ 1 to create") || strings.Contains(got[0], "Tests failed") {
		t.Fatalf("after the first preview: %q", got)
	}
	gl.testStatus = "failed"
	run(t, token, "~ 1 to update\n", "failed")
	if got := ours(); len(got) != 1 || !strings.HasPrefix(got[0], "<!-- pulumi-preview: mlops/dev -->\n> [!caution]\n> **Tests failed** on commit abcdef0") ||
		!strings.Contains(got[0], "the test job is failed") || !strings.Contains(got[0], ":x: failed") || !strings.Contains(got[0], "~ 1 to update") {
		t.Fatalf("after a second push with failed tests: %q", got)
	}
	if !gl.tokens[token] || len(gl.tokens) != 1 {
		t.Errorf("tokens sent: %v, want only the variable's", gl.tokens)
	}
}

// TestProgramScript runs hack/program.sh (Pulumi.yaml's runtime binary) on a
// small program of its own: it builds bin/mlops and execs it with the
// arguments and environment the language host gave; a second run links
// nothing when nothing changed (so CI's build step is the one build of the
// job), and a change is built.
func TestProgramScript(t *testing.T) {
	dir := t.TempDir()
	script, err := os.ReadFile(repoPath(t, "hack/program.sh"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"hack/program.sh": string(script),
		"go.mod":          "module example.com/program\n\ngo 1.22\n",
		"main.go":         "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() { fmt.Println(\"one\", os.Args[1:], os.Getenv(\"PULUMI_MONITOR\")) }\n",
	}
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// runIt returns the program's output and whether go linked it (GOFLAGS=-x
	// lists the commands go runs on stderr); announced says whether the
	// script said, before building, that the first build takes minutes.
	var announced bool
	runIt := func() (string, bool) {
		t.Helper()
		// The language host may start it from elsewhere.
		out, code := runBash(t, t.TempDir(), `"$PROGRAM" --flag 2> "$LOG"`, "PROGRAM="+filepath.Join(dir, "hack", "program.sh"),
			"PULUMI_MONITOR=127.0.0.1:1", "GOFLAGS=-x", "LOG="+filepath.Join(dir, "go.log"))
		log, _ := os.ReadFile(filepath.Join(dir, "go.log"))
		if code != 0 {
			t.Fatalf("exit %d:\n%s\n%s", code, out, log)
		}
		announced = strings.HasPrefix(string(log), "hack/program.sh: compiling the Pulumi program into bin/mlops the first time (go build; about ")
		return out, regexp.MustCompile(`(?m)/link -o `).Match(log)
	}
	if out, linked := runIt(); out != "one [--flag] 127.0.0.1:1\n" || !linked || !announced {
		t.Errorf("first run: output %q, linked %v, announced %v; want the program's own output, with its arguments and environment, after one line on stderr saying the first build takes minutes", out, linked, announced)
	}
	if out, linked := runIt(); linked || !strings.HasPrefix(out, "one ") || announced {
		t.Errorf("second run, nothing changed: linked %v (output %q), announced %v; want no link and no announcement", linked, out, announced)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(strings.Replace(files["main.go"], `"one"`, `"two"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, linked := runIt(); !strings.HasPrefix(out, "two ") || !linked {
		t.Errorf("after a change: %q (linked %v), want the new code", out, linked)
	}
}

// TestAlreadyDeployedCountsUpdatesOnly runs both deploy jobs' "already
// deployed?" line against stack histories in pulumi's `stack history
// --json` shape (kind, result, environment; newest first): only a
// successful update from a clean tree says what runs. A refresh, import or
// preview at a newer commit must not make CI skip a real deploy; after a
// destroy, a dirty tree's update or one without git.head, nothing counts as
// deployed, so the target deploys.
func TestAlreadyDeployedCountsUpdatesOnly(t *testing.T) {
	requireTool(t, "jq")
	const c1, c2, c3 = "1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222", "3333333333333333333333333333333333333333"
	entry := func(kind, result, head string, dirty bool) map[string]any {
		env := map[string]string{"exec.kind": "cli"}
		if head != "" {
			env["git.head"] = head
			env["git.dirty"] = fmt.Sprint(dirty)
		}
		return map[string]any{"version": 7, "kind": kind, "startTime": "2026-12-07T10:00:00Z", "message": "m", "environment": env, "config": map[string]any{}, "result": result}
	}
	type history = []map[string]any
	cases := []struct {
		name    string
		history history
		want    string
	}{
		{"an admin's refresh at a newer commit", history{entry("refresh", "succeeded", c3, false), entry("update", "succeeded", c1, false)}, c1},
		{"an import at a newer commit", history{entry("import", "succeeded", c3, false), entry("update", "succeeded", c2, false)}, c2},
		{"a preview at a newer commit", history{entry("preview", "succeeded", c3, false), entry("update", "succeeded", c2, false)}, c2},
		{"a failed update after a good one", history{entry("update", "failed", c3, false), entry("update", "succeeded", c2, false)}, c2},
		{"a destroy after an update", history{entry("destroy", "succeeded", c3, false), entry("update", "succeeded", c2, false)}, ""},
		{"an update from a dirty tree", history{entry("update", "succeeded", c3, true), entry("update", "succeeded", c2, false)}, ""},
		{"an update without git.head", history{entry("update", "succeeded", "", false), entry("update", "succeeded", c2, false)}, ""},
		{"a refresh only", history{entry("refresh", "succeeded", c3, false)}, ""},
		{"no history", history{}, ""},
		{"a clean update", history{entry("update", "succeeded", c3, false)}, c3},
	}
	lineOf := func(t *testing.T, where, script string) string {
		t.Helper()
		for _, l := range strings.Split(script, "\n") {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, "deployed=$(") {
				return l
			}
		}
		t.Fatalf("%s: no deployed=$(...) line in:\n%s", where, script)
		return ""
	}
	var upStep string
	for _, s := range loadWorkflow(t, "deploy.yml").job(t, "deploy").Steps {
		if strings.Contains(s.Run, "pulumi up ") {
			upStep = s.Run
		}
	}
	lines := map[string]string{
		"deploy.yml":     lineOf(t, "deploy.yml", upStep),
		".gitlab-ci.yml": lineOf(t, ".gitlab-ci.yml deploy", strings.Join(loadGitLab(t).job(t, "deploy").Script, "\n")),
	}
	for where, line := range lines {
		for _, tc := range cases {
			t.Run(where+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				h, _ := json.Marshal(tc.history)
				if err := os.WriteFile(filepath.Join(dir, "history.json"), h, 0o644); err != nil {
					t.Fatal(err)
				}
				stub := "#!/usr/bin/env bash\n[[ \"$*\" == \"stack history --stack dev --json \"* ]] || { echo \"pulumi stand-in: unexpected $*\" >&2; exit 1; }\ncat \"$HISTORY\"\n"
				if err := os.WriteFile(filepath.Join(dir, "pulumi"), []byte(stub), 0o755); err != nil {
					t.Fatal(err)
				}
				out, code := runBash(t, repoPath(t, "."), line+"\nprintf 'DEPLOYED=%s\\n' \"$deployed\"",
					"PATH="+dir+":"+os.Getenv("PATH"), "HISTORY="+filepath.Join(dir, "history.json"))
				if code != 0 {
					t.Fatalf("exit %d:\n%s", code, out)
				}
				m := regexp.MustCompile(`(?m)^DEPLOYED=(.*)$`).FindStringSubmatch(out)
				if m == nil || m[1] != tc.want {
					t.Errorf("deployed %q, want %q:\n%s", m, tc.want, out)
				}
			})
		}
	}
}
