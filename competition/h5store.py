"""HDF5 conventions shared by every stage: atomic outputs, string columns, schema checks.

Every HDF5 file the pipeline writes appears under its final name only when it is
complete: it is written as ``<name>.partial`` and renamed at the end, so an
interrupted run never leaves a file that a later stage accepts.

Image files (``train.h5`` / ``test.h5``) hold:
    images       uint8 (N, H, W, 3)
    labels       int64 (N,)           -1 where unlabelled (competition test sets)
    label_names  str   (C,)
    ids          str   (N,)           competition id, or path relative to raw/
    folds        int8  (N,)           train.h5 only: CV fold 0..4, stratified, seeded
and attributes ``dataset``, ``image_size``, ``rgb_mean`` (of the train images) and ``producer``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from competition.errors import UserError

STRING = h5py.string_dtype(encoding="utf-8")
PARTIAL_SUFFIX = ".partial"


def partial_path(path: Path) -> Path:
    """The temporary name ``path`` is written under until it is complete."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


@contextlib.contextmanager
def atomic_output(path: Path, keep_partial: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` only if the block succeeds.

    On failure the partial file is deleted, unless ``keep_partial`` (for writers
    that resume from it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = partial_path(path)
    try:
        yield temporary
    except BaseException:
        if not keep_partial:
            temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def as_strings(values) -> np.ndarray:
    """Decode an HDF5 string dataset (bytes or str) into a numpy array of str."""
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def write_strings(group: h5py.Group, name: str, values) -> None:
    """Store a sequence of str as a variable-length UTF-8 dataset."""
    group.create_dataset(name, data=np.array([str(v) for v in values], dtype=object), dtype=STRING)


def set_json_attr(node: h5py.HLObject, name: str, value) -> None:
    node.attrs[name] = json.dumps(value, sort_keys=True, default=str)


def get_json_attr(node: h5py.HLObject, name: str, default=None):
    if name not in node.attrs:
        return default
    return json.loads(node.attrs[name])


def require_file(path: Path, keys: tuple[str, ...], fix: str) -> Path:
    """Check that a complete HDF5 file with ``keys`` exists at ``path``, or raise a UserError with ``fix``."""
    path = Path(path)
    if not path.is_file():
        if partial_path(path).exists():
            raise UserError(f"{path} is incomplete (an interrupted run left {partial_path(path).name}): {fix}")
        raise UserError(f"{path} does not exist: {fix}")
    try:
        with h5py.File(path, "r") as handle:
            missing = [key for key in keys if key not in handle]
    except OSError as error:
        raise UserError(f"{path} is not a readable HDF5 file ({error}): delete it and {fix}") from None
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: delete it and {fix}")
    return path


class BlockWriter:
    """Stream rows into a contiguous ``(capacity, *row_shape)`` dataset through a fixed
    buffer of ``block_rows`` rows, so memory stays flat however many rows arrive.

    ``count`` is the number of rows appended; when fewer than ``capacity`` arrive,
    ``shrink_rows`` drops the unused tail afterwards.
    """

    def __init__(self, group: h5py.Group, name: str, capacity: int, row_shape: tuple, dtype, block_rows: int = 128):
        self.dataset = group.create_dataset(name, shape=(capacity, *row_shape), dtype=dtype)
        self.buffer = np.empty((block_rows, *row_shape), dtype=dtype)
        self.buffered = 0
        self.count = 0

    def append(self, row: np.ndarray) -> None:
        self.buffer[self.buffered] = row
        self.buffered += 1
        if self.buffered == len(self.buffer):
            self.flush()

    def flush(self) -> None:
        if self.buffered:
            self.dataset[self.count:self.count + self.buffered] = self.buffer[:self.buffered]
            self.count += self.buffered
            self.buffered = 0


def shrink_rows(path: Path, name: str, rows: int, block_rows: int = 256) -> None:
    """Rewrite the HDF5 file ``path`` with dataset ``name`` cut to its first ``rows`` rows
    (contiguous datasets cannot shrink in place); everything else is copied as is."""
    path = Path(path)
    rewritten = path.with_name(path.name + ".shrink")
    with h5py.File(path, "r") as source, h5py.File(rewritten, "w") as target:
        for key, value in source.attrs.items():
            target.attrs[key] = value
        for key in source:
            if key != name:
                source.copy(source[key], target, name=key)
                continue
            original = source[key]
            copy = target.create_dataset(key, shape=(rows, *original.shape[1:]), dtype=original.dtype)
            for start in range(0, rows, block_rows):
                copy[start:start + block_rows] = original[start:min(rows, start + block_rows)]
            for attr, value in original.attrs.items():
                copy.attrs[attr] = value
    os.replace(rewritten, path)
