#!/usr/bin/env bash
# Lints the GitHub Actions workflows (.github/workflows/*.yml) with actionlint,
# built once from the Go module proxy at a pinned version and cached in
# ${MLOPS_CACHE:-$HOME/.cache/mlops}/bin. Exits non-zero on any finding.
#
# actionlint also lints every `run:` script with ShellCheck when the
# `shellcheck` binary is on PATH (GitHub's ubuntu runners have it; on Debian:
# apt-get install shellcheck). Without it those scripts are not linted; this
# script says so rather than installing system packages behind your back.
#
# Usage: hack/actionlint.sh [actionlint flags]   e.g. hack/actionlint.sh -color
set -euo pipefail

version=v1.7.12

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bindir=${MLOPS_CACHE:-$HOME/.cache/mlops}/bin
bin=$bindir/actionlint-$version

if [[ ! -x $bin ]]; then
  echo "actionlint: installing github.com/rhysd/actionlint/cmd/actionlint@$version into $bindir" >&2
  mkdir -p "$bindir"
  tmp=$(mktemp -d "$bindir/.actionlint.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # Built outside this module (pkg@version ignores go.mod), so neither its
  # dependencies nor a broken build of ours get in the way.
  (cd "$tmp" && GOBIN=$tmp GOFLAGS='' go install "github.com/rhysd/actionlint/cmd/actionlint@$version")
  mv "$tmp/actionlint" "$bin" # atomic: a concurrent run sees all or nothing
fi

if ! command -v shellcheck > /dev/null; then
  echo "actionlint: shellcheck not on PATH, run: scripts are not shellchecked" >&2
fi

cd "$root"
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
if (( ${#workflows[@]} == 0 )); then
  echo "actionlint: no workflow in .github/workflows" >&2
  exit 1
fi
"$bin" "$@" "${workflows[@]}"
echo "actionlint $version: ${#workflows[@]} workflow(s) clean" >&2
