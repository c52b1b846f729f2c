"""Small models unlike ours, for the tests of the model contract (model/
internal/contract): each trained briefly with PyTorch on the planets dataset
(the guide's seed 77 and 20 % held-out split, training/planets.py) and
exported to ONNX with its declaration (model.json), laid out like
model/artifacts/ so the same code reads it:

    model/testdata/models/<name>/artifacts/planets.onnx, model.json

- guide:  the MLOps guide's Keras model as tf2onnx exports it: NHWC input
          named "conv2d_input" [N,32,32,1], 0..1, bilinear resize (the guide
          serves it with tf.image.resize), logits output "dense_1", 10
          classes; Conv2D(8, 3x3, relu) -> MaxPool(3x3) -> Flatten (in HWC
          order, as Keras) -> Dense(16, relu) -> Dense(10). (The guide's
          conv_size/dense_size are larger; smaller keeps the file in KBs.)
- rgb64:  NCHW [N,3,64,64] RGB, area resize, mean/std range, logits, 10
          classes.
- three:  NCHW [N,1,32,32] gray, bilinear, logits, 3 classes (Jupiter, Mars,
          Moon), tensors named "image" and "scores".
- probs:  NCHW [N,1,32,32] gray, area, 0..1, a softmax inside: the output
          "probabilities" is a distribution already.

The evaluation set the tests use is the committed one (model/eval/: each
image the luma plane of a held-out JPEG, stored as gray PNG), so the RGB
model is trained on colour and gray copies of each image alike.

Run (two to three minutes on 2 cores):  /usr/bin/python3 training/make_test_models.py
Then, in model/: MLOPS_UPDATE_FIXTURES=1 go test -run TestModelsUnlikeOurs .
writes their reports.
"""
import io
import json
import os

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

import planets

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.path.join(REPO, "..", "shared", "datasets", "planets")
OUT = os.path.join(REPO, "model", "testdata", "models")
LUMA = (0.299, 0.587, 0.114)


def area_weights(n, out):
    w = np.zeros((out, n))
    for o in range(out):
        start, end = o * n, (o + 1) * n
        for j in range(start // out, (end - 1) // out + 1):
            w[o, j] = (min(end, (j + 1) * out) - max(start, j * out)) / n
    return w


def decode(path, channels):
    """[channels, h, w] float64 0..255, as the server decodes (JPEG luma
    plane for gray; libjpeg's RGB for colour)."""
    data = open(path, "rb").read()
    img = Image.open(io.BytesIO(data))
    if channels == 1:
        return planets.preprocess.__globals__["gray"](img)[None]
    return np.asarray(img.convert("RGB"), dtype=np.float64).transpose(2, 0, 1)


def resize(p, method, side):
    if method == "area":
        wy, wx = area_weights(p.shape[1], side), area_weights(p.shape[2], side)
        return np.stack([wy @ c @ wx.T for c in p])
    x = torch.from_numpy(p)[None]
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=False)[0].numpy()


class Guide(nn.Module):
    """The guide's Keras net, NHWC in and Keras's flatten order."""

    def __init__(self, classes):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.pool = nn.MaxPool2d(3)
        self.dense = nn.Linear(8 * 10 * 10, 16)
        self.out = nn.Linear(16, classes)

    def forward(self, x):  # x: [N, 32, 32, 1]
        x = self.pool(F.relu(self.conv(x.permute(0, 3, 1, 2))))
        x = torch.flatten(x.permute(0, 2, 3, 1), 1)  # HWC order, as Keras's Flatten
        return self.out(F.relu(self.dense(x)))


class Small(nn.Module):
    def __init__(self, channels, side, classes, softmax=False):
        super().__init__()
        self.conv = nn.Conv2d(channels, 6, 3)
        self.pool = nn.MaxPool2d(4 if side == 64 else 3)
        n = (side - 2) // (4 if side == 64 else 3)
        self.dense = nn.Linear(6 * n * n, 16)
        self.out = nn.Linear(16, classes)
        self.softmax = softmax

    def forward(self, x):
        x = torch.flatten(self.pool(F.relu(self.conv(x))), 1)
        x = self.out(F.relu(self.dense(x)))
        return torch.softmax(x, dim=1) if self.softmax else x


