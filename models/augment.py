"""The image input pipeline of the deep models: albumentations augmentation and a tf.data stream
that reads train.h5 / test.h5 a batch at a time (flat memory), with prefetching.

A pipeline is described by a :class:`ImageStream`: the transform applied to each training image,
the views predicted at test time (one resized image, or AlexNet's ten crops) and the
preprocessing that maps 0..255 pixels to what the network expects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import albumentations as A
import h5py
import numpy as np

from competition.reproducibility import DEFAULT_SEED


def training_transform(size: int, augment: bool = True, crop: str = "resized", seed: int = DEFAULT_SEED) -> A.Compose:
    """Random crops (``resized``: a random area rescaled to ``size``; ``fixed``: a ``size`` crop of the
    stored image), horizontal flips, small rotations and colour changes; without ``augment`` just a resize.
    Seeded: albumentations ignores the global seeds and draws its own unless told."""
    if not augment:
        return A.Compose([A.Resize(size, size)])
    cropping = A.RandomResizedCrop(size=(size, size), scale=(0.6, 1.0)) if crop == "resized" \
        else A.RandomCrop(size, size)
    return A.Compose([
        cropping,
        A.HorizontalFlip(p=0.5),
        A.Rotate(limit=15, border_mode=0, p=0.5),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.03, p=0.5),
    ], seed=seed)


def resized_view(size: int) -> Callable[[np.ndarray], np.ndarray]:
    """Test-time view: the whole image resized to ``size`` (one view)."""
    resize = A.Resize(size, size)
    return lambda image: resize(image=image)["image"][None]


def ten_crop_views(size: int) -> Callable[[np.ndarray], np.ndarray]:
    """Test-time views: the four corner crops and the centre crop of ``size``, and their mirror images."""

    def views(image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        if height < size or width < size:
            image = A.Resize(max(size, height), max(size, width))(image=image)["image"]
            height, width = image.shape[:2]
        corners = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size),
                   ((height - size) // 2, (width - size) // 2)]
        crops = np.stack([image[top:top + size, left:left + size] for top, left in corners])
        return np.concatenate([crops, crops[:, :, ::-1]])

    return views


@dataclass
class ImageStream:
    """How images flow from an HDF5 file into a network."""

    path: Path
    labels: np.ndarray
    n_classes: int
    transform: A.Compose
    views: Callable[[np.ndarray], np.ndarray]
    preprocess: Callable[[np.ndarray], np.ndarray]
    batch_size: int = 32
    seed: int = 42

    def steps(self, indices: np.ndarray) -> int:
        """Batches in one pass over ``indices``."""
        return math.ceil(len(indices) / self.batch_size)

    def _read(self, handle: h5py.File, indices: np.ndarray) -> np.ndarray:
        images = handle["images"]
        return np.stack([images[int(i)] for i in indices])  # one at a time: fast on chunked data too

    def training_batches(self, indices: np.ndarray):
        """One epoch of shuffled, augmented ``(images, one-hot labels)`` batches; reshuffled every epoch."""
        rng = np.random.default_rng(self.seed)
        while True:
            order = rng.permutation(indices)
            with h5py.File(self.path, "r") as handle:
                for start in range(0, len(order), self.batch_size):
                    batch = order[start:start + self.batch_size]
                    images = np.stack([self.transform(image=image)["image"] for image in self._read(handle, batch)])
                    yield self.preprocess(images.astype(np.float32)), self._one_hot(batch)

    def _one_hot(self, batch: np.ndarray) -> np.ndarray:
        return np.eye(self.n_classes, dtype=np.float32)[self.labels[batch]]

    def evaluation_batches(self, indices: np.ndarray):
        """Batches of ``(views, one-hot labels)`` in order, every view of an image (and its label) in one batch."""
        with h5py.File(self.path, "r") as handle:
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start:start + self.batch_size]
                views = [self.views(image) for image in self._read(handle, batch)]
                labels = np.repeat(self._one_hot(batch), len(views[0]), axis=0)
                yield self.preprocess(np.concatenate(views).astype(np.float32)), labels

    def dataset(self, indices: np.ndarray, training: bool):
        """A prefetching ``tf.data.Dataset`` over ``indices`` (infinite when ``training``: use steps_per_epoch)."""
        import tensorflow as tf

        generator = self.training_batches if training else self.evaluation_batches
        signature = (tf.TensorSpec((None, None, None, 3), tf.float32),
                     tf.TensorSpec((None, self.n_classes), tf.float32))
        dataset = tf.data.Dataset.from_generator(lambda: generator(indices), output_signature=signature)
        if not training:
            # a known length: Keras otherwise warns "Your input ran out of data" after every first validation pass
            dataset = dataset.apply(tf.data.experimental.assert_cardinality(self.steps(indices)))
        return dataset.prefetch(tf.data.AUTOTUNE)

    def predict(self, model, indices: np.ndarray) -> np.ndarray:
        """Class probabilities for ``indices``, averaged over each image's test-time views."""
        n_views = len(self.views(np.zeros((8, 8, 3), np.uint8)))
        if len(indices) == 0:
            return np.zeros((0, self.n_classes), dtype=np.float32)
        outputs = [model.predict_on_batch(images) for images, _ in self.evaluation_batches(indices)]
        probabilities = np.concatenate([np.asarray(o, dtype=np.float32) for o in outputs])
        return probabilities.reshape(len(indices), n_views, self.n_classes).mean(axis=1)
