"""The features stage: ``python -m competition features`` / ``make features``.

Streams ``data/<dataset>/train.h5`` and ``test.h5`` through a pretrained backbone and
writes ``data/<dataset>/features/<feature-set>/train.h5`` and ``test.h5`` with
``features`` (float32, one row per image, same order), ``labels``, ``label_names``,
``ids`` and attributes recording the backbone, weights, input size, pooling, TTA,
precision and producer.

Feature-set names: the backbone name for the default options (``resnet50``), with a
suffix for each non-default one: ``-<pool>`` for a pooling other than the backbone's
default (``avg``; ``fc`` for alexnet) and ``-flip`` for flip TTA, e.g. ``vgg16-flatten``, ``resnet50-flip``, ``xception-max-flip``. The
train stage names feature sets this way (``logreg:resnet50``, ``xgboost:resnet50+xception``).

A run interrupted part-way continues from the last completed batch when rerun (the
``.partial`` file records how many rows are done); the final file appears only when
complete. Existing feature files are kept unless ``--force`` (a changed ``--weights`` or
``--precision`` keeps the feature-set name, so pass ``--force`` to replace them).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from competition import paths
from competition.errors import UserError
from competition.h5store import (
    as_strings, atomic_output, get_json_attr, require_file, set_json_attr, write_strings,
)
from competition.reproducibility import provenance, seed_everything
from features.backbones import IMAGENET, POOLINGS, REGISTRY, create_backbone, find_weights_file, get_backbone
from features.precision import PRECISIONS

DEFAULT_BACKBONE = "resnet50"
TTA_MODES = ("none", "flip")
SPLITS = ("train", "test")
IMAGE_KEYS = ("images", "labels", "label_names", "ids")


def configure(parser) -> None:
    """Add the features stage's options."""
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=list(REGISTRY),
                        help="pretrained CNN (default: %(default)s)")
    parser.add_argument("--weights", default=None,
                        help="local Keras weights file (default: ImageNet, downloaded; 'random' for no weights)")
    parser.add_argument("--weights-dir", default=None,
                        help="folder of weights files, found by backbone name (e.g. mobilenet_v2_1.0_224_notop.weights.h5)")
    parser.add_argument("--pool", default=None, choices=[p for p in POOLINGS if p],
                        help="how the last conv map becomes a vector (default: avg; alexnet: fc, its fc7 layer)")
    parser.add_argument("--tta", default="none", choices=TTA_MODES,
                        help="flip: average the features of each image and its mirror (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: %(default)s)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="compute precision; auto picks from the hardware (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="re-extract even if the feature files exist")


def main(args) -> int:
    """Run the stage from parsed command-line arguments."""
    extract(
        args.dataset, args.backbone, weights=args.weights, weights_dir=args.weights_dir, pool=args.pool,
        tta=args.tta, batch_size=args.batch_size, precision=args.precision, force=args.force,
    )
    return 0


def feature_set_name(backbone: str, pool: str | None = None, tta: str = "none") -> str:
    """The feature-set folder name: ``backbone``, plus ``-<pool>`` and ``-flip`` for non-default options."""
    name = backbone
    if pool not in (None, get_backbone(backbone).default_pooling):
        name += f"-{pool}"
    if tta != "none":
        name += f"-{tta}"
    return name


def extract(
    dataset: str,
    backbone: str,
    weights: str | Path | None = None,
    weights_dir: str | Path | None = None,
    pool: str | None = None,
    tta: str = "none",
    data_root: str | Path | None = None,
    batch_size: int = 32,
    precision: str = "auto",
    force: bool = False,
    progress: bool = True,
) -> tuple[Path, Path]:
    """Extract ``backbone`` features of ``dataset``'s train.h5 and test.h5; returns their paths.

    ``weights``: None for ImageNet (or the file found in ``weights_dir``), ``"imagenet"``,
    a file, or ``"random"``. ``data_root`` overrides DATA_DIR.
    """
    get_backbone(backbone)
    if tta not in TTA_MODES:
        raise UserError(f"unknown TTA '{tta}': choose one of {', '.join(TTA_MODES)}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {batch_size}")
    with paths.using_data_root(data_root):
        sources = {
            split: require_file(paths.images_file(dataset, split), IMAGE_KEYS,
                                f"build it with `make data DATASET={dataset}`")
            for split in SPLITS
        }
        feature_set = feature_set_name(backbone, pool, tta)
        targets = {split: paths.features_file(dataset, feature_set, split) for split in SPLITS}
        pending = [split for split in SPLITS if force or not targets[split].is_file()]
        for split in sorted(set(SPLITS) - set(pending)):
            print(f"{targets[split]} exists: keeping it (pass --force to re-extract)")
        if pending:
            extractor = FeatureExtractor(
                backbone, weights=_weights_source(backbone, weights, weights_dir), pool=pool,
                tta=tta, batch_size=batch_size, precision=precision, dataset=dataset,
            )
            for split in pending:
                extractor.write(sources[split], targets[split], feature_set, progress=progress)
    return targets["train"], targets["test"]


def _weights_source(backbone: str, weights, weights_dir):
    """What ``create_backbone`` should load: ImageNet, a file (given or found in ``weights_dir``) or None."""
    if weights == "random":
        return None
    if weights == IMAGENET:
        return IMAGENET
    if weights is not None:
        return Path(weights)
    if weights_dir is not None:
        return find_weights_file(backbone, Path(weights_dir))
    return IMAGENET


class FeatureExtractor:
    """A backbone compiled for streaming extraction: ``write(source, target)`` per image file."""

    def __init__(self, backbone, weights=IMAGENET, pool=None, tta="none", batch_size=32,
                 precision="auto", dataset=None):
        from features.pipeline import distribution_strategy
        from features.precision import precision_policy, resolve_precision

        seed_everything()
        self.precision = resolve_precision(precision)
        self.strategy = distribution_strategy()
        with precision_policy(self.precision), self.strategy.scope():
            self.model, self.config = create_backbone(
                backbone, weights=weights, pooling=pool or get_backbone(backbone).default_pooling, dataset=dataset)
        self.tta = tta
        self.batch_size = batch_size
        self._forwards = {}

    def compiled_forward(self, image_shape) -> Callable:
        """The compiled pass from uint8 images of ``image_shape`` to features, built once per shape."""
        from features.pipeline import compile_forward

        shape = tuple(int(size) for size in image_shape)
        if shape not in self._forwards:
            self._forwards[shape] = compile_forward(self.model, shape, self.config.input_size,
                                                    self.config.preprocess_input, flip=self.tta == "flip")
        return self._forwards[shape]

    def forward(self, images):
        """Float32 features of a batch of uint8 images as stored."""
        return self.compiled_forward(images.shape[1:])(images)

    @property
    def settings(self) -> dict:
        """What determines the features: recorded on the file and checked before resuming."""
        return {
            "backbone": self.config.name,
            "weights": self.config.weights,
            "input_size": self.config.input_size,
            "pooling": self.config.pooling,
            "tta": self.tta,
            "precision": self.precision,
        }

    def write(self, source: Path, target: Path, feature_set: str, progress: bool = True) -> Path:
        """Write the features of image file ``source`` to ``target``, resuming a partial run."""
        from tqdm import tqdm

        from features.pipeline import distribute, image_dataset

        with h5py.File(source, "r") as handle:
            labels = handle["labels"][:]
            label_names = as_strings(handle["label_names"][:])
            ids = as_strings(handle["ids"][:])
            image_shape = handle["images"].shape[1:]
        fingerprint = dict(self.settings, source_rows=len(ids), source_ids=_digest(ids))
        with atomic_output(target, keep_partial=True) as temporary:
            with _open_partial(temporary, fingerprint) as out:
                if "features" not in out:
                    _start_file(out, len(ids), self.config.feature_dim, labels, label_names, ids)
                    out.attrs.update({key: str(value) for key, value in self.settings.items()})
                    out.attrs["feature_set"] = feature_set
                    set_json_attr(out, "producer", provenance("features", dict(self.settings, feature_set=feature_set)))
                done = int(out.attrs["completed_rows"])
                batches = image_dataset(source, self.batch_size, start=done)
                batches, forward = distribute(batches, self.compiled_forward(image_shape), self.strategy)
                features = out["features"]
                with tqdm(total=len(ids), initial=done, unit="img", desc=f"{feature_set} {target.stem}",
                          disable=not progress) as bar:
                    for batch in batches:
                        rows = forward(batch).numpy()
                        features[done:done + len(rows)] = rows
                        done += len(rows)
                        out.attrs["completed_rows"] = done
                        bar.update(len(rows))
                if done != len(ids):
                    raise RuntimeError(f"extracted {done} of {len(ids)} rows of {source}")
        return target


def _digest(ids: np.ndarray) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _open_partial(temporary: Path, fingerprint: dict) -> h5py.File:
    """The partial file to continue, or a fresh one when it is unreadable or from other settings."""
    if temporary.exists():
        try:
            handle = h5py.File(temporary, "a")
        except OSError:
            temporary.unlink()
        else:
            if get_json_attr(handle, "fingerprint") == fingerprint and "completed_rows" in handle.attrs:
                return handle
            handle.close()
            temporary.unlink()
    handle = h5py.File(temporary, "w")
    set_json_attr(handle, "fingerprint", fingerprint)
    return handle


def _start_file(out: h5py.File, n: int, width: int, labels, label_names, ids) -> None:
    out.create_dataset("features", shape=(n, width), dtype=np.float32)
    out.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
    write_strings(out, "label_names", label_names)
    write_strings(out, "ids", ids)
    out.attrs["completed_rows"] = 0

