"""Session fixtures with the real datasets in ../shared built once by the data stage.

Each returns the DATA_DIR root (the folder holding ``<dataset>/train.h5`` and ``test.h5``);
tests that use it do ``monkeypatch.setenv("DATA_DIR", str(root))``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from competition.build import build


def _build_shared(tmp_path_factory, shared_dir: Path, dataset: str) -> Path:
    root = tmp_path_factory.mktemp(f"data-{dataset}")
    build(dataset, source=shared_dir / "data" / dataset, data_root=root)
    return root


@pytest.fixture(scope="session")
def dogs_vs_cats_data(tmp_path_factory, shared_dir) -> Path:
    """DATA_DIR root with dogs-vs-cats train.h5 (2002 labelled) and test.h5 (ids 1..1001), 256x256."""
    return _build_shared(tmp_path_factory, shared_dir, "dogs-vs-cats")


@pytest.fixture(scope="session")
def flowers17_data(tmp_path_factory, shared_dir) -> Path:
    """DATA_DIR root with flowers17 train.h5 (1020) and test.h5 (340, stratified 25% hold-out), 256x256."""
    return _build_shared(tmp_path_factory, shared_dir, "flowers17")
