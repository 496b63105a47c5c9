"""The one output every model writes: out-of-fold and test probabilities.

``data/<dataset>/predictions/<model-id>.h5`` holds
    oof          float32 (N_train, C)  out-of-fold probabilities, NaN where not predicted
    oof_mask     bool    (N_train,)    rows predicted out of fold (all, unless folds were limited)
    test         float32 (N_test, C)   probabilities for test.h5, same order
    ids          str     (N_train,)    train ids, same order as train.h5
    test_ids     str     (N_test,)     test ids, same order as test.h5
    labels       int64   (N_train,)    train labels
    test_labels  int64   (N_test,)     test labels, -1 where unlabelled
    label_names  str     (C,)
and the attribute ``producer`` (JSON: the model spec, its settings and provenance).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from competition.h5store import as_strings, atomic_output, get_json_attr, require_file, set_json_attr, write_strings

KEYS = ("oof", "oof_mask", "test", "ids", "test_ids", "labels", "test_labels", "label_names")


@dataclass
class Predictions:
    model_id: str
    oof: np.ndarray
    oof_mask: np.ndarray
    test: np.ndarray
    ids: np.ndarray
    test_ids: np.ndarray
    labels: np.ndarray
    test_labels: np.ndarray
    label_names: np.ndarray
    producer: dict


def write_predictions(path: Path, predictions: Predictions) -> Path:
    """Write ``predictions`` atomically to ``path``."""
    with atomic_output(path) as temporary, h5py.File(temporary, "w") as handle:
        handle.create_dataset("oof", data=np.asarray(predictions.oof, dtype=np.float32))
        handle.create_dataset("oof_mask", data=np.asarray(predictions.oof_mask, dtype=bool))
        handle.create_dataset("test", data=np.asarray(predictions.test, dtype=np.float32))
        handle.create_dataset("labels", data=np.asarray(predictions.labels, dtype=np.int64))
        handle.create_dataset("test_labels", data=np.asarray(predictions.test_labels, dtype=np.int64))
        write_strings(handle, "ids", predictions.ids)
        write_strings(handle, "test_ids", predictions.test_ids)
        write_strings(handle, "label_names", predictions.label_names)
        handle.attrs["model_id"] = predictions.model_id
        set_json_attr(handle, "producer", predictions.producer)
    return Path(path)


def read_predictions(path: Path) -> Predictions:
    """Read a predictions file written by :func:`write_predictions`."""
    path = require_file(path, KEYS, "retrain the model with `make train`")
    with h5py.File(path, "r") as handle:
        return Predictions(
            model_id=str(handle.attrs.get("model_id", Path(path).stem)),
            oof=handle["oof"][:],
            oof_mask=handle["oof_mask"][:],
            test=handle["test"][:],
            ids=as_strings(handle["ids"][:]),
            test_ids=as_strings(handle["test_ids"][:]),
            labels=handle["labels"][:],
            test_labels=handle["test_labels"][:],
            label_names=as_strings(handle["label_names"][:]),
            producer=get_json_attr(handle, "producer", {}),
        )
