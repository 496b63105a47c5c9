"""Session fixtures with real MobileNet features extracted once by the features stage.

Features are computed in float32 on every machine, so that the accuracy tests see the same
numbers everywhere. Each returns the DATA_DIR root of the matching data fixture, now also holding
``<dataset>/features/<feature-set>/train.h5`` and ``test.h5``; tests that use it do
``monkeypatch.setenv("DATA_DIR", str(root))``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from features.extract import extract


def _extract_shared(root: Path, shared_dir: Path, dataset: str, backbones: tuple[str, ...]) -> Path:
    for backbone in backbones:
        extract(dataset, backbone, weights_dir=shared_dir / "weights", data_root=root, precision="float32", progress=False)
    return root


@pytest.fixture(scope="session")
def flowers17_features(flowers17_data, shared_dir) -> Path:
    """DATA_DIR root with flowers17 images and feature set ``mobilenet_v2`` (1280 columns, ImageNet weights)."""
    return _extract_shared(flowers17_data, shared_dir, "flowers17", ("mobilenet_v2",))


@pytest.fixture(scope="session")
def dogs_vs_cats_features(dogs_vs_cats_data, shared_dir) -> Path:
    """DATA_DIR root with dogs-vs-cats images and feature sets ``mobilenet_v2`` (1280) and ``mobilenet`` (1024)."""
    return _extract_shared(dogs_vs_cats_data, shared_dir, "dogs-vs-cats", ("mobilenet_v2", "mobilenet"))
