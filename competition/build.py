"""The data stage: get a dataset (Kaggle, URL, or a local folder/archive) and build
``train.h5`` / ``test.h5`` of square RGB images, streaming, in parallel, atomically.

    python -m competition data --dataset flowers17 --source ../shared/data/flowers17

Competitions (``prefixed-files``: ``cat.0.jpg`` labelled by prefix, an unlabelled test
folder of ``<id>.jpg``) keep their test set, ordered by numeric id. Benchmarks
(``class-folders``: one folder per class) get a stratified, seeded 25% hold-out as test.
Unusable files are left out and listed in ``rejected.csv``. A rerun whose inputs are
unchanged (same files and sizes, same settings) skips; ``--force`` rebuilds.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import h5py
import numpy as np
from tqdm import tqdm

from competition import paths
from competition.datasets import Dataset, get_dataset
from competition.download import archive_stem, extract_all, extract_archive, fetch, is_archive
from competition.errors import UserError
from competition.h5store import (
    BlockWriter, atomic_output, partial_path, set_json_attr, shrink_rows, write_strings,
)
from competition.images import ImageRejected, channel_means, is_image_name, load_square_rgb
from competition.reproducibility import provenance, seed_everything
from competition.splits import stratified_folds, stratified_holdout

DEFAULT_IMAGE_SIZE = 256
PREFIXED_TRAIN_NAME = re.compile(r"^([A-Za-z][A-Za-z_-]*)\.(\d+)\.[A-Za-z0-9]+$")
NUMBERED_TEST_NAME = re.compile(r"^(\d+)\.[A-Za-z0-9]+$")
NUMBERED_IMAGE_NAME = re.compile(r"^image_(\d+)\.jpg$", re.IGNORECASE)
FINGERPRINT_ATTR = "input_fingerprint"


@dataclass(frozen=True)
class Example:
    path: Path
    id: str
    label: int


@dataclass
class Listing:
    """What a source folder holds: class names and the examples of each split."""

    label_names: list[str]
    train: list[Example]
    test: list[Example]


# ---------------------------------------------------------------- reading layouts

def _visible_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith("."))


def _visible_dirs(folder: Path) -> Iterator[Path]:
    """``folder`` and every folder below it, skipping hidden ones (staging, markers)."""
    for current, dirs, _ in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield Path(current)


def _relative_id(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _find_folder(root: Path, name: str, pattern: re.Pattern) -> Path | None:
    """The shallowest folder called ``name`` under ``root`` holding files that match ``pattern``."""
    for folder in _visible_dirs(root):
        if folder.name == name and any(pattern.match(f.name) for f in _visible_files(folder)):
            return folder
    return None


def read_prefixed_files(dataset: Dataset, root: Path) -> Listing:
    """Competition layout: ``<train>/cat.0.jpg`` (label = prefix) and ``<test>/1.jpg`` (unlabelled)."""
    train_dir = _find_folder(root, dataset.train_folder, PREFIXED_TRAIN_NAME)
    if train_dir is None:
        raise UserError(
            f"no labelled files like cat.0.jpg in a '{dataset.train_folder}' folder under {root}: "
            f"pass SOURCE= the folder (or archive) that holds {dataset.train_folder}/ and {dataset.test_folder}/"
        )
    named = [(f, PREFIXED_TRAIN_NAME.match(f.name)) for f in _visible_files(train_dir)]
    label_names = sorted({match.group(1) for _, match in named if match})
    index = {name: i for i, name in enumerate(label_names)}
    # a file without a label in its name gets label -1 and is rejected before decoding
    train = [Example(f, _relative_id(f, root), index[m.group(1)] if m else -1) for f, m in named]
    test_dir = _find_folder(root, dataset.test_folder, NUMBERED_TEST_NAME)
    if test_dir is None:
        raise UserError(f"no test files like 1.jpg in a '{dataset.test_folder}' folder under {root}: add the test folder")
    numbered = [(f, NUMBERED_TEST_NAME.match(f.name)) for f in _visible_files(test_dir)]
    numbered = sorted(((f, m) for f, m in numbered if m), key=lambda pair: int(pair[1].group(1)))
    test = [Example(f, m.group(1), -1) for f, m in numbered]
    return Listing(label_names, train, test)


def _class_root(dataset: Dataset, root: Path) -> Path | None:
    """The folder whose subfolders (classes) hold the most image files, if any holds two classes."""
    best, best_count = None, 0
    for folder in _visible_dirs(root):
        classes = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
                   and d.name not in dataset.excluded_classes]
        counts = [sum(is_image_name(f) for f in _visible_files(d)) for d in classes]
        if sum(c > 0 for c in counts) >= 2 and sum(counts) > best_count:
            best, best_count = folder, sum(counts)
    return best


def _holdout_split(label_names: list[str], examples: list[Example]) -> Listing:
    labels = np.array([e.label for e in examples])
    counts = np.bincount(labels, minlength=len(label_names))
    if (counts < 2).any():
        small = label_names[int(np.argmin(counts))]
        raise UserError(f"class '{small}' has {counts.min()} image(s): every class needs at least 2 for the hold-out split")
    is_test = stratified_holdout(labels)
    return Listing(
        label_names,
        [e for e, held in zip(examples, is_test) if not held],
        [e for e, held in zip(examples, is_test) if held],
    )


def _numbered_examples(dataset: Dataset, root: Path) -> tuple[list[str], list[Example]] | None:
    """Official Flowers-17 layout: ``jpg/image_0001.jpg``.., consecutive blocks of one class each."""
    class_names = dataset.extra.get("numbered_classes")
    per_class = dataset.extra.get("images_per_class")
    if not class_names:
        return None
    for folder in _visible_dirs(root):
        numbered = [(f, NUMBERED_IMAGE_NAME.match(f.name)) for f in _visible_files(folder)]
        numbered = [(f, int(m.group(1))) for f, m in numbered if m]
        if numbered:
            examples = [Example(f, _relative_id(f, root), (n - 1) // per_class)
                        for f, n in numbered if (n - 1) // per_class < len(class_names)]
            return list(class_names), examples
    return None


def read_class_folders(dataset: Dataset, root: Path) -> Listing:
    """Benchmark layout: one folder per class; test = stratified, seeded 25% hold-out."""
    class_root = _class_root(dataset, root)
    if class_root is None:
        numbered = _numbered_examples(dataset, root)
        if numbered is None:
            raise UserError(
                f"no class folders under {root}: put the images in one folder per class "
                f"(e.g. {root}/cat/*.jpg, {root}/dog/*.jpg) and pass that folder as SOURCE"
            )
        return _holdout_split(*numbered)
    class_dirs = sorted(d for d in class_root.iterdir() if d.is_dir() and not d.name.startswith(".")
                        and d.name not in dataset.excluded_classes and _visible_files(d))
    label_names = [d.name for d in class_dirs]
    examples = [Example(f, _relative_id(f, root), label) for label, d in enumerate(class_dirs) for f in _visible_files(d)]
    return _holdout_split(label_names, examples)


LAYOUT_READERS: dict[str, Callable[[Dataset, Path], Listing]] = {
    "prefixed-files": read_prefixed_files,
    "class-folders": read_class_folders,
}


# ---------------------------------------------------------------- sources

def resolve_source(dataset: Dataset, source: str | Path | None) -> Path:
    """The folder to read: SOURCE in place, a SOURCE archive extracted under raw/, or a download into raw/."""
    raw = paths.raw_dir(dataset.name)
    if source is None:
        return fetch(dataset, raw)
    source = Path(source).expanduser()
    if source.is_dir():
        return source
    if source.is_file() and is_archive(source):
        destination = raw / archive_stem(source)
        destination.mkdir(parents=True, exist_ok=True)
        extract_archive(source, destination)
        extract_all(destination)
        return destination
    if source.exists():
        raise UserError(f"SOURCE={source} is neither a folder nor a .zip/.tar/.tar.gz/.tgz archive: pass one of those")
    raise UserError(f"SOURCE={source} does not exist: pass an existing folder or archive")


# ---------------------------------------------------------------- writing

def _try_load(example: Example, size: int) -> tuple[np.ndarray | None, str]:
    try:
        return load_square_rgb(example.path, size), ""
    except ImageRejected as rejected:
        return None, str(rejected)


def decode_in_parallel(examples: Iterable[Example], size: int, workers: int) -> Iterator[tuple[np.ndarray | None, str]]:
    """``(pixels or None, rejection reason)`` per example, in order, decoded by ``workers``
    threads with a bounded window of images in flight (flat memory)."""
    pool = ThreadPoolExecutor(max_workers=workers)
    window: collections.deque = collections.deque()
    try:
        for example in examples:
            window.append(pool.submit(_try_load, example, size))
            if len(window) >= 16 * workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write_split(
    path: Path, split: str, dataset: Dataset, listing: Listing, examples: list[Example],
    size: int, workers: int, fingerprint: str, settings: dict, rgb_mean: np.ndarray | None,
) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Write one split to ``path`` atomically; returns the rejected (path, reason) and the RGB mean."""
    rejected: list[tuple[str, str]] = []
    kept: list[Example] = []
    channel_sums = np.zeros(3)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_path(path).unlink(missing_ok=True)  # a killed run's leftover
    with atomic_output(path) as temporary:
        with h5py.File(temporary, "w") as handle:
            writer = BlockWriter(handle, "images", len(examples), (size, size, 3), np.uint8)
            results = decode_in_parallel(examples, size, workers)
            for example, (pixels, reason) in tqdm(
                zip(examples, results), total=len(examples), desc=f"{dataset.name} {split}", unit="img"
            ):
                if pixels is None:
                    rejected.append((str(example.path), reason))
                    continue
                writer.append(pixels)
                kept.append(example)
                channel_sums += channel_means(pixels)
            writer.flush()
            if not kept:
                raise UserError(f"no usable images in the {split} split of {dataset.name}: see the rejected files above")
            labels = np.array([e.label for e in kept], dtype=np.int64)
            handle.create_dataset("labels", data=labels)
            write_strings(handle, "label_names", listing.label_names)
            write_strings(handle, "ids", [e.id for e in kept])
            if split == "train":
                handle.create_dataset("folds", data=stratified_folds(labels))
                rgb_mean = channel_sums / len(kept)
            handle.attrs["dataset"] = dataset.name
            handle.attrs["image_size"] = size
            handle.attrs["rgb_mean"] = np.asarray(rgb_mean, dtype=np.float64)
            handle.attrs[FINGERPRINT_ATTR] = fingerprint
            set_json_attr(handle, "producer", provenance("data", {**settings, "split": split, "images": len(kept)}))
        if len(kept) < len(examples):
            shrink_rows(temporary, "images", len(kept))
    return rejected, rgb_mean


