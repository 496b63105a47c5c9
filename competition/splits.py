"""Seeded, stratified splits shared by every stage: 5 cross-validation folds and the 25% hold-out."""

from __future__ import annotations

import numpy as np

N_FOLDS = 5
SEED = 42


def stratified_folds(labels: np.ndarray, n_folds: int = N_FOLDS, seed: int = SEED) -> np.ndarray:
    """Assign every example to one of ``n_folds`` folds with the class balance of the whole.

    Classes with fewer than ``n_folds`` members are spread round-robin instead of failing.
    """
    labels = np.asarray(labels)
    folds = np.full(len(labels), -1, dtype=np.int8)
    counts = np.bincount(labels) if len(labels) else np.array([], dtype=int)
    if len(labels) == 0:
        return folds
    splittable = np.isin(labels, np.flatnonzero(counts >= n_folds))
    index = np.flatnonzero(splittable)
    if len(index):
        from sklearn.model_selection import StratifiedKFold  # lazy: keeps the CLI fast

        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        for fold, (_, held_out) in enumerate(splitter.split(index, labels[index])):
            folds[index[held_out]] = fold
    rng = np.random.default_rng(seed)
    rare = rng.permutation(np.flatnonzero(~splittable))
    folds[rare] = np.arange(len(rare)) % n_folds
    return folds


def stratified_holdout(labels: np.ndarray, test_fraction: float = 0.25, seed: int = SEED) -> np.ndarray:
    """A boolean mask marking a stratified, seeded ``test_fraction`` of the examples as test."""
    from sklearn.model_selection import train_test_split  # lazy: keeps the CLI fast

    labels = np.asarray(labels)
    index = np.arange(len(labels))
    _, test_index = train_test_split(
        index, test_size=test_fraction, random_state=seed, stratify=labels
    )
    mask = np.zeros(len(labels), dtype=bool)
    mask[test_index] = True
    return mask
