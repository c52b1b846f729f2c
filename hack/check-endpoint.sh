#!/usr/bin/env bash
# Checks a deployed model server the way the guide checks it by hand: waits
# for GET /readyz to answer 200 naming the expected model (its
# "modelFingerprint"), then POSTs a held-out image to /predict (a multipart
# "file", as MLEM's server took it) and fails, printing the response,
# unless the answer comes from that model (its X-Model-Fingerprint header)
# and the predicted label is the expected one. A right label alone does not
# tell which model gave it. Both pipelines run it after `pulumi up`, with the
# stack outputs endpoint and modelFingerprint.
#
# Usage: hack/check-endpoint.sh <endpoint> <image file> <expected label> <model fingerprint>
#   e.g. hack/check-endpoint.sh http://34.65.12.34:8080 model/testdata/parity/original_128.jpg Earth 5d41402abc4b
#
# An endpoint inside the cluster (http://<service>.<namespace>.svc.cluster.local:<port>,
# what the program exports for a Service of type ClusterIP or NodePort) is
# not reachable from a CI runner: the check says so, says how to check by
# hand, and passes without checking (only a LoadBalancer Service is checked).
#
# CHECK_ATTEMPTS (default 30) and CHECK_DELAY (seconds, default 10) bound the
# wait for /readyz: a new LoadBalancer address can take a minute or two to
# route, and pods of the old model may answer until they have drained. Every
# request has its own timeout.
set -euo pipefail

if (($# != 4)); then
  echo "usage: $0 <endpoint> <image file> <expected label> <model fingerprint>" >&2
  exit 2
fi
endpoint=${1%/}
image=$2
want=$3
fingerprint=$4
attempts=${CHECK_ATTEMPTS:-30}
delay=${CHECK_DELAY:-10}

if [[ ! $endpoint =~ ^https?://[^/]+$ ]]; then
  echo "check-endpoint: endpoint $endpoint is not http(s)://host[:port]" >&2
  exit 2
fi
if [[ ! -f $image ]]; then
  echo "check-endpoint: no image file $image" >&2
  exit 2
fi
if [[ ! $fingerprint =~ ^[A-Za-z0-9._-]+$ ]]; then
  echo "check-endpoint: model fingerprint \"$fingerprint\" is not the stack output modelFingerprint (letters, digits, '.', '_', '-')" >&2
  exit 2
fi
host=${endpoint#*://}
host=${host%:*}
if [[ $host == *.svc.cluster.local ]]; then
  service=${host%.svc.cluster.local}
  msg="check-endpoint: NOT CHECKED: $endpoint is the in-cluster address of a Service of type ClusterIP or NodePort (mlops:serviceType), which a CI runner cannot reach; only a LoadBalancer Service is checked here. By hand: kubectl -n ${service#*.} port-forward svc/${service%%.*} 8080:${endpoint##*:} and hack/check-endpoint.sh http://127.0.0.1:8080 $image $want $fingerprint"
  if [[ ${GITHUB_ACTIONS:-} == true ]]; then
    echo "::warning::$msg"
  fi
  echo "$msg" >&2
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# request METHOD PATH [curl args...]: prints the HTTP status (000 when no
# answer came) and leaves the answer in $tmp/body, its headers in
# $tmp/headers, curl's error in $tmp/error.
request() {
  local method=$1 path=$2
  shift 2
  : >"$tmp/body"
  : >"$tmp/headers"
  curl --silent --show-error --max-time 30 --connect-timeout 5 --request "$method" \
    --output "$tmp/body" --dump-header "$tmp/headers" --write-out '%{http_code}' "$@" "$endpoint$path" 2>"$tmp/error" || true
}

# The server writes {"status":"ready","modelFingerprint":"<fingerprint>"}.
serving() { sed -n 's/.*"modelFingerprint"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$tmp/body"; }

status=000
served=
for ((i = 1; i <= attempts; i++)); do
  status=$(request GET /readyz)
  served=$(serving)
  if [[ $status == 200 && $served == "$fingerprint" ]]; then
    break
  fi
  if [[ $status == 200 ]]; then
    echo "check-endpoint: $endpoint/readyz is ready with model \"$served\", not $fingerprint (attempt $i of $attempts)" >&2
  else
    echo "check-endpoint: $endpoint/readyz answered $status (attempt $i of $attempts)" >&2
  fi
  if ((i < attempts)); then sleep "$delay"; fi
done
if [[ $status != 200 ]]; then
  echo "check-endpoint: $endpoint/readyz did not answer 200 after $attempts attempts; the last answer ($status) was:" >&2
  cat "$tmp/body" "$tmp/error" >&2
  exit 1
fi
if [[ $served != "$fingerprint" ]]; then
  echo "check-endpoint: $endpoint serves model \"$served\" (its /readyz modelFingerprint), not the stack's modelFingerprint $fingerprint, after $attempts attempts; the last answer was:" >&2
  cat "$tmp/body" >&2
  exit 1
fi

status=$(request POST /predict --form "file=@$image")
response=$(cat "$tmp/body")
if [[ $status != 200 ]]; then
  echo "check-endpoint: POST $endpoint/predict with $image answered $status:" >&2
  printf '%s\n' "$response" >&2
  cat "$tmp/error" >&2
  exit 1
fi
answered_by=$(sed -n 's/^[Xx]-[Mm]odel-[Ff]ingerprint:[[:space:]]*\([^[:space:]]*\).*/\1/p' "$tmp/headers" | tr -d '\r')
if [[ $answered_by != "$fingerprint" ]]; then
  echo "check-endpoint: $endpoint/predict was answered by model \"$answered_by\" (its X-Model-Fingerprint header), not the stack's modelFingerprint $fingerprint" >&2
  exit 1
fi
# The server writes {"prediction":"<label>","probabilities":{...}}.
got=$(sed -n 's/.*"prediction"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' <<<"$response")
if [[ $got != "$want" ]]; then
  echo "check-endpoint: $endpoint/predict labelled $image \"$got\", expected \"$want\"; the response was:" >&2
  printf '%s\n' "$response" >&2
  exit 1
fi
echo "check-endpoint: $endpoint is ready with model $fingerprint and labels $image \"$got\", as expected"
