"""``python -m competition train``: cross-validate one model and write its out-of-fold and test probabilities
to ``data/<dataset>/predictions/<model-id>.h5`` (skipped when the same settings and inputs already did)."""

from __future__ import annotations

import importlib
from pathlib import Path

import h5py
import numpy as np

from competition import paths
from competition.h5store import get_json_attr
from competition.reproducibility import DEFAULT_SEED, provenance, seed_everything
from models.crossval import TrainContext, cross_validate, fingerprint, prepare_work_dir
from models.inputs import file_signature, read_split
from models.predictions import Predictions, write_predictions
from models.registry import REGISTRY, ModelSpec, parse_spec


def configure(parser) -> None:
    kinds = ", ".join(REGISTRY)
    parser.add_argument("--model", required=True, metavar="SPEC",
                        help=f"kind[:feature-set+feature-set] or finetune:<backbone>; kinds: {kinds}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a model setting (repeatable), e.g. --set C=0.1 --set head_epochs=5")
    parser.add_argument("--folds", type=int, default=None, metavar="N",
                        help="train only the first N folds (deep models; oof_mask marks the predicted rows)")
    parser.add_argument("--refit", action="store_true",
                        help="test probabilities from one model refit on all training images, not the fold average")
    parser.add_argument("--force", action="store_true", help="retrain even if an identical run already finished")
    parser.add_argument("--weights", default=None,
                        help="backbone weights for finetune: imagenet (default), random, or a weights file")
    parser.add_argument("--weights-dir", default=None, type=Path, help="folder with backbone weight files")


def input_files(spec: ModelSpec, dataset: str) -> list[Path]:
    """The files a run reads, whose signatures go into its fingerprint."""
    if spec.kind.target == "features":
        return [paths.features_file(dataset, name, split) for name in spec.sources for split in ("train", "test")]
    return [paths.images_file(dataset, "train"), paths.images_file(dataset, "test")]


def _load_trainer(kind):
    module_name, _, function_name = kind.trainer.partition(":")
    return getattr(importlib.import_module(module_name), function_name)


def train_model(
    dataset: str,
    spec: ModelSpec,
    fold_limit: int | None = None,
    refit: bool = False,
    force: bool = False,
    weights: str | None = None,
    weights_dir: Path | None = None,
    callbacks: list | None = None,
) -> Path:
    """Cross-validate ``spec`` on ``dataset`` and write its predictions file; return its path."""
    seed_everything(DEFAULT_SEED)
    train, test = read_split(dataset, "train"), read_split(dataset, "test")
    output = paths.predictions_file(dataset, spec.model_id)
    signatures = [file_signature(path) for path in input_files(spec, dataset) if path.is_file()]
    if weights and Path(weights).is_file():
        signatures.append({"path": str(weights), "size": Path(weights).stat().st_size})
    # what a single fold's result depends on: --folds 1, then --folds 5, reuses fold 0
    fold_record = {"model": spec.text, "settings": spec.settings,
                   "weights": weights, "weights_dir": str(weights_dir) if weights_dir else None,
                   "inputs": signatures + [file_signature(train.path), file_signature(test.path)]}
    run_record = {**fold_record, "folds": fold_limit, "refit": refit}
    run_fingerprint = fingerprint(run_record)
    if output.is_file() and not force:
        with h5py.File(output, "r") as handle:
            if (get_json_attr(handle, "producer") or {}).get("fingerprint") == run_fingerprint:
                print(f"{output} is up to date (same settings and inputs); --force retrains")
                return output
    work_dir = paths.model_dir(dataset, spec.model_id)
    prepare_work_dir(work_dir, fingerprint(fold_record), force)
    context = TrainContext(spec=spec, dataset=dataset, train=train, test=test, model_dir=work_dir,
                           weights=weights, weights_dir=weights_dir, callbacks=list(callbacks or []))
    fit_fold = _load_trainer(spec.kind)(context)
    result = cross_validate(fit_fold, train.folds, len(test.ids), len(train.label_names), work_dir,
                            fold_limit=fold_limit, refit=refit)
    producer = provenance("train", spec.settings)
    producer.update(model=spec.text, model_id=spec.model_id, overrides=spec.overrides,
                    fingerprint=run_fingerprint, inputs=run_record["inputs"], **result.details)
    write_predictions(output, Predictions(
        model_id=spec.model_id, oof=result.oof, oof_mask=result.oof_mask, test=result.test,
        ids=train.ids, test_ids=test.ids, labels=train.labels, test_labels=test.labels,
        label_names=train.label_names, producer=producer,
    ))
    predicted = result.oof_mask
    accuracy = float(np.mean(result.oof[predicted].argmax(axis=1) == train.labels[predicted]))
    print(f"{spec.model_id}: out-of-fold accuracy {accuracy:.4f} on {predicted.sum()} images "
          f"({len(result.details['folds_trained'])} of {result.details['n_folds']} folds) -> {output}")
    return output


def main(args) -> int:
    spec = parse_spec(args.model, args.overrides)
    train_model(args.dataset, spec, fold_limit=args.folds, refit=args.refit, force=args.force,
                weights=args.weights, weights_dir=args.weights_dir)
    return 0
