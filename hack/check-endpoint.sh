#!/usr/bin/env bash
# Checks a deployed model server the way the guide checks it by hand: waits
# for GET /readyz to answer 200, then POSTs a held-out image to /predict (a
# multipart "file", as MLEM's server took it) and fails, printing the
# response, unless the predicted label is the expected one. Both pipelines
# run it after `pulumi up`, with the endpoint from the stack output.
#
# Usage: hack/check-endpoint.sh <endpoint> <image file> <expected label>
#   e.g. hack/check-endpoint.sh http://34.65.12.34:8080 model/testdata/parity/original_128.jpg Earth
#
# CHECK_ATTEMPTS (default 30) and CHECK_DELAY (seconds, default 10) bound the
# wait for /readyz: a new LoadBalancer address can take a minute or two to
# route. Every request has its own timeout.
set -euo pipefail

if (( $# != 3 )); then
  echo "usage: $0 <endpoint> <image file> <expected label>" >&2
  exit 2
fi
endpoint=${1%/}
image=$2
want=$3
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

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# request METHOD PATH [curl args...]: prints the HTTP status (000 when no
# answer came) and leaves the answer in $tmp/body, curl's error in $tmp/error.
request() {
  local method=$1 path=$2
  shift 2
  : >"$tmp/body"
  curl --silent --show-error --max-time 30 --connect-timeout 5 --request "$method" \
    --output "$tmp/body" --write-out '%{http_code}' "$@" "$endpoint$path" 2>"$tmp/error" || true
}

status=000
for ((i = 1; i <= attempts; i++)); do
  status=$(request GET /readyz)
  if [[ $status == 200 ]]; then
    break
  fi
  echo "check-endpoint: $endpoint/readyz answered $status (attempt $i of $attempts)" >&2
  if ((i < attempts)); then sleep "$delay"; fi
done
if [[ $status != 200 ]]; then
  echo "check-endpoint: $endpoint/readyz did not answer 200 after $attempts attempts; the last answer ($status) was:" >&2
  cat "$tmp/body" "$tmp/error" >&2
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
# The server writes {"prediction":"<label>","probabilities":{...}}.
got=$(sed -n 's/.*"prediction"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' <<<"$response")
if [[ $got != "$want" ]]; then
  echo "check-endpoint: $endpoint/predict labelled $image \"$got\", expected \"$want\"; the response was:" >&2
  printf '%s\n' "$response" >&2
  exit 1
fi
echo "check-endpoint: $endpoint is ready and labels $image \"$got\", as expected"
