"""The shared foundation: CLI error handling, atomic outputs, splits, dataset registry."""

import subprocess
import sys

import numpy as np
import pytest

from competition import cli
from competition.datasets import get_dataset
from competition.errors import UserError
from competition.h5store import atomic_output, partial_path
from competition.splits import stratified_folds, stratified_holdout


def test_help_imports_no_heavy_library():
    code = (
        "import sys; from competition import cli; cli.build_parser(None).format_help();"
        "heavy = {'tensorflow', 'keras', 'kaggle', 'sklearn'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_stage_has_help(capsys):
    for stage in cli.STAGES:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([stage, "--help"])
        assert exit_info.value.code == 0
        assert "--dataset" in capsys.readouterr().out, stage


def test_user_error_is_one_line(monkeypatch, capsys):
    def fail(args):
        raise UserError("data/x.h5 does not exist: run make data")

    args = cli.build_parser("cv").parse_args(["cv", "--dataset", "flowers17"])
    monkeypatch.setattr(cli, "build_parser", lambda stage: _FixedParser(args, fail))
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err == "error: data/x.h5 does not exist: run make data\n"


class _FixedParser:
    def __init__(self, args, run):
        args.run = run
        self.args = args

    def parse_args(self, argv):
        return self.args


def test_atomic_output_renames_only_on_success(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and not partial_path(target).exists()
    with atomic_output(target) as temporary:
        temporary.write_text("whole")
    assert target.read_text() == "whole"


def test_folds_are_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [100, 50, 7])
    folds = stratified_folds(labels)
    assert set(folds) == {0, 1, 2, 3, 4}
    for fold in range(5):
        counts = np.bincount(labels[folds == fold], minlength=3)
        assert counts[0] == 20 and counts[1] == 10
    assert np.array_equal(folds, stratified_folds(labels))
    assert not np.array_equal(folds, stratified_folds(labels, seed=1))


def test_holdout_is_a_stratified_quarter():
    labels = np.repeat(np.arange(17), 80)
    mask = stratified_holdout(labels)
    assert mask.sum() == 340
    assert np.all(np.bincount(labels[mask]) == 20)


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(UserError, match="flowers17"):
        get_dataset("flowerz")
    assert get_dataset("my-pets", custom_source=True).layout == "class-folders"
    assert get_dataset("dogs-vs-cats").submission.target == "label"
