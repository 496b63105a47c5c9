"""The scores every stage reports: accuracy and log loss (the Dogs vs. Cats leaderboard metric).

One implementation, so that the train stage's reports and the ensemble table agree to the digit.
"""

from __future__ import annotations

import numpy as np

PROBABILITY_FLOOR = 1e-15


def log_loss(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log probability of the true class (probabilities floored at 1e-15)."""
    true_class = np.asarray(probabilities, dtype=np.float64)[np.arange(len(y)), np.asarray(y)]
    return float(-np.mean(np.log(np.clip(true_class, PROBABILITY_FLOOR, 1.0))))


def accuracy(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose most probable class is the true one."""
    return float(np.mean(np.argmax(probabilities, axis=1) == np.asarray(y)))
