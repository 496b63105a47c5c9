"""``make submit``: blend the trained models' probabilities and write a validated submission CSV.

Reads ``data/<name>/predictions/<model-id>.h5`` for the chosen models, blends them
with one of :data:`ensembles.blend.BLENDERS` (scored out of fold with the folds of
``train.h5``, the blender itself cross-validated), and writes
``submissions/<name>/<timestamp>-<method>.csv`` with a JSON record next to it.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from competition import paths
from competition.datasets import Dataset, get_dataset
from competition.errors import UserError
from competition.h5store import atomic_output
from competition.reproducibility import provenance, seed_everything
from competition.submission import find_sample_file, submission_format, submission_rows, write_submission
from competition.metrics import accuracy, log_loss
from ensembles.blend import BLENDERS, choose_clip_eps, clip_probabilities, cross_val_blend
from models.inputs import read_split
from models.predictions import Predictions, read_predictions


def configure(parser) -> None:
    parser.add_argument(
        "--models", default="",
        help="comma-separated model ids to blend (default: every model in data/<dataset>/predictions/)",
    )
    parser.add_argument(
        "--method", choices=list(BLENDERS), default="weighted",
        help="mean, weighted (log-loss-optimal weights), rank (rank average) or stack "
             "(cross-validated logistic regression) (default: %(default)s)",
    )
    parser.add_argument(
        "--sample", type=Path, default=None,
        help="the competition's sample submission to validate against (default: searched in data/<dataset>/raw/)",
    )


@dataclass
class Ensemble:
    """A fitted blend: its out-of-fold and test probabilities and the scores of every part."""

    method: str
    model_ids: list[str]
    weights: np.ndarray
    oof: np.ndarray            # (rows predicted out of fold by every model, C), blender cross-validated
    oof_labels: np.ndarray
    test: np.ndarray           # (N_test, C)
    test_ids: np.ndarray
    test_labels: np.ndarray
    label_names: np.ndarray
    scores: dict               # name -> {"accuracy", "log_loss"} out of fold, for each model and "ensemble"


def available_models(dataset: str) -> list[str]:
    """Ids of every model with a predictions file for ``dataset``."""
    return sorted(path.stem for path in paths.predictions_dir(dataset).glob("*.h5"))


def load_predictions(dataset: str, model_ids: list[str]) -> list[Predictions]:
    """Read the models' predictions and check they describe the same rows and classes."""
    if not model_ids:
        raise UserError(f"no trained models in {paths.predictions_dir(dataset)}: run `make train DATASET={dataset}` first")
    unknown = [m for m in model_ids if not paths.predictions_file(dataset, m).is_file()]
    if unknown:
        raise UserError(f"--models {', '.join(unknown)}: no such trained model; trained models are "
                        f"{', '.join(available_models(dataset)) or 'none'} (train more with `make train`)")
    loaded = [read_predictions(paths.predictions_file(dataset, model_id)) for model_id in model_ids]
    reference = loaded[0]
    for other in loaded[1:]:
        for field in ("ids", "test_ids", "labels", "label_names"):
            if not np.array_equal(getattr(reference, field), getattr(other, field)):
                raise UserError(
                    f"models {reference.model_id} and {other.model_id} disagree on {field}: "
                    f"retrain them on the same train.h5 / test.h5 with `make train`"
                )
    return loaded


def train_folds(dataset: str, ids: np.ndarray) -> tuple[np.ndarray, Path | None]:
    """The cross-validation fold of each train id, and the source folder the data stage read, from ``train.h5``."""
    split = read_split(dataset, "train")
    fold_of = dict(zip(split.ids, split.folds))
    missing = [i for i in ids if i not in fold_of]
    if missing:
        raise UserError(f"{split.path} lacks ids the models predicted (e.g. {missing[0]}): "
                        f"retrain the models with `make train`")
    return np.array([fold_of[i] for i in ids]), split.source


def blend(predictions: list[Predictions], method: str, folds: np.ndarray) -> Ensemble:
    """Blend ``predictions`` with ``method``: score it out of fold, then fit it on every out-of-fold row."""
    mask = np.logical_and.reduce([p.oof_mask for p in predictions])
    if not mask.any():
        raise UserError("no training row is predicted out of fold by every model: retrain them with `make train`")
    reference = predictions[0]
    y = reference.labels[mask]
    oof = [p.oof[mask] for p in predictions]
    blender = BLENDERS[method]()
    blended_oof = cross_val_blend(blender, oof, y, folds[mask])
    blender.fit(oof, y)
    scores = {p.model_id: _scores(part, y) for p, part in zip(predictions, oof)}
    scores["ensemble"] = _scores(blended_oof, y)
    return Ensemble(
        method=method, model_ids=[p.model_id for p in predictions], weights=blender.weights_,
        oof=blended_oof, oof_labels=y, test=blender.predict_proba([p.test for p in predictions]),
        test_ids=reference.test_ids, test_labels=reference.test_labels, label_names=reference.label_names,
        scores=scores,
    )


def _scores(probabilities: np.ndarray, y: np.ndarray) -> dict:
    return {"accuracy": accuracy(probabilities, y), "log_loss": log_loss(probabilities, y)}


