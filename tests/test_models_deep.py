"""Deep models on tiny images: finetune (a 32 px MobileNet), resuming an interrupted run, AlexNet."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from competition import paths
from models.augment import ten_crop_views, training_transform
from models.predictions import read_predictions
from models.registry import parse_spec
from models.train import train_model
from tests.factories import make_image_store

TINY_BACKBONE = "tiny_mobilenet"


@pytest.fixture
def tiny_backbone(monkeypatch):
    """A MobileNet registered at 32x32 input, so fine-tuning runs in seconds (random weights)."""
    from features import backbones

    entry = backbones.Backbone(TINY_BACKBONE, "MobileNet", 32, "mobilenet", "conv_dw_13")
    monkeypatch.setitem(backbones.REGISTRY, TINY_BACKBONE, entry)
    return entry


def tiny_images(dataset: str, size: int, n_train: int = 30, n_test: int = 6) -> str:
    make_image_store(dataset, "train", n_train, size=size)
    make_image_store(dataset, "test", n_test, size=size, labelled=False, seed=1)
    return dataset


def epochs_logged(history_file) -> list[int]:
    with open(history_file) as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_training_crops_and_ten_test_crops():
    image = np.arange(72 * 72 * 3, dtype=np.uint8).reshape(72, 72, 3)
    assert training_transform(32)(image=image)["image"].shape == (32, 32, 3)
    assert training_transform(67, crop="fixed")(image=image)["image"].shape == (67, 67, 3)
    views = ten_crop_views(67)(image)
    assert views.shape == (10, 67, 67, 3)
    np.testing.assert_array_equal(views[0], image[:67, :67])  # top-left corner
    np.testing.assert_array_equal(views[3], image[5:, 5:])  # bottom-right corner
    np.testing.assert_array_equal(views[5], views[0][:, ::-1])  # its mirror


def test_training_batches_are_reproducible(workspace):
    from models.augment import ImageStream, resized_view

    path = make_image_store("augment", "train", 12, size=40)

    def first_batch(seed):
        stream = ImageStream(path, np.zeros(12, dtype=np.int64), 2, training_transform(32, seed=seed),
                             resized_view(32), lambda x: x, batch_size=6, seed=seed)
        return next(stream.training_batches(np.arange(12)))[0]

    np.testing.assert_array_equal(first_batch(7), first_batch(7))
    assert not np.array_equal(first_batch(7), first_batch(8))


def test_finetune_trains_head_then_last_block_and_predicts_every_split(workspace, tiny_backbone, recwarn):
    import keras

    from features.backbones import create_backbone, last_block_index

    dataset = tiny_images("tiny", 32)
    spec = parse_spec(f"finetune:{TINY_BACKBONE}", ["head_epochs=1", "finetune_epochs=1", "batch_size=8",
                                                    "dense_units=16"])
    predictions = read_predictions(train_model(dataset, spec, fold_limit=2, weights="random"))
    assert predictions.oof.shape == (30, 2) and predictions.test.shape == (6, 2)
    assert predictions.oof_mask.sum() == 12 and predictions.producer["folds_trained"] == [0, 1]
    np.testing.assert_allclose(predictions.oof[predictions.oof_mask].sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(predictions.test.sum(axis=1), 1.0, atol=1e-4)
    base, _ = create_backbone(TINY_BACKBONE, weights=None, pooling=None)
    expected_block = last_block_index(base, TINY_BACKBONE)
    assert predictions.producer["folds"]["0"]["unfreeze_from"] == expected_block
    keras.backend.clear_session()
    fold_dir = paths.model_dir(dataset, spec.model_id) / "fold-0"
    assert epochs_logged(fold_dir / "history-head.csv") == [0]
    assert epochs_logged(fold_dir / "history-finetune.csv") == [0]
    assert (paths.reports_dir(dataset) / f"{spec.model_id}-fold-0-curves.png").stat().st_size > 1000
    keras_warnings = [str(w.message) for w in recwarn if "keras" in w.filename and w.category is UserWarning]
    assert not keras_warnings  # e.g. "input ran out of data" (validation has a known length), "shuffle=True"


def test_finetune_retrained_with_the_same_seed_predicts_the_same(workspace, tiny_backbone):
    dataset = tiny_images("again", 32, n_train=20, n_test=4)
    spec = parse_spec(f"finetune:{TINY_BACKBONE}", ["head_epochs=1", "finetune_epochs=1", "batch_size=8",
                                                    "dense_units=16"])
    first = read_predictions(train_model(dataset, spec, fold_limit=1, weights="random"))
    again = read_predictions(train_model(dataset, spec, fold_limit=1, weights="random", force=True))
    np.testing.assert_array_equal(first.oof[first.oof_mask], again.oof[again.oof_mask])
    np.testing.assert_array_equal(first.test, again.test)


def test_unfrozen_last_block_keeps_batch_normalisation_in_inference_mode(tiny_backbone):
    import keras

    from features.backbones import last_block_index
    from models.finetune import build_finetune_model, unfreeze_from_layer

    model, base, _ = build_finetune_model(TINY_BACKBONE, None, n_classes=2, dense_units=8, dropout=0.5)
    start = last_block_index(base, TINY_BACKBONE)
    unfreeze_from_layer(base, start)
    trainable = [layer.name for layer in base.layers if layer.trainable]
    assert trainable and all(base.layers.index(base.get_layer(name)) >= start for name in trainable)
    assert "conv_dw_13" in trainable
    features = keras.Model(model.input, model.get_layer("head_flatten").output)
    images = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(features(images, training=True), features(images, training=False), atol=1e-5)
    keras.backend.clear_session()


@pytest.mark.parametrize("pooling, reduce", [("avg", np.mean), ("max", np.max)])
def test_global_pooling_head_pools_the_feature_map_instead_of_flattening_it(monkeypatch, pooling, reduce):
    import keras

    from features import backbones
    from models.finetune import build_finetune_model

    monkeypatch.setitem(backbones.REGISTRY, "mobilenet_64", backbones.Backbone(
        "mobilenet_64", "MobileNet", 64, "mobilenet", "conv_dw_13"))  # a 2x2 feature map
    flatten, _, _ = build_finetune_model("mobilenet_64", None, n_classes=3, dense_units=8, dropout=0.5)
    pooled, base, _ = build_finetune_model("mobilenet_64", None, n_classes=3, dense_units=8, dropout=0.5,
                                           pooling=pooling)
    height, width, channels = base.output_shape[1:]
    assert (height, width) == (2, 2)
    assert flatten.get_layer("head_dense").count_params() == height * width * channels * 8 + 8
    assert pooled.get_layer("head_dense").count_params() == channels * 8 + 8
    images = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    head_input = keras.Model(pooled.input, pooled.get_layer(f"head_{pooling}").output)
    expected = reduce(np.asarray(base(images, training=False)), axis=(1, 2))
    np.testing.assert_allclose(head_input(images), expected, rtol=1e-5, atol=1e-6)
    assert pooled.output.shape[1:] == (3,)
    keras.backend.clear_session()


def test_unknown_head_pooling_is_refused_before_training(workspace, tiny_backbone):
    from competition.errors import UserError

    dataset = tiny_images("pooling", 32, n_train=10, n_test=2)
    spec = parse_spec(f"finetune:{TINY_BACKBONE}", ["pooling=mean"])
    with pytest.raises(UserError, match="unknown head pooling 'mean'.*flatten, avg, max"):
        train_model(dataset, spec, fold_limit=1, weights="random")
    assert not list(paths.model_dir(dataset, spec.model_id).glob("fold-*"))
    assert not paths.predictions_file(dataset, spec.model_id).exists()


def test_an_interrupted_run_keeps_finished_folds_and_resumes_from_the_last_epoch(workspace, tiny_backbone):
    import keras

    class InterruptAfterEpochs(keras.callbacks.Callback):
        def __init__(self, epochs):
            super().__init__()
            self.remaining = epochs

        def on_epoch_end(self, epoch, logs=None):
            self.remaining -= 1
            if self.remaining == 0:
                raise KeyboardInterrupt

    dataset = tiny_images("resume", 32, n_train=20)
    spec = parse_spec(f"finetune:{TINY_BACKBONE}", ["head_epochs=2", "finetune_epochs=1", "batch_size=8",
                                                    "dense_units=16"])
    # fold 0: head epochs 0, 1 and finetune epoch 0 finish it; fold 1 stops after head epoch 0
    with pytest.raises(KeyboardInterrupt):
        train_model(dataset, spec, fold_limit=2, weights="random", callbacks=[InterruptAfterEpochs(4)])
    work_dir = paths.model_dir(dataset, spec.model_id)
    finished_fold = work_dir / "fold-0.npz"
    finished_at = finished_fold.stat().st_mtime_ns
    assert not (work_dir / "fold-1.npz").exists()
    assert epochs_logged(work_dir / "fold-1" / "history-head.csv") == [0]
    assert not paths.predictions_file(dataset, spec.model_id).exists()

    predictions = read_predictions(train_model(dataset, spec, fold_limit=2, weights="random"))
    assert finished_fold.stat().st_mtime_ns == finished_at  # fold 0 was not trained again
    assert epochs_logged(work_dir / "fold-1" / "history-head.csv") == [0, 1]  # resumed at epoch 1
    assert epochs_logged(work_dir / "fold-1" / "history-finetune.csv") == [0]
    assert predictions.oof_mask.sum() == 8


def test_alexnet_learns_and_saves_a_checkpoint_that_loads(workspace):
    import keras

    from features.backbones import create_backbone
    from models.alexnet import make_alexnet

    dataset = tiny_images("alex", 72, n_train=40, n_test=4)
    spec = parse_spec("alexnet", ["epochs=10", "input_size=67", "dense_units=32", "batch_size=8", "learning_rate=0.0001"])
    predictions = read_predictions(train_model(dataset, spec, fold_limit=1))
    assert predictions.test.shape == (4, 2) and predictions.oof_mask.sum() == 8
    with open(paths.model_dir(dataset, spec.model_id) / "fold-0" / "history-train.csv") as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    # per-epoch training loss on 32 images is noisy (dropout, batch norm on 8): compare the trend
    assert len(losses) == 10 and np.mean(losses[-3:]) < losses[0]
    checkpoint = paths.model_dir(dataset, "alexnet") / "alexnet.weights.h5"
    architecture = json.loads(checkpoint.with_name("alexnet.json").read_text())
    assert architecture == {"num_classes": 2, "input_size": 67, "dense_units": 32, "dropout": 0.5,
                            "weight_decay": 0.0002}
    keras.backend.clear_session()
    model = make_alexnet(**architecture)
    model.load_weights(checkpoint)
    assert model.get_layer("fc7").output.shape[-1] == 32
    assert model.predict(np.zeros((1, 67, 67, 3), np.float32), verbose=0).shape == (1, 2)
    _, config = create_backbone("alexnet", pooling="fc", dataset=dataset)  # the features stage's reader
    assert config.feature_dim == 32
