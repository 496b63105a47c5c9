"""Seeds and provenance: what produced each artifact, recorded next to it."""

from __future__ import annotations

import datetime
import os
import platform
import random
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

DEFAULT_SEED = 42


def seed_everything(seed: int = DEFAULT_SEED) -> None:
    """Seed Python, NumPy and, if it is already imported, TensorFlow/Keras."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if "keras" in sys.modules:
        sys.modules["keras"].utils.set_random_seed(seed)
    elif "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(seed)


def git_commit() -> str:
    """The commit of this checkout (with ``+dirty`` if it has changes), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit or "unknown") + ("+dirty" if dirty else "")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def provenance(stage: str, settings: dict) -> dict:
    """A record of what produced an artifact: stage, settings, code version, libraries, time."""
    return {
        "stage": stage,
        "settings": settings,
        "command": " ".join(sys.argv),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "packages": {
            name: _version(name)
            for name in ("numpy", "h5py", "scikit-learn", "tensorflow-cpu", "tensorflow", "keras")
        },
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
