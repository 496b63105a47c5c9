"""``python -m competition cv``: classification reports for every model trained on a dataset.

For each ``data/<dataset>/predictions/*.h5``: a scikit-learn classification report, accuracy and
log loss from the out-of-fold probabilities, and, when test.h5 is labelled (benchmark datasets),
the same on the test split. Saved as text, JSON and a confusion-matrix PNG under
``reports/<dataset>/``, with ``summary.md``: one table of all models sorted by log loss.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from competition import paths
from competition.errors import UserError
from competition.metrics import accuracy, log_loss
from models.predictions import Predictions, read_predictions


def configure(parser) -> None:
    parser.add_argument("--models", nargs="*", default=None, metavar="MODEL_ID",
                        help="report only these model ids (default: every model trained on the dataset)")


def evaluate(probabilities: np.ndarray, labels: np.ndarray, label_names) -> dict:
    """Classification report (per class and averages), accuracy, log loss and confusion matrix."""
    from sklearn.metrics import classification_report, confusion_matrix

    classes = list(range(len(label_names)))
    predicted = np.argmax(probabilities, axis=1)
    names = [str(name) for name in label_names]
    return {
        "n": int(len(labels)),
        "accuracy": accuracy(probabilities, labels),
        "log_loss": log_loss(probabilities, labels),
        "report": classification_report(labels, predicted, labels=classes, target_names=names,
                                        output_dict=True, zero_division=0),
        "report_text": classification_report(labels, predicted, labels=classes, target_names=names,
                                             digits=4, zero_division=0),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
    }


def model_report(predictions: Predictions) -> dict:
    """The out-of-fold evaluation of one model and, if the test split is labelled, its test evaluation."""
    mask = predictions.oof_mask
    producer = predictions.producer or {}
    labelled_test = len(predictions.test_labels) > 0 and bool(np.all(predictions.test_labels >= 0))
    fold_details = producer.get("folds", {})
    return {
        "model_id": predictions.model_id,
        "model": producer.get("model", predictions.model_id),
        "settings": producer.get("settings", {}),
        "folds_trained": producer.get("folds_trained"),
        "n_folds": producer.get("n_folds"),
        "refit": producer.get("refit", False),
        "best_params": {fold: d["best_params"] for fold, d in fold_details.items() if "best_params" in d},
        "oof": evaluate(predictions.oof[mask], predictions.labels[mask], predictions.label_names),
        "test": evaluate(predictions.test, predictions.test_labels, predictions.label_names) if labelled_test else None,
    }


def _folds_note(report: dict) -> str:
    trained, total = report["folds_trained"], report["n_folds"]
    if trained is None or total is None or len(trained) == total:
        return f"all {total} folds" if total else "all folds"
    return f"folds {', '.join(map(str, trained))} of {total} only"


def format_report(report: dict) -> str:
    """The human-readable report of one model."""
    oof = report["oof"]
    lines = [f"== {report['model_id']} ({report['model']}) ==",
             f"out-of-fold ({_folds_note(report)}, {oof['n']} images): "
             f"accuracy {oof['accuracy']:.4f}, log loss {oof['log_loss']:.4f}"]
    if report["best_params"]:
        lines.append("best grid-search parameters per fold: " + "; ".join(
            f"fold {fold}: {json.dumps(params, sort_keys=True)}" for fold, params in report["best_params"].items()))
    lines.append(oof["report_text"])
    if report["test"] is not None:
        test = report["test"]
        source = "a model refit on all training images" if report["refit"] else "the average of the fold models"
        lines += [f"test split ({test['n']} images, {source}): accuracy {test['accuracy']:.4f}, "
                  f"log loss {test['log_loss']:.4f}", test["report_text"]]
    return "\n".join(lines)


def save_confusion_matrices(report: dict, label_names, path: Path) -> Path:
    """A PNG with the out-of-fold (and test) confusion matrices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("out-of-fold", report["oof"])] + ([("test", report["test"])] if report["test"] else [])
    size = max(4.0, 0.45 * len(label_names) + 2)
    figure, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size), squeeze=False)
    for axis, (title, evaluation) in zip(axes[0], panels):
        matrix = np.array(evaluation["confusion_matrix"])
        axis.imshow(matrix, cmap="Blues")
        axis.set_title(f"{report['model_id']} {title}\naccuracy {evaluation['accuracy']:.3f}", fontsize=9)
        axis.set_xticks(range(len(label_names)), [str(n) for n in label_names], rotation=90, fontsize=7)
        axis.set_yticks(range(len(label_names)), [str(n) for n in label_names], fontsize=7)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        for (row, column), count in np.ndenumerate(matrix):
            if count:
                axis.text(column, row, str(count), ha="center", va="center", fontsize=6,
                          color="white" if count > matrix.max() / 2 else "black")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def summary_table(reports: list[dict]) -> str:
    """A markdown table of every model, sorted by out-of-fold log loss."""
    header = ["model", "folds", "OOF accuracy", "OOF log loss", "test accuracy", "test log loss"]
    rows = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    for report in sorted(reports, key=lambda r: r["oof"]["log_loss"]):
        test = report["test"]
        rows.append("| " + " | ".join([
            f"`{report['model_id']}`", _folds_note(report),
            f"{report['oof']['accuracy']:.4f}", f"{report['oof']['log_loss']:.4f}",
            f"{test['accuracy']:.4f}" if test else "-", f"{test['log_loss']:.4f}" if test else "-",
        ]) + " |")
    return "\n".join(rows) + "\n"


def write_reports(dataset: str, model_ids: list[str] | None = None) -> list[dict]:
    """Evaluate, print and save the report of every (or each named) model trained on ``dataset``."""
    prediction_files = sorted(paths.predictions_dir(dataset).glob("*.h5"))
    if model_ids:
        known = {path.stem: path for path in prediction_files}
        missing = [model_id for model_id in model_ids if model_id not in known]
        if missing:
            raise UserError(f"no predictions for {', '.join(missing)} in {paths.predictions_dir(dataset)}: "
                            f"trained models are {', '.join(sorted(known)) or 'none'}")
        prediction_files = [known[model_id] for model_id in model_ids]
    if not prediction_files:
        raise UserError(f"no trained models for {dataset} in {paths.predictions_dir(dataset)}: "
                        f"train one with `make train DATASET={dataset} MODEL=logreg:<feature-set>`")
    out_dir = paths.reports_dir(dataset)
    out_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    for path in prediction_files:
        predictions = read_predictions(path)
        report = model_report(predictions)
        text = format_report(report)
        print(text + "\n")
        (out_dir / f"{report['model_id']}.txt").write_text(text + "\n")
        (out_dir / f"{report['model_id']}.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
        save_confusion_matrices(report, predictions.label_names, out_dir / f"{report['model_id']}-confusion.png")
        reports.append(report)
    table = summary_table(reports)
    (out_dir / "summary.md").write_text(f"# {dataset}: models sorted by out-of-fold log loss\n\n{table}")
    print(table)
    print(f"reports saved in {out_dir}")
    return reports


def main(args) -> int:
    write_reports(args.dataset, args.models)
    return 0
