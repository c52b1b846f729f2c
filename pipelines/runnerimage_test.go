package pipelines

// The hosted runner's image as far as apt goes: a stand-in apt-get that
// knows which sources GitHub's ubuntu-24.04 image has (actions/runner-images:
// the Ubuntu archive; install-google-cloud-cli.sh installs gcloud from
// Google's repository and then deletes its list and key) and refuses what
// the real one refuses: a package from a source that is not configured or
// whose lists were not fetched, a source without its signing key, any of it
// without root. A script that assumes Google's list is still there fails
// here as it fails on GitHub.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// standInUbuntuArchive stands for the image's Ubuntu mirror (the name does
// not matter: no request leaves the box).
const standInUbuntuArchive = "http://ubuntu-mirror.stand-in/ubuntu/"

// googleAptKeyURL is where Google's install guide (and .gitlab-ci.yml)
// fetches the repository's signing key.
const googleAptKeyURL = "https://packages.cloud.google.com/apt/doc/apt-key.gpg"

// standInAptGet: apt-get as the image's. Its sources are apt's (apt-config,
// under APT_CONFIG: the image's directories in the box), as -o may narrow
// them for an update; the lists fetched and the packages installed are
// kept under $STANDIN_IMAGE/var/lib/apt. Packages named google-cloud-cli*
// come from Google's cloud-sdk repository, every other from the archive.
const standInAptGet = `#!/usr/bin/env bash
set -euo pipefail
state=$STANDIN_IMAGE/var/lib/apt
if [[ ${STANDIN_ROOT:-} != 1 ]]; then
  echo "E: Could not open lock file $state/lists/lock - open (13: Permission denied)" >&2
  echo "E: Unable to lock directory $state/lists/, are you root?" >&2
  exit 100
fi
sourcelist= sourceparts= cmd= pkgs=()
while (($#)); do
  case $1 in
    -o)
      case $2 in
        Dir::Etc::sourcelist=*) sourcelist=${2#*=} ;;
        Dir::Etc::sourceparts=*) sourceparts=${2#*=} ;;
      esac
      shift 2 ;;
    -*) shift ;;
    update | install) cmd=$1; shift ;;
    *) pkgs+=("$1"); shift ;;
  esac
done
etc=
eval "$(apt-config shell etc Dir::Etc/d)"
# sources [list parts]: "URI SUITE KEYRING" for each configured source (KEYRING - when none).
sources() {
  local list=${1:-${etc}sources.list} parts=${2:-${etc}sources.list.d}
  local files=()
  [[ -f $list ]] && files+=("$list")
  if [[ $parts != - ]]; then
    for f in "$parts"/*.list; do [[ -f $f ]] && files+=("$f"); done
  fi
  if ((${#files[@]})); then
    awk '$1 == "deb" { key = "-"; i = 2
      if ($2 ~ /^\[/) { for (; i <= NF; i++) { o = $i; gsub(/[\[\]]/, "", o); if (o ~ /^signed-by=/) key = substr(o, 11); if ($i ~ /\]$/) break }; i++ }
      print $i, $(i + 1), key }' "${files[@]}"
  fi
  if [[ $parts != - ]]; then
    for f in "$parts"/*.sources; do
      [[ -f $f ]] || continue
      awk 'BEGIN { RS = "" } { uri = ""; suites = ""; key = "-"
        n = split($0, lines, "\n")
        for (j = 1; j <= n; j++) { split(lines[j], kv, ": ")
          if (kv[1] == "URIs") uri = kv[2]; if (kv[1] == "Suites") suites = kv[2]; if (kv[1] == "Signed-By") key = kv[2] }
        m = split(suites, s, " "); for (j = 1; j <= m; j++) print uri, s[j], key }' "$f"
    done
  fi
}
mkdir -p "$state"
touch "$state/fetched" "$state/installed"
case $cmd in
  update)
    while read -r uri suite key; do
      if [[ $key == - ]]; then
        echo "E: The repository '$uri $suite InRelease' is not signed." >&2; exit 100
      elif [[ ! -s $key ]]; then
        echo "W: GPG error: $uri $suite InRelease: The following signatures couldn't be verified because the public key is not available: NO_PUBKEY C0BA5CE6DC6315A3" >&2
        echo "E: The repository '$uri $suite InRelease' is not signed." >&2; exit 100
      elif [[ $key == *.gpg && $(head -c 10 "$key") == -----BEGIN ]]; then
        echo "W: The key(s) in the keyring $key are ignored as the file has an unsupported filetype." >&2
        echo "E: The repository '$uri $suite InRelease' is not signed." >&2; exit 100
      fi
      echo "$uri $suite" >> "$state/fetched"
    done < <(sources "$sourcelist" "$sourceparts")
    sort -u -o "$state/fetched" "$state/fetched" ;;
  install)
    configured=$(sources | cut -d' ' -f1,2)
    for p in "${pkgs[@]}"; do
      case $p in
        google-cloud-cli* | google-cloud-sdk*) from="https://packages.cloud.google.com/apt cloud-sdk" ;;
        *) from="` + standInUbuntuArchive + ` noble" ;;
      esac
      if ! grep -qxF "$from" <<< "$configured" || ! grep -qxF "$from" "$state/fetched"; then
        echo "E: Unable to locate package $p" >&2; exit 100
      fi
    done
    for p in "${pkgs[@]}"; do
      echo "$p" >> "$state/installed"
      if [[ $p == google-cloud-cli-gke-gcloud-auth-plugin ]]; then
        printf '#!/bin/sh\necho "Kubernetes v1.33.5-gke.stand-in"\n' > "$STANDIN_BIN/gke-gcloud-auth-plugin"
        chmod +x "$STANDIN_BIN/gke-gcloud-auth-plugin"
      fi
    done ;;
  *) echo "apt-get stand-in: unexpected command ${cmd:-none}" >&2; exit 1 ;;
esac
`

