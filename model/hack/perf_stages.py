"""Server CPU per request, stage by stage, from `perf script` output of a
profiled load run (hack/profile.sh). Each sample is charged to the first
stage, in the order below, that any frame of its call chain belongs to, so
a stage includes what it calls (allocation, copies, syscalls).

Usage: perf script -i perf.data | python3 perf_stages.py CPU_US_PER_REQUEST
"""
import re
import sys
from collections import Counter

STAGES = [  # resize first: it runs inside the JPEG decode call (libjpeg.View)
    ("PNG/GIF decode", re.compile(r"image/png\.|image/gif\.|compress/(flate|zlib)\.|hash/(crc32|adler32)\.")),
    ("gray + resize", re.compile(r"internal/preprocess\.(Into|Resize|Gray|resize|horizontal|grayRows|\(\*spans\)|finish)")),
    ("JPEG decode", re.compile(r"internal/jpeg\.|internal/libjpeg\.|\bplj_|\bjpeg_|\bjsimd_|decode_mcu|\bjinit_|process_data_|\bjdiv_round|\bjcopy_|h2v[12]_|\bfill_bit_buffer|\bjpeg_fill_bit_buffer|\bjpeg_huff_decode|start_input_pass|consume_data|decompress_(onepass|data|smooth_data)|\bjpeg_idct|\bgrayscale_convert|\bjsimd")),
    ("inference (onnxruntime)", re.compile(r"libonnxruntime|internal/classifier\.|onnxruntime_go\.")),
    ("multipart parsing", re.compile(r"mime/multipart\.|net/textproto\.\(\*Reader\)\.ReadMIMEHeader")),
    ("body read / buffers", re.compile(r"internal/server\.readBody|internal/server\.\(\*heldBody\)|io\.ReadAll")),
    ("JSON", re.compile(r"encoding/json\.|internal/server\.(appendPrediction|writeJSON)")),
    ("metrics", re.compile(r"prometheus")),
    ("GC (background)", re.compile(r"runtime\.(gcBgMarkWorker|bgsweep|bgscavenge|gcDrain)")),
    ("HTTP server + socket I/O", re.compile(r"net/http\.|net\.\(\*conn\)|bufio\.|internal/poll\.")),
    ("scheduler / other runtime", re.compile(r"runtime\.")),
]


def classify(frames):
    for name, pattern in STAGES:
        if any(pattern.search(f) for f in frames):
            return name
    return "unattributed (no call chain)"


def main():
    per_request = float(sys.argv[1])
    counts = Counter()
    frames = []
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                counts[classify(frames)] += 1
            frames = []
        elif line.startswith((" ", "\t")):
            frames.append(line.strip())
        else:
            frames = [line]  # the sample's header line (comm, pid, event)
    if frames:
        counts[classify(frames)] += 1
    total = sum(counts.values())
    print(f"{'stage':28} {'share':>6} {'us/request':>10}   ({total} samples)")
    for name, _ in STAGES + [("unattributed (no call chain)", None)]:
        if counts[name]:
            share = counts[name] / total
            print(f"{name:28} {share:6.1%} {share * per_request:10.0f}")
    print(f"{'total':28} {1:6.1%} {per_request:10.0f}")


main()
