"""Local cross-validation shared by every model: out-of-fold probabilities for the training images,
fold-averaged (or refit) probabilities for the test images, and resumable per-fold results."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from tqdm import tqdm

from competition.errors import UserError

if TYPE_CHECKING:
    from models.inputs import Split
    from models.registry import ModelSpec

FINGERPRINT_FILE = "fingerprint.txt"
REFIT_FOLD = "all"


@dataclass
class FoldResult:
    """What one fitted model predicts: the held-out rows and the test set, plus facts worth reporting."""

    held_out: np.ndarray
    test: np.ndarray
    details: dict = field(default_factory=dict)


@dataclass
class CrossValidation:
    oof: np.ndarray
    oof_mask: np.ndarray
    test: np.ndarray
    details: dict


@dataclass
class TrainContext:
    """Everything a model kind needs to build its fold fitter."""

    spec: "ModelSpec"
    dataset: str
    train: "Split"
    test: "Split"
    model_dir: Path
    weights: str | None = None
    weights_dir: Path | None = None
    callbacks: list = field(default_factory=list)  # extra Keras callbacks for deep models


# fit_fold(fold_dir, train_index, held_out_index) -> FoldResult; fold_dir is where it may keep
# its fitted model and checkpoints (created, and kept until the fingerprint changes).
FitFold = Callable[[Path, np.ndarray, np.ndarray], FoldResult]


def fingerprint(record: dict) -> str:
    """A stable hash of the settings and input signatures that determine a run's output."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def prepare_work_dir(work_dir: Path, run_fingerprint: str, force: bool) -> None:
    """Keep ``work_dir``'s completed folds and checkpoints only if they came from the same run settings and inputs."""
    marker = work_dir / FINGERPRINT_FILE
    stale = marker.is_file() and marker.read_text().strip() != run_fingerprint
    if work_dir.exists() and (force or stale or not marker.is_file()):
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(run_fingerprint)


def _fold_file(work_dir: Path, fold_name: str) -> Path:
    return work_dir / f"fold-{fold_name}.npz"


def _run_fold(fit_fold: FitFold, work_dir: Path, fold_name: str, train_index, held_out_index) -> FoldResult:
    """Fit one fold, or load its result if an earlier run completed it."""
    done = _fold_file(work_dir, fold_name)
    if done.is_file():
        with np.load(done) as saved:
            return FoldResult(saved["held_out"], saved["test"], json.loads(str(saved["details"])))
    fold_dir = work_dir / f"fold-{fold_name}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    result = fit_fold(fold_dir, train_index, held_out_index)
    partial = done.with_name(done.stem + ".partial.npz")
    np.savez(partial, held_out=result.held_out, test=result.test,
             details=json.dumps(result.details, sort_keys=True, default=str))
    partial.replace(done)
    return result


def cross_validate(
    fit_fold: FitFold,
    folds: np.ndarray,
    n_test: int,
    n_classes: int,
    work_dir: Path,
    fold_limit: int | None = None,
    refit: bool = False,
) -> CrossValidation:
    """Fit on all folds but one and predict the held-out one, for each fold (or the first ``fold_limit``).

    Test probabilities are the average of the fold models, or, with ``refit``, of one model
    fitted on every training image. Completed folds are saved under ``work_dir`` and reused.
    """
    fold_ids = sorted(int(f) for f in np.unique(folds))
    if len(fold_ids) < 2:
        raise UserError("train.h5 has fewer than 2 folds: rebuild it with `make data` (folds are assigned there)")
    if fold_limit is not None:
        if not 1 <= fold_limit <= len(fold_ids):
            raise UserError(f"--folds {fold_limit} is out of range: train.h5 has {len(fold_ids)} folds")
        fold_ids = fold_ids[:fold_limit]
    oof = np.full((len(folds), n_classes), np.nan, dtype=np.float32)
    oof_mask = np.zeros(len(folds), dtype=bool)
    test_sum = np.zeros((n_test, n_classes), dtype=np.float64)
    details = {"folds_trained": fold_ids, "n_folds": int(len(np.unique(folds))), "refit": refit, "folds": {}}
    for fold in tqdm(fold_ids, desc="folds", unit="fold"):
        held_out_index = np.flatnonzero(folds == fold)
        train_index = np.flatnonzero(folds != fold)
        result = _run_fold(fit_fold, work_dir, str(fold), train_index, held_out_index)
        oof[held_out_index] = result.held_out
        oof_mask[held_out_index] = True
        test_sum += result.test
        details["folds"][str(fold)] = result.details
    test = test_sum / len(fold_ids)
    if refit:
        result = _run_fold(fit_fold, work_dir, REFIT_FOLD, np.arange(len(folds)), np.array([], dtype=np.int64))
        test = result.test
        details["folds"][REFIT_FOLD] = result.details
    return CrossValidation(oof=oof, oof_mask=oof_mask, test=test.astype(np.float32), details=details)
