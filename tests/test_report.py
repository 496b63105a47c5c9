"""The cv stage: reports from predictions files with known probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import log_loss

from competition import paths
from competition.cli import main as cli_main
from competition.errors import UserError
from models.predictions import Predictions, write_predictions
from models.report import write_reports

LABEL_NAMES = np.array(["cat", "dog", "panda"], dtype=object)


def noisy_predictions(model_id: str, noise: float, labelled_test: bool = True, seed: int = 0,
                      predicted_rows: int | None = None) -> Predictions:
    """Probabilities that favour the true class, blurred by ``noise``; some rows left unpredicted if asked."""
    rng = np.random.default_rng(seed)
    labels, test_labels = np.arange(30) % 3, np.arange(12) % 3

    def probabilities(truth):
        scores = np.eye(3)[truth] + noise * rng.random((len(truth), 3))
        return (scores / scores.sum(axis=1, keepdims=True)).astype(np.float32)

    oof = probabilities(labels)
    mask = np.ones(30, dtype=bool)
    if predicted_rows is not None:
        mask[predicted_rows:] = False
        oof[~mask] = np.nan
    return Predictions(
        model_id=model_id, oof=oof, oof_mask=mask, test=probabilities(test_labels),
        ids=np.array([f"train/{i}" for i in range(30)], dtype=object),
        test_ids=np.array([str(i) for i in range(12)], dtype=object),
        labels=labels, test_labels=test_labels if labelled_test else np.full(12, -1),
        label_names=LABEL_NAMES,
        producer={"model": model_id, "folds_trained": [0, 1, 2, 3, 4], "n_folds": 5,
                  "folds": {"0": {"best_params": {"C": 0.1}}}},
    )


def save(dataset: str, predictions: Predictions) -> None:
    write_predictions(paths.predictions_file(dataset, predictions.model_id), predictions)


def test_reports_have_per_class_rows_accuracy_log_loss_and_files(workspace, capsys):
    good, poor = noisy_predictions("good", 0.5), noisy_predictions("poor", 3.0, seed=1)
    save("pets", good)
    save("pets", poor)
    reports = {report["model_id"]: report for report in write_reports("pets")}
    out = capsys.readouterr().out
    for name in LABEL_NAMES:
        assert name in out
    assert "macro avg" in out and "weighted avg" in out and "fold 0: {\"C\": 0.1}" in out
    oof = reports["good"]["oof"]
    probabilities = good.oof.astype(np.float64)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    assert oof["log_loss"] == pytest.approx(log_loss(good.labels, probabilities), rel=1e-5)
    assert oof["accuracy"] == 1.0
    assert sum(oof["report"][name]["support"] for name in LABEL_NAMES) == 30
    assert reports["good"]["test"]["report"]["macro avg"]["support"] == 12
    folder = paths.reports_dir("pets")
    saved = json.loads((folder / "good.json").read_text())
    assert saved["oof"]["confusion_matrix"] == [[10, 0, 0], [0, 10, 0], [0, 0, 10]]
    assert "test split (12 images" in (folder / "good.txt").read_text()
    assert (folder / "good-confusion.png").stat().st_size > 1000
    summary = (folder / "summary.md").read_text()
    assert summary.index("`good`") < summary.index("`poor`")  # sorted by log loss


def test_unlabelled_test_and_limited_folds(workspace):
    save("comp", noisy_predictions("deep", 0.5, labelled_test=False, predicted_rows=12))
    save("comp", Predictions(**{**noisy_predictions("deep", 0.5).__dict__, "model_id": "other"}))
    report = write_reports("comp", ["deep"])[0]
    assert report["test"] is None
    assert report["oof"]["n"] == 12
    assert "| - | - |" in (paths.reports_dir("comp") / "summary.md").read_text()


def test_folds_note_names_the_trained_folds(workspace):
    limited = noisy_predictions("deep", 0.5, predicted_rows=12)
    limited.producer["folds_trained"] = [0, 1]
    save("comp", limited)
    write_reports("comp")
    assert "folds 0, 1 of 5 only" in (paths.reports_dir("comp") / "deep.txt").read_text()


def test_no_models_or_unknown_model_is_a_user_error(workspace, capsys):
    with pytest.raises(UserError, match="no trained models for empty"):
        write_reports("empty")
    save("pets", noisy_predictions("good", 0.5))
    assert cli_main(["cv", "--dataset", "pets", "--models", "missing"]) == 2
    assert "trained models are good" in capsys.readouterr().err
    assert cli_main(["cv", "--dataset", "pets"]) == 0
