"""Train the guide's planet CNN and export it for the Go server.

Usage (from the repo root, Debian's PyTorch):
    /usr/bin/python3 training/train.py [--data ../shared/datasets/planets] [--out model/artifacts]

Writes to --out:
    planets.onnx   the model (logits; labels in metadata "labels"), opset 17
    labels.json    class names in output order (for the Python peer server)
    metrics.json   held-out accuracy, per-class accuracy, confusion matrix
    heldout.txt    the held-out files, relative to the dataset root
Deterministic: the same dataset gives the same bytes.
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import planets  # noqa: E402

EPOCHS = 60
BATCH = 32
LR = 1e-3


def load(root, items):
    x = np.stack([planets.preprocess(open(os.path.join(root, p), "rb").read()) for p, _ in items])
    y = np.array([c for _, c in items], dtype=np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def evaluate(model, x, y, classes):
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    confusion = np.zeros((classes, classes), dtype=int)
    for t, p in zip(y.tolist(), pred.tolist()):
        confusion[t, p] += 1
    return float((pred == y).float().mean()), confusion


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(repo, "..", "shared", "datasets", "planets"))
    ap.add_argument("--out", default=os.path.join(repo, "model", "artifacts"))
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    # Another seed trains the same net to other weights (a second model for
    # the rollout test); the held-out split keeps planets.SEED either way.
    ap.add_argument("--seed", type=int, default=planets.SEED)
    args = ap.parse_args()

    planets.seed_everything(args.seed)
    items, labels = planets.list_dataset(args.data)
    train_items, test_items = planets.split(items)
    x_train, y_train = load(args.data, train_items)
    x_test, y_test = load(args.data, test_items)
    print(f"{len(train_items)} train, {len(test_items)} held out, {len(labels)} classes", flush=True)

    model = planets.PlanetCNN(len(labels))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        if epoch % 10 == 0 or epoch == args.epochs:
            train_acc, _ = evaluate(model, x_train, y_train, len(labels))
            test_acc, _ = evaluate(model, x_test, y_test, len(labels))
            print(f"epoch {epoch}: loss {total / len(x_train):.4f} train acc {train_acc:.4f} held-out acc {test_acc:.4f}", flush=True)

    accuracy, confusion = evaluate(model, x_test, y_test, len(labels))
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "planets.onnx")
    model.eval()
    torch.onnx.export(
        model, torch.zeros(1, 1, planets.SIDE, planets.SIDE), onnx_path,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17, do_constant_folding=True,
    )
    m = onnx.load(onnx_path)
    m.producer_name = "planets-mlops training/train.py"
    del m.metadata_props[:]
    m.metadata_props.add(key="labels", value=json.dumps(labels))
    m.metadata_props.add(key="preprocessing", value="gray(JPEG Y | L | BT.601 RGB) -> 32x32 area average -> /255")
    onnx.save(m, onnx_path)

    with open(os.path.join(args.out, "labels.json"), "w") as f:
        json.dump(labels, f)
        f.write("\n")
    per_class = {labels[i]: float(confusion[i, i] / confusion[i].sum()) for i in range(len(labels))}
    metrics = {
        "heldout_accuracy": accuracy,
        "heldout_count": len(test_items),
        "train_count": len(train_items),
        "per_class_accuracy": per_class,
        "confusion_matrix": {"labels": labels, "rows_true_cols_predicted": confusion.tolist()},
        "params": {"seed": args.seed, "test_split": planets.TEST_SPLIT, "epochs": args.epochs,
                   "batch": BATCH, "optimizer": "Adam", "lr": LR, "torch": torch.__version__},
        "model_sha256": hashlib.sha256(open(onnx_path, "rb").read()).hexdigest(),
    }
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "heldout.txt"), "w") as f:
        f.writelines(p + "\n" for p, _ in test_items)
    print(f"held-out accuracy {accuracy:.4f}; wrote {onnx_path}")


if __name__ == "__main__":
    main()
