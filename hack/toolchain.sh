#!/usr/bin/env bash
# Builds, once, the binaries the end-to-end test needs and prints their
# directory on stdout (everything else goes to stderr):
#
#   export MLOPS_TOOLCHAIN_BIN=$(hack/toolchain.sh)
#
# Everything comes from the Go module proxy, pinned by the nested modules in
# hack/toolchain/<name>/ (each has its own go.mod, so the top-level
# `go test ./...` never compiles them):
#   pulumi                      the Pulumi CLI
#   pulumi-resource-kubernetes  the Pulumi Kubernetes provider plugin
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
#                               a local control plane with fake nodes
#   metrics-server              metrics.k8s.io for HorizontalPodAutoscalers
#                               (internal/localcloud/cluster Options.Metrics)
#   kubelet, kube-proxy         a real node (internal/localcloud/node), built in
#                               the same `go build` as the control plane
#   containerd, containerd-shim-runc-v2, ctr
#                               the node's container runtime (containerd v2;
#                               runc, iptables and the CNI plugins are Debian's)
#
# The binaries are cached in ${MLOPS_CACHE:-$HOME/.cache/mlops}/toolchain/<key>/bin
# where <key> hashes the pinned versions, the Go version and the nested modules'
# files: changing a pin builds into a new directory. Each binary is built
# under a temporary name and renamed into place, so an interrupted run never
# leaves a half-written binary that a later run would trust. Compilation goes
# through the normal Go build and module caches, so rebuilds are incremental.
#
# MLOPS_TOOLCHAIN_JOBS (default 2) bounds how many builds run at once.
set -euo pipefail

PULUMI_VERSION=v3.274.1
KUBERNETES_PROVIDER_VERSION=4.32.0
KUBERNETES_PROVIDER_MODULE=github.com/pulumi/pulumi-kubernetes/provider/v4
KUBERNETES_VERSION=v1.36.3
CONTAINERD_VERSION=v2.4.2

repo_hack_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
modules_dir="$repo_hack_dir/toolchain"
jobs=${MLOPS_TOOLCHAIN_JOBS:-2}

