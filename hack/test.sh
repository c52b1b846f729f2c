#!/usr/bin/env bash
# The project's test command (README "Tests"; CI's .ci/run calls it):
#
#   hack/test.sh
#
# 1. installs what the tests need: the system packages (hack/deps.sh), and,
#    each pinned and cached under
#    ${MLOPS_CACHE:-$HOME/.cache/mlops}: actionlint, the onnxruntime library,
#    and the toolchain of the end-to-end test (pulumi CLI, Kubernetes provider,
#    local control plane; ~19 min the first time on 2 cores, 0.04 s after);
# 2. checks formatting and vets both Go modules (the program, and model/);
# 3. runs every test of both modules, the end-to-end test included.
#
# MLOPS_SKIP_E2E=1 leaves the toolchain out (the e2e test then skips loudly;
# never in CI, where it fails instead).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

# The system packages (silent when all are there; installs what is missing as
# root or with password-less sudo, else fails naming the packages).
hack/deps.sh full

step "formatting"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	printf 'gofmt would change:\n%s\n' "$unformatted" >&2
	exit 1
fi

step "workflow lint"
hack/actionlint.sh

step "onnxruntime"
ONNXRUNTIME_LIB=$(model/hack/onnxruntime.sh)
export ONNXRUNTIME_LIB

if [ "${MLOPS_SKIP_E2E:-}" != 1 ]; then
	step "end-to-end toolchain"
	MLOPS_TOOLCHAIN_BIN=$(hack/toolchain.sh)
	export MLOPS_TOOLCHAIN_BIN
fi

step "vet"
go vet ./...
(cd model && go vet ./...)

step "tests: the program"
# The root package's end-to-end tests (control plane with kwok, then a real
# node with image builds and rollouts under load) take longer than go test's
# default 10 minutes per package.
go test -count=1 -timeout 60m ./...

step "tests: the model server"
(cd model && go test -count=1 ./...)
