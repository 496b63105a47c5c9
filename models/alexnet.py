"""``alexnet``: AlexNet with batch normalisation, trained from scratch on the 256x256 images.

Training uses random ``input_size`` crops (227) of the stored images, mean subtraction (train.h5
``rgb_mean``) and augmentation; prediction averages ten crops (four corners, centre, mirrored).
The final weights go to ``paths.model_dir(dataset, "alexnet") / "alexnet.weights.h5"`` with the
:func:`make_alexnet` arguments in ``alexnet.json`` beside them; the features stage's ``alexnet``
backbone reads them. Feature layer: ``fc7`` (the second fully connected layer, after ReLU).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from competition.errors import UserError
from competition.reproducibility import DEFAULT_SEED, seed_everything
from models.augment import ImageStream, ten_crop_views, training_transform
from models.crossval import REFIT_FOLD, FitFold, TrainContext
from models.deep import configure_precision, finish_fold, fit_stage

FEATURE_LAYER = "fc7"
STAGES = ("train",)
MINIMUM_INPUT_SIZE = 67  # smallest input whose last pooling map is still 1x1


def make_alexnet(num_classes: int, input_size: int = 227, dense_units: int = 4096, dropout: float = 0.5,
                 weight_decay: float = 0.0002):
    """AlexNet (five conv layers ``conv1``..``conv5``, ``fc6``, ``fc7``, ``predictions``) with batch normalisation."""
    import keras
    from keras import layers

    if input_size < MINIMUM_INPUT_SIZE:
        raise UserError(f"alexnet input_size {input_size} is too small: "
                        f"use --set input_size={MINIMUM_INPUT_SIZE} or more")
    regulariser = keras.regularizers.L2(weight_decay) if weight_decay else None

    def conv(x, filters, kernel, name, strides=1, padding="same"):
        x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, activation="relu",
                          kernel_regularizer=regulariser, name=name)(x)
        return layers.BatchNormalization(name=f"{name}_bn")(x)

    def dense(x, name):
        x = layers.Dense(dense_units, activation="relu", kernel_regularizer=regulariser, name=name)(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.Dropout(dropout, name=f"{name}_dropout")(x)

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = conv(inputs, 96, 11, "conv1", strides=4, padding="valid")
    x = layers.MaxPooling2D(3, 2, name="pool1")(x)
    x = conv(x, 256, 5, "conv2")
    x = layers.MaxPooling2D(3, 2, name="pool2")(x)
    x = conv(x, 384, 3, "conv3")
    x = conv(x, 384, 3, "conv4")
    x = conv(x, 256, 3, "conv5")
    x = layers.MaxPooling2D(3, 2, name="pool5")(x)
    x = layers.Flatten(name="flatten")(x)
    x = dense(x, "fc6")
    x = dense(x, FEATURE_LAYER)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="alexnet")


def _save_checkpoint(weights_file: Path, dataset: str, architecture: dict) -> None:
    from features.backbones import alexnet_checkpoint

    target = alexnet_checkpoint(dataset)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name("alexnet-partial.weights.h5")
    shutil.copyfile(weights_file, partial)
    os.replace(partial, target)
    target.with_name("alexnet.json").write_text(json.dumps(architecture, indent=2, sort_keys=True))


def train_alexnet(context: TrainContext) -> FitFold:
    """A fold fitter that trains AlexNet from scratch on train.h5 and predicts test.h5 with ten crops."""
    import keras

    from features.backbones import alexnet_checkpoint

    settings = context.spec.settings
    n_classes = len(context.train.label_names)
    architecture = {"num_classes": n_classes, "input_size": settings["input_size"],
                    "dense_units": settings["dense_units"], "dropout": settings["dropout"],
                    "weight_decay": settings["weight_decay"]}
    with h5py.File(context.train.path, "r") as handle:
        rgb_mean = np.asarray(handle.attrs["rgb_mean"] if "rgb_mean" in handle.attrs else np.zeros(3), dtype=np.float32)
    policy = configure_precision()
    size = settings["input_size"]

    def subtract_mean(images: np.ndarray) -> np.ndarray:
        return images - rgb_mean

    def fit_fold(fold_dir, train_index, held_out_index) -> FoldResult:
        keras.backend.clear_session()
        seed_everything(DEFAULT_SEED)
        model = make_alexnet(**architecture)
        model.compile(optimizer=keras.optimizers.Adam(settings["learning_rate"]),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        stream = ImageStream(context.train.path, context.train.labels, n_classes,
                             training_transform(size, settings["augment"], crop="fixed"), ten_crop_views(size),
                             subtract_mean, settings["batch_size"], seed=DEFAULT_SEED)
        fit_stage(model, stream, train_index, held_out_index, settings["epochs"], fold_dir, "train", context.callbacks)
        if fold_dir.name == f"fold-{REFIT_FOLD}" or not alexnet_checkpoint(context.dataset).is_file():
            _save_checkpoint(fold_dir / "train.weights.h5", context.dataset, architecture)
        return finish_fold(model, stream, context, fold_dir, held_out_index, STAGES,
                           {"precision": policy, "feature_layer": FEATURE_LAYER})

    return fit_fold
