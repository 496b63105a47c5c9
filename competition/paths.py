"""Where every artifact lives. Raw data is immutable; everything else is generated and git-ignored.

    data/<dataset>/raw/                        downloads and extractions, never modified
    data/<dataset>/train.h5, test.h5           images (uint8, N x 256 x 256 x 3), labels, ids, folds
    data/<dataset>/rejected.csv                files left out of the build, with the reason
    data/<dataset>/features/<feature-set>/     train.h5, test.h5 with `features`
    data/<dataset>/predictions/<model-id>.h5   out-of-fold and test probabilities
    data/<dataset>/models/<model-id>/          fitted models and checkpoints
    reports/<dataset>/                         classification reports, confusion matrices, curves
    submissions/<dataset>/                     validated submission CSVs and their JSON records

The roots default to ``data/``, ``reports/`` and ``submissions/`` under the current
directory and can be moved with DATA_DIR, REPORTS_DIR and SUBMISSIONS_DIR.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


def data_root() -> Path:
    return Path(os.environ.get("DATA_DIR", "data"))


def reports_root() -> Path:
    return Path(os.environ.get("REPORTS_DIR", "reports"))


def submissions_root() -> Path:
    return Path(os.environ.get("SUBMISSIONS_DIR", "submissions"))


def dataset_dir(dataset: str) -> Path:
    return data_root() / dataset


def raw_dir(dataset: str) -> Path:
    return dataset_dir(dataset) / "raw"


def images_file(dataset: str, split: str) -> Path:
    """``split`` is ``train`` or ``test``."""
    return dataset_dir(dataset) / f"{split}.h5"


def rejected_file(dataset: str) -> Path:
    return dataset_dir(dataset) / "rejected.csv"


def features_file(dataset: str, feature_set: str, split: str) -> Path:
    return dataset_dir(dataset) / "features" / feature_set / f"{split}.h5"


def predictions_dir(dataset: str) -> Path:
    return dataset_dir(dataset) / "predictions"


def predictions_file(dataset: str, model_id: str) -> Path:
    return predictions_dir(dataset) / f"{model_id}.h5"


def model_dir(dataset: str, model_id: str) -> Path:
    return dataset_dir(dataset) / "models" / model_id


def reports_dir(dataset: str) -> Path:
    return reports_root() / dataset


def submissions_dir(dataset: str) -> Path:
    return submissions_root() / dataset


@contextlib.contextmanager
def using_data_root(root: Path | str | None) -> Iterator[Path]:
    """Within the block, ``data_root()`` is ``root`` (unchanged when ``root`` is None)."""
    if root is None:
        yield data_root()
        return
    previous = os.environ.get("DATA_DIR")
    os.environ["DATA_DIR"] = str(root)
    try:
        yield Path(root)
    finally:
        if previous is None:
            os.environ.pop("DATA_DIR", None)
        else:
            os.environ["DATA_DIR"] = previous