def score_table(ensemble: Ensemble) -> str:
    """Every model's and the ensemble's out-of-fold accuracy and log loss, with the blend weights."""
    ensemble_label = f"ensemble ({ensemble.method})"
    width = max(len(ensemble_label), *(len(name) for name in ensemble.scores)) + 2
    lines = [f"{'model':<{width}}{'oof accuracy':>14}{'oof log loss':>14}{'weight':>10}"]
    weights = dict(zip(ensemble.model_ids, ensemble.weights))
    for name, score in ensemble.scores.items():
        label = ensemble_label if name == "ensemble" else name
        weight = f"{weights[name]:>10.4f}" if name in weights else ""
        lines.append(f"{label:<{width}}{score['accuracy']:>14.4f}{score['log_loss']:>14.4f}{weight}")
    lines.append(f"({len(ensemble.oof_labels)} out-of-fold rows; the ensemble's blender is itself cross-validated)")
    return "\n".join(lines)


def clip_for_log_loss(ensemble: Ensemble) -> tuple[np.ndarray, dict]:
    """Choose eps on the out-of-fold blend; return the clipped test probabilities and both losses."""
    eps = choose_clip_eps(ensemble.oof, ensemble.oof_labels)
    clipped_loss = log_loss(clip_probabilities(ensemble.oof, eps), ensemble.oof_labels)
    report = {"eps": eps, "log_loss_before_clip": ensemble.scores["ensemble"]["log_loss"],
              "log_loss_after_clip": clipped_loss}
    return clip_probabilities(ensemble.test, eps), report


def submission_stem(method: str) -> str:
    """``<UTC timestamp to the millisecond>-<method>``: names sort by time."""
    return f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S-%f}"[:-3] + f"-{method}"


def make_submission(dataset: Dataset, ensemble: Ensemble, sample_file: Path | None, settings: dict) -> tuple[Path, dict]:
    """Write the validated CSV and its JSON record for ``ensemble``; return the CSV path and the record."""
    fmt = submission_format(dataset)
    test, clipping = clip_for_log_loss(ensemble) if fmt.target == "probability" else (ensemble.test, {"eps": None})
    rows = submission_rows(fmt, ensemble.test_ids, test, ensemble.label_names)
    record = {
        "dataset": dataset.name,
        "competition": dataset.kaggle_competition if dataset.is_competition else None,
        "method": ensemble.method,
        "models": ensemble.model_ids,
        "weights": dict(zip(ensemble.model_ids, map(float, ensemble.weights))),
        "metric": fmt.metric,
        "oof_rows": int(len(ensemble.oof_labels)),
        "oof_scores": ensemble.scores,
        **clipping,
        "sample_file": str(sample_file) if sample_file else None,
        "producer": provenance("submit", settings),
    }

    def write_record(csv_path: Path, validation) -> None:
        record.update(csv=csv_path.name, rows=validation.rows, uploadable=validation.uploadable,
                      not_uploadable_because=validation.reasons, sha256=validation.sha256)
        with atomic_output(csv_path.with_suffix(".json")) as temporary:
            temporary.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")

    csv_path, _ = write_submission(
        paths.submissions_dir(dataset.name), submission_stem(ensemble.method), rows, fmt,
        ensemble.test_ids, ensemble.label_names, sample_file, on_valid=write_record,
    )
    return csv_path, record


def holdout_report(ensemble: Ensemble) -> str | None:
    """The classification report on the labelled test split (benchmark datasets), or None."""
    from sklearn.metrics import classification_report

    labelled = ensemble.test_labels >= 0
    if not labelled.any():
        return None
    return classification_report(
        ensemble.test_labels[labelled], ensemble.test[labelled].argmax(axis=1),
        labels=np.arange(len(ensemble.label_names)), target_names=list(ensemble.label_names), digits=4,
        zero_division=0,
    )


def main(args) -> int:
    """Blend, print the scores, validate and write the submission."""
    seed_everything()
    dataset = get_dataset(args.dataset, custom_source=paths.predictions_dir(args.dataset).is_dir())
    model_ids = [m.strip() for m in args.models.split(",") if m.strip()] or available_models(dataset.name)
    predictions = load_predictions(dataset.name, model_ids)
    folds, source = train_folds(dataset.name, predictions[0].ids)
    ensemble = blend(predictions, args.method, folds)
    print(score_table(ensemble))
    if args.sample is not None and not args.sample.is_file():
        raise UserError(f"--sample {args.sample} does not exist: pass the competition's sample submission CSV")
    sample_file = args.sample or find_sample_file(dataset, [source] if source else [])
    settings = {"dataset": dataset.name, "models": model_ids, "method": args.method, "sample": str(sample_file)}
    csv_path, record = make_submission(dataset, ensemble, sample_file, settings)
    if record["eps"] is not None:
        print(f"clipped to [{record['eps']:g}, 1 - {record['eps']:g}]: out-of-fold log loss "
              f"{record['log_loss_before_clip']:.4f} -> {record['log_loss_after_clip']:.4f}")
    report = None if dataset.is_competition else holdout_report(ensemble)
    if report:
        print(f"test split classification report ({ensemble.method} ensemble):\n{report}")
    print(f"wrote {csv_path} ({record['rows']} rows) and {csv_path.with_suffix('.json').name}")
    if not record["uploadable"]:
        print(f"WARNING: {csv_path.name} is NOT uploadable: {'; '.join(record['not_uploadable_because'])}")
    return 0
