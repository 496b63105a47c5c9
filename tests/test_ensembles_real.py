"""The ensemble on real data: Dogs vs. Cats sample, two shared backbones, three trained models."""

import json

import pytest

from competition import cli, paths
from models.registry import parse_spec
from models.train import train_model

MODELS = ("logreg:mobilenet_v2", "logreg:mobilenet", "knn:mobilenet_v2+mobilenet")


@pytest.fixture(scope="module")
def trained_models(dogs_vs_cats_features, tmp_path_factory):
    """DATA_DIR root reading the shared images and features, with this module's three models trained."""
    root = tmp_path_factory.mktemp("ensembles-real") / "data"
    mine = root / "dogs-vs-cats"
    mine.mkdir(parents=True)
    for name in ("train.h5", "test.h5", "features"):
        (mine / name).symlink_to(dogs_vs_cats_features / "dogs-vs-cats" / name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATA_DIR", str(root))
        for model in MODELS:
            train_model("dogs-vs-cats", parse_spec(model))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("method", ["weighted", "stack"])
def test_ensemble_beats_the_best_single_model_out_of_fold(method, trained_models, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(trained_models))
    monkeypatch.setenv("SUBMISSIONS_DIR", str(tmp_path / "submissions"))
    assert cli.main(["submit", "--dataset", "dogs-vs-cats", "--method", method]) == 0
    print(capsys.readouterr().out)  # the score table, shown with -s
    (record_path,) = paths.submissions_dir("dogs-vs-cats").glob("*.json")
    record = json.loads(record_path.read_text())
    scores = record["oof_scores"]
    best_single = min(scores[model]["log_loss"] for model in scores if model != "ensemble")
    assert len(scores) == 4 and scores["ensemble"]["log_loss"] < best_single
    assert record["rows"] == 1001 and record["uploadable"] is False
