"""Shallow models on small generated feature files: every registered kind, out-of-fold correctness,
skipping and forcing, feature concatenation and every refusal of bad input."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from competition import paths
from competition.cli import main as cli_main
from competition.errors import UserError
from competition.h5store import as_strings, write_strings
from models.crossval import FoldResult, cross_validate
from models.predictions import read_predictions
from models.registry import REGISTRY, parse_spec
from models.train import train_model
from tests.factories import make_image_store

SHALLOW_KINDS = [name for name, kind in REGISTRY.items() if kind.family == "shallow"]
FAST_SETTINGS = {  # fewer trees so every kind runs in about a second
    "rf": ["n_estimators=20"], "xgboost": ["n_estimators=20"], "lightgbm": ["n_estimators=20"],
}


def write_feature_store(dataset: str, feature_set: str, split: str, features: np.ndarray,
                        ids=None, labels=None) -> None:
    """A feature file for ``split`` with the image file's ids and labels (unless given)."""
    with h5py.File(paths.images_file(dataset, split), "r") as handle:
        image_ids = as_strings(handle["ids"][:])
        image_labels = handle["labels"][:]
        label_names = as_strings(handle["label_names"][:])
    path = paths.features_file(dataset, feature_set, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("features", data=np.asarray(features, dtype=np.float32))
        handle.create_dataset("labels", data=image_labels if labels is None else labels)
        write_strings(handle, "ids", image_ids if ids is None else ids)
        write_strings(handle, "label_names", label_names)
        handle.attrs["backbone"] = feature_set


def informative_features(labels: np.ndarray, n_classes: int, width: int = 8, seed: int = 0) -> np.ndarray:
    """Noise plus a shift of 3 in the column of each row's class: separable, but not perfectly."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(len(labels), width))
    features[np.arange(len(labels)), labels % width] += 3.0
    return features


def make_dataset(dataset="toy", n_train=60, n_test=20, label_names=("a", "b", "c"), feature_sets=("f1",),
                 labelled_test=True, features=informative_features):
    """train.h5/test.h5 with tiny images and, for each feature set, feature files that predict the label."""
    make_image_store(dataset, "train", n_train, label_names=label_names, size=8)
    make_image_store(dataset, "test", n_test, label_names=label_names, size=8, labelled=labelled_test, seed=1)
    for offset, feature_set in enumerate(feature_sets):
        for split in ("train", "test"):
            with h5py.File(paths.images_file(dataset, split), "r") as handle:
                labels = handle["labels"][:]
            if not labelled_test and split == "test":
                labels = np.arange(len(labels)) % len(label_names)
            write_feature_store(dataset, feature_set, split,
                                features(labels, len(label_names), seed=offset * 10 + (split == "test")))
    return dataset


@pytest.mark.parametrize("kind", SHALLOW_KINDS)
def test_every_shallow_kind_writes_oof_and_test_probabilities(workspace, kind):
    dataset = make_dataset()
    spec = parse_spec(f"{kind}:f1", FAST_SETTINGS.get(kind, []))
    output = train_model(dataset, spec)
    predictions = read_predictions(output)
    assert predictions.oof.shape == (60, 3) and predictions.test.shape == (20, 3)
    assert predictions.oof_mask.all()
    np.testing.assert_allclose(predictions.oof.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(predictions.test.sum(axis=1), 1.0, atol=1e-4)
    oof_accuracy = np.mean(predictions.oof.argmax(axis=1) == predictions.labels)
    assert oof_accuracy > 0.6, f"{kind} learned nothing: {oof_accuracy}"
    assert predictions.producer["model"] == f"{kind}:f1"
    assert predictions.producer["fingerprint"]
    fold_models = sorted(p.name for p in paths.model_dir(dataset, spec.model_id).glob("fold-*/model.joblib"))
    assert len(fold_models) == 5
    if kind == "logreg":  # the grid search over C runs inside each fold and its winner is recorded
        for fold in predictions.producer["folds"].values():
            assert fold["best_params"]["C"] in [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0]


def test_no_image_is_predicted_by_a_model_that_saw_it(workspace):
    """1-NN memorises its training set; on unique random features, out of fold it can only guess."""
    def unique_noise(labels, n_classes, seed=0):
        return np.random.default_rng(seed).normal(size=(len(labels), 16))

    dataset = make_dataset(n_train=300, label_names=("a", "b"), features=unique_noise)
    spec = parse_spec("knn:f1", ["n_neighbors=1", "scale=False"])
    predictions = read_predictions(train_model(dataset, spec))
    oof_accuracy = np.mean(predictions.oof.argmax(axis=1) == predictions.labels)
    assert 0.35 < oof_accuracy < 0.65
    # the same memorising model asked about its own training images is always right
    import joblib
    model = joblib.load(paths.model_dir(dataset, spec.model_id) / "fold-0" / "model.joblib")
    with h5py.File(paths.images_file(dataset, "train"), "r") as handle:
        folds = handle["folds"][:]
    with h5py.File(paths.features_file(dataset, "f1", "train"), "r") as handle:
        features = handle["features"][:]
    seen = folds != 0
    assert np.mean(model.predict(features[seen]) == predictions.labels[seen]) == 1.0


def test_cross_validate_fits_each_fold_without_its_held_out_rows(tmp_path):
    folds = np.repeat(np.arange(5), 7)
    fitted_on = {}

    def record_fit(fold_dir, train_index, held_out_index):
        fitted_on[fold_dir.name] = (set(train_index), set(held_out_index))
        return FoldResult(np.full((len(held_out_index), 2), 0.5), np.full((3, 2), 0.5))

    result = cross_validate(record_fit, folds, n_test=3, n_classes=2, work_dir=tmp_path, refit=True)
    assert sorted(fitted_on) == ["fold-0", "fold-1", "fold-2", "fold-3", "fold-4", "fold-all"]
    for name, (train, held_out) in fitted_on.items():
        assert not train & held_out
        if name != "fold-all":
            assert held_out == set(np.flatnonzero(folds == int(name[-1])))
    assert fitted_on["fold-all"][0] == set(range(len(folds)))
    assert result.oof_mask.all() and not np.isnan(result.oof).any()


def test_fold_limit_marks_only_predicted_rows(workspace):
    dataset = make_dataset()
    predictions = read_predictions(train_model(dataset, parse_spec("knn:f1"), fold_limit=2))
    with h5py.File(paths.images_file(dataset, "train"), "r") as handle:
        folds = handle["folds"][:]
    np.testing.assert_array_equal(predictions.oof_mask, np.isin(folds, [0, 1]))
    assert np.isnan(predictions.oof[~predictions.oof_mask]).all()
    assert predictions.producer["folds_trained"] == [0, 1]


def test_more_folds_later_reuse_the_finished_ones(workspace):
    dataset = make_dataset()
    spec = parse_spec("knn:f1")
    train_model(dataset, spec, fold_limit=1)
    finished_fold = paths.model_dir(dataset, spec.model_id) / "fold-0.npz"
    finished_at = finished_fold.stat().st_mtime_ns
    predictions = read_predictions(train_model(dataset, spec, fold_limit=3))
    assert finished_fold.stat().st_mtime_ns == finished_at
    assert predictions.producer["folds_trained"] == [0, 1, 2]


def test_same_run_is_skipped_unless_forced_and_refit_changes_test(workspace, capsys):
    dataset = make_dataset()
    spec = parse_spec("knn:f1")
    output = train_model(dataset, spec)
    first = output.stat().st_mtime_ns
    train_model(dataset, spec)
    assert output.stat().st_mtime_ns == first
    assert "up to date" in capsys.readouterr().out
    train_model(dataset, spec, force=True)
    assert output.stat().st_mtime_ns != first
    averaged = read_predictions(output).test
    refitted = read_predictions(train_model(dataset, spec, refit=True))
    assert refitted.producer["refit"] is True
    assert not np.allclose(averaged, refitted.test)


def test_changed_inputs_retrain(workspace):
    dataset = make_dataset()
    spec = parse_spec("knn:f1")
    output = train_model(dataset, spec)
    fingerprint = read_predictions(output).producer["fingerprint"]
    with h5py.File(paths.images_file(dataset, "train"), "r") as handle:
        labels = handle["labels"][:]
    write_feature_store(dataset, "f1", "train", informative_features(labels, 3, seed=5))
    assert read_predictions(train_model(dataset, spec)).producer["fingerprint"] != fingerprint


def test_feature_sets_are_concatenated_and_ids_are_filesystem_safe(workspace):
    dataset = make_dataset(feature_sets=("f1", "f2"))
    spec = parse_spec("knn:f1+f2", ["n_neighbors=3"])
    assert spec.model_id.startswith("knn-f1+f2-")
    train_model(dataset, spec)
    model = __import__("joblib").load(paths.model_dir(dataset, spec.model_id) / "fold-0" / "model.joblib")
    assert model.named_steps["classifier"].n_features_in_ == 16


def test_model_ids_name_the_spec_and_hash_non_default_settings():
    assert parse_spec("logreg:resnet50").model_id == "logreg-resnet50"
    assert parse_spec("logreg:resnet50", ["scale=False"]).model_id == "logreg-resnet50"
    changed = parse_spec("logreg:resnet50", ["grid={'C': [1.0]}"])
    assert changed.model_id.startswith("logreg-resnet50-") and changed.settings["grid"] == {"C": [1.0]}
    assert parse_spec("finetune:vgg16", ["head_epochs=5"]).settings["head_epochs"] == 5


@pytest.mark.parametrize("spec, overrides, message", [
    ("boosting:f1", [], "known models are logreg"),
    ("logreg", [], "needs feature sets"),
    ("alexnet:f1", [], "takes no feature set"),
    ("finetune", [], "needs one backbone"),
    ("logreg:f1", ["nonsense=1"], "known settings are C"),
    ("logreg:f1", ["C"], "is not key=value"),
])
def test_bad_specs_are_refused_with_what_is_known(spec, overrides, message):
    with pytest.raises(UserError, match=message):
        parse_spec(spec, overrides)


def test_unknown_feature_set_lists_the_extracted_ones(workspace):
    dataset = make_dataset(feature_sets=("f1", "f2"))
    with pytest.raises(UserError, match=r"unknown feature set 'resnet50'.*are f1, f2"):
        train_model(dataset, parse_spec("logreg:resnet50"))


def test_features_whose_ids_or_labels_disagree_are_refused(workspace):
    dataset = make_dataset()
    with h5py.File(paths.images_file(dataset, "train"), "r") as handle:
        labels, ids = handle["labels"][:], as_strings(handle["ids"][:])
    features = informative_features(labels, 3)
    write_feature_store(dataset, "f1", "train", features, ids=ids[::-1])
    with pytest.raises(UserError, match="ids that do not match"):
        train_model(dataset, parse_spec("logreg:f1"))
    write_feature_store(dataset, "f1", "train", features, labels=(labels + 1) % 3)
    with pytest.raises(UserError, match="labels that disagree"):
        train_model(dataset, parse_spec("logreg:f1"))
    write_feature_store(dataset, "f1", "train", features[:-1], ids=ids[:-1], labels=labels[:-1])
    with pytest.raises(UserError, match="ids that do not match"):
        train_model(dataset, parse_spec("logreg:f1"))


def test_nan_or_infinite_features_are_reported_not_trained_on(workspace, capsys):
    dataset = make_dataset()
    with h5py.File(paths.images_file(dataset, "train"), "r") as handle:
        labels = handle["labels"][:]
    features = informative_features(labels, 3)
    features[3, 1] = np.nan
    features[7, 0] = np.inf
    write_feature_store(dataset, "f1", "train", features)
    assert cli_main(["train", "--dataset", dataset, "--model", "logreg:f1"]) == 2
    error = capsys.readouterr().err
    assert "f1/train.h5 has 2 rows with NaN or infinite features" in error
    assert not paths.predictions_file(dataset, "logreg-f1").exists()


def test_cli_trains_with_overrides_and_folds(workspace, capsys):
    dataset = make_dataset()
    code = cli_main(["train", "--dataset", dataset, "--model", "rf:f1", "--set", "n_estimators=10",
                     "--set", "max_depth=3", "--folds", "3"])
    assert code == 0
    written = list(paths.predictions_dir(dataset).glob("rf-f1-*.h5"))
    assert len(written) == 1
    predictions = read_predictions(written[0])
    assert predictions.producer["overrides"] == {"n_estimators": 10, "max_depth": 3}
    assert predictions.oof_mask.sum() < 60
    assert cli_main(["train", "--dataset", dataset, "--model", "rf:f1", "--folds", "9"]) == 2
    assert "--folds 9 is out of range" in capsys.readouterr().err


def test_missing_images_file_says_how_to_build_it(workspace):
    with pytest.raises(UserError, match="make data DATASET=nowhere"):
        train_model("nowhere", parse_spec("logreg:f1"))
