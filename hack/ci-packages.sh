#!/usr/bin/env bash
# The system packages the hermetic tier (hack/test.sh --hermetic) needs and a
# stock ubuntu-24.04 runner or Debian golang image may lack, installed from
# the distribution only when missing: npm (for the onnxruntime library),
# ShellCheck and jq (the pipelines' tests), curl (hack/check-endpoint.sh's
# test), and libjpeg-turbo's headers and static library (model/, cgo;
# libjpeg-dev is libjpeg-turbo on both Debian and Ubuntu). As root (GitLab's
# image) directly, otherwise through sudo (GitHub's runner user). Prints
# what it installs; nothing when all is there.
#
# Usage: hack/ci-packages.sh
set -euo pipefail

missing=()
command -v npm >/dev/null || missing+=(npm)
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
command -v gcc >/dev/null || missing+=(gcc)
[[ -f /usr/include/jpeglib.h ]] || missing+=(libjpeg-dev)
if ((${#missing[@]} == 0)); then
  echo "ci-packages: all present" >&2
  exit 0
fi
echo "ci-packages: installing ${missing[*]}" >&2
as_root=()
if [[ $(id -u) != 0 ]]; then
  as_root=(sudo --non-interactive)
fi
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
