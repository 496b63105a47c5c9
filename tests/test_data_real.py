"""The data stage on the real images in ../shared (built once per session by the fixtures)."""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest

from competition.build import build
from competition.h5store import as_strings, get_json_attr

pytestmark = pytest.mark.slow


def channel_mean(images: h5py.Dataset, block: int = 256) -> np.ndarray:
    totals = sum(images[i:i + block].reshape(-1, 3).sum(axis=0, dtype=np.float64) for i in range(0, len(images), block))
    return totals / (len(images) * images.shape[1] * images.shape[2])


def load(path):
    with h5py.File(path, "r") as handle:
        return {key: handle[key][()] for key in handle if key != "images"} | {
            "shape": handle["images"].shape, "dtype": handle["images"].dtype, "attrs": dict(handle.attrs),
            "ids": as_strings(handle["ids"]), "label_names": list(as_strings(handle["label_names"])),
            "mean": channel_mean(handle["images"]),
        }


def assert_stratified_folds(train):
    share = np.bincount(train["labels"]) / len(train["labels"])
    for fold in range(5):
        in_fold = train["labels"][train["folds"] == fold]
        assert abs(len(in_fold) - len(train["labels"]) / 5) <= len(share)
        assert np.abs(np.bincount(in_fold, minlength=len(share)) / len(in_fold) - share).max() < 0.02


def test_dogs_vs_cats_sample(dogs_vs_cats_data):
    folder = dogs_vs_cats_data / "dogs-vs-cats"
    train, test = load(folder / "train.h5"), load(folder / "test.h5")
    assert train["shape"] == (2002, 256, 256, 3) and train["dtype"] == np.uint8
    assert test["shape"] == (1001, 256, 256, 3)
    assert train["label_names"] == ["cat", "dog"] and np.bincount(train["labels"]).tolist() == [1001, 1001]
    for image_id, label in zip(train["ids"], train["labels"]):
        assert image_id.split("/")[-1].split(".")[0] == train["label_names"][label]
    assert list(test["ids"]) == [str(i) for i in range(1, 1002)] and set(test["labels"]) == {-1}
    assert_stratified_folds(train)
    assert np.allclose(train["attrs"]["rgb_mean"], train["mean"], atol=0.01)
    assert 60 < train["mean"].min() and train["mean"].max() < 200
    with h5py.File(folder / "train.h5", "r") as handle:
        assert get_json_attr(handle, "producer")["stage"] == "data"
    assert (folder / "rejected.csv").read_text().strip() == "path,reason"


def test_flowers17(flowers17_data, shared_dir):
    folder = flowers17_data / "flowers17"
    train, test = load(folder / "train.h5"), load(folder / "test.h5")
    assert train["shape"] == (1020, 256, 256, 3) and test["shape"] == (340, 256, 256, 3)
    assert len(train["label_names"]) == 17
    assert np.bincount(train["labels"]).tolist() == [60] * 17 and np.bincount(test["labels"]).tolist() == [20] * 17
    assert not set(train["ids"]) & set(test["ids"])
    for store in (train, test):
        for image_id, label in zip(store["ids"], store["labels"]):
            assert image_id.split("/")[0] == store["label_names"][label]
            assert (shared_dir / "data" / "flowers17" / image_id).is_file()
    assert_stratified_folds(train)
    assert np.allclose(test["attrs"]["rgb_mean"], train["attrs"]["rgb_mean"])


def test_rerun_on_unchanged_real_data_skips_quickly(flowers17_data, shared_dir):
    train_path = flowers17_data / "flowers17" / "train.h5"
    before = train_path.stat().st_mtime_ns
    start = time.perf_counter()
    build("flowers17", source=shared_dir / "data" / "flowers17", data_root=flowers17_data)
    assert time.perf_counter() - start < 3 and train_path.stat().st_mtime_ns == before
