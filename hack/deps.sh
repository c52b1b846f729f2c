#!/usr/bin/env bash
# The one installer: every system package the project's tests, scripts and
# README commands use, what each is for, and which command needs it.
#
#   hack/deps.sh [--check | --list] [GROUP...]      (default group: full)
#
# Groups (a package appears in each group that needs it):
#   hermetic  the fast test gate (hack/test.sh --hermetic; a user's runner)
#   full      every test and proof (hack/test.sh, .ci/run): hermetic plus
#             Docker, the stand-in bases, the real node, the parity test
#   deploy    the main job without a cloud (hack/local-deploy.sh)
#   training  training/train.py and make_fixtures.py (PyTorch, onnx)
#   bench     model/hack/bench.sh (wrk, and the Python peer's packages)
#
# Each package is probed by what the project actually uses of it (a command,
# a file, a Python module), so one that came another way (Docker from its own
# packages on a hosted runner, npm from nvm) counts as present. Nothing
# missing: silent, exit 0, no root needed. Something missing: it says which
# package, for what, then installs them with apt-get as root, or with sudo
# where sudo needs no password (hosted runners); otherwise it fails with one
# line naming the packages and the command to run.
#   --check  only reports what is missing (exit 1 if anything is)
#   --list   prints the table: group, package, probe, why (for the tests in
#            pipelines/ that check every tool the scripts call is listed)
#
# Go and git are the only prerequisites; this script installs the rest.
set -euo pipefail

# group(s)|Debian package|probe|why
# probe: one or more of cmd:NAME (on PATH), file:PATH (exists), py:MODULE
# (importable by Debian's /usr/bin/python3), separated by spaces; the
# package is present when all of them are.
table() {
	cat <<'EOF'
hermetic,full|gcc|cmd:gcc|cgo: the model server links onnxruntime and libjpeg-turbo
hermetic,full|npm|cmd:npm|model/hack/onnxruntime.sh fetches the pinned onnxruntime library with npm pack
hermetic,full|libjpeg-dev|file:/usr/include/jpeglib.h|the model server links libjpeg-turbo (cgo)
hermetic,full|shellcheck|cmd:shellcheck|hack/actionlint.sh checks the workflows' shell scripts
hermetic,full|curl|cmd:curl|the pipelines' scripts (check-endpoint.sh, preview comments) and their tests
hermetic,full|jq|cmd:jq|the pipelines' scripts and their tests
full|gpg|cmd:gpg|hack/gke-auth-plugin.sh dearmors Google's apt key, in the runner box's plugin step
full,deploy|docker.io|cmd:dockerd cmd:docker|the Docker engine that builds and runs the model image (hack/dockerd.sh)
full,deploy|debootstrap|cmd:debootstrap|hack/stand-in-bases.sh makes the image's base images from Debian packages
full,deploy|runc|file:/usr/sbin/runc|the real node's container runtime (internal/localcloud/node)
full,deploy|containernetworking-plugins|file:/usr/lib/cni/bridge|the real node's pod network (CNI bridge, host-local, loopback)
full,deploy|iptables|file:/usr/sbin/iptables|kube-proxy on the real node
full,deploy|iproute2|cmd:ip|removes the real node's bridge when it stops
full|python3-pil|py:PIL|training/inputs.py, the reference of the dataset parity test (model/internal/preprocess)
full|python3-numpy|py:numpy|training/inputs.py and training/preprocess.py
training|python3-torch|py:torch|training/train.py: the CNN (about 1 GB installed)
training|python3-onnx|py:onnx|training/train.py exports the model to ONNX
training|python3-pil|py:PIL|training/preprocess.py decodes the images
training|python3-numpy|py:numpy|training/preprocess.py
bench|wrk|cmd:wrk|model/hack/bench.sh's load generator
bench|curl|cmd:curl|model/hack/profile.sh sends its requests with curl
bench|linux-perf|cmd:perf|model/hack/profile.sh samples the server with perf
bench|python3-torch|py:torch|the Python peer server
bench|python3-onnx|py:onnx|the Python peer server loads the ONNX model
bench|python3-pil|py:PIL|the Python peer server decodes images
bench|python3-numpy|py:numpy|the Python peer server
bench|python3-fastapi|py:fastapi|the Python peer server
bench|python3-uvicorn|py:uvicorn|the Python peer server
bench|python3-multipart|py:multipart|the Python peer server's form uploads
EOF
}

log() { echo "deps.sh: $*" >&2; }

present() {
	local probe
	for probe in $1; do
		present_one "$probe" || return 1
	done
}

present_one() {
	local probe=$1
	case "$probe" in
	cmd:*) command -v "${probe#cmd:}" >/dev/null 2>&1 ;;
	file:*) [ -e "${probe#file:}" ] ;;
	py:*) [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import ${probe#py:}" >/dev/null 2>&1 ;;
	*) log "unknown probe '$probe'"; return 1 ;;
	esac
}

mode=install
case "${1:-}" in
--check) mode=check; shift ;;
--list) table | tr '|' '\t'; exit 0 ;;
-h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
groups=("$@")
((${#groups[@]})) || groups=(full)
for group in "${groups[@]}"; do
	case "$group" in
	hermetic | full | deploy | training | bench) ;;
	*) log "unknown group '$group': expected hermetic, full, deploy, training or bench"; exit 2 ;;
	esac
done

command -v go >/dev/null || { log "Go is missing: install the Go version in go.mod first (with git, the only prerequisites)"; exit 1; }
command -v git >/dev/null || { log "git is missing: install git first (with Go, the only prerequisites)"; exit 1; }

missing=() reasons=()
while IFS='|' read -r in_groups package probe why; do
	wanted=false
	for group in "${groups[@]}"; do
		[[ ",$in_groups," == *",$group,"* ]] && wanted=true
	done
	$wanted || continue
	[[ " ${missing[*]} " == *" $package "* ]] && continue
	present "$probe" && continue
	missing+=("$package")
	shown=${probe//cmd:/} shown=${shown//file:/} shown=${shown//py:/}
	reasons+=("$package ($shown): $why")
done < <(table)

((${#missing[@]})) || exit 0

if [ "$mode" = check ]; then
	log "missing for ${groups[*]}:"
	printf '  %s\n' "${reasons[@]}" >&2
	exit 1
fi

if [ "$(id -u)" = 0 ]; then
	as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
	as_root=(sudo -n)
else
	log "missing ${missing[*]}; install them as root: sudo $0 ${groups[*]} (or: sudo apt-get install ${missing[*]})"
	exit 1
fi

command -v apt-get >/dev/null || { log "missing ${missing[*]}, and there is no apt-get here: install them with this system's package manager"; exit 1; }
log "installing ${#missing[@]} Debian package(s) for ${groups[*]}:"
printf '  %s\n' "${reasons[@]}" >&2
started=$SECONDS
# Wait for another apt (a second job on the same machine) rather than fail.
apt() { "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@"; }
apt update -qq
apt install -y -qq "${missing[@]}" >&2
log "installed in $((SECONDS - started))s"

# What was installed must now answer its probe: a package that installed
# but does not provide what the project uses is a wrong row in the table.
still=()
while IFS='|' read -r in_groups package probe why; do
	[[ " ${missing[*]} " == *" $package "* ]] || continue
	present "$probe" || still+=("$package ($probe)")
done < <(table)
if ((${#still[@]})); then
	log "installed but still missing: ${still[*]}"
	exit 1
fi
