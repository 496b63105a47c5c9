"""Getting raw data: Kaggle downloads, URL downloads, and verified archive extraction.

Everything lands under ``data/<dataset>/raw/`` and is never modified afterwards.
A download is skipped when a complete archive is already there; an archive is
extracted once (a marker file records it), nested archives included.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from competition.datasets import Dataset
from competition.errors import UserError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
CREDENTIALS_HELP = (
    "put your Kaggle API token in ~/.kaggle/kaggle.json (from https://www.kaggle.com/settings/api), "
    "or set KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY)"
)


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    """``train.zip`` -> ``train``, ``17flowers.tgz`` -> ``17flowers``."""
    name = path.name
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def archive_is_complete(path: Path) -> bool:
    """Whether ``path`` is a whole, readable archive (every zip member's CRC is checked)."""
    if not path.is_file():
        return False
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                return archive.testzip() is None
        with tarfile.open(path) as archive:
            for _ in archive:
                pass
        return True
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError):
        return False


def _marker(archive: Path, destination: Path) -> Path:
    return destination / f".{archive.name}.extracted"


def _signature(archive: Path) -> str:
    stat = archive.stat()
    return f"{stat.st_size} {stat.st_mtime_ns}"


def is_extracted(archive: Path, destination: Path) -> bool:
    """Whether this very archive (same size and time) was fully extracted into ``destination``."""
    marker = _marker(archive, destination)
    return marker.is_file() and marker.read_text() == _signature(archive)


def extract_archive(archive: Path, destination: Path) -> None:
    """Extract ``archive`` into ``destination`` once: into a temporary folder first, then
    moved into place, then a marker is written; a rerun after an interruption redoes it."""
    marker = _marker(archive, destination)
    if is_extracted(archive, destination):
        return
    staging = destination / f".extracting-{archive.name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as opened:
                opened.extractall(staging)
        else:
            with tarfile.open(archive) as opened:
                opened.extractall(staging, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"{archive} is damaged ({error}): delete it and rerun to download it again") from None
    for entry in staging.iterdir():
        target = destination / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        entry.rename(target)
    staging.rmdir()
    marker.write_text(_signature(archive))


def extract_all(folder: Path) -> None:
    """Extract every archive under ``folder`` next to itself, repeating for nested archives."""
    while True:
        pending = [
            path for path in sorted(folder.rglob("*"))
            if path.is_file() and is_archive(path) and not any(part.startswith(".") for part in path.relative_to(folder).parts)
            and not is_extracted(path, path.parent)
        ]
        if not pending:
            return
        for archive in pending:
            extract_archive(archive, archive.parent)


def _quiet_import_kaggle_api():
    """The kaggle client's API class; importing ``kaggle`` authenticates and prints a long
    help text without credentials, so its output is swallowed here."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from kaggle.api.kaggle_api_extended import KaggleApi
    return KaggleApi


def kaggle_api():
    """An authenticated kaggle client, or a UserError saying where the token goes."""
    api = _quiet_import_kaggle_api()()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            api.authenticate()
    except SystemExit:
        raise UserError(f"no Kaggle credentials found: {CREDENTIALS_HELP}") from None
    return api


@contextlib.contextmanager
def kaggle_errors(dataset: Dataset, what: str):
    """Turn the kaggle client's HTTP and network errors into one-line UserErrors with the fix."""
    import requests

    try:
        yield
    except requests.exceptions.HTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status == 401:
            raise UserError(f"Kaggle rejected your credentials (HTTP 401) for {what}: {CREDENTIALS_HELP}") from None
        if status == 403 and dataset.rules_url:
            raise UserError(
                f"Kaggle refused {what} (HTTP 403): accept the competition rules at {dataset.rules_url} "
                "while logged in, then rerun"
            ) from None
        if status == 403:
            raise UserError(f"Kaggle refused {what} (HTTP 403): open {dataset.homepage} while logged in and accept its terms") from None
        raise UserError(f"Kaggle could not serve {what} ({error}): check the name on {dataset.homepage}") from None
    except requests.exceptions.ConnectionError:
        raise UserError(
            f"no network: cannot reach Kaggle for {what}; connect to the internet, "
            "or download it yourself and pass SOURCE=<folder or archive>"
        ) from None


def download_competition(dataset: Dataset, raw: Path) -> Path:
    """``raw/<competition>.zip`` through the kaggle client, unless a complete copy is there."""
    archive = raw / f"{dataset.kaggle_competition}.zip"
    if archive_is_complete(archive):
        return archive
    what = f"the files of competition '{dataset.kaggle_competition}'"
    with kaggle_errors(dataset, what):
        kaggle_api().competition_download_files(dataset.kaggle_competition, path=str(raw), force=True, quiet=False)
    return _verified(archive)


def download_kaggle_dataset(dataset: Dataset, raw: Path) -> Path:
    """``raw/<slug>.zip`` of a Kaggle dataset, unless a complete copy is there."""
    archive = raw / f"{dataset.kaggle_dataset.split('/')[-1]}.zip"
    if archive_is_complete(archive):
        return archive
    with kaggle_errors(dataset, f"dataset '{dataset.kaggle_dataset}'"):
        kaggle_api().dataset_download_files(dataset.kaggle_dataset, path=str(raw), force=True, quiet=False)
    return _verified(archive)


def download_url(dataset: Dataset, raw: Path) -> Path:
    """Download ``dataset.download_url`` into ``raw/`` via ``<name>.partial``, renamed when complete."""
    archive = raw / dataset.download_url.rstrip("/").split("/")[-1]
    if archive_is_complete(archive):
        return archive
    partial = archive.with_name(archive.name + ".partial")
    try:
        with urllib.request.urlopen(dataset.download_url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=archive.name) as progress:
                while block := response.read(1 << 20):
                    out.write(block)
                    progress.update(len(block))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        partial.unlink(missing_ok=True)
        raise UserError(
            f"no network: cannot download {dataset.download_url} ({getattr(error, 'reason', error)}); "
            "connect to the internet, or download it yourself and pass SOURCE=<folder or archive>"
        ) from None
    partial.replace(archive)
    return _verified(archive)


def _verified(archive: Path) -> Path:
    if not archive_is_complete(archive):
        raise UserError(f"the download {archive} is incomplete or damaged: delete it and rerun")
    return archive


# dataset field that names the source -> how to download from it
DOWNLOADERS: dict[str, Callable[[Dataset, Path], Path]] = {
    "kaggle_competition": download_competition,
    "kaggle_dataset": download_kaggle_dataset,
    "download_url": download_url,
}


def fetch(dataset: Dataset, raw: Path) -> Path:
    """Download ``dataset`` into ``raw`` from its first configured source and extract it; returns ``raw``."""
    raw.mkdir(parents=True, exist_ok=True)
    for field_name, downloader in DOWNLOADERS.items():
        if getattr(dataset, field_name):
            downloader(dataset, raw)
            extract_all(raw)
            return raw
    raise UserError(f"dataset '{dataset.name}' has no download source: pass SOURCE=<folder or archive>")
