"""Model inputs of encoded images, by the training code's preprocessing
(preprocess.py: Pillow and numpy, no torch), for
the Go server's parity test over the whole dataset
(model/internal/preprocess: TestDatasetParity).

Usage: /usr/bin/python3 training/inputs.py < PATHS > INPUTS
PATHS: one image path a line. INPUTS: for each, 1024 little-endian float32
(the [1, 32, 32] input, row-major), in order.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import preprocess  # noqa: E402

out = sys.stdout.buffer
for path in sys.stdin.read().splitlines():
    with open(path, "rb") as f:
        x = preprocess.preprocess(f.read())
    out.write(x.astype("<f4").tobytes())