// standInSudo: the runner's passwordless sudo, without the root: the
// commands run as the box's user, marked as root for the stand-in apt-get.
const standInSudo = `#!/usr/bin/env bash
while [[ $1 == -* ]]; do shift; done
STANDIN_ROOT=1 exec "$@"
`

// standInCurl: Google's signing key (armored, as that URL serves it) from
// the box; any other URL goes to the real curl.
const standInCurl = `#!/usr/bin/env bash
for a in "$@"; do
  if [[ $a == ` + googleAptKeyURL + ` ]]; then
    printf 'stand-in for the signing key of the cloud-sdk repository\n' | gpg --enarmor 2> /dev/null
    exit 0
  fi
done
exec /usr/bin/curl "$@"
`

// runnerImage lays the image's apt (a fresh one for each job, as each
// hosted job gets a new VM) under the box and puts the stand-ins for
// apt-get, sudo and curl on its PATH. gcloud is the cloud stubs'; the image
// has no gke-gcloud-auth-plugin until something installs it.
func (b *box) runnerImage() {
	t := b.t
	t.Helper()
	image := filepath.Join(b.dir, "image")
	if err := os.RemoveAll(image); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(image, "etc", "apt")
	files := map[string]string{
		filepath.Join(image, "apt.conf"): fmt.Sprintf("Dir::Etc %q;\n", etc+"/"),
		// The image's one list in deb822 form (ubuntu-24.04): the archive.
		filepath.Join(etc, "sources.list.d", "ubuntu.sources"): fmt.Sprintf("Types: deb\nURIs: %s\nSuites: noble noble-updates noble-backports\nComponents: main restricted universe multiverse\nSigned-By: %s\n",
			standInUbuntuArchive, filepath.Join(image, "usr", "share", "keyrings", "ubuntu-archive-keyring.gpg")),
		filepath.Join(image, "usr", "share", "keyrings", "ubuntu-archive-keyring.gpg"): "\x99\x01\x0dstand-in",
		filepath.Join(etc, "sources.list"):                                             "# Ubuntu sources have moved to /etc/apt/sources.list.d/ubuntu.sources\n",
	}
	for _, d := range []string{filepath.Join(etc, "apt.conf.d"), filepath.Join(etc, "keyrings"), filepath.Join(etc, "sources.list.d")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, text := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The system's commands as the image has them: this machine may have
	// the plugin (a developer's Cloud SDK); the image does not.
	bin := filepath.Join(image, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"/usr/bin", "/bin"} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			link := filepath.Join(bin, e.Name())
			if e.Name() == "gke-gcloud-auth-plugin" {
				continue
			}
			if _, err := os.Lstat(link); err == nil {
				continue
			}
			if err := os.Symlink(filepath.Join(dir, e.Name()), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	b.sysPath = "/usr/local/bin:" + bin
	if _, err := os.Stat("/usr/local/bin/gke-gcloud-auth-plugin"); err == nil {
		t.Fatal("/usr/local/bin/gke-gcloud-auth-plugin: the box cannot hide it")
	}
	if b.uid >= 0 {
		if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", b.uid, b.gid), image).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v: %s", err, out)
		}
	}
	_ = os.Remove(filepath.Join(b.stubs, "gke-gcloud-auth-plugin"))
	b.stub("apt-get", standInAptGet)
	b.stub("sudo", standInSudo)
	b.stub("curl", standInCurl)
	b.env = append(b.env, "PATH="+b.stubs+":"+b.sysPath, "APT_CONFIG="+filepath.Join(image, "apt.conf"), "STANDIN_IMAGE="+image, "STANDIN_BIN="+b.stubs)
}

