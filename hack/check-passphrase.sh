#!/usr/bin/env bash
# Fails at once, saying what to set, when a stack encrypts its secrets with a
# passphrase and PULUMI_CONFIG_PASSPHRASE is empty or unset. Pulumi itself
# would take an empty passphrase as a passphrase and fail later, and less
# clearly ("incorrect passphrase"). A stack with another secrets provider
# (Cloud KMS, Pulumi Cloud) needs none and passes.
#
# Usage: hack/check-passphrase.sh <stack>     e.g. hack/check-passphrase.sh dev
set -euo pipefail

stack=${1:?usage: hack/check-passphrase.sh <stack>}
file="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/Pulumi.$stack.yaml"

if [[ -n ${PULUMI_CONFIG_PASSPHRASE:-} || -n ${PULUMI_CONFIG_PASSPHRASE_FILE:-} ]]; then
  exit 0
fi
# `pulumi stack init` with the passphrase provider writes encryptionsalt.
if [[ -f $file ]] && grep -q '^encryptionsalt:' "$file"; then
  message="PULUMI_CONFIG_PASSPHRASE is empty, but stack $stack encrypts its secrets with a passphrase (Pulumi.$stack.yaml has an encryptionsalt): set the CI secret PULUMI_CONFIG_PASSPHRASE (GitLab: a masked variable scoped to the environment dev), see README.md#continuous-deployment"
  if [[ ${GITHUB_ACTIONS:-} == true ]]; then
    echo "::error::$message"
  fi
  echo "check-passphrase: $message" >&2
  exit 1
fi
