"""What a model reads: the labels, ids and folds of train.h5 / test.h5, and feature files checked against them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from competition import paths
from competition.errors import UserError
from competition.h5store import as_strings, get_json_attr, require_file

IMAGE_KEYS = ("images", "labels", "label_names", "ids")
FEATURE_KEYS = ("features", "labels", "label_names", "ids")


@dataclass
class Split:
    """The labels and ids of one image file (no pixels)."""

    path: Path
    ids: np.ndarray
    labels: np.ndarray
    label_names: np.ndarray
    folds: np.ndarray | None
    source: Path | None = None  # the folder the data stage read

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool(np.all(self.labels >= 0))


def read_split(dataset: str, split: str) -> Split:
    """The ids, labels, label names (and, for train, folds) of ``data/<dataset>/<split>.h5``."""
    path = require_file(paths.images_file(dataset, split), IMAGE_KEYS + (("folds",) if split == "train" else ()),
                        f"build it with `make data DATASET={dataset}`")
    with h5py.File(path, "r") as handle:
        return Split(
            path=path,
            ids=as_strings(handle["ids"][:]),
            labels=handle["labels"][:].astype(np.int64),
            label_names=as_strings(handle["label_names"][:]),
            folds=handle["folds"][:].astype(np.int64) if split == "train" else None,
            source=_source_folder(handle),
        )


def _source_folder(handle: h5py.File) -> Path | None:
    source = (get_json_attr(handle, "producer") or {}).get("settings", {}).get("source")
    return Path(source) if source else None


def available_feature_sets(dataset: str) -> list[str]:
    """The feature sets extracted for ``dataset`` (folders with a train.h5)."""
    root = paths.dataset_dir(dataset) / "features"
    return sorted(p.parent.name for p in root.glob("*/train.h5")) if root.is_dir() else []


def read_features(dataset: str, feature_set: str, split: Split, split_name: str) -> np.ndarray:
    """The ``features`` matrix of one feature file, refused unless its ids and labels match ``split``
    and every value is finite."""
    path = paths.features_file(dataset, feature_set, split_name)
    if not path.parent.is_dir():
        known = ", ".join(available_feature_sets(dataset)) or "none yet"
        raise UserError(
            f"unknown feature set '{feature_set}' for {dataset} ({path.parent} does not exist): extracted feature "
            f"sets are {known}; extract it with `make features DATASET={dataset} BACKBONE={feature_set}`"
        )
    fix = f"re-extract it with `make features DATASET={dataset} BACKBONE={feature_set}`"
    require_file(path, FEATURE_KEYS, fix)
    with h5py.File(path, "r") as handle:
        features = handle["features"][:].astype(np.float32, copy=False)
        ids = as_strings(handle["ids"][:])
        labels = handle["labels"][:].astype(np.int64)
    if features.ndim != 2 or len(features) != len(split.ids) or not np.array_equal(ids, split.ids):
        raise UserError(f"{path} has ids that do not match {split.path} (same images in the same order): {fix}")
    if not np.array_equal(labels, split.labels):
        raise UserError(f"{path} has labels that disagree with {split.path}: {fix}")
    bad_rows = int(np.count_nonzero(~np.isfinite(features).all(axis=1)))
    if bad_rows:
        raise UserError(f"{path} has {bad_rows} rows with NaN or infinite features: {fix}")
    return features


def read_feature_matrix(dataset: str, feature_sets: tuple[str, ...], split: Split, split_name: str) -> np.ndarray:
    """Several feature sets of one split, checked and concatenated column-wise."""
    return np.concatenate([read_features(dataset, name, split, split_name) for name in feature_sets], axis=1)


def file_signature(path: Path) -> dict:
    """What identifies an input file's content cheaply: name, size, modification time and producer record."""
    path = Path(path)
    stat = path.stat()
    with h5py.File(path, "r") as handle:
        created = (get_json_attr(handle, "producer") or {}).get("created")
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "created": created}
