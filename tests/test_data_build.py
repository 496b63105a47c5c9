"""End-to-end builds on generated folders and archives: layouts, rejects, reruns, interruptions, errors."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from competition import cli
from competition.build import build
from competition.datasets import REGISTRY
from competition.errors import UserError
from competition.h5store import as_strings, get_json_attr, require_file
from tests.conftest import REPO_ROOT
from tests.fixtures_data import write_bad_kinds, write_good_kinds, write_jpeg

SIZE = 32


def read_store(path: Path) -> dict:
    with h5py.File(path, "r") as handle:
        store = {key: handle[key][()] for key in handle}
        store["attrs"] = dict(handle.attrs)
    store["ids"] = as_strings(store["ids"])
    store["label_names"] = list(as_strings(store["label_names"]))
    return store


def read_rejected(path: Path) -> dict[str, str]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["path", "reason"]
    return {Path(row[0]).name: row[1] for row in rows[1:]}


@pytest.fixture
def pets_folder(tmp_path) -> Path:
    """cat/ with 8 plain JPEGs, every convertible kind and every bad kind; dog/ with 10 plain JPEGs."""
    source = tmp_path / "pets"
    for i in range(8):
        write_jpeg(source / "cat" / f"c{i}.jpg", colour=(200, 20 + i, 20))
    write_good_kinds(source / "cat")
    write_bad_kinds(source / "cat")
    for i in range(10):
        write_jpeg(source / "dog" / f"d{i}.jpg", colour=(20, 20 + i, 200))
    return source


def test_class_folders_build_keeps_good_files_and_lists_bad_ones(tmp_path, pets_folder, capsys):
    train_path, test_path = build("pets", source=pets_folder, data_root=tmp_path / "data", image_size=SIZE)
    train, test = read_store(train_path), read_store(test_path)
    assert train["images"].shape[1:] == (SIZE, SIZE, 3) and train["images"].dtype == np.uint8
    assert len(train["ids"]) + len(test["ids"]) == 8 + 6 + 10  # every good file, no bad one
    assert len(test["ids"]) == 6  # stratified 25% hold-out of 24
    assert train["label_names"] == ["cat", "dog"]
    for store in (train, test):
        assert len(store["images"]) == len(store["labels"]) == len(store["ids"])
        for image_id, label in zip(store["ids"], store["labels"]):
            assert image_id.split("/")[0] == store["label_names"][label]  # ids are paths relative to the source
            assert (pets_folder / image_id).is_file()
    # colour follows the label: cats red, dogs blue (plain files only)
    for image, image_id in zip(train["images"], train["ids"]):
        if Path(image_id).name[:1] in "cd" and Path(image_id).name[1:2].isdigit():
            red, _, blue = image.reshape(-1, 3).mean(axis=0)
            assert (red > blue) == image_id.startswith("cat/")
    assert set(train["folds"]) <= set(range(5)) and "folds" not in test
    assert np.allclose(train["attrs"]["rgb_mean"], train["images"].reshape(-1, 3).mean(axis=0), atol=1e-6)
    assert np.allclose(test["attrs"]["rgb_mean"], train["attrs"]["rgb_mean"])
    assert train["attrs"]["image_size"] == SIZE and train["attrs"]["dataset"] == "pets"
    with h5py.File(train_path, "r") as handle:
        producer = get_json_attr(handle, "producer")
        assert handle["images"].chunks is None  # contiguous
    assert producer["stage"] == "data" and producer["settings"]["image_size"] == SIZE
    rejected = read_rejected(tmp_path / "data" / "pets" / "rejected.csv")
    assert set(rejected) == {"corrupt.jpg", "truncated.jpg", "empty.jpg", "notes.jpg"}
    assert rejected["empty.jpg"] == "empty file" and rejected["notes.jpg"] == "not an image"
    assert "4 file(s) rejected" in capsys.readouterr().out


def test_rerun_skips_unchanged_inputs_and_rebuilds_on_change_or_force(tmp_path, pets_folder, capsys):
    data = tmp_path / "data"
    train_path, _ = build("pets", source=pets_folder, data_root=data, image_size=SIZE)
    first = train_path.stat().st_mtime_ns
    build("pets", source=pets_folder, data_root=data, image_size=SIZE)
    assert train_path.stat().st_mtime_ns == first and "up to date" in capsys.readouterr().out
    build("pets", source=pets_folder, data_root=data, image_size=SIZE, force=True)
    second = train_path.stat().st_mtime_ns
    assert second != first
    write_jpeg(pets_folder / "dog" / "new.jpg")
    build("pets", source=pets_folder, data_root=data, image_size=SIZE)
    assert train_path.stat().st_mtime_ns != second
    assert sum(len(read_store(p)["ids"]) for p in (train_path, data / "pets" / "test.h5")) == 25


def _competition_zip(path: Path, cats: int = 6, dogs: int = 6, tests: int = 12) -> Path:
    """A zip laid out like Kaggle's Dogs vs. Cats: train/cat.N.jpg, train/dog.N.jpg, test1/N.jpg."""
    staging = path.parent / "staging"
    with zipfile.ZipFile(path, "w") as archive:
        for prefix, count, colour in (("cat", cats, (220, 30, 30)), ("dog", dogs, (30, 30, 220))):
            for i in range(count):
                archive.write(write_jpeg(staging / f"{prefix}.{i}.jpg", colour=colour), f"train/{prefix}.{i}.jpg")
        for i in range(1, tests + 1):
            archive.write(write_jpeg(staging / f"{i}.jpg"), f"test1/{i}.jpg")
        archive.writestr("train/unlabelled.jpg", b"")
    return path


