#!/usr/bin/env bash
# The project's test command (README "Run the tests", docs/testing.md; CI's
# .ci/run calls it), in two
# tiers named for what they need (internal/testenv decides, per test):
#
#   hack/test.sh              the full tier (MLOPS_TEST_TIER=full): every proof
#   hack/test.sh --hermetic   the hermetic tier (MLOPS_TEST_TIER=hermetic): the
#                             gate of the pipelines on hosted runners
#
# Both:
# 1. install what the tests need: the tier's system packages (hack/deps.sh),
#    and, each pinned and cached under
#    ${MLOPS_CACHE:-$HOME/.cache/mlops}: actionlint and the onnxruntime
#    library; the full tier also the toolchain of the end-to-end test (pulumi
#    CLI, Kubernetes provider, local control plane; what it costs the first
#    time: docs/testing.md, "What a first run costs"; a lookup after);
# 2. check formatting and vet both Go modules (the program, and model/);
# 3. run every test of both modules. In the full tier a test that lacks what
#    it needs (root, a Docker engine with the stand-in bases, the toolchain,
#    the planets dataset in ../shared or $PLANETS_DATA) fails. In the
#    hermetic tier such a test is skipped with a message, so it runs as any
#    user, without root, Docker, the dataset or the toolchain: formatting,
#    vet, actionlint, the program under mocks, the pipelines, config,
#    fingerprint, and the model server against the real onnxruntime (it needs
#    Go, npm, jq, curl, shellcheck and libjpeg-turbo's headers).
#
# MLOPS_SKIP_E2E=1 (full tier only) leaves the toolchain out and runs the
# tests without a tier: whatever is missing then skips loudly instead of
# failing. Never in CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

case "${1:-}" in
--hermetic) tier=hermetic ;;
"") tier=full ;;
*) echo "usage: hack/test.sh [--hermetic]" >&2; exit 2 ;;
esac
if [ "$tier" = full ] && [ "${MLOPS_SKIP_E2E:-}" = 1 ]; then
	tier=
fi
export MLOPS_TEST_TIER=$tier
step "tier: ${tier:-none (MLOPS_SKIP_E2E=1)}"

# The system packages of the tier (silent when all are there; installs what
# is missing as root or with password-less sudo, else fails naming them).
hack/deps.sh "${tier:-hermetic}"

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

if [ "$tier" = full ]; then
	step "end-to-end toolchain"
	MLOPS_TOOLCHAIN_BIN=$(hack/toolchain.sh)
	export MLOPS_TOOLCHAIN_BIN
fi

step "vet"
go vet ./...
(cd model && go vet ./...)

step "tests: the program"
# The end-to-end proofs (test/e2e: control plane with kwok, then a real
# node with image builds and rollouts under load) take longer than go test's
# default 10 minutes per package. The pipelines' runner box (a whole
# hermetic gate compiled and run as another user) goes after them, not beside
# them: on 2 cores its compile starved the kwok and real-node proofs (pods
# unready after a rollout, the autoscaler's load under target).
go test -count=1 -timeout 60m $(go list ./... | grep -v -e '/pipelines$' -e '/cmd/local$')
# The main job's test (an image build, a real node, two `up`s) after them,
# as when it sat in one package with the end-to-end proofs.
go test -count=1 -timeout 60m ./cmd/local/
go test -count=1 -timeout 60m ./pipelines/

if [ "$tier" = full ]; then
	# The endpoint address against pulumi-gcp's generated compute.NewAddress,
	# request for request: that package takes 6-7 GB to compile, so only the
	# full tier compiles it, never the hermetic gate (docs/compile-memory.md).
	step "tests: the endpoint address against the generated SDK"
	go test -count=1 -tags sdkparity -run SDK ./infra/
fi

step "tests: the model server"
(cd model && go test -count=1 ./...)
