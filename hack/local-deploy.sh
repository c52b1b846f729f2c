#!/usr/bin/env bash
# The whole deploy on a machine without a cloud (README "Try the whole deploy
# on a local cluster"):
# builds the model image from model/Dockerfile on stand-in bases made from
# Debian packages, pushes it to a registry on 127.0.0.1, deploys it by that
# digest with the real Pulumi engine and Kubernetes provider to a throwaway
# control plane on 127.0.0.1 with one real node (containerd, kubelet,
# kube-proxy; it pulls the image from that registry), runs `up` a second time
# to show that the same model changes nothing, then asks the deployed pods
# about one image through the Service's NodePort on 127.0.0.1 (default: a
# held-out planet; pass a path for another; -serve first keeps it serving
# until Ctrl-C). Needs root (the node runs containers).
#
#   hack/local-deploy.sh [-serve] [image]
#
# Installs the system packages it needs (hack/deps.sh deploy: Docker, runc,
# the CNI plugins, iptables, iproute2, debootstrap); starts dockerd when no engine
# answers, and stops it again at the end. The first run builds the toolchain,
# the stand-in bases and cmd/local, all cached after (docs/testing.md,
# "What a first run costs").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "$(id -u)" != 0 ]; then
	echo "local-deploy.sh: needs root (the real node runs containers, and Docker builds the image); run: sudo $0 $*" >&2
	exit 1
fi
# sudo replaces PATH with its secure_path, which on Debian and Ubuntu lacks
# /usr/local/go/bin, where Go's own installer puts it: look there before
# giving up, and say what to type when Go is elsewhere.
if ! command -v go >/dev/null; then
	for dir in /usr/local/go/bin /usr/lib/go/bin; do
		if [ -x "$dir/go" ]; then
			echo "local-deploy.sh: Go is not on root's PATH (sudo resets it); using $dir/go" >&2
			PATH=$dir:$PATH
			export PATH
			break
		fi
	done
fi
if ! command -v go >/dev/null; then
	echo "local-deploy.sh: Go is not on root's PATH (sudo resets PATH to its secure_path); run: sudo env \"PATH=\$PATH\" $0 $*" >&2
	exit 1
fi
hack/deps.sh deploy
if ! docker version >/dev/null 2>&1; then
	hack/dockerd.sh start
	trap 'hack/dockerd.sh stop' EXIT
fi
MLOPS_TOOLCHAIN_BIN=$(hack/toolchain.sh)
export MLOPS_TOOLCHAIN_BIN
# Built once into the cache, not `go run`: the first compile of cmd/local
# (the Pulumi engine's Automation API, the Kubernetes client) takes minutes
# and would otherwise print nothing.
bin=${MLOPS_CACHE:-$HOME/.cache/mlops}/bin/mlops-local
if [ ! -x "$bin" ]; then
	echo "local-deploy.sh: compiling cmd/local the first time (about 6 minutes on 2 cores with an empty Go build cache; seconds after)" >&2
fi
go build -o "$bin" ./cmd/local
"$bin" "$@"
