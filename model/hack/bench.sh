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
#      BENCH_WRK=1 to generate the load with wrk (Debian package wrk) and
#      hack/predict.lua instead of the built-in Go client.
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

load=()
if [ "${BENCH_WRK:-}" = 1 ]; then load=(-wrk "$(command -v wrk)" -wrk-script "$here/predict.lua"); fi

echo "== load: POST /predict multipart, $duration per level, clients $levels${load:+ (wrk)}"
"$tmp/bench" -name ours -port 18080 -ready /readyz -images "$images" -root "$data" \
  -concurrency "$levels" -duration "$duration" "${load[@]}" -- \
  env HOST=127.0.0.1 PORT=18080 MODEL_PATH="$onnx" ONNXRUNTIME_LIB="$lib" DRAIN_DELAY=0s LOG_LEVEL=warn "$tmp/server"
"$tmp/bench" -name peer -port 18081 -ready /healthz -images "$images" -root "$data" \
  -concurrency "$levels" -duration "$duration" "${load[@]}" -- \
  /usr/bin/python3 "$peer" "$onnx" "$labels" 18081