def test_competition_archive_source_is_extracted_under_raw(tmp_path):
    source = _competition_zip(tmp_path / "bundle.zip")
    before = source.read_bytes()
    data = tmp_path / "data"
    train_path, test_path = build("dogs-vs-cats", source=source, data_root=data, image_size=SIZE)
    raw = data / "dogs-vs-cats" / "raw" / "bundle"
    assert (raw / "train" / "cat.0.jpg").is_file() and (raw / "test1" / "12.jpg").is_file()
    assert source.read_bytes() == before
    train, test = read_store(train_path), read_store(test_path)
    assert train["label_names"] == ["cat", "dog"] and len(train["ids"]) == 12
    for image_id, label in zip(train["ids"], train["labels"]):
        assert Path(image_id).name.split(".")[0] == train["label_names"][label]
    assert list(test["ids"]) == [str(i) for i in range(1, 13)]  # numeric order, not 1, 10, 11, 12, 2..
    assert set(test["labels"]) == {-1} and "folds" not in test
    assert read_rejected(data / "dogs-vs-cats" / "rejected.csv") == {"unlabelled.jpg": "no label in the file name"}


def test_official_flowers17_archive_layout_is_labelled_by_number(tmp_path):
    names = REGISTRY["flowers17"].extra["numbered_classes"]
    source = tmp_path / "17flowers.tgz"
    with tarfile.open(source, "w:gz") as archive:
        for label in range(len(names)):
            for offset in range(4):
                number = label * 80 + offset + 1
                image = write_jpeg(tmp_path / "img" / f"image_{number:04d}.jpg", size=(40, 30), colour=(label * 15, 0, 0))
                archive.add(image, f"jpg/image_{number:04d}.jpg")
        info = tarfile.TarInfo("jpg/files.txt")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"list\n"))
    train_path, test_path = build("flowers17", source=source, data_root=tmp_path / "data", image_size=SIZE)
    train, test = read_store(train_path), read_store(test_path)
    assert train["label_names"] == list(names)
    assert len(train["ids"]) == 51 and len(test["ids"]) == 17
    for store in (train, test):
        for image_id, label in zip(store["ids"], store["labels"]):
            assert (int(Path(image_id).stem.split("_")[1]) - 1) // 80 == label


def test_caltech_nested_archive_without_background_class(tmp_path):
    inner = tmp_path / "101_ObjectCategories.tar.gz"
    with tarfile.open(inner, "w:gz") as archive:
        for name in ("BACKGROUND_Google", "accordion", "airplanes", "anchor"):
            for i in range(1, 5):
                archive.add(write_jpeg(tmp_path / "img" / name / f"image_{i:04d}.jpg", size=(60, 50)),
                            f"101_ObjectCategories/{name}/image_{i:04d}.jpg")
    source = tmp_path / "caltech-101.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.write(inner, "caltech-101/101_ObjectCategories.tar.gz")
        archive.writestr("caltech-101/Annotations/accordion/annotation_0001.mat", b"matlab")
        archive.writestr("caltech-101/Annotations/airplanes/annotation_0001.mat", b"matlab")
    train_path, test_path = build("caltech101", source=source, data_root=tmp_path / "data", image_size=SIZE)
    train, test = read_store(train_path), read_store(test_path)
    assert train["label_names"] == ["accordion", "airplanes", "anchor"]
    assert len(train["ids"]) + len(test["ids"]) == 12
    assert all(i.startswith("caltech-101/101_ObjectCategories/") for i in train["ids"])


def test_wrong_layout_is_a_one_line_user_error(tmp_path, workspace, capsys):
    loose = tmp_path / "loose"
    for i in range(3):
        write_jpeg(loose / f"{i}.jpg")
    assert cli.main(["data", "--dataset", "mine", "--source", str(loose)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: no class folders") and "\n" not in error
    with pytest.raises(UserError, match="does not exist"):
        build("mine", source=tmp_path / "missing", data_root=tmp_path / "data")
    with pytest.raises(UserError, match="unknown dataset"):
        build("mine", data_root=tmp_path / "data")
    with pytest.raises(UserError, match="no labelled files like cat.0.jpg"):
        build("dogs-vs-cats", source=loose, data_root=tmp_path / "data")


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_build_leaves_no_final_file_and_rerun_completes(tmp_path, shared_dir, stop):
    source = tmp_path / "flowers"
    source.mkdir()
    for name in ("bluebell", "crocus", "daisy"):
        (source / name).symlink_to(shared_dir / "data" / "flowers17" / name)
    data = tmp_path / "data"
    env = {**os.environ, "DATA_DIR": str(data)}
    command = [sys.executable, "-m", "competition", "data", "--dataset", "flowers", "--source", str(source),
               "--image-size", "64", "--workers", "1"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = data / "flowers" / "train.h5.partial"
    deadline = time.time() + 60
    while not partial.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert partial.exists(), process.communicate()[1]
    process.send_signal(stop)
    _, err = process.communicate(timeout=60)
    train = data / "flowers" / "train.h5"
    assert not train.exists(), err
    if stop == signal.SIGINT:
        assert process.returncode == 130 and "rerun" in err and not partial.exists()
    else:
        with pytest.raises(UserError, match="incomplete"):
            require_file(train, ("images",), "rerun make data")
    rerun = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert len(read_store(train)["ids"]) == 180 and not partial.exists()
