"""The model registry: one entry per kind of model, with the classic recipe's settings as defaults.

A model spec names a kind and what it reads:

    logreg:resnet50               a shallow classifier on one feature set
    xgboost:resnet50+xception     ... on several feature sets, concatenated
    finetune:vgg16                a backbone fine-tuned end to end on the images
    alexnet                       AlexNet trained from scratch on the images

and ``--set key=value`` overrides any setting. The model id names the output files:
``logreg-resnet50``, plus a short hash of the settings that differ from the defaults.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Callable

from competition.errors import UserError

LOGREG_C_GRID = [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0]


def _logistic_regression():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000)


def _svm():
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    # probabilities by Platt scaling on internal folds (set e.g. estimator__C=10)
    return CalibratedClassifierCV(SVC(kernel="rbf", C=1.0), ensemble=False, cv=3)


def _random_forest():
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=500, n_jobs=-1, random_state=42)


def _xgboost():
    from xgboost import XGBClassifier

    return XGBClassifier(
        n_estimators=300, learning_rate=0.1, max_depth=4, subsample=0.8, colsample_bytree=0.5,
        tree_method="hist", n_jobs=-1, random_state=42,
    )


def _lightgbm():
    from lightgbm import LGBMClassifier

    return LGBMClassifier(
        n_estimators=300, learning_rate=0.05, num_leaves=31, colsample_bytree=0.5,
        n_jobs=-1, random_state=42, verbose=-1,
    )


def _nearest_neighbours():
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=5, n_jobs=-1)


@dataclass(frozen=True)
class ModelKind:
    """One registered kind of model.

    ``family`` is ``"shallow"`` (a scikit-learn classifier on feature files, made by
    ``classifier``) or ``"deep"`` (a Keras network trained on the images). ``trainer``
    names the function that turns a :class:`models.crossval.TrainContext` into a fold
    fitter, as ``module:function``, so TensorFlow is imported only when it runs.
    ``settings`` are the defaults; for shallow kinds any parameter of the classifier
    may be set as well. ``target`` says what follows the colon in a spec.
    """

    name: str
    family: str
    description: str
    settings: dict = field(default_factory=dict)
    classifier: Callable | None = None
    trainer: str = "models.shallow:make_fold_fitter"
    target: str = "features"  # "features", "backbone" or "none"


SHALLOW_SETTINGS = {"scale": True, "grid": {}, "inner_folds": 3, "grid_scoring": "neg_log_loss"}

FINETUNE_SETTINGS = {
    "pooling": "flatten", "dense_units": 256, "dropout": 0.5,
    "head_epochs": 25, "head_learning_rate": 0.001,
    "finetune_epochs": 100, "finetune_learning_rate": 0.001, "momentum": 0.0,
    "unfreeze_from": None,  # layer index; None = the backbone's last conv block (VGG16: 15)
    "batch_size": 32,
    "augment": True,
}

ALEXNET_SETTINGS = {
    "input_size": 227, "dense_units": 4096, "dropout": 0.5, "weight_decay": 0.0002,
    "epochs": 75, "learning_rate": 0.001, "batch_size": 64,
    "augment": True,
}

REGISTRY: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        ModelKind(
            "logreg", "shallow", "logistic regression, grid search over C inside each fold",
            # raw CNN features as in the classic recipe: scaling cost 0.2-0.6 points of accuracy on
            # MobileNetV2 features (Dogs vs. Cats OOF 0.9840 -> 0.9855, Flowers-17 test 0.9235 -> 0.9294)
            {**SHALLOW_SETTINGS, "scale": False, "grid": {"C": LOGREG_C_GRID}}, classifier=_logistic_regression,
        ),
        ModelKind("svm", "shallow", "RBF support vector machine with Platt probabilities",
                  dict(SHALLOW_SETTINGS), classifier=_svm),
        ModelKind("rf", "shallow", "random forest", {**SHALLOW_SETTINGS, "scale": False},
                  classifier=_random_forest),
        ModelKind("xgboost", "shallow", "gradient-boosted trees (XGBoost)",
                  {**SHALLOW_SETTINGS, "scale": False}, classifier=_xgboost),
        ModelKind("lightgbm", "shallow", "gradient-boosted trees (LightGBM)",
                  {**SHALLOW_SETTINGS, "scale": False}, classifier=_lightgbm),
        ModelKind("knn", "shallow", "k nearest neighbours", dict(SHALLOW_SETTINGS),
                  classifier=_nearest_neighbours),
        ModelKind("finetune", "deep", "pretrained backbone + new head, then its last conv block, fine-tuned",
                  FINETUNE_SETTINGS, trainer="models.finetune:train_finetune", target="backbone"),
        ModelKind("alexnet", "deep", "AlexNet with batch normalisation, trained from scratch",
                  ALEXNET_SETTINGS, trainer="models.alexnet:train_alexnet", target="none"),
    )
}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: the kind, what it reads, and every setting."""

    kind: ModelKind
    sources: tuple[str, ...]  # feature sets (shallow) or the backbone (finetune)
    settings: dict
    overrides: dict

    @property
    def text(self) -> str:
        return self.kind.name + (":" + "+".join(self.sources) if self.sources else "")

    @property
    def model_id(self) -> str:
        """A filesystem-safe id: kind, sources, and a hash of the non-default settings."""
        base = re.sub(r"[^A-Za-z0-9_.+-]", "_", self.text.replace(":", "-"))
        if not self.overrides:
            return base
        digest = hashlib.sha256(json.dumps(self.overrides, sort_keys=True, default=str).encode()).hexdigest()
        return f"{base}-{digest[:8]}"


