"""The REAL kaggle client downloading a competition from a loopback stand-in for api.kaggle.com."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import pytest

from competition.datasets import REGISTRY
from competition.h5store import as_strings
from tests.conftest import REPO_ROOT
from tests.fixtures_data import write_competition_archives
from tests.kaggle_stub import (
    DOWNLOAD_DATA_FILES, TEST_USERNAME, KaggleStub, exclusive_port, kaggle_error, running_stub_or_skip,
)

N_PER_CLASS, N_TEST = 10, 8


@pytest.fixture
def stub():
    with running_stub_or_skip() as running:
        yield running


@pytest.fixture(scope="module")
def competition_bundle(tmp_path_factory, shared_dir) -> bytes:
    """Bytes of a zip laid out like Kaggle's dogs-vs-cats download: train.zip, test1.zip, sampleSubmission.csv,
    made from a subset of the real sample in ../shared."""
    folder = write_competition_archives(tmp_path_factory.mktemp("bundle"), shared_dir, N_PER_CLASS, N_TEST)
    real = shared_dir / "data" / "dogs-vs-cats"
    with zipfile.ZipFile(folder / "dogs-vs-cats.zip", "w") as bundle:
        bundle.write(folder / "train.zip", "train.zip")
        bundle.write(folder / "test1.zip", "test1.zip")
        bundle.write(real / "sampleSubmission.csv", "sampleSubmission.csv")
    return (folder / "dogs-vs-cats.zip").read_bytes()


def run_data_stage(env: dict, data: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "competition", "data", "--dataset", "dogs-vs-cats", "--image-size", "32"]
    return subprocess.run(command, cwd=REPO_ROOT, env={**env, "DATA_DIR": str(data)},
                          capture_output=True, text=True, timeout=120)


def test_download_through_the_kaggle_client_then_build(stub, competition_bundle, tmp_path):
    stub.add_route("POST", DOWNLOAD_DATA_FILES, stub.redirect_to_file("dogs-vs-cats.zip", competition_bundle))
    env, data = stub.client_env(tmp_path / "kaggle"), tmp_path / "data"
    result = run_data_stage(env, data)
    assert result.returncode == 0, result.stderr
    first = stub.requests[0]
    assert (first.method, first.path) == ("POST", DOWNLOAD_DATA_FILES)
    assert first.json == {"competitionName": "dogs-vs-cats"} and first.basic_auth[0] == TEST_USERNAME
    raw = data / "dogs-vs-cats" / "raw"
    assert (raw / "dogs-vs-cats.zip").read_bytes() == competition_bundle  # the download itself, untouched
    assert (raw / "train.zip").is_file() and (raw / "sampleSubmission.csv").is_file()
    assert len(list((raw / "train").glob("*.jpg"))) == 2 * N_PER_CLASS
    with h5py.File(data / "dogs-vs-cats" / "train.h5", "r") as train, h5py.File(data / "dogs-vs-cats" / "test.h5", "r") as test:
        assert train["images"].shape == (2 * N_PER_CLASS, 32, 32, 3)
        assert list(as_strings(test["ids"])) == [str(i) for i in range(1, N_TEST + 1)]
    requests_so_far = len(stub.requests)
    rerun = run_data_stage(env, data)
    assert rerun.returncode == 0 and "up to date" in rerun.stdout
    assert len(stub.requests) == requests_so_far  # a complete archive is not downloaded again


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "kaggle auth login" not in result.stdout  # the client's help text is not shown
    return lines[0]


def test_bad_credentials_say_where_the_token_goes(stub, tmp_path):
    stub.add_route("POST", DOWNLOAD_DATA_FILES, lambda request: kaggle_error(401, "Unauthenticated"))
    line = one_line_error(run_data_stage(stub.client_env(tmp_path / "kaggle"), tmp_path / "data"))
    assert "401" in line and "kaggle.json" in line and "KAGGLE_API_TOKEN" in line


def test_rules_not_accepted_gives_the_rules_url(stub, tmp_path):
    stub.add_route("POST", DOWNLOAD_DATA_FILES, lambda request: kaggle_error(403, "You must accept the rules"))
    line = one_line_error(run_data_stage(stub.client_env(tmp_path / "kaggle"), tmp_path / "data"))
    assert "403" in line and REGISTRY["dogs-vs-cats"].rules_url in line


def test_no_server_is_reported_as_no_network(tmp_path):
    env = KaggleStub().client_env(tmp_path / "kaggle")
    with exclusive_port():  # no stub of any test process is listening meanwhile
        line = one_line_error(run_data_stage(env, tmp_path / "data"))
    assert "no network" in line and "SOURCE=" in line


def test_missing_credentials_say_where_the_token_goes(tmp_path):
    env = KaggleStub().client_env(tmp_path / "kaggle")
    (tmp_path / "kaggle" / "kaggle.json").unlink()
    env["HOME"] = str(tmp_path / "home")
    line = one_line_error(run_data_stage(env, tmp_path / "data"))
    assert "no Kaggle credentials" in line and "~/.kaggle/kaggle.json" in line
