"""Submission CSVs in a competition's exact format, and the validator every file passes before it exists.

A submission is written as ``<name>.partial``, validated, and renamed only if
valid, so a broken file never appears under its final name. Validation has two
outcomes besides success: a broken file (duplicate or missing ids, NaN, labels
out of range, wrong header) raises; a well-formed file that does not cover the
competition's whole test set (the shared sample has 1001 of 12,500 images) is
kept but marked not uploadable, with the reasons.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from competition import paths
from competition.datasets import Dataset, SubmissionFormat
from competition.errors import UserError
from competition.h5store import partial_path

# Benchmark datasets have no competition: their "submission" holds the predicted class names.
CLASS_NAME_FORMAT = SubmissionFormat(target="class_name", positive_class="")


class SubmissionError(UserError):
    """A submission that breaks the competition's rules; it is never written."""


@dataclass
class Validation:
    """The outcome of validating a well-formed submission."""

    rows: int
    uploadable: bool
    reasons: list[str] = field(default_factory=list)
    sha256: str = ""  # of the validated bytes, so a later change to the file can be noticed


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def submission_format(dataset: Dataset) -> SubmissionFormat:
    """The dataset's competition format, or id + class name for a benchmark dataset."""
    return dataset.submission or CLASS_NAME_FORMAT


def _positive_index(fmt: SubmissionFormat, label_names) -> int:
    names = list(label_names)
    if fmt.positive_class not in names:
        raise UserError(
            f"the submission's positive class '{fmt.positive_class}' is not among the labels {names}: "
            f"rebuild the dataset with `make data`"
        )
    return names.index(fmt.positive_class)


def _hard_labels(fmt, probabilities, label_names) -> list[str]:
    positive = _positive_index(fmt, label_names)
    return [str(int(row.argmax() == positive)) for row in probabilities]


def _positive_probabilities(fmt, probabilities, label_names) -> list[str]:
    positive = _positive_index(fmt, label_names)
    return [f"{p:.6f}" for p in probabilities[:, positive]]


def _class_names(fmt, probabilities, label_names) -> list[str]:
    return [str(label_names[i]) for i in probabilities.argmax(axis=1)]


def _check_binary(value: str, label_names) -> bool:
    return value in ("0", "1")


def _check_class_name(value: str, label_names) -> bool:
    return value in label_names


def _check_probability(value: str, label_names) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and 0.0 <= number <= 1.0


# target -> (how to write a label from probabilities, how to check one written label)
TARGETS = {
    "label": (_hard_labels, _check_binary),
    "probability": (_positive_probabilities, _check_probability),
    "class_name": (_class_names, _check_class_name),
}


def _sort_key(identifier: str):
    return (0, int(identifier), "") if identifier.isdigit() else (1, 0, identifier)


def submission_rows(fmt: SubmissionFormat, test_ids, probabilities: np.ndarray, label_names) -> list[tuple[str, str]]:
    """The (id, label) rows for ``probabilities`` of the test images ``test_ids``, sorted by numeric id."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if np.isnan(probabilities).any():
        raise SubmissionError("the blended test probabilities contain NaN: retrain the models with `make train`")
    write_labels, _ = TARGETS[fmt.target]
    labels = write_labels(fmt, probabilities, list(label_names))
    return sorted(zip((str(i) for i in test_ids), labels), key=lambda row: _sort_key(row[0]))


def find_sample_file(dataset: Dataset, extra_folders=()) -> Path | None:
    """The competition's sample submission in ``data/<name>/raw/`` (at any depth) or ``extra_folders``."""
    if dataset.submission is None:
        return None
    for folder in (paths.raw_dir(dataset.name), *map(Path, extra_folders)):
        if folder.is_dir():
            found = sorted(folder.rglob(dataset.submission.sample_file))
            if found:
                return found[0]
    return None


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        return header, list(reader)


