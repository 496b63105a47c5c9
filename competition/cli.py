"""One command-line entry point for every pipeline stage: ``python -m competition <stage>``.

Each stage lives in its own module, which provides ``configure(parser)`` to add
its options and ``main(args) -> int`` to run. Stage modules import heavy
libraries (TensorFlow, the kaggle client) inside their functions, so that
``--help`` and the light stages start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from competition.errors import UserError

# stage name -> (module, one-line help)
STAGES = {
    "data": ("competition.build", "download or import a dataset and build train.h5 / test.h5"),
    "features": ("features.extract", "extract CNN features from train.h5 / test.h5 into HDF5"),
    "train": ("models.train", "cross-validate a model and write out-of-fold and test probabilities"),
    "cv": ("models.report", "print and save classification reports for every trained model"),
    "submit": ("ensembles.submit", "blend model probabilities and write a validated submission CSV"),
    "upload": ("competition.upload", "upload a validated submission CSV to Kaggle"),
    "kernel": ("kernels.build", "package the pipeline as a self-contained Kaggle kernel"),
    "kernel-push": ("kernels.push", "push a built Kaggle kernel with the kaggle client"),
}


def build_parser(stage: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per stage.

    Only the module of ``stage`` (the one being run) is imported and asked for its
    options, so a light stage never pays for the imports of a heavy one.
    """
    parser = argparse.ArgumentParser(
        prog="python -m competition",
        description="Transfer-learning pipeline: data -> features -> train -> submit.",
    )
    commands = parser.add_subparsers(dest="stage", required=True, metavar="<stage>")
    for name, (module_name, help_text) in STAGES.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name != stage:
            continue
        module = importlib.import_module(module_name)
        sub.add_argument(
            "--dataset", default="dogs-vs-cats",
            help="dataset name from the registry, or your own with --source (default: %(default)s)",
        )
        module.configure(sub)
        sub.set_defaults(run=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the stage, and turn user errors into one line."""
    argv = sys.argv[1:] if argv is None else argv
    stage = next((word for word in argv if not word.startswith("-")), None)
    args = build_parser(stage).parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
