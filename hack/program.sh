#!/usr/bin/env bash
# The Pulumi program as Pulumi.yaml's runtime.options.binary: builds it
# (`go build -o bin/mlops .`, which compiles and links nothing when the
# binary is up to date) and runs it. CI builds it in a step of its own, so
# `pulumi preview` and `pulumi up` each start it in a second or two instead
# of compiling and linking it again, as `runtime: go` alone does on every
# command; a local `pulumi up` still always runs the code of the work tree,
# never a stale binary. Only non-test files are linked (`go build`).
#
# MLOPS_PROGRAM_BIN overrides the binary's path (default bin/mlops, ignored
# by git).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${MLOPS_PROGRAM_BIN:-bin/mlops}
# stdout is the program's: Pulumi shows it. go build writes only errors, to
# stderr.
# The first build compiles the whole program, pulumi-gcp most of it, and
# go build prints nothing meanwhile: say so on stderr (stdout is Pulumi's).
if [ ! -x "$bin" ]; then
	echo "hack/program.sh: compiling the Pulumi program into $bin the first time (go build; about 10 minutes on 2 cores with an empty Go build cache, seconds after)" >&2
fi
# GOGC for the compiler only (the program runs with Go's default): a cold
# compile then fits a 7 GB machine (docs/compile-memory.md).
GOGC=${GOGC:-50} go build -o "$bin" .
exec "$bin" "$@"
