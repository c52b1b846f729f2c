#!/usr/bin/env bash
# Benchmark our server against the Python peer (the MLEM-style FastAPI +
# PyTorch server), with the same model, images and load, on 127.0.0.1 only.
# Each server gets the machine to itself in turn, so they do not steal CPU
# from each other. Bounded: BENCH_DURATION per concurrency level (+2 s warm-up).
#
# Usage: model/hack/bench.sh            (from anywhere; needs the dataset next
#                                        to the repo, Go, npm, and for the peer
#                                        Debian's python3-torch python3-onnx
#                                        python3-pil python3-fastapi
#                                        python3-uvicorn python3-multipart)
# Env: BENCH_DURATION (10s), BENCH_CONCURRENCY (1,32), PLANETS_DATA, PEER,
#      BENCH_CLIENT: wrk (Debian package wrk, with hack/predict.lua; the
#      default when installed) or go (the built-in Go client). The load
#      generator shares the machine's cores with the server: wrk costs about
#      25 us of CPU a request, the Go client about 4 times that (each run
#      prints it), which the server then does not have.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd -P)"
model="$(dirname "$here")"
repo="$(dirname "$model")"
data="${PLANETS_DATA:-$repo/../shared/datasets/planets}"
peer="${PEER:-$repo/../shared/peers/python-fastapi/server.py}"
duration="${BENCH_DURATION:-10s}"
levels="${BENCH_CONCURRENCY:-1,32}"
onnx="$model/artifacts/planets.onnx"
labels="$model/artifacts/labels.json"
images="$model/artifacts/heldout.txt" # held-out dataset images, real sizes

lib="$("$here/onnxruntime.sh")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$model" && go build -o "$tmp/server" . && go build -o "$tmp/bench" ./hack/bench)

echo "== machine: $(nproc) cores, $(go version | cut -d' ' -f3), onnxruntime $(basename "$(dirname "$lib")")"
echo "== per-request stages, ours (go test -bench; 128x128 JPEG)"
(cd "$model" && ONNXRUNTIME_LIB="$lib" go test -run '^$' -bench '^(BenchmarkTensor|BenchmarkPredict)$' -benchtime 3000x \
  ./internal/preprocess ./internal/classifier) | grep '^Benchmark'
echo "== per-request stages, peer"
PEER="$peer" /usr/bin/python3 "$here/peer_stages.py" "$onnx" "$labels" "$images" "$data" 2000

client="${BENCH_CLIENT:-wrk}"
if [ "${BENCH_WRK:-}" = 1 ]; then client=wrk; fi # the older switch
if [ "$client" = wrk ] && ! command -v wrk >/dev/null; then
	echo "bench: wrk is not installed (Debian package wrk): the built-in Go client generates the load" >&2
	client=go
fi
load=()
case "$client" in
wrk) load=(-wrk "$(command -v wrk)" -wrk-script "$here/predict.lua") ;;
go) ;;
*)
	echo "bench: BENCH_CLIENT=$client: want wrk or go" >&2
	exit 2
	;;
esac

echo "== load: POST /predict multipart, $duration per level, clients $levels${load:+ (wrk)}"
"$tmp/bench" -name ours -port 18080 -ready /readyz -images "$images" -root "$data" \
  -concurrency "$levels" -duration "$duration" "${load[@]}" -- \
  env HOST=127.0.0.1 PORT=18080 MODEL_PATH="$onnx" ONNXRUNTIME_LIB="$lib" DRAIN_DELAY=0s LOG_LEVEL=warn "$tmp/server"
"$tmp/bench" -name peer -port 18081 -ready /healthz -images "$images" -root "$data" \
  -concurrency "$levels" -duration "$duration" "${load[@]}" -- \
  /usr/bin/python3 "$peer" "$onnx" "$labels" 18081
