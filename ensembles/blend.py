"""Blending estimators: combine several models' class probabilities into one.

Every blender is scikit-learn style: ``fit(probabilities, y)`` takes a list of
``(N, C)`` probability arrays (one per model, same rows) and the labels, and
returns self; ``predict_proba(probabilities)`` returns one ``(N, C)`` array;
learned state ends in ``_``. ``weights_`` is each model's share of the blend.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import logit, softmax
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from threadpoolctl import threadpool_limits

from competition.errors import UserError
from competition.metrics import PROBABILITY_FLOOR, log_loss

CLIP_CANDIDATES = (1e-15, 1e-6, 1e-5, 1e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2)


def stack_models(probabilities) -> np.ndarray:
    """The list of per-model ``(N, C)`` arrays as one ``(models, N, C)`` float64 array, shapes checked."""
    arrays = [np.asarray(p, dtype=np.float64) for p in probabilities]
    if not arrays:
        raise UserError("no models to blend: pass at least one with --models")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 2:
        raise ValueError(f"every model needs one (N, C) probability array of the same shape, got {sorted(shapes)}")
    return np.stack(arrays)


def clip_probabilities(probabilities: np.ndarray, eps: float) -> np.ndarray:
    """Clip every probability to [eps, 1 - eps] and renormalise the rows."""
    clipped = np.clip(probabilities, eps, 1.0 - eps)
    return clipped / clipped.sum(axis=1, keepdims=True)


def choose_clip_eps(probabilities: np.ndarray, y: np.ndarray, candidates=CLIP_CANDIDATES) -> float:
    """The clipping eps from ``candidates`` that minimises the log loss of ``probabilities`` (out-of-fold)."""
    losses = [log_loss(clip_probabilities(probabilities, eps), y) for eps in candidates]
    return float(candidates[int(np.argmin(losses))])


class MeanBlend(BaseEstimator):
    """The plain mean of the models' probabilities."""

    def fit(self, probabilities, y):
        self.weights_ = np.full(len(stack_models(probabilities)), 1.0 / len(probabilities))
        return self

    def predict_proba(self, probabilities) -> np.ndarray:
        return np.tensordot(self.weights_, stack_models(probabilities), axes=1)


class WeightedBlend(MeanBlend):
    """A weighted mean, weights non-negative and summing to one, chosen to minimise the log loss.

    The weights are a softmax of free parameters, optimised with L-BFGS from equal weights.
    """

    def __init__(self, max_iter: int = 200):
        self.max_iter = max_iter

    def fit(self, probabilities, y):
        stacked = stack_models(probabilities)
        y = np.asarray(y)
        true_class = np.clip(stacked[:, np.arange(len(y)), y], PROBABILITY_FLOOR, 1.0)  # (models, N)

        def loss_and_gradient(parameters):
            weights = softmax(parameters)
            blended = weights @ true_class
            gradient = -np.mean(true_class / blended, axis=1)
            return -np.mean(np.log(blended)), weights * (gradient - weights @ gradient)

        result = minimize(
            loss_and_gradient, np.zeros(len(stacked)), jac=True, method="L-BFGS-B",
            options={"maxiter": self.max_iter},
        )
        self.weights_ = softmax(result.x)
        self.loss_ = float(result.fun)
        return self


class RankBlend(BaseEstimator):
    """The average of the models' ranks, mapped back onto the probability scale.

    Each model's probability for a class becomes its quantile among that model's
    fitted (out-of-fold) probabilities; the averaged quantile is mapped through the
    quantiles of the models' mean probability, so the ranking is the rank average's
    and the values stay usable as probabilities. Rows are renormalised.
    """

    def fit(self, probabilities, y):
        stacked = stack_models(probabilities)
        self.reference_ = np.sort(stacked, axis=1)  # (models, N, C), sorted per model and class
        self.target_ = np.sort(stacked.mean(axis=0), axis=0)  # (N, C)
        self.weights_ = np.full(len(stacked), 1.0 / len(stacked))
        return self

    def predict_proba(self, probabilities) -> np.ndarray:
        stacked = stack_models(probabilities)
        n_reference, n_classes = self.target_.shape
        grid = (np.arange(n_reference) + 0.5) / n_reference
        blended = np.empty(stacked.shape[1:])
        for column in range(n_classes):
            quantiles = [
                (np.searchsorted(reference[:, column], values[:, column], side="left")
                 + np.searchsorted(reference[:, column], values[:, column], side="right")) / (2.0 * n_reference)
                for reference, values in zip(self.reference_, stacked)
            ]
            blended[:, column] = np.interp(self.weights_ @ np.array(quantiles), grid, self.target_[:, column])
        blended = np.clip(blended, PROBABILITY_FLOOR, None)
        return blended / blended.sum(axis=1, keepdims=True)


