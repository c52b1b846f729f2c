"""The guide's planet classifier: model, training and export. Its input
preprocessing lives in preprocess.py (Pillow and numpy only), re-exported
here as planets.preprocess and planets.SIDE.
"""
import json
import os
import random

import numpy as np
import torch
import torch.nn as nn

from preprocess import SIDE, preprocess  # noqa: F401 (re-exported)

SEED = 77
TEST_SPLIT = 0.2


class PlanetCNN(nn.Sequential):
    """Conv2D(32, 3x3, relu) -> MaxPool(3x3) -> Flatten -> Dense(64, relu) -> Dense(classes)."""

    def __init__(self, classes: int):
        super().__init__(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(3), nn.Flatten(),
            nn.Linear(32 * 10 * 10, 64), nn.ReLU(), nn.Linear(64, classes),
        )


def seed_everything(seed: int = SEED) -> None:
    """Bit-for-bit reproducibility: fixed seeds, deterministic kernels, one
    thread (the order of float reductions depends on the thread count)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def list_dataset(root: str):
    """[(relative path, class index)], sorted; and the sorted class names."""
    raw = os.path.join(root, "raw")
    labels = sorted(d for d in os.listdir(raw) if os.path.isdir(os.path.join(raw, d)))
    items = []
    for ci, label in enumerate(labels):
        names = sorted(os.listdir(os.path.join(raw, label)),
                       key=lambda n: (len(n), n))
        items += [(f"raw/{label}/{n}", ci) for n in names if n.lower().endswith(".jpg")]
    return items, labels


def split(items, seed: int = SEED, test_split: float = TEST_SPLIT):
    """Stratified split: in each class, a seeded permutation's first
    round(test_split * count) items are held out."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for ci in sorted({c for _, c in items}):
        members = [it for it in items if it[1] == ci]
        order = rng.permutation(len(members))
        n_test = int(round(test_split * len(members)))
        test += [members[i] for i in order[:n_test]]
        train += [members[i] for i in order[n_test:]]
    return train, test
