"""Shallow classifiers on CNN features: a scikit-learn Pipeline (scaling where it helps, an optional
grid search inside each fold), one fitted per cross-validation fold and saved with joblib."""

from __future__ import annotations

import joblib
import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from competition.errors import UserError
from models.crossval import FitFold, FoldResult, TrainContext
from models.inputs import read_feature_matrix
from models.registry import ModelSpec

PIPELINE_SETTINGS = ("scale", "grid", "inner_folds", "grid_scoring")


def build_estimator(spec: ModelSpec, labels: np.ndarray):
    """The spec's classifier with its settings, behind a scaler if ``scale``, inside a grid search if ``grid``."""
    classifier = spec.kind.classifier()
    classifier.set_params(**{k: v for k, v in spec.settings.items() if k not in PIPELINE_SETTINGS})
    steps = [("scale", StandardScaler())] if spec.settings["scale"] else []
    pipeline = Pipeline(steps + [("classifier", classifier)])
    grid = spec.settings["grid"] or {}
    if not grid:
        return pipeline
    smallest_class = int(np.bincount(labels).min())
    inner_folds = min(int(spec.settings["inner_folds"]), smallest_class)
    if inner_folds < 2:
        raise UserError(f"{spec.text}: a class has only {smallest_class} training image(s), too few for the "
                        f"grid search; add images or pass --set grid={{}}")
    return GridSearchCV(
        pipeline, {f"classifier__{name}": list(values) for name, values in grid.items()},
        cv=StratifiedKFold(inner_folds, shuffle=True, random_state=42),
        scoring=spec.settings["grid_scoring"], n_jobs=-1,
    )


def _probabilities(estimator, features: np.ndarray, present: np.ndarray, n_classes: int) -> np.ndarray:
    """Class probabilities over all ``n_classes``, zero for classes absent from the fold's training data."""
    full = np.zeros((len(features), n_classes), dtype=np.float32)
    if len(features):
        full[:, present] = estimator.predict_proba(features)
    return full


def make_fold_fitter(context: TrainContext) -> FitFold:
    """A fold fitter for a shallow model on the spec's feature sets (checked against train.h5 / test.h5)."""
    spec = context.spec
    train_features = read_feature_matrix(context.dataset, spec.sources, context.train, "train")
    test_features = read_feature_matrix(context.dataset, spec.sources, context.test, "test")
    labels = context.train.labels
    n_classes = len(context.train.label_names)

    def fit_fold(fold_dir, train_index, held_out_index) -> FoldResult:
        present, encoded = np.unique(labels[train_index], return_inverse=True)
        estimator = build_estimator(spec, encoded)
        estimator.fit(train_features[train_index], encoded)
        joblib.dump(estimator, fold_dir / "model.joblib")
        details = {"best_params": {k.removeprefix("classifier__"): v for k, v in estimator.best_params_.items()}} \
            if isinstance(estimator, GridSearchCV) else {}
        return FoldResult(
            held_out=_probabilities(estimator, train_features[held_out_index], present, n_classes),
            test=_probabilities(estimator, test_features, present, n_classes),
            details=details,
        )

    return fit_fold
