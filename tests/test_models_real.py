"""The shallow model and its reports on real MobileNetV2 features of the shared Flowers-17 and Dogs vs. Cats."""

from __future__ import annotations

from pathlib import Path

import pytest

from competition import paths
from models.registry import parse_spec
from models.report import write_reports
from models.train import train_model


def linked_workspace(features_root: Path, dataset: str, tmp_path: Path, monkeypatch) -> None:
    """A DATA_DIR under tmp_path whose images and features link to the session fixture's, so that
    predictions and models written here stay out of the shared fixture."""
    source = features_root / dataset
    target = tmp_path / "data" / dataset
    target.mkdir(parents=True)
    for name in ("train.h5", "test.h5", "features"):
        (target / name).symlink_to(source / name)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REPORTS_DIR", str(tmp_path / "reports"))


@pytest.mark.slow
def test_logreg_on_flowers17_reaches_the_published_accuracy(flowers17_features, tmp_path, monkeypatch):
    linked_workspace(flowers17_features, "flowers17", tmp_path, monkeypatch)
    train_model("flowers17", parse_spec("logreg:mobilenet_v2"))
    report = write_reports("flowers17")[0]
    test = report["test"]
    assert test["accuracy"] >= 0.92
    class_rows = [name for name in test["report"] if name not in ("accuracy", "macro avg", "weighted avg")]
    assert len(class_rows) == 17
    assert sum(test["report"][name]["support"] for name in class_rows) == 340
    assert len(report["best_params"]) == 5
    assert (paths.reports_dir("flowers17") / "summary.md").is_file()


@pytest.mark.slow
def test_logreg_on_dogs_vs_cats_out_of_fold(dogs_vs_cats_features, tmp_path, monkeypatch):
    linked_workspace(dogs_vs_cats_features, "dogs-vs-cats", tmp_path, monkeypatch)
    train_model("dogs-vs-cats", parse_spec("logreg:mobilenet_v2"))
    report = write_reports("dogs-vs-cats")[0]
    assert report["test"] is None  # the competition's test images are unlabelled
    assert report["oof"]["n"] == 2002
    assert report["oof"]["accuracy"] >= 0.985
    assert report["oof"]["log_loss"] <= 0.05
