#!/usr/bin/env bash
# For CI's caches: installs the end-to-end toolchain (hack/toolchain.sh) and
# onnxruntime (model/hack/onnxruntime.sh) into
# ${MLOPS_CACHE:-$HOME/.cache/mlops}, then deletes every other build of them
# there: the builds of older pins that restoring an older cache brought back
# would otherwise be saved again with every new cache, forever. Both GitHub
# workflows and .gitlab-ci.yml run it before hack/test.sh.
#
# Usage: hack/ci-tools.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# keep_only PATH deletes the siblings of PATH's directory: toolchain/<key>/bin
# keeps toolchain/<key>, onnxruntime/<version>/libonnxruntime.so.1 keeps
# onnxruntime/<version>.
keep_only() {
  local keep parent
  keep=$(dirname "$1")
  parent=$(dirname "$keep")
  find "$parent" -mindepth 1 -maxdepth 1 ! -name "$(basename "$keep")" -print -exec rm -rf {} +
}

toolchain_bin=$(hack/toolchain.sh)
keep_only "$toolchain_bin"
onnxruntime_lib=$(model/hack/onnxruntime.sh)
keep_only "$onnxruntime_lib"
