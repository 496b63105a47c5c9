"""Shared fixtures: the real data in ../shared, an isolated workspace, tiny generated datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder with real images and weights (SHARED_DIR overrides)."""
    path = Path(os.environ.get("SHARED_DIR", REPO_ROOT.parent / "shared")).resolve()
    assert (path / "data").is_dir(), f"real test data not found at {path}: set SHARED_DIR"
    return path


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """An empty project workspace: data/, reports/ and submissions/ roots under tmp_path."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("SUBMISSIONS_DIR", str(tmp_path / "submissions"))
    return tmp_path


from tests.fixtures_data import *  # noqa: E402,F401,F403  (session fixtures on real data)
from tests.fixtures_features import *  # noqa: E402,F401,F403