def validate_submission(
    path: Path, fmt: SubmissionFormat, expected_ids, label_names, sample_file: Path | None = None
) -> Validation:
    """Check the CSV at ``path`` against the competition's rules; raise SubmissionError if it is broken.

    ``expected_ids`` are the test ids predicted (each must appear exactly once).
    The result says whether the file can be uploaded: it must cover the
    competition's ``expected_rows`` and, where a sample submission is known,
    exactly its ids.
    """
    name = Path(path).name
    header, rows = _read_csv(path)
    wanted_header = [fmt.id_column, fmt.label_column]
    if header != wanted_header:
        raise SubmissionError(f"{name}: header is {header}, the competition wants {wanted_header}")
    malformed = [n for n, row in enumerate(rows, start=2) if len(row) != 2]
    if malformed:
        raise SubmissionError(f"{name}: line {malformed[0]} does not have exactly two fields")
    ids = [row[0] for row in rows]
    duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)
    if duplicates:
        raise SubmissionError(f"{name}: ids {duplicates[:5]} appear more than once")
    expected = {str(i) for i in expected_ids}
    if set(ids) != expected:
        missing, extra = sorted(expected - set(ids)), sorted(set(ids) - expected)
        raise SubmissionError(f"{name}: ids differ from the test set (missing {missing[:5]}, unexpected {extra[:5]})")
    if [_sort_key(i) for i in ids] != sorted(_sort_key(i) for i in ids):
        raise SubmissionError(f"{name}: rows are not sorted by id")
    _, check_label = TARGETS[fmt.target]
    names = {str(name) for name in label_names}
    bad = [row for row in rows if not check_label(row[1], names)]
    if bad:
        raise SubmissionError(f"{name}: label '{bad[0][1]}' of id {bad[0][0]} is not a valid {fmt.target}")

    reasons = []
    if fmt is CLASS_NAME_FORMAT:
        reasons.append("benchmark dataset: there is no competition to upload to")
    elif len(rows) != fmt.expected_rows:
        reasons.append(f"{len(rows)} rows, the competition expects {fmt.expected_rows} (partial test set)")
    if sample_file is not None:
        sample_header, sample_rows = _read_csv(sample_file)
        if sample_header != header:
            raise SubmissionError(f"{name}: header {header} differs from {sample_file}'s {sample_header}")
        sample_ids = {row[0] for row in sample_rows if row}
        unknown = sorted(set(ids) - sample_ids, key=_sort_key)
        if unknown:
            raise SubmissionError(f"{name}: ids {unknown[:5]} are not in {sample_file}")
        if len(sample_ids) != len(ids):
            reasons.append(f"covers {len(ids)} of the {len(sample_ids)} ids in {Path(sample_file).name}")
    return Validation(rows=len(rows), uploadable=not reasons, reasons=reasons, sha256=file_sha256(path))


NOT_UPLOADABLE_SUFFIX = "-not-uploadable"


def write_submission(
    folder: Path, stem: str, rows, fmt: SubmissionFormat, expected_ids, label_names,
    sample_file: Path | None = None, on_valid=None,
) -> tuple[Path, Validation]:
    """Write ``rows`` as ``folder/<stem>.csv`` only if they pass :func:`validate_submission`.

    The CSV is written as ``.partial`` and validated; a file that is valid but not
    uploadable is renamed ``<stem>-not-uploadable.csv``. ``on_valid(path, validation)``
    runs before the rename (to write a record next to it). Returns the path and validation.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    draft = partial_path(folder / f"{stem}.csv")
    try:
        with open(draft, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow([fmt.id_column, fmt.label_column])
            writer.writerows(rows)
        validation = validate_submission(draft, fmt, expected_ids, label_names, sample_file)
        final = folder / f"{stem}{'' if validation.uploadable else NOT_UPLOADABLE_SUFFIX}.csv"
        if on_valid is not None:
            on_valid(final, validation)
        os.replace(draft, final)
    except BaseException:
        draft.unlink(missing_ok=True)
        raise
    return final, validation