// TestRunnerImageGKEAuthPlugin runs the preview and deploy jobs' plugin step
// in the box against the image's apt: it must add Google's repository, with
// its key, and install the plugin from it. (On the runner image's own apt
// sources, with no cloud-sdk list, the install of the plugin cannot succeed.)
func TestRunnerImageGKEAuthPlugin(t *testing.T) {
	b := newBox(t)
	defer func() {
		if t.Failed() {
			t.Logf("the box's log:\n%s", b.log.String())
		}
	}()
	for _, wf := range []struct{ file, job string }{{"pull-request.yml", "preview"}, {"deploy.yml", "deploy"}} {
		t.Run(wf.file+"/"+wf.job, func(t *testing.T) {
			b.t = t
			b.cloudStubs("http://127.0.0.1:9", "")
			j := loadWorkflow(t, wf.file).job(t, wf.job)
			script := ""
			for _, s := range j.Steps {
				if strings.Contains(s.Run, "gke-auth-plugin") {
					script = s.Run
				}
			}
			if script != "hack/gke-auth-plugin.sh" {
				t.Fatalf("no step runs hack/gke-auth-plugin.sh (found %q)", script)
			}
			out, code := b.run(script, 2*time.Minute)
			if code != 0 {
				t.Fatalf("the plugin step failed on the runner image (exit %d):\n%s", code, out)
			}
			if !strings.Contains(out, "Kubernetes v1.33.5-gke.stand-in") {
				t.Errorf("the plugin does not run after the step:\n%s", out)
			}
			installed, _ := os.ReadFile(filepath.Join(b.dir, "image", "var", "lib", "apt", "installed"))
			if strings.TrimSpace(string(installed)) != "google-cloud-cli-gke-gcloud-auth-plugin" {
				t.Errorf("installed %q, want the plugin alone", installed)
			}
			list, err := os.ReadFile(filepath.Join(b.dir, "image", "etc", "apt", "sources.list.d", "google-cloud-sdk.list"))
			key := filepath.Join(b.dir, "image", "etc", "apt", "keyrings", "cloud.google.gpg")
			if err != nil || strings.TrimSpace(string(list)) != "deb [signed-by="+key+"] https://packages.cloud.google.com/apt cloud-sdk main" {
				t.Errorf("Google's list %q (%v)", list, err)
			}
		})
	}
	// The stand-in itself: what the image refuses.
	t.Run("the image's apt refuses", func(t *testing.T) {
		b.t = t
		b.runnerImage()
		for _, tc := range []struct{ script, want string }{
			{"apt-get install -y google-cloud-cli-gke-gcloud-auth-plugin", "are you root?"},
			{"sudo apt-get update -qq && sudo apt-get install -y google-cloud-cli-gke-gcloud-auth-plugin", "E: Unable to locate package google-cloud-cli-gke-gcloud-auth-plugin"},
			{"sudo apt-get install -y jq", "E: Unable to locate package jq"},
			{`echo "deb [signed-by=$STANDIN_IMAGE/none.gpg] https://packages.cloud.google.com/apt cloud-sdk main" > "$STANDIN_IMAGE/etc/apt/sources.list.d/g.list" && sudo apt-get update`, "NO_PUBKEY"},
			{`printf -- '-----BEGIN PGP\n' > "$STANDIN_IMAGE/k.gpg" && echo "deb [signed-by=$STANDIN_IMAGE/k.gpg] https://packages.cloud.google.com/apt cloud-sdk main" > "$STANDIN_IMAGE/etc/apt/sources.list.d/g.list" && sudo apt-get update`, "unsupported filetype"},
		} {
			b.runnerImage()
			if out, code := b.run(tc.script, time.Minute); code == 0 || !strings.Contains(out, tc.want) {
				t.Errorf("%s: exit %d, want a failure saying %q:\n%s", tc.script, code, tc.want, out)
			}
		}
		b.runnerImage()
		if out, code := b.run("sudo apt-get update -qq && sudo apt-get install -y jq", time.Minute); code != 0 {
			t.Errorf("an archive package after an update: exit %d:\n%s", code, out)
		}
	})
}