def input_fingerprint(dataset: Dataset, listing: Listing, size: int) -> str:
    """A hash of the settings and of every input file's path, size and split."""
    digest = hashlib.sha256(json.dumps([dataset.name, dataset.layout, size, listing.label_names]).encode())
    for split, examples in (("train", listing.train), ("test", listing.test)):
        for example in examples:
            digest.update(f"{split}\0{example.path}\0{example.path.stat().st_size}\0{example.label}\n".encode())
    return digest.hexdigest()


def _is_up_to_date(path: Path, fingerprint: str) -> bool:
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as handle:
            return handle.attrs.get(FINGERPRINT_ATTR) == fingerprint and "images" in handle
    except OSError:
        return False


def _write_rejected(path: Path, rejected: list[tuple[str, str]]) -> None:
    with atomic_output(path) as temporary:
        with open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "reason"])
            writer.writerows(rejected)


def build(
    dataset: str, source: str | Path | None = None, data_root: str | Path | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE, force: bool = False, workers: int | None = None,
) -> tuple[Path, Path]:
    """Build (or reuse, when its inputs are unchanged) ``<data_root>/<dataset>/train.h5`` and
    ``test.h5``; returns their paths."""
    if image_size < 8:
        raise UserError(f"--image-size {image_size} is too small: use 8 or more (default {DEFAULT_IMAGE_SIZE})")
    seed_everything()
    workers = workers or os.cpu_count() or 1
    spec = get_dataset(dataset, custom_source=source is not None)
    with paths.using_data_root(data_root):
        root = resolve_source(spec, source)
        listing = LAYOUT_READERS[spec.layout](spec, root)
        train_path, test_path = paths.images_file(dataset, "train"), paths.images_file(dataset, "test")
        rejected_path = paths.rejected_file(dataset)
    fingerprint = input_fingerprint(spec, listing, image_size)
    if not force and _is_up_to_date(train_path, fingerprint) and _is_up_to_date(test_path, fingerprint):
        print(f"{train_path} and {test_path} are up to date (use --force to rebuild)")
        return train_path, test_path
    settings = {"dataset": dataset, "source": str(root), "image_size": image_size, "layout": spec.layout}
    unlabelled = [(str(e.path), "no label in the file name") for e in listing.train if e.label < 0]
    listing.train = [e for e in listing.train if e.label >= 0]
    rejected_train, rgb_mean = _write_split(
        train_path, "train", spec, listing, listing.train, image_size, workers, fingerprint, settings, None)
    rejected_test, _ = _write_split(
        test_path, "test", spec, listing, listing.test, image_size, workers, fingerprint, settings, rgb_mean)
    rejected = unlabelled + rejected_train + rejected_test
    _write_rejected(rejected_path, rejected)
    print(f"built {train_path} and {test_path} from {root}; "
          f"{len(rejected)} file(s) rejected" + (f", listed in {rejected_path}" if rejected else ""))
    return train_path, test_path


def configure(parser) -> None:
    parser.add_argument("--source", default=None,
                        help="a folder or .zip/.tar(.gz) archive to import instead of downloading")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE,
                        help="side of the square images in pixels (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the inputs are unchanged")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding threads (default: one per CPU core)")


def main(args) -> int:
    build(args.dataset, source=args.source, image_size=args.image_size, force=args.force, workers=args.workers)
    return 0
