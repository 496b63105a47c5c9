"""Blending estimators and `make submit` on synthetic predictions."""

import json

import h5py
import numpy as np
import pytest
from sklearn.base import clone

from competition import cli, paths
from competition.h5store import set_json_attr
from competition.metrics import accuracy, log_loss
from ensembles.blend import BLENDERS, RankBlend, WeightedBlend, choose_clip_eps, clip_probabilities, cross_val_blend
from tests.factories import make_image_store, make_model_predictions


def synthetic_models(noises, n=600, n_classes=2, seed=0):
    """Labels and one probability array per noise level (independent noise per model)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    models = []
    for noise in noises:
        logits = 2.0 * np.eye(n_classes)[y] + rng.normal(0, noise, (n, n_classes))
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        models.append(exp / exp.sum(axis=1, keepdims=True))
    return models, y


@pytest.mark.parametrize("method", list(BLENDERS))
@pytest.mark.parametrize("n_classes", [2, 3])
def test_every_blender_is_an_estimator_that_blends_probabilities(method, n_classes):
    models, y = synthetic_models([1.0, 1.5, 2.0], n_classes=n_classes)
    blender = BLENDERS[method]()
    assert blender.fit(models, y) is blender
    assert not hasattr(clone(blender), "weights_")
    weights = blender.weights_
    assert weights.shape == (3,) and np.all(weights >= 0) and np.isclose(weights.sum(), 1)
    blended = blender.predict_proba(models)
    assert blended.shape == models[0].shape
    assert np.allclose(blended.sum(axis=1), 1) and np.all(blended >= 0)
    # out of fold, the blend is better than the average model (independent noise cancels)
    oof = cross_val_blend(blender, models, y, np.arange(len(y)) % 5)
    assert not np.isnan(oof).any()
    assert accuracy(oof, y) > np.mean([accuracy(m, y) for m in models])
    assert log_loss(oof, y) < np.mean([log_loss(m, y) for m in models])


def test_weighted_blend_favours_the_informative_model():
    models, y = synthetic_models([0.5, 20.0, 20.0])
    blender = WeightedBlend().fit(models, y)
    assert blender.weights_[0] > 0.8
    mean_loss = log_loss(BLENDERS["mean"]().fit(models, y).predict_proba(models), y)
    assert log_loss(blender.predict_proba(models), y) < mean_loss
    assert log_loss(blender.predict_proba(models), y) <= log_loss(models[0], y) + 1e-4


def test_stacking_beats_every_single_model_out_of_fold():
    models, y = synthetic_models([1.0, 1.0, 1.0], n=1500)
    oof = cross_val_blend(BLENDERS["stack"](), models, y, np.arange(len(y)) % 5)
    assert log_loss(oof, y) < min(log_loss(m, y) for m in models) - 0.02


def test_rank_blend_orders_rows_like_the_rank_average():
    models, y = synthetic_models([1.0, 2.0], n=400)
    blended = RankBlend().fit(models, y).predict_proba(models)[:, 1]
    rank_average = np.mean([np.argsort(np.argsort(m[:, 1])) for m in models], axis=0)
    order = np.argsort(rank_average, kind="stable")
    assert np.all(np.diff(blended[order]) >= -1e-9)
    # a single row is blended on the fitted scale, not ranked among itself
    single = RankBlend().fit(models, y).predict_proba([m[:1] for m in models])
    assert np.allclose(single, RankBlend().fit(models, y).predict_proba(models)[:1])


def test_clipping_eps_is_chosen_on_out_of_fold_predictions():
    models, y = synthetic_models([6.0])
    overconfident = clip_probabilities(models[0] ** 4, 1e-12)
    eps = choose_clip_eps(overconfident, y)
    assert eps > 1e-6
    assert log_loss(clip_probabilities(overconfident, eps), y) < log_loss(overconfident, y)
    assert np.allclose(clip_probabilities(overconfident, eps).sum(axis=1), 1)


def competition_workspace(dataset, n_train=120, n_test=40, models=(("a", 1.0), ("b", 1.5), ("c", 2.5)), classes=("cat", "dog")):
    labelled_test = dataset not in ("dogs-vs-cats", "dogs-vs-cats-redux-kernels-edition")
    make_image_store(dataset, "train", n_train, label_names=classes, size=4)
    make_image_store(dataset, "test", n_test, label_names=classes, size=4, labelled=labelled_test, seed=1)
    for seed, (model_id, noise) in enumerate(models):
        make_model_predictions(dataset, model_id, noise, seed=seed)


def read_csv_rows(path):
    lines = path.read_text().splitlines()
    return lines[0], [line.split(",") for line in lines[1:]]


@pytest.mark.parametrize("method", list(BLENDERS))
def test_submit_writes_a_validated_dogs_vs_cats_csv_flagged_partial(method, workspace, shared_dir, capsys):
    competition_workspace("dogs-vs-cats")
    # the sample submission is found in the source folder the data stage recorded
    with h5py.File(paths.images_file("dogs-vs-cats", "train"), "a") as handle:
        set_json_attr(handle, "producer", {"settings": {"source": str(shared_dir / "data" / "dogs-vs-cats")}})
    code = cli.main(["submit", "--dataset", "dogs-vs-cats", "--method", method])
    out = capsys.readouterr().out
    assert code == 0
    written = sorted(paths.submissions_dir("dogs-vs-cats").iterdir())
    assert [p.suffix for p in written] == [".csv", ".json"]
    csv_path, record_path = written
    assert csv_path.name.endswith(f"-{method}-not-uploadable.csv")
    header, rows = read_csv_rows(csv_path)
    assert header == "id,label"
    assert [row[0] for row in rows] == [str(i) for i in range(1, 41)]
    assert {row[1] for row in rows} <= {"0", "1"}
    record = json.loads(record_path.read_text())
    assert record["uploadable"] is False and record["method"] == method
    assert "covers 40 of the 12500 ids" in " ".join(record["not_uploadable_because"])
    assert record["models"] == ["a", "b", "c"] and set(record["weights"]) == {"a", "b", "c"}
    assert record["eps"] is None and record["producer"]["stage"] == "submit"
    assert record["sample_file"].endswith("sampleSubmission.csv")
    assert record["oof_scores"]["ensemble"]["accuracy"] > 0.5
    assert "NOT uploadable" in out and f"ensemble ({method})" in out
    for model_id in "abc":
        assert model_id in out


def test_submit_redux_writes_clipped_dog_probabilities(workspace, capsys):
    competition_workspace("dogs-vs-cats-redux-kernels-edition")
    assert cli.main(["submit", "--dataset", "dogs-vs-cats-redux-kernels-edition", "--models", "a,c"]) == 0
    out = capsys.readouterr().out
    csv_path = next(paths.submissions_dir("dogs-vs-cats-redux-kernels-edition").glob("*.csv"))
    record = json.loads(csv_path.with_suffix(".json").read_text())
    assert record["models"] == ["a", "c"] and record["method"] == "weighted"
    eps = record["eps"]
    assert record["log_loss_after_clip"] <= record["log_loss_before_clip"] + 1e-9
    _, rows = read_csv_rows(csv_path)
    values = np.array([float(row[1]) for row in rows])
    assert np.all((values >= eps - 1e-6) & (values <= 1 - eps + 1e-6)) and len(np.unique(values)) > 10
    assert "clipped to" in out and "->" in out


def test_submit_benchmark_writes_class_names_and_reports_the_test_split(workspace, capsys):
    competition_workspace("my-pets", classes=("cat", "dog", "panda"))
    assert cli.main(["submit", "--dataset", "my-pets", "--method", "stack"]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "panda" in out
    csv_path = next(paths.submissions_dir("my-pets").glob("*.csv"))
    _, rows = read_csv_rows(csv_path)
    assert len(rows) == 40 and {row[1] for row in rows} <= {"cat", "dog", "panda"}


def test_submit_explains_missing_models_and_disagreeing_ones(workspace, capsys):
    assert cli.main(["submit", "--dataset", "dogs-vs-cats"]) == 2
    assert "make train" in capsys.readouterr().err
    competition_workspace("dogs-vs-cats")
    make_image_store("dogs-vs-cats", "test", 30, size=4, labelled=False, seed=1)
    make_model_predictions("dogs-vs-cats", "short", 1.0)
    assert cli.main(["submit", "--dataset", "dogs-vs-cats", "--models", "a,short"]) == 2
    assert "disagree on test_ids" in capsys.readouterr().err
    assert cli.main(["submit", "--dataset", "dogs-vs-cats", "--models", "a,nope"]) == 2
    assert "no such trained model; trained models are a, b, c, short" in capsys.readouterr().err
    assert not paths.submissions_dir("dogs-vs-cats").exists()
