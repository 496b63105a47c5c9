"""What a built Kaggle kernel runs: data, features, train and submit, inside Kaggle.

The generated script (see :mod:`kernels.build`) unpacks the project onto
``sys.path`` and calls :func:`run` with the settings chosen at build time. Inputs
come from ``<input>/<competition>/`` (Kaggle's zips or extracted folders) and the
backbone weights from any attached dataset under ``<input>``; the submission goes
to ``<output>/submission.csv``. The roots default to Kaggle's and can be moved
with ``--input`` / ``--output`` / ``--work`` or KAGGLE_INPUT_DIR / KAGGLE_OUTPUT_DIR /
KAGGLE_WORK_DIR, which is how the tests run a built kernel on a simulated input.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from competition.errors import UserError

DEFAULT_INPUT = "/kaggle/input"
DEFAULT_OUTPUT = "/kaggle/working"
DEFAULT_WORK = "/tmp/kernel-work"


def parse_roots(argv: list[str]) -> argparse.Namespace:
    """The input, output and work roots from the command line, else the environment, else Kaggle's."""
    parser = argparse.ArgumentParser(description="run the packaged pipeline inside a Kaggle kernel")
    parser.add_argument("--input", type=Path, default=Path(os.environ.get("KAGGLE_INPUT_DIR", DEFAULT_INPUT)))
    parser.add_argument("--output", type=Path, default=Path(os.environ.get("KAGGLE_OUTPUT_DIR", DEFAULT_OUTPUT)))
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("KAGGLE_WORK_DIR", DEFAULT_WORK)),
                        help="where data, features and models go (not kept as kernel output)")
    return parser.parse_args(argv)


def competition_input(input_root: Path, competition: str) -> Path:
    """Where Kaggle mounted the competition's files: ``<input>/<slug>`` or ``<input>/competitions/<slug>``."""
    for candidate in (input_root / competition, input_root / "competitions" / competition):
        if candidate.is_dir():
            return candidate
    raise UserError(f"no {competition} data under {input_root}: add the competition's data to the kernel")


def prepare_source(folder: Path, work: Path) -> Path:
    """The folder the data stage reads: ``folder`` itself when Kaggle extracted the
    files, else ``<work>/source`` with its archives (train.zip, test1.zip) extracted and its
    other files (the sample submission) linked. Kaggle mounts inputs read-only."""
    from competition.download import extract_archive, is_archive

    entries = sorted(folder.iterdir())
    if not any(entry.is_file() and is_archive(entry) for entry in entries):
        return folder
    source = work / "source"
    source.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        if entry.is_file() and is_archive(entry):
            extract_archive(entry, source)
        elif entry.is_file() and not (source / entry.name).exists():
            (source / entry.name).symlink_to(entry.resolve())
    return source


def find_weights(backbone: str, input_root: Path) -> Path:
    """The weights file for ``backbone`` in any attached dataset under ``input_root`` (internet is off)."""
    from features.backbones import find_weights_file

    folders = sorted({path.parent for path in input_root.rglob("*.h5")})
    for folder in folders:
        try:
            return find_weights_file(backbone, folder)
        except UserError:
            continue
    raise UserError(
        f"no {backbone} weights in any dataset under {input_root}: attach the weights dataset "
        f"(make kernel --weights-dataset <owner>/<slug>)"
    )


def run_stage(*argv: str) -> None:
    """Run one pipeline stage through the project's command line; stop the kernel if it fails."""
    from competition import cli

    print(f"\n=== python -m competition {' '.join(argv)}", flush=True)
    code = cli.main(list(argv))
    if code != 0:
        raise SystemExit(code)


def run(settings: dict, argv: list[str]) -> int:
    """Run the whole pipeline with ``settings`` (dataset, competition, backbones, models, method)."""
    roots = parse_roots(argv)
    print(f"project code from {Path(__file__).resolve().parent.parent}", flush=True)
    for name in ("data", "reports", "submissions"):
        os.environ[f"{name.upper()}_DIR"] = str(roots.work / name)
    from competition import paths

    dataset = settings["dataset"]
    source = prepare_source(competition_input(roots.input, settings["competition"]), roots.work)
    run_stage("data", "--dataset", dataset, "--source", str(source))
    for backbone in settings["backbones"]:
        run_stage("features", "--dataset", dataset, "--backbone", backbone,
                  "--weights", str(find_weights(backbone, roots.input)))
    for model in settings["models"]:
        run_stage("train", "--dataset", dataset, "--model", model)
    run_stage("submit", "--dataset", dataset, "--method", settings["method"])
    newest = sorted(paths.submissions_dir(dataset).glob("*.csv"))[-1]
    roots.output.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(newest, roots.output / "submission.csv")
    shutil.copyfile(newest.with_suffix(".json"), roots.output / "submission.json")
    print(f"wrote {roots.output / 'submission.csv'} from {newest.name}")
    return 0


def main(settings: dict, argv: list[str]) -> int:
    """:func:`run`, with user errors printed as one line (exit status 2) like the command line."""
    try:
        return run(settings, argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