log() { printf '[toolchain %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# go_build MODULE_DIR LDFLAGS OUTPUT PACKAGE...: the one compile command.
go_build() {
	local module_dir=$1 ldflags=$2 output=$3
	shift 3
	(cd "$module_dir" && go build -buildvcs=false -ldflags "$ldflags" -o "$output" "$@")
}

# build_binaries MODULE_DIR LDFLAGS NAME=PACKAGE... builds the packages in
# module MODULE_DIR in one `go build` (so shared packages compile once) into a
# temporary directory next to bin_dir, then renames each into bin_dir. While
# it compiles it says so once a minute, so a cold run is never silent for
# long.
build_binaries() {
	local module_dir=$1 ldflags=$2
	shift 2
	local missing=() packages=() spec name build=${module_dir##*/}
	for spec in "$@"; do
		name=${spec%%=*}
		[[ -x "$bin_dir/$name" ]] && continue
		missing+=("$name")
		packages+=("${spec#*=}")
	done
	((${#missing[@]})) || return 0

	local tmp_dir started step="(${build_index[$build]:-?}/${#planned[@]})" ticker
	tmp_dir=$(mktemp -d "$bin_dir/.build.XXXXXX") || return 1
	started=$SECONDS
	log "$step building ${missing[*]} (module hack/toolchain/$build)"
	(
		while sleep 60; do
			kill -0 $$ 2>/dev/null || exit 0
			log "$step still building $build: $(((SECONDS - started) / 60)) min so far, $(((SECONDS - toolchain_started) / 60)) min in all"
		done
	) &
	ticker=$!
	# One package: name the output explicitly. Several: `-o DIR/` names each
	# binary after the last element of its import path.
	local output="$tmp_dir/"
	if ((${#packages[@]} == 1)); then output="$tmp_dir/${missing[0]}"; fi
	if ! go_build "$module_dir" "$ldflags" "$output" "${packages[@]}"; then
		kill "$ticker" 2>/dev/null
		rm -rf "$tmp_dir"
		log "$step FAILED: ${missing[*]}"
		return 1
	fi
	kill "$ticker" 2>/dev/null
	for name in "${missing[@]}"; do
		mv -f "$tmp_dir/$name" "$bin_dir/$name" || return 1
	done
	rm -rf "$tmp_dir"
	log "$step built ${missing[*]} in $((SECONDS - started))s"
}

build_pulumi() {
	build_binaries "$modules_dir/pulumi" \
		"-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
		pulumi=github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
}

build_kubernetes_provider() {
	[[ -x "$bin_dir/pulumi-resource-kubernetes" ]] && return 0
	local module_dir="$modules_dir/kubernetes-provider" source_dir file
	# The provider's schema and mapping ship in the module but not in the
	# package upstream's main embeds; copy them in from the module cache.
	# (Functions here run inside && lists, where set -e does not apply, hence
	# the explicit returns.)
	source_dir=$(cd "$module_dir" && go mod download "$KUBERNETES_PROVIDER_MODULE" &&
		go list -m -f '{{.Dir}}' "$KUBERNETES_PROVIDER_MODULE") || return 1
	for file in schema.json terraform-mapping.json; do
		cmp -s "$source_dir/cmd/pulumi-resource-kubernetes/$file" "$module_dir/$file" ||
			install -m 0644 "$source_dir/cmd/pulumi-resource-kubernetes/$file" "$module_dir/$file" ||
			return 1
	done
	build_binaries "$module_dir" \
		"-X $KUBERNETES_PROVIDER_MODULE/pkg/version.Version=$KUBERNETES_PROVIDER_VERSION" \
		pulumi-resource-kubernetes=.
}

build_etcd() {
	build_binaries "$modules_dir/etcd" "" etcd=.
}

build_kubernetes() {
	# Without the version stamp the binaries report v0.0.0-master, which
	# clients (the Pulumi provider among them) parse to pick API behaviour.
	local minor=${KUBERNETES_VERSION#v1.}
	minor=${minor%%.*}
	local ldflags="" package
	for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $package.gitVersion=$KUBERNETES_VERSION -X $package.gitMajor=1 -X $package.gitMinor=$minor -X $package.gitTreeState=clean"
	done
	build_binaries "$modules_dir/kubernetes" "$ldflags" \
		kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
		kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
		kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
		kubelet=k8s.io/kubernetes/cmd/kubelet \
		kube-proxy=k8s.io/kubernetes/cmd/kube-proxy
}

build_containerd() {
	# no_btrfs: the btrfs snapshotter needs C headers and is not used here
	# (the node uses overlayfs); urfave_cli_no_docs as upstream's Makefile.
	GOFLAGS="${GOFLAGS:+$GOFLAGS }-tags=no_btrfs,urfave_cli_no_docs" build_binaries "$modules_dir/containerd" \
		"-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
		containerd=github.com/containerd/containerd/v2/cmd/containerd \
		containerd-shim-runc-v2=github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
		ctr=github.com/containerd/containerd/v2/cmd/ctr
}

build_kwok() {
	build_binaries "$modules_dir/kwok" "" kwok=sigs.k8s.io/kwok/cmd/kwok
}

build_metrics_server() {
	build_binaries "$modules_dir/metrics-server" "" metrics-server=sigs.k8s.io/metrics-server/cmd/metrics-server
}

# The key covers everything that changes the output and nothing else: the
# pins, the build commands (the functions that run `go build`, as bash prints
# them: editing comments or the progress log rebuilds nothing), Go toolchain
# and platform, and the nested modules' sources (not the ignored schema
# copies, which are derived from the pinned provider module).
cache_key() {
	{
		echo "$PULUMI_VERSION $KUBERNETES_PROVIDER_VERSION $KUBERNETES_PROVIDER_MODULE $KUBERNETES_VERSION $CONTAINERD_VERSION"
		declare -f go_build build_pulumi build_kubernetes_provider build_etcd build_kubernetes \
			build_containerd build_kwok build_metrics_server
		go env GOVERSION GOOS GOARCH CGO_ENABLED
		(cd "$modules_dir" && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) | LC_ALL=C sort | xargs sha256sum)
	} | sha256sum | cut -c1-16
}

cache_root=${MLOPS_CACHE:-$HOME/.cache/mlops}
bin_dir="$cache_root/toolchain/$(cache_key)/bin"
mkdir -p "$bin_dir"
# Temporary build dirs of runs that were killed (a live run's are younger).
find "$bin_dir" -maxdepth 1 -name '.build.*' -mmin +720 -exec rm -rf {} +

# The builds, each a nested module, with the binaries it makes: the plan
# (which builds are needed, k of n) is worked out before any starts, so the
# log can say how far a cold run is.
declare -A build_outputs=(
	[etcd]="etcd"
	[kwok]="kwok"
	[pulumi]="pulumi"
	[containerd]="containerd containerd-shim-runc-v2 ctr"
	[metrics-server]="metrics-server"
	[kubernetes]="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"
	[kubernetes-provider]="pulumi-resource-kubernetes"
)
build_order=(etcd kwok kubernetes pulumi kubernetes-provider containerd metrics-server)
declare -A build_index=()
planned=()
for build in "${build_order[@]}"; do
	for name in ${build_outputs[$build]}; do
		if [[ ! -x "$bin_dir/$name" ]]; then
			planned+=("$build")
			build_index[$build]=${#planned[@]}
			break
		fi
	done
done
if ((${#planned[@]})); then
	log "${#planned[@]} build(s) to do: ${planned[*]} (cold, about 25 min on 2 quiet cores; each is cached in $bin_dir once built)"
fi

# Two lanes of roughly equal cold cost (etcd+kwok+pulumi+containerd vs
# kubernetes+provider), the control plane first; with one job everything runs
# in order.
toolchain_started=$SECONDS
if ((jobs >= 2)); then
	(build_etcd && build_kwok && build_pulumi && build_containerd && build_metrics_server) &
	lane_a=$!
	(build_kubernetes && build_kubernetes_provider) &
	lane_b=$!
	status=0
	wait "$lane_a" || status=1
	wait "$lane_b" || status=1
	((status == 0)) || { log "toolchain build failed"; exit 1; }
else
	build_etcd
	build_kwok
	build_kubernetes
	build_pulumi
	build_kubernetes_provider
	build_containerd
	build_metrics_server
fi

for name in pulumi pulumi-resource-kubernetes etcd kube-apiserver kube-controller-manager kube-scheduler kwok \
	kubelet kube-proxy containerd containerd-shim-runc-v2 ctr metrics-server; do
	[[ -x "$bin_dir/$name" ]] || { log "missing $bin_dir/$name"; exit 1; }
done
# Quiet when warm: only a run that built something says so.
if ((${#planned[@]})); then
	log "toolchain ready in $(((SECONDS - toolchain_started) / 60)) min $(((SECONDS - toolchain_started) % 60)) s; cached for next time in $bin_dir"
fi
printf '%s\n' "$bin_dir"
