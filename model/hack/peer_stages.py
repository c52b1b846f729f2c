"""Per-request stage timings of the Python peer's code path
(/work/shared/peers/python-fastapi/server.py): Pillow decode + convert("L") +
resize(32x32, BILINEAR), then the PyTorch forward pass with softmax, one
thread, as the peer runs them. Run by hack/bench.sh; not part of the image.

Usage: /usr/bin/python3 peer_stages.py MODEL.onnx LABELS.json IMAGES_LIST ROOT [N]
"""
import importlib.util
import io
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

model_path, labels_path, images_list, root = sys.argv[1:5]
n = int(sys.argv[5]) if len(sys.argv) > 5 else 2000
peer_path = os.environ.get("PEER", os.path.join(root, "..", "..", "peers", "python-fastapi", "server.py"))

# Reuse the peer's own model builder so the timed forward pass is exactly its.
spec = importlib.util.spec_from_file_location("peer", peer_path)
peer = importlib.util.module_from_spec(spec)
sys.argv = [peer_path, model_path, labels_path]
spec.loader.exec_module(peer)  # builds peer.model; does not start uvicorn

paths = open(images_list).read().split()[:100]
blobs = [open(os.path.join(root, p), "rb").read() for p in paths]
pre, inf = [], []
for i in range(n):
    data = blobs[i % len(blobs)]
    t0 = time.perf_counter()
    img = Image.open(io.BytesIO(data)).convert("L").resize((32, 32), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).reshape(1, 1, 32, 32)
    t1 = time.perf_counter()
    with torch.no_grad():
        torch.softmax(peer.model(x), dim=1)[0].tolist()
    t2 = time.perf_counter()
    pre.append(t1 - t0)
    inf.append(t2 - t1)
print(f"peer stages: preprocessing {np.median(pre) * 1e6:.0f} us, inference {np.median(inf) * 1e6:.0f} us (medians of {n})")
