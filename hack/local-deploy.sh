#!/usr/bin/env bash
# The main job on a machine without a cloud (README "On a fresh machine"):
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
# answers, and stops it again at the end. The first run builds the toolchain
# and the stand-in bases, both cached after (README "On a fresh machine").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "$(id -u)" != 0 ]; then
	echo "local-deploy.sh: needs root (the real node runs containers, and Docker builds the image); run: sudo $0 $*" >&2
	exit 1
fi
hack/deps.sh deploy
if ! docker version >/dev/null 2>&1; then
	hack/dockerd.sh start
	trap 'hack/dockerd.sh stop' EXIT
fi
MLOPS_TOOLCHAIN_BIN=$(hack/toolchain.sh)
export MLOPS_TOOLCHAIN_BIN
go run ./cmd/local "$@"
