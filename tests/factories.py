"""Tiny generated datasets in the pipeline's HDF5 formats, for tests of later stages."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from competition import paths
from competition.h5store import as_strings, write_strings
from competition.splits import stratified_folds
from models.predictions import Predictions, write_predictions


def make_image_store(
    dataset: str,
    split: str,
    n: int,
    label_names=("cat", "dog"),
    size: int = 64,
    labelled: bool = True,
    seed: int = 0,
) -> Path:
    """Write ``data/<dataset>/<split>.h5`` with ``n`` random images whose mean colour depends on the label."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(label_names)
    rng.shuffle(labels)
    base = (labels[:, None, None, None] * 200 // max(1, len(label_names) - 1)).astype(np.int64)
    images = np.clip(base + rng.integers(-40, 40, size=(n, size, size, 3)), 0, 255).astype(np.uint8)
    path = paths.images_file(dataset, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", data=images)
        handle.create_dataset("labels", data=labels if labelled else np.full(n, -1))
        write_strings(handle, "label_names", label_names)
        ids = [str(i + 1) for i in range(n)] if not labelled else [f"{label_names[l]}/{i}.jpg" for i, l in enumerate(labels)]
        write_strings(handle, "ids", ids)
        if split == "train":
            handle.create_dataset("folds", data=stratified_folds(labels))
        handle.attrs["dataset"] = dataset
        handle.attrs["image_size"] = size
        handle.attrs["rgb_mean"] = images.reshape(-1, 3).mean(axis=0)
    return path


def make_model_predictions(dataset: str, model_id: str, noise: float, seed: int = 0, strength: float = 2.0) -> Path:
    """Write ``data/<dataset>/predictions/<model_id>.h5`` with synthetic probabilities for the
    images in ``train.h5`` / ``test.h5``: true-class logit ``strength`` plus Gaussian ``noise``."""
    def read(split):
        with h5py.File(paths.images_file(dataset, split), "r") as handle:
            return as_strings(handle["ids"][:]), handle["labels"][:], as_strings(handle["label_names"][:])

    rng = np.random.default_rng(seed)

    def probabilities(labels, n_classes):
        known = np.where(labels >= 0, labels, rng.integers(0, n_classes, len(labels)))
        logits = strength * np.eye(n_classes)[known] + rng.normal(0, noise, (len(labels), n_classes))
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    ids, labels, label_names = read("train")
    test_ids, test_labels, _ = read("test")
    return write_predictions(
        paths.predictions_file(dataset, model_id),
        Predictions(
            model_id=model_id, oof=probabilities(labels, len(label_names)), oof_mask=np.ones(len(ids), bool),
            test=probabilities(test_labels, len(label_names)), ids=ids, test_ids=test_ids, labels=labels,
            test_labels=test_labels, label_names=label_names, producer={"stage": "test-factory", "noise": noise},
        ),
    )
