"""Training steps shared by the deep models: precision policy, resumable training stages, curves.

A stage (``head``, ``finetune``, ``train``) of one fold trains with a BackupAndRestore
checkpoint every epoch, so an interrupted run resumes from its last completed epoch; a finished
stage leaves ``<stage>.weights.h5`` and is not trained again. Each epoch's metrics are appended to
``history-<stage>.csv``, from which the training curves PNG is drawn.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

import numpy as np

from competition import paths
from models.augment import ImageStream
from models.crossval import FoldResult, TrainContext


def configure_precision() -> str:
    """Mixed float16 on a GPU, float32 on CPU; returns the policy name (the softmax stays float32)."""
    import keras
    import tensorflow as tf

    policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def fit_stage(model, stream: ImageStream, train_index: np.ndarray, held_out_index: np.ndarray,
              epochs: int, fold_dir: Path, stage: str, callbacks: list) -> None:
    """Train ``model`` for ``epochs`` on ``train_index``, resuming an interrupted run; skip a finished stage."""
    import keras

    finished = fold_dir / f"{stage}.weights.h5"
    if finished.is_file():
        model.load_weights(finished)
        return
    if epochs > 0:
        history_file = fold_dir / f"history-{stage}.csv"
        model.fit(
            stream.dataset(train_index, training=True),
            steps_per_epoch=stream.steps(train_index),
            epochs=epochs,
            shuffle=False,  # the stream reshuffles every epoch itself
            validation_data=stream.dataset(held_out_index, training=False) if len(held_out_index) else None,
            callbacks=[keras.callbacks.BackupAndRestore(str(fold_dir / f"backup-{stage}")),
                       keras.callbacks.CSVLogger(str(history_file), append=True), *callbacks],
            verbose=2,
        )
        # BackupAndRestore leaves the resumed epoch on the model, where the next stage's fit would start
        model._initial_epoch = None
    partial = fold_dir / f"{stage}-partial.weights.h5"
    model.save_weights(partial)
    os.replace(partial, finished)


def read_history(fold_dir: Path, stages: tuple[str, ...]) -> dict[str, list[float]]:
    """Every stage's epoch metrics, in order, as one series per metric."""
    series: dict[str, list[float]] = {}
    for stage in stages:
        history_file = fold_dir / f"history-{stage}.csv"
        if not history_file.is_file():
            continue
        with history_file.open() as handle:
            for row in csv.DictReader(handle):
                for key, value in row.items():
                    if key != "epoch" and value not in ("", None):
                        series.setdefault(key, []).append(float(value))
    return series


def save_curves(fold_dir: Path, stages: tuple[str, ...], path: Path, title: str) -> Path | None:
    """A PNG of loss and accuracy per epoch (training and held-out) across ``stages``."""
    series = read_history(fold_dir, stages)
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for key in (metric, f"val_{metric}"):
            if key in series:
                axis.plot(range(1, len(series[key]) + 1), series[key], label=key)
        axis.set_xlabel("epoch (all stages)")
        axis.set_title(f"{title}: {metric}", fontsize=9)
        axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def finish_fold(model, stream: ImageStream, context: TrainContext, fold_dir: Path, held_out_index: np.ndarray,
                stages: tuple[str, ...], details: dict) -> FoldResult:
    """Draw the fold's training curves, then predict its held-out rows and the whole test set."""
    name = f"{context.spec.model_id}-{fold_dir.name}"
    save_curves(fold_dir, stages, paths.reports_dir(context.dataset) / f"{name}-curves.png", name)
    test_stream = dataclasses.replace(stream, path=context.test.path,
                                      labels=np.zeros(len(context.test.ids), dtype=np.int64))
    return FoldResult(held_out=stream.predict(model, held_out_index),
                      test=test_stream.predict(model, np.arange(len(context.test.ids))), details=details)