class StackBlend(BaseEstimator):
    """Stacking: a logistic regression on the models' log-odds, its C chosen by inner cross-validation.

    Two classes: one feature per model, the logit of its positive-class probability.
    More classes: each model's log probabilities. C is picked from ``Cs`` by the log
    loss of a stratified ``cv``-fold split of the rows it is fitted on (fewer folds
    when a class is rarer; C=1 when a class has a single row). ``weights_`` is each
    model's share of the absolute coefficients.
    """

    def __init__(self, Cs=(0.01, 0.1, 1.0, 10.0), cv: int = 3):
        self.Cs = Cs
        self.cv = cv

    @staticmethod
    def _features(stacked: np.ndarray) -> np.ndarray:
        clipped = np.clip(stacked, 1e-7, 1 - 1e-7)
        per_model = logit(clipped[:, :, 1:]) if stacked.shape[2] == 2 else np.log(clipped)
        return np.concatenate(list(per_model), axis=1)

    def fit(self, probabilities, y):
        stacked = stack_models(probabilities)
        y = np.asarray(y)
        self.n_classes_ = stacked.shape[2]
        inner_folds = min(self.cv, int(np.bincount(y)[np.unique(y)].min()))
        model = (
            LogisticRegressionCV(Cs=list(self.Cs), cv=inner_folds, scoring="neg_log_loss", l1_ratios=(0.0,),
                                 use_legacy_attributes=False,
                                 max_iter=1000)
            if inner_folds >= 2 else LogisticRegression(C=1.0, max_iter=1000)
        )
        with threadpool_limits(limits=1):  # tiny fits: a BLAS thread pool only adds contention
            self.model_ = model.fit(self._features(stacked), y)
        self.C_ = float(np.ravel(getattr(self.model_, "C_", [1.0]))[0])
        share = np.abs(self.model_.coef_).sum(axis=0).reshape(len(stacked), -1).sum(axis=1)
        self.weights_ = share / share.sum() if share.sum() > 0 else np.full(len(stacked), 1.0 / len(stacked))
        return self

    def predict_proba(self, probabilities) -> np.ndarray:
        stacked = stack_models(probabilities)
        seen = self.model_.predict_proba(self._features(stacked))
        full = np.zeros((stacked.shape[1], self.n_classes_))
        full[:, self.model_.classes_] = seen
        return full


BLENDERS = {
    "mean": MeanBlend,
    "weighted": WeightedBlend,
    "rank": RankBlend,
    "stack": StackBlend,
}


def cross_val_blend(blender: BaseEstimator, probabilities, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Out-of-fold predictions of ``blender``: each fold blended by a copy fitted on the other folds.

    The blender's own fitting then never sees the rows it is scored on, so its
    out-of-fold score is honest.
    """
    stacked = stack_models(probabilities)
    y, folds = np.asarray(y), np.asarray(folds)
    blended = np.full(stacked.shape[1:], np.nan)
    for fold in np.unique(folds):
        held_out = folds == fold
        if held_out.all():
            raise UserError("the blender needs at least two cross-validation folds in train.h5: rebuild it with `make data`")
        fitted = clone(blender).fit(list(stacked[:, ~held_out]), y[~held_out])
        blended[held_out] = fitted.predict_proba(list(stacked[:, held_out]))
    return blended
