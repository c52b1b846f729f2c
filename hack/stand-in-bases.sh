#!/usr/bin/env bash
# Makes the base images of model/Dockerfile from Debian packages, for machines
# that reach no image registry (here, and CI), and prints them as the
# Dockerfile's build arguments, one KEY=VALUE a line, on stdout:
#
#   BUILD_IMAGE=mlops-stand-in/build:<key>       (also ONNXRUNTIME_IMAGE)
#   RUNTIME_IMAGE=mlops-stand-in/runtime:<key>
#
# build: Debian bookworm (debootstrap, minbase) with gcc, libc6-dev,
#   libjpeg62-turbo-dev (the server links libjpeg-turbo statically), npm (the
#   onnxruntime stage's `npm pack`), ca-certificates, and the Go toolchain of
#   model/go.mod (its `toolchain` line, else its `go` line): the module
#   golang.org/toolchain fetched with `go mod download` from the Go module
#   proxy, the same bytes `GOTOOLCHAIN=goX.Y.Z` would run. In /usr/local/go,
#   with GOTOOLCHAIN=local as in the golang image.
# runtime: the stand-in for gcr.io/distroless/cc-debian12:nonroot, copied
#   file by file from the same debootstrap: the packages libc6, libgcc-s1,
#   libstdc++6, tzdata, the CA bundle, base-files' os-release,
#   /etc/passwd and /etc/group with root and nonroot (65532). No shell, no
#   package manager, no dpkg database.
#
# Packages come from the bookworm mirror this machine's apt is configured
# with (read from its sources at run time). The root filesystems are cached
# as tarballs under ${MLOPS_CACHE:-$HOME/.cache/mlops}/stand-in-bases/<key>/;
# the key hashes this script (packages, steps), the Go version and the
# Release date of the host's apt lists for bookworm, so they are rebuilt only
# when one of those changes. Needs root, debootstrap, go and a Docker engine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# All in one function: bash then reads the whole script before running it,
# so editing it while it runs cannot change what runs.
main() {

log() { echo "stand-in-bases.sh: $*" >&2; }
started=$SECONDS
# step K TEXT: progress of a cold run, K of the 4 steps, with the time so far.
step() { log "($1/4, $((SECONDS - started))s) $2"; }
die() { log "$*"; exit 1; }

suite=bookworm
build_packages=ca-certificates,gcc,libc6-dev,libjpeg62-turbo-dev,npm
runtime_packages="libc6 libgcc-s1 libstdc++6 tzdata"

go_version=$(awk '$1 == "toolchain" { print $2; found = 1; exit } END { if (!found) exit 1 }' model/go.mod 2>/dev/null ||
	awk '$1 == "go" { v = $2; if (split(v, p, ".") == 2) v = v ".0"; print "go" v; exit }' model/go.mod)
[[ "$go_version" =~ ^go1\.[0-9]+\.[0-9]+$ ]] || die "cannot read the Go version from model/go.mod (got '$go_version')"

# The mirror's state for the suite: the Date of the Release file apt last
# fetched (none when apt-get update never ran).
release_date=$(cat /var/lib/apt/lists/*_dists_${suite}_InRelease 2>/dev/null | sed -n 's/^Date: //p' | head -n 1)
# (The script without its comments and progress lines: editing those
# rebuilds nothing.)
key=$( { grep -v -E '^[[:space:]]*(#|log |step )' "${BASH_SOURCE[0]}"; echo "$go_version $(uname -m) $release_date"; } | sha256sum | cut -c1-16)
build_image="mlops-stand-in/build:$key"
runtime_image="mlops-stand-in/runtime:$key"
cache="${MLOPS_CACHE:-$HOME/.cache/mlops}/stand-in-bases/$key"

print_args() {
	echo "BUILD_IMAGE=$build_image"
	echo "ONNXRUNTIME_IMAGE=$build_image"
	echo "RUNTIME_IMAGE=$runtime_image"
}

docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
	die "no Docker engine answers: start one (hack/dockerd.sh start) and run again"
# One maker at a time (tests run in parallel); the second finds the first's.
mkdir -p "$(dirname "$cache")"
exec 9>"$(dirname "$cache")/.lock"
flock 9
if docker image inspect "$build_image" "$runtime_image" >/dev/null 2>&1; then
	print_args
	exit 0
fi

# mirror prints the first bookworm mirror of the host's apt sources.
mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		# deb822 stanzas: URIs and Suites of the same stanza.
		awk -v suite="$suite" '
			/^$/ { uris = ""; suites = "" }
			/^URIs:/ { uris = $2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) suites = suite }
			uris != "" && suites != "" { print uris; exit }' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v suite="$suite" '$1 == "deb" {
			i = 2; if ($i ~ /^\[/) while ($i !~ /\]$/) i++; if ($i ~ /\]$/ && $2 ~ /^\[/) i++
			if ($(i + 1) == suite) { print $i; exit } }' "$f"
	done
}

mkdir -p "$cache"
work=$(mktemp -d "$cache/.work.XXXXXX")
root="$work/build"
trap 'umount "$root/proc" 2>/dev/null || true; rm -rf --one-file-system "$work"' EXIT
failed() {
	cp "$1" "$cache/../last-failure.log" 2>/dev/null || true
	tail -n 20 "$1" >&2
	die "$2 (log above, kept in $(dirname "$cache")/last-failure.log)"
}

if [ ! -f "$cache/build.tar" ]; then
	command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
	[ "$(id -u)" = 0 ] || die "debootstrap must run as root (got uid $(id -u))"
	url=$(mirror | head -n 1)
	[ -n "$url" ] || die "no apt source for $suite in /etc/apt/sources.list{,.d}: debootstrap needs a Debian mirror"

	log "not cached: making the bases (cold, about 10 min; cached in $cache and in the Docker engine after)"
	step 1 "Go $go_version: the toolchain module from the Go module proxy"
	goroot=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "golang.org/toolchain@v0.0.1-$go_version.linux-amd64" |
		sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	[ -f "$goroot/bin/go" ] || die "the Go toolchain module $go_version has no bin/go (in '$goroot')"

	# debootstrap lays down minbase; apt inside it installs the rest, in the
	# order dpkg needs (debootstrap's own --include fails configuring npm's
	# many dependencies).
	step 2 "debootstrap $suite (minbase), then apt-get install ${build_packages//,/ }; several minutes"
	debootstrap --variant=minbase "$suite" "$root" "$url" >"$work/debootstrap.log" 2>&1 ||
		failed "$work/debootstrap.log" "debootstrap $suite failed"
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	mount -t proc proc "$root/proc"
	{
		chroot "$root" apt-get update &&
			DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y --no-install-recommends ${build_packages//,/ }
	} >"$work/apt.log" 2>&1 || failed "$work/apt.log" "apt-get install in the $suite root failed"
	umount "$root/proc"
	# The stand-in names no mirror: without sources, the Dockerfile's
	# install-when-missing steps would fail loudly rather than reach out.
	rm -f "$root/etc/apt/sources.list" "$root/etc/resolv.conf"
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

	mkdir -p "$root/usr/local/go"
	cp -a "$goroot/." "$root/usr/local/go/"
	chmod -R u+w,a+rX "$root/usr/local/go"
	chmod a+x "$root"/usr/local/go/bin/* "$root"/usr/local/go/pkg/tool/linux_amd64/*

	tar --numeric-owner -C "$root" -cf "$work/build.tar" .
	mv "$work/build.tar" "$cache/"
fi

if [ ! -f "$cache/runtime.tar" ]; then
	if [ ! -d "$root/usr" ]; then
		mkdir -p "$root"
		tar --numeric-owner -C "$root" -xf "$cache/build.tar"
	fi
	step 3 "runtime: the files of ${runtime_packages// /, } from the build root"
	rt="$work/runtime"
	mkdir -p "$rt"
	# bookworm's merged /usr: /bin, /lib, ... are links into /usr.
	for top in bin sbin lib lib32 lib64 libx32; do
		if [ -L "$root/$top" ]; then
			cp -a "$root/$top" "$rt/"
			mkdir -p "$rt/$(readlink "$root/$top")"
		fi
	done
	for p in $runtime_packages; do
		chroot "$root" dpkg-query -L "$p" | while read -r f; do
			if [ -e "$rt$f" ] || [ -L "$rt$f" ]; then
				continue
			elif [ -L "$root$f" ] || [ -f "$root$f" ]; then
				(cd "$root" && cp -a --parents ".$f" "$rt/")
			elif [ -d "$root$f" ]; then
				mkdir -p "$rt$f"
			fi
		done
	done
	(cd "$root" && cp -a --parents ./etc/ssl/certs/ca-certificates.crt ./usr/lib/os-release ./etc/os-release "$rt/")
	mkdir -p "$rt/tmp" "$rt/home/nonroot" "$rt/root" "$rt/etc"
	chmod 1777 "$rt/tmp"
	chown 65532:65532 "$rt/home/nonroot"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rt/etc/passwd"
	printf 'root:x:0:\nnonroot:x:65532:\n' >"$rt/etc/group"
	# The package documentation distroless leaves out too.
	rm -rf "$rt/usr/share/doc" "$rt/usr/share/man" "$rt/usr/share/lintian"
	for f in bin/sh bin/bash bin/dash usr/bin/dpkg usr/bin/apt; do
		[ ! -e "$rt/$f" ] || die "the runtime stand-in holds /$f; it must have no shell and no package manager"
	done
	tar --numeric-owner -C "$rt" -cf "$work/runtime.tar" .
	mv "$work/runtime.tar" "$cache/"
fi

step 4 "importing $build_image and $runtime_image into the Docker engine"
docker import \
	--change 'ENV PATH=/usr/local/go/bin:/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV GOPATH=/go' --change 'ENV GOTOOLCHAIN=local' \
	--message "stand-in for golang:1.26-bookworm, made by hack/stand-in-bases.sh" \
	"$cache/build.tar" "$build_image" >/dev/null
docker import \
	--change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
	--change 'ENV PATH=/usr/local/bin:/usr/bin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
	--message "stand-in for gcr.io/distroless/cc-debian12:nonroot, made by hack/stand-in-bases.sh" \
	"$cache/runtime.tar" "$runtime_image" >/dev/null
log "ready in $((SECONDS - started))s: $build_image, $runtime_image (root filesystems cached in $cache)"
print_args
}

main "$@"
