#!/usr/bin/env bash
# gke-gcloud-auth-plugin, which the program's kubeconfig calls to reach the
# GKE API (it asks gcloud for the token), without installing a whole Cloud
# SDK. Nothing when both are on PATH. Elsewhere (a runner without gcloud),
# it says what to install.
#
# GitHub's ubuntu-24.04 image installs gcloud from Google's apt repository
# and then deletes that repository's list and signing key
# (actions/runner-images, images/ubuntu/scripts/build/install-google-cloud-cli.sh),
# and `gcloud components install` is disabled for an apt install. So the
# repository comes back first, signed by Google's key, as Google's install
# guide for Debian and Ubuntu writes it (and .gitlab-ci.yml does): the list
# in apt's sources.list.d, the key in apt's keyrings directory. Then the
# plugin is that list's one package.
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
repo=https://packages.cloud.google.com/apt
# apt's own directories (APT_CONFIG and apt.conf can move them).
sourceparts='' etc=''
eval "$(apt-config shell sourceparts Dir::Etc::sourceparts/d etc Dir::Etc/d)"
: "${sourceparts:?apt-config names no Dir::Etc::sourceparts}" "${etc:?apt-config names no Dir::Etc}"

# Google's list, if the runner kept one: a one-line list naming cloud-sdk.
list=$(grep -lw 'cloud-sdk' "$sourceparts"*.list 2>/dev/null | head -n1 || true)
if [[ -z $list ]]; then
  keyring=${etc}keyrings/cloud.google.gpg
  list=${sourceparts}google-cloud-sdk.list
  echo "gke-auth-plugin: no apt source for Google's cloud-sdk repository (the runner image removes it): adding $list, signed by $keyring" >&2
  "${as_root[@]}" mkdir -p "${etc}keyrings"
  curl -fsSL --retry 3 "$repo/doc/apt-key.gpg" | "${as_root[@]}" gpg --dearmor --yes --batch -o "$keyring"
  echo "deb [signed-by=$keyring] $repo cloud-sdk main" | "${as_root[@]}" tee "$list" >/dev/null
fi
# Only Google's list: the runner's other sources need no refresh for this.
"${as_root[@]}" apt-get update -qq -o Dir::Etc::sourcelist="$list" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends google-cloud-cli-gke-gcloud-auth-plugin >/dev/null
gke-gcloud-auth-plugin --version >&2
