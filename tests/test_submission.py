"""The submission format and the validator that guards every CSV before it exists."""

import numpy as np
import pytest

from competition.datasets import get_dataset, with_overrides
from competition.errors import UserError
from competition.submission import (
    CLASS_NAME_FORMAT, SubmissionError, find_sample_file, submission_format, submission_rows, validate_submission,
    write_submission,
)

LABELS = ["cat", "dog"]
DOGS = get_dataset("dogs-vs-cats").submission


def write_csv(path, text):
    path.write_text(text)
    return path


def test_rows_are_hard_labels_sorted_by_numeric_id():
    probabilities = np.array([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6]])
    rows = submission_rows(DOGS, ["10", "2", "1"], probabilities, LABELS)
    assert rows == [("1", "1"), ("2", "0"), ("10", "1")]


def test_redux_rows_are_dog_probabilities_and_benchmarks_class_names():
    redux = submission_format(get_dataset("dogs-vs-cats-redux-kernels-edition"))
    assert submission_rows(redux, ["1"], np.array([[0.25, 0.75]]), LABELS) == [("1", "0.750000")]
    benchmark = submission_format(get_dataset("flowers17"))
    assert benchmark is CLASS_NAME_FORMAT
    rows = submission_rows(benchmark, ["b/2.jpg", "a/1.jpg"], np.array([[0.1, 0.9], [0.7, 0.3]]), LABELS)
    assert rows == [("a/1.jpg", "cat"), ("b/2.jpg", "dog")]
    with pytest.raises(SubmissionError, match="NaN"):
        submission_rows(DOGS, ["1"], np.array([[np.nan, 0.5]]), LABELS)


@pytest.mark.parametrize(
    "text, message",
    [
        ("id,labels\n1,0\n2,1\n", "header"),
        ("id,label\n1,0\n1,1\n", "more than once"),
        ("id,label\n1,0\n3,1\n", "missing \\['2'\\]"),
        ("id,label\n2,0\n1,1\n", "not sorted"),
        ("id,label\n1,0\n2,2\n", "not a valid label"),
        ("id,label\n1,0\n2,\n", "not a valid label"),
        ("id,label\n1,0\n2,1,1\n", "two fields"),
    ],
)
def test_broken_files_are_rejected(tmp_path, text, message):
    with pytest.raises(SubmissionError, match=message):
        validate_submission(write_csv(tmp_path / "s.csv", text), DOGS, ["1", "2"], LABELS)


def test_probability_labels_must_be_finite_in_range(tmp_path):
    redux = get_dataset("dogs-vs-cats-redux-kernels-edition").submission
    for bad in ("nan", "1.5", "-0.1", "dog"):
        with pytest.raises(SubmissionError, match="probability"):
            validate_submission(write_csv(tmp_path / "s.csv", f"id,label\n1,0.5\n2,{bad}\n"), redux, ["1", "2"], LABELS)


def test_partial_test_set_is_valid_but_not_uploadable(tmp_path, shared_dir):
    sample = shared_dir / "data" / "dogs-vs-cats" / "sampleSubmission.csv"
    validation = validate_submission(write_csv(tmp_path / "s.csv", "id,label\n1,0\n2,1\n"), DOGS, ["1", "2"], LABELS, sample)
    assert not validation.uploadable
    assert any("12500" in reason for reason in validation.reasons)
    with pytest.raises(SubmissionError, match="not in"):
        validate_submission(write_csv(tmp_path / "s.csv", "id,label\n0,0\n"), DOGS, ["0"], LABELS, sample)


def test_complete_submission_matching_the_sample_is_uploadable(tmp_path):
    fmt = with_overrides(get_dataset("dogs-vs-cats"), submission=with_overrides(DOGS, expected_rows=3)).submission
    sample = write_csv(tmp_path / "sampleSubmission.csv", "id,label\n1,0\n2,0\n3,0\n")
    rows = [("1", "0"), ("2", "1"), ("3", "1")]
    path, validation = write_submission(tmp_path / "out", "run", rows, fmt, ["1", "2", "3"], LABELS, sample)
    assert validation.uploadable and path.name == "run.csv"
    assert path.read_text() == "id,label\n1,0\n2,1\n3,1\n"
    wrong_header = write_csv(tmp_path / "other.csv", "ImageId,Label\n1,0\n2,0\n3,0\n")
    with pytest.raises(SubmissionError, match="differs"):
        write_submission(tmp_path / "out", "run2", rows, fmt, ["1", "2", "3"], LABELS, wrong_header)


def test_a_broken_submission_is_never_written(tmp_path):
    records = []
    with pytest.raises(SubmissionError):
        write_submission(tmp_path, "run", [("1", "0"), ("1", "1")], DOGS, ["1"], LABELS,
                         on_valid=lambda path, validation: records.append(path))
    assert list(tmp_path.iterdir()) == [] and records == []
    path, validation = write_submission(tmp_path, "run", [("1", "0")], DOGS, ["1"], LABELS)
    assert path.name == "run-not-uploadable.csv" and not validation.uploadable
    assert [p.name for p in tmp_path.iterdir()] == ["run-not-uploadable.csv"]
    assert issubclass(SubmissionError, UserError)


def test_sample_file_is_found_under_raw(workspace):
    dataset = get_dataset("dogs-vs-cats")
    assert find_sample_file(dataset) is None
    nested = workspace / "data" / "dogs-vs-cats" / "raw" / "extracted"
    nested.mkdir(parents=True)
    write_csv(nested / "sampleSubmission.csv", "id,label\n1,0\n")
    assert find_sample_file(dataset) == nested / "sampleSubmission.csv"
    assert find_sample_file(get_dataset("flowers17")) is None
