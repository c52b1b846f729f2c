#!/usr/bin/env bash
# gke-gcloud-auth-plugin, which the program's kubeconfig calls to reach the
# GKE API (it asks gcloud for the token), without installing a whole Cloud
# SDK: GitHub's ubuntu-24.04 image has gcloud from Google's apt repository,
# so the plugin is its one package from there. Nothing when both are on
# PATH. Elsewhere (a runner without gcloud), it says what to install.
#
# Usage: hack/gke-auth-plugin.sh
set -euo pipefail

if command -v gke-gcloud-auth-plugin >/dev/null && command -v gcloud >/dev/null; then
  echo "gke-auth-plugin: gcloud and gke-gcloud-auth-plugin are on PATH" >&2
  exit 0
fi
if ! command -v gcloud >/dev/null; then
  echo "gke-auth-plugin: gcloud is not on PATH; install the Google Cloud CLI with its gke-gcloud-auth-plugin component (docs/gke.md, section Prerequisites)" >&2
  exit 1
fi
as_root=()
if [[ $(id -u) != 0 ]]; then
  as_root=(sudo --non-interactive)
fi
# Only Google's list: the runner's other sources need no refresh for this.
list=$(grep -lw 'cloud-sdk' /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 || true)
if [[ -n $list ]]; then
  "${as_root[@]}" apt-get update -qq -o Dir::Etc::sourcelist="$list" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
else
  "${as_root[@]}" apt-get update -qq
fi
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends google-cloud-cli-gke-gcloud-auth-plugin >/dev/null
gke-gcloud-auth-plugin --version >&2
