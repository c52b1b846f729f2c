"""The model's input preprocessing, shared by training (planets.py) and the
Go server's parity test (inputs.py): Pillow and numpy only, so computing
model inputs needs no deep-learning framework.

Defined here explicitly in numpy (not with Pillow's convert/resize) so that
the Go server (model/internal/preprocess) reproduces it exactly:

1. decode with Pillow (GIF: first frame);
2. grayscale as float64 on 0..255: a YCbCr JPEG's own luma plane Y (asked
   from the decoder with draft("YCbCr"), so no chroma upsampling or colour
   conversion happens: decoders differ there); an "L" image as is; a 16-bit
   gray PNG its samples' high byte (v >> 8), as Pillow itself reduces 16-bit
   RGB and gray+alpha PNGs (its convert() would clip them to 255 instead);
   anything else 0.299R + 0.587G + 0.114B of its 8-bit RGB (alpha ignored);
3. exact area-average resize to 32x32 (see area_weights);
4. / 255, float32, shape [1, 32, 32].
"""
import io

import numpy as np
from PIL import Image

SIDE = 32
LUMA = (0.299, 0.587, 0.114)


def area_weights(n: int) -> np.ndarray:
    """SIDE x n matrix: row o weights source pixel j by the length of
    [j, j+1) ∩ [o*n/SIDE, (o+1)*n/SIDE), divided by n/SIDE. Computed in
    integer 1/SIDE-pixel units, as the Go side does."""
    w = np.zeros((SIDE, n), dtype=np.float64)
    for o in range(SIDE):
        start, end = o * n, (o + 1) * n
        for j in range(start // SIDE, (end - 1) // SIDE + 1):
            overlap = min(end, (j + 1) * SIDE) - max(start, j * SIDE)
            w[o, j] = overlap / n
    return w


def gray(img: Image.Image) -> np.ndarray:
    """Grayscale float64 0..255 of a freshly opened Pillow image."""
    if img.format == "JPEG" and img.mode == "RGB":
        img.draft("YCbCr", img.size)  # decode to YCbCr at full size
        img.load()
        if img.mode == "YCbCr":
            return np.asarray(img, dtype=np.float64)[:, :, 0]
    if img.mode == "L":
        return np.asarray(img, dtype=np.float64)
    if img.format == "PNG" and img.mode in ("I", "I;16", "I;16B"):  # 16-bit gray
        return (np.asarray(img).astype(np.uint32) >> 8).astype(np.float64)
    rgb = np.asarray(img.convert("RGB"), dtype=np.float64)
    return LUMA[0] * rgb[:, :, 0] + LUMA[1] * rgb[:, :, 1] + LUMA[2] * rgb[:, :, 2]


def preprocess(data: bytes) -> np.ndarray:
    """Encoded image bytes -> float32 [1, 32, 32] in [0, 1]."""
    img = Image.open(io.BytesIO(data))
    g = gray(img)
    h, w = g.shape
    rows = g @ area_weights(w).T  # horizontal pass first, as in Go
    out = area_weights(h) @ rows
    return (out / 255).astype(np.float32).reshape(1, SIDE, SIDE)
