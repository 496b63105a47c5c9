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


# ---------------------------------------------------------------- generated image files

def write_jpeg(path: Path, size=(320, 240), colour=(200, 30, 30), **save_options) -> Path:
    """A plain JPEG of one colour (``size`` is width, height)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG", quality=95, **save_options)
    return path


def write_two_tone_jpeg(path: Path, orientation: int | None = None) -> Path:
    """A 300x200 JPEG, top half red and bottom half blue, with an optional EXIF orientation."""
    from PIL import Image

    image = Image.new("RGB", (300, 200), (255, 0, 0))
    image.paste((0, 0, 255), (0, 100, 300, 200))
    options = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=95, **options)
    return path


def write_good_kinds(folder: Path) -> dict[str, Path]:
    """One file per convertible kind: greyscale, CMYK, RGBA, palette, PNG named .jpg, EXIF-rotated."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "greyscale": folder / "greyscale.jpg", "cmyk": folder / "cmyk.jpg", "rgba": folder / "rgba.png",
        "palette": folder / "palette.png", "png_named_jpg": folder / "png_named.jpg", "exif_rotated": folder / "rotated.jpg",
    }
    Image.new("L", (260, 300), 128).save(files["greyscale"], "JPEG", quality=95)
    Image.new("RGB", (300, 260), (200, 30, 30)).convert("CMYK").save(files["cmyk"], "JPEG", quality=95)
    Image.new("RGBA", (300, 260), (200, 30, 30, 255)).save(files["rgba"], "PNG")
    Image.new("RGB", (300, 260), (30, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE).save(files["palette"], "PNG")
    Image.new("RGB", (300, 260), (30, 30, 200)).save(files["png_named_jpg"], "PNG")
    write_two_tone_jpeg(files["exif_rotated"], orientation=6)
    return files


def write_bad_kinds(folder: Path) -> dict[str, Path]:
    """One file per unusable kind: corrupt, truncated, empty, non-image."""
    import io

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.effect_noise((300, 260), 60).convert("RGB").save(buffer, "JPEG", quality=90)
    jpeg = buffer.getvalue()
    files = {
        "corrupt": folder / "corrupt.jpg", "truncated": folder / "truncated.jpg",
        "empty": folder / "empty.jpg", "non_image": folder / "notes.jpg",
    }
    files["corrupt"].write_bytes(jpeg[:4] + bytes(range(256)) * 8 + b"\xff\xd9")
    files["truncated"].write_bytes(jpeg[: len(jpeg) // 2])
    files["empty"].write_bytes(b"")
    files["non_image"].write_text("these are notes, not pixels\n")
    return files


def write_competition_archives(folder: Path, shared_dir: Path, per_class: int, n_test: int) -> Path:
    """``folder/train.zip`` (``train/cat.N.jpg``, ``train/dog.N.jpg``) and ``folder/test1.zip``
    (``test1/1.jpg``..) laid out like Kaggle's Dogs vs. Cats files, from the real sample in ../shared."""
    import zipfile

    real = shared_dir / "data" / "dogs-vs-cats"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "train.zip", "w") as archive:
        for label in ("cat", "dog"):
            for i in range(per_class):
                archive.write(real / "train" / f"{label}.{i}.jpg", f"train/{label}.{i}.jpg")
    with zipfile.ZipFile(folder / "test1.zip", "w") as archive:
        for i in range(1, n_test + 1):
            archive.write(real / "test1" / f"{i}.jpg", f"test1/{i}.jpg")
    return folder
