#!/usr/bin/env bash
# Installs the pinned onnxruntime shared library for tests and local runs, and
# prints ONLY its absolute path on stdout (diagnostics go to stderr).
#
# The library comes from the npm package onnxruntime-node, which ships
# libonnxruntime.so.1 for linux/x64. We `npm pack` the tarball and extract
# that one file rather than `npm install` it: the package's postinstall
# script would try to download more from elsewhere.
#
# Idempotent: a verified copy in the cache is reused without network.
# Cache: ${MLOPS_CACHE:-$HOME/.cache/mlops}/onnxruntime/<version>/
set -euo pipefail

# Must match the C API that github.com/yalue/onnxruntime_go (go.mod) is built
# against: v1.27.0 uses ORT_API_VERSION 24, i.e. onnxruntime 1.24.x. Keep in
# step with ONNXRUNTIME_VERSION in the Dockerfile.
VERSION=1.24.1
LIB_SHA256=53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4

case "$(uname -s)/$(uname -m)" in
Linux/x86_64) ;;
*) echo "onnxruntime.sh: only linux/x64 is supported, not $(uname -s)/$(uname -m)" >&2; exit 1 ;;
esac

dir="${MLOPS_CACHE:-$HOME/.cache/mlops}/onnxruntime/$VERSION"
lib="$dir/libonnxruntime.so.1"

verified() {
  [ -f "$1" ] && echo "$LIB_SHA256  $1" | sha256sum --check --status
}

if ! verified "$lib"; then
  command -v npm >/dev/null || { echo "onnxruntime.sh: npm is required (apt-get install npm)" >&2; exit 1; }
  mkdir -p "$dir"
  work="$(mktemp -d "$dir/.fetch.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "onnxruntime-node@$VERSION" >/dev/null)
  tar -xzf "$work/onnxruntime-node-$VERSION.tgz" -C "$work" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  got="$work/package/bin/napi-v6/linux/x64/libonnxruntime.so.1"
  if ! verified "$got"; then
    echo "onnxruntime.sh: checksum mismatch for libonnxruntime.so.1 from onnxruntime-node@$VERSION:" >&2
    echo "  want $LIB_SHA256" >&2
    echo "  got  $(sha256sum "$got" | cut -d' ' -f1)" >&2
    exit 1
  fi
  chmod 0644 "$got"
  mv -f "$got" "$lib" # atomic within the cache dir
fi

echo "$(cd "$dir" && pwd -P)/libonnxruntime.so.1"