def parse_value(text: str):
    """A ``--set`` value: a Python literal (number, bool, list, dict, None) or else the plain string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(assignments: list[str] | None) -> dict:
    """Turn ``["key=value", ...]`` into a dict, refusing malformed items."""
    overrides = {}
    for item in assignments or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r} is not key=value: write e.g. --set C=0.1")
        overrides[key.strip()] = parse_value(value)
    return overrides


def known_settings(kind: ModelKind) -> list[str]:
    """Every setting name ``kind`` accepts (for shallow kinds: also the classifier's parameters)."""
    names = set(kind.settings)
    if kind.classifier is not None:
        names |= set(kind.classifier().get_params())
    return sorted(names)


def parse_spec(spec: str, assignments: list[str] | None = None) -> ModelSpec:
    """Parse ``kind[:source+source]`` and ``--set`` overrides into a :class:`ModelSpec`."""
    name, _, target = spec.partition(":")
    kind = REGISTRY.get(name.strip())
    if kind is None:
        known = ", ".join(f"{k.name} ({k.description})" for k in REGISTRY.values())
        raise UserError(f"unknown model '{name}' in --model {spec!r}: known models are {known}")
    sources = tuple(part.strip() for part in target.split("+") if part.strip())
    if kind.target == "none" and sources:
        raise UserError(f"--model {spec!r}: {kind.name} takes no feature set or backbone; write --model {kind.name}")
    if kind.target == "backbone" and len(sources) != 1:
        raise UserError(f"--model {spec!r}: {kind.name} needs one backbone, e.g. {kind.name}:vgg16")
    if kind.target == "features" and not sources:
        raise UserError(f"--model {spec!r}: {kind.name} needs feature sets, e.g. {kind.name}:resnet50 "
                        f"or {kind.name}:resnet50+xception")
    overrides = parse_overrides(assignments)
    allowed = known_settings(kind)
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise UserError(f"unknown setting {', '.join(unknown)} for {kind.name}: "
                        f"known settings are {', '.join(allowed)}")
    overrides = {key: value for key, value in overrides.items() if kind.settings.get(key, object()) != value}
    return ModelSpec(kind=kind, sources=sources, settings={**kind.settings, **overrides}, overrides=overrides)
