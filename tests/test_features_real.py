"""Real transfer learning: ImageNet MobileNet features of the shared photos separate their classes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from competition import paths
from competition.h5store import as_strings
from competition.splits import stratified_holdout

IMAGENET_CATS = range(281, 286)
IMAGENET_DOGS = range(151, 269)


def read_features(root, dataset, feature_set, split):
    with paths.using_data_root(root), h5py.File(paths.features_file(dataset, feature_set, split), "r") as handle:
        return handle["features"][:], handle["labels"][:]


def holdout_accuracy(train_x, train_y, test_x, test_y) -> float:
    classifier = LogisticRegression(C=1.0, max_iter=2000).fit(train_x, train_y)
    return classifier.score(test_x, test_y)


@pytest.mark.slow
def test_flowers17_mobilenet_v2_features_reach_092(flowers17_features):
    train_x, train_y = read_features(flowers17_features, "flowers17", "mobilenet_v2", "train")
    test_x, test_y = read_features(flowers17_features, "flowers17", "mobilenet_v2", "test")
    assert train_x.shape == (1020, 1280) and test_x.shape == (340, 1280)
    assert holdout_accuracy(train_x, train_y, test_x, test_y) >= 0.92


@pytest.mark.slow
@pytest.mark.parametrize("feature_set, width", [("mobilenet_v2", 1280), ("mobilenet", 1024)])
def test_dogs_vs_cats_features_reach_0985(dogs_vs_cats_features, feature_set, width):
    x, y = read_features(dogs_vs_cats_features, "dogs-vs-cats", feature_set, "train")
    test_x, _ = read_features(dogs_vs_cats_features, "dogs-vs-cats", feature_set, "test")
    assert x.shape == (2002, width) and test_x.shape == (1001, width)
    held_out = stratified_holdout(y)
    assert holdout_accuracy(x[~held_out], y[~held_out], x[held_out], y[held_out]) >= 0.985


@pytest.mark.slow
def test_imagenet_classifier_sees_cats_and_dogs(dogs_vs_cats_data, shared_dir):
    """The top variant of the shared weights puts 38 of cat.0..19 / dog.0..19 in ImageNet's cat and dog classes."""
    import tensorflow as tf

    from features.backbones import create_backbone, find_weights_file

    weights = find_weights_file("mobilenet_v2", shared_dir / "weights", include_top=True)
    model, config = create_backbone("mobilenet_v2", weights=weights, include_top=True)
    with paths.using_data_root(dogs_vs_cats_data), h5py.File(paths.images_file("dogs-vs-cats", "train"), "r") as handle:
        row_of = {name: row for row, name in enumerate(as_strings(handle["ids"][:]))}
        wanted = [f"train/{animal}.{i}.jpg" for animal in ("cat", "dog") for i in range(20)]
        images = np.stack([handle["images"][row_of[name]] for name in wanted])
    # the published sanity check resizes the whole image (the pipeline's central crop gets 37 of 40)
    batch = config.preprocess_input(tf.image.resize(images.astype(np.float32), (config.input_size,) * 2))
    top1 = np.argmax(model(batch, training=False).numpy(), axis=1)
    labels = (shared_dir / "weights" / "imagenet_labels.txt").read_text().splitlines()
    assert len(labels) == 1000
    correct = sum(c in IMAGENET_CATS for c in top1[:20]) + sum(c in IMAGENET_DOGS for c in top1[20:])
    assert correct >= 38, [labels[c] for c in top1]
