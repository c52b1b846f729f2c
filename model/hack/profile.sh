#!/usr/bin/env bash
# Server CPU per request, stage by stage: runs a model server binary on
# 127.0.0.1 under wrk load (hack/predict.lua, multipart uploads of held-out
# images, BENCH_CLIENTS closed-loop clients for BENCH_DURATION) while
# `perf record` samples it, then charges the samples to request stages
# (hack/perf_stages.py) and scales them by the server's measured CPU time
# per request. Bounded in time; only 127.0.0.1 is contacted.
#
# Usage: model/hack/profile.sh [SERVER_BINARY]   (default: build this model/;
#        PERF_DATA=FILE keeps the samples for perf report)
# Needs: perf (Debian linux-perf), wrk, the dataset next to the repo.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd -P)"
model="$(dirname "$here")"
repo="$(dirname "$model")"
data="${PLANETS_DATA:-$repo/../shared/datasets/planets}"
duration="${BENCH_DURATION:-10}"
clients="${BENCH_CLIENTS:-32}"
port="${PORT:-18090}"
lib="$("$here/onnxruntime.sh")"
tmp="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT

server="${1:-}"
if [ -z "$server" ]; then
	(cd "$model" && go build -o "$tmp/server" .)
	server="$tmp/server"
fi
HOST=127.0.0.1 PORT="$port" MODEL_PATH="$model/artifacts/planets.onnx" ONNXRUNTIME_LIB="$lib" \
	DRAIN_DELAY=0s LOG_LEVEL=warn "$server" &
pid=$!
for _ in $(seq 200); do
	curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
	sleep 0.05
done
url="http://127.0.0.1:$port"
wrk -t 2 -c "$clients" -d 2s -s "$here/predict.lua" "$url" -- "$model/artifacts/heldout.txt" "$data" >/dev/null # warm-up
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(cpu_ticks)
perf record -q -e cpu-clock -F 999 -g -p "$pid" -o "$tmp/perf.data" -- sleep "$duration" &
perf_pid=$!
out=$(wrk -t 2 -c "$clients" -d "${duration}s" -s "$here/predict.lua" "$url" -- "$model/artifacts/heldout.txt" "$data")
wait "$perf_pid"
after=$(cpu_ticks)
requests=$(sed -n 's/^wrk: \([0-9]*\) requests.*/\1/p' <<<"$out")
hz=$(getconf CLK_TCK)
us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')
echo "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); server CPU per request: $us us ($requests requests, ${duration}s, $clients clients)"
perf script -i "$tmp/perf.data" 2>/dev/null | python3 "$here/perf_stages.py" "$us"
if [ -n "${PERF_DATA:-}" ]; then cp "$tmp/perf.data" "$PERF_DATA"; fi
