#!/usr/bin/env bash
# The main job on a machine without a cloud (README "On a fresh machine"):
# deploys the committed model with the real Pulumi engine and Kubernetes
# provider to a throwaway control plane on 127.0.0.1, runs `up` a second time
# to show that the same model changes nothing, then serves the model and asks
# it about one image (default: a held-out planet; pass a path for another).
#
# The first run builds the toolchain (~19 min on 2 cores, cached after).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MLOPS_TOOLCHAIN_BIN=$(hack/toolchain.sh)
ONNXRUNTIME_LIB=$(model/hack/onnxruntime.sh)
export MLOPS_TOOLCHAIN_BIN ONNXRUNTIME_LIB
exec go run . local "$@"