def train(model, x, y, epochs, lr=3e-3):
    planets.seed_everything()
    gen = torch.Generator().manual_seed(planets.SEED)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(32):
            opt.zero_grad()
            out = model(x[idx])
            loss = F.nll_loss(torch.log(out + 1e-9), y[idx]) if getattr(model, "softmax", False) else F.cross_entropy(out, y[idx])
            loss.backward()
            opt.step()
    model.eval()
    return model


def export(model, name, sample, input_name, output_name, declaration):
    folder = os.path.join(OUT, name, "artifacts")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "planets.onnx")
    torch.onnx.export(model, sample, path, input_names=[input_name], output_names=[output_name],
                      dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                      opset_version=17, do_constant_folding=True)
    m = onnx.load(path)
    m.producer_name = "planets-mlops training/make_test_models.py"
    del m.metadata_props[:]
    onnx.save(m, path)
    with open(os.path.join(folder, "model.json"), "w") as f:
        json.dump(dict({"format": "model-declaration/v1"}, **declaration), f, indent=2)
        f.write("\n")
    print(f"{name}: {os.path.getsize(path)} bytes")


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main():
    items, labels = planets.list_dataset(DATA)
    train_items, test_items = planets.split(items)
    paths = {p: os.path.join(DATA, p) for p, _ in items}
    gray = {p: decode(paths[p], 1) for p, _ in items}

    def tensors(subset, channels, method, side, nhwc=False, classes=None, gray_copies=False):
        xs, ys = [], []
        for p, c in subset:
            if classes is not None:
                if labels[c] not in classes:
                    continue
                c = classes.index(labels[c])
            srcs = [gray[p]] if channels == 1 else [decode(paths[p], 3)]
            if gray_copies:
                srcs.append(np.repeat(gray[p], 3, axis=0))
            for s in srcs:
                v = resize(s, method, side) / 255.0
                xs.append(v.transpose(1, 2, 0) if nhwc else v)
                ys.append(c)
        return torch.from_numpy(np.stack(xs).astype(np.float32)), torch.tensor(ys)

    # The guide's model.
    x, y = tensors(train_items, 1, "bilinear", 32, nhwc=True)
    xt, yt = tensors(test_items, 1, "bilinear", 32, nhwc=True)
    m = train(Guide(10), x, y, epochs=30, lr=1e-3)
    print(f"guide: held-out accuracy {accuracy(m, xt, yt):.3f}")
    export(m, "guide", torch.zeros(1, 32, 32, 1), "conv2d_input", "dense_1",
           {"layout": "NHWC", "channels": 1, "range": "0..1", "resize": "bilinear", "output": "logits", "labels": labels})

    # 64x64 RGB, mean/std.
    mean, std = [0.3, 0.3, 0.3], [0.25, 0.25, 0.25]
    x, y = tensors(train_items, 3, "area", 64, gray_copies=True)
    xt, yt = tensors(test_items, 3, "area", 64)
    norm = lambda t: (t - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)  # noqa: E731
    m = train(Small(3, 64, 10), norm(x), y, epochs=10)
    print(f"rgb64: held-out accuracy {accuracy(m, norm(xt), yt):.3f}")
    export(m, "rgb64", torch.zeros(1, 3, 64, 64), "pixels", "logits",
           {"layout": "NCHW", "channels": 3, "range": "mean_std", "mean": mean, "std": std, "resize": "area", "output": "logits", "labels": labels})

    # Three classes.
    three = ["Jupiter", "Mars", "Moon"]
    x, y = tensors(train_items, 1, "bilinear", 32, classes=three)
    xt, yt = tensors(test_items, 1, "bilinear", 32, classes=three)
    m = train(Small(1, 32, 3), x, y, epochs=15)
    print(f"three: held-out accuracy {accuracy(m, xt, yt):.3f}")
    export(m, "three", torch.zeros(1, 1, 32, 32), "image", "scores",
           {"layout": "NCHW", "channels": 1, "range": "0..1", "resize": "bilinear", "output": "logits", "labels": three})

    # Probabilities out.
    x, y = tensors(train_items, 1, "area", 32)
    xt, yt = tensors(test_items, 1, "area", 32)
    m = train(Small(1, 32, 10, softmax=True), x, y, epochs=30)
    print(f"probs: held-out accuracy {accuracy(m, xt, yt):.3f}")
    export(m, "probs", torch.zeros(1, 1, 32, 32), "input", "probabilities",
           {"layout": "NCHW", "channels": 1, "range": "0..1", "resize": "area", "output": "probabilities", "labels": labels})


if __name__ == "__main__":
    main()
