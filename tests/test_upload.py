"""`make upload` with the real kaggle client against the loopback Kaggle stand-in."""

import json
import os
import subprocess
import sys

import pytest

from competition import cli
from tests.conftest import REPO_ROOT
from tests.factories import make_image_store, make_model_predictions
from tests.kaggle_stub import (
    CREATE_SUBMISSION, START_SUBMISSION_UPLOAD, KaggleStub, StubUnavailable, json_response, kaggle_error,
)

UPLOAD_PATH = "/stub-upload/submission.csv"


@pytest.fixture(scope="module")
def submissions(tmp_path_factory, shared_dir):
    """A complete (uploadable) and a partial (flagged) dogs-vs-cats submission made by `make submit`."""
    root = tmp_path_factory.mktemp("upload")
    environment = {name: str(root / name) for name in ("data", "reports", "submissions")}
    sample = shared_dir / "data" / "dogs-vs-cats" / "sampleSubmission.csv"
    with pytest.MonkeyPatch.context() as patch:
        for name, folder in environment.items():
            patch.setenv(f"{name.upper()}_DIR", folder)
        make_image_store("dogs-vs-cats", "train", 100, size=2)
        for n_test in (12500, 40):
            make_image_store("dogs-vs-cats", "test", n_test, size=2, labelled=False, seed=1)
            for seed, model_id in enumerate(("a", "b")):
                make_model_predictions("dogs-vs-cats", model_id, noise=1.0 + seed, seed=seed)
            assert cli.main(["submit", "--dataset", "dogs-vs-cats", "--sample", str(sample)]) == 0
    complete, partial = sorted((root / "submissions").glob("*/*.csv"))
    assert "not-uploadable" in partial.name and "not-uploadable" not in complete.name
    return {"root": root, "env": environment, "complete": complete, "partial": partial}


@pytest.fixture
def stub():
    try:
        with KaggleStub() as server:
            yield server
    except StubUnavailable as error:
        pytest.skip(str(error))


def run_upload(submissions, env, *options):
    env = {**env, **{f"{name.upper()}_DIR": folder for name, folder in submissions["env"].items()}}
    return subprocess.run(
        [sys.executable, "-m", "competition", "upload", "--dataset", "dogs-vs-cats", *options],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )


def accept_submission(stub, answer=None):
    stub.add_route("POST", START_SUBMISSION_UPLOAD, lambda request: json_response(
        {"token": "blob-token", "createUrl": f"http://localhost:{stub.port}{UPLOAD_PATH}"}))
    stub.add_route("PUT", UPLOAD_PATH, lambda request: json_response({}))
    stub.add_route("POST", CREATE_SUBMISSION, answer or (lambda request: json_response(
        {"message": "Successfully submitted to Dogs vs. Cats", "ref": 42})))


def test_upload_sends_the_newest_validated_csv_with_its_scores(submissions, stub, tmp_path):
    accept_submission(stub)
    newest = submissions["partial"]
    assert newest.name > submissions["complete"].name  # the newest is partial: name the complete one
    result = run_upload(submissions, stub.client_env(tmp_path), "--file", str(submissions["complete"]))
    assert result.returncode == 0, result.stderr
    assert "Successfully submitted" in result.stdout
    start, put, create = stub.requests
    assert start.path == START_SUBMISSION_UPLOAD and start.basic_auth[0] == "stub-user"
    assert start.json["competitionName"] == "dogs-vs-cats"
    assert start.json["fileName"] == submissions["complete"].name
    assert put.method == "PUT" and put.body == submissions["complete"].read_bytes()
    assert create.json["blobFileTokens"] == "blob-token"
    record = json.loads(submissions["complete"].with_suffix(".json").read_text())
    description = create.json["submissionDescription"]
    assert "weighted blend of a, b" in description
    assert f"{record['oof_scores']['ensemble']['accuracy']:.4f}" in description


def test_upload_refuses_the_partial_newest_file_before_importing_kaggle(submissions, monkeypatch, capsys):
    for name, folder in submissions["env"].items():
        monkeypatch.setenv(f"{name.upper()}_DIR", folder)
    monkeypatch.setitem(sys.modules, "kaggle", None)  # any import of the client would fail loudly
    assert cli.main(["upload", "--dataset", "dogs-vs-cats"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert submissions["partial"].name in error and "not uploadable" in error and "12500" in error


@pytest.mark.parametrize(
    "route, status, message, expected",
    [
        (START_SUBMISSION_UPLOAD, 403, "Permission 'competitions.submit' was denied",
         "accept the competition rules at https://www.kaggle.com/competitions/dogs-vs-cats/rules"),
        (CREATE_SUBMISSION, 400, "Submission not allowed: Your team has used its daily Submission allowance (5) today",
         "daily submission limit"),
        (CREATE_SUBMISSION, 400, "Submission not allowed: this competition has ended and does not accept submissions",
         "no longer accepts submissions"),
        (START_SUBMISSION_UPLOAD, 401, "Unauthenticated", "rejected the credentials"),
    ],
)
def test_kaggle_refusals_are_one_clear_line(submissions, stub, tmp_path, route, status, message, expected):
    accept_submission(stub)
    stub.add_route("POST", route, lambda request: kaggle_error(status, message))
    result = run_upload(submissions, stub.client_env(tmp_path), "--file", str(submissions["complete"]))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr


def test_upload_without_credentials_says_how_to_add_them(submissions, tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith("KAGGLE_")}
    env.update(HOME=str(tmp_path), KAGGLE_CONFIG_DIR=str(tmp_path / "empty"), KAGGLE_API_ENVIRONMENT="LOCALHOST")
    result = run_upload(submissions, env, "--file", str(submissions["complete"]))
    assert result.returncode == 2
    assert result.stderr.startswith("error: no Kaggle credentials") and result.stderr.count("\n") == 1
    assert "Authentication required" not in result.stdout


def test_upload_needs_a_validated_unchanged_submission(submissions, workspace, capsys, tmp_path):
    assert cli.main(["upload", "--dataset", "dogs-vs-cats"]) == 2
    assert "make submit" in capsys.readouterr().err
    edited = tmp_path / "edited.csv"
    record = json.loads(submissions["complete"].with_suffix(".json").read_text())
    edited.write_text(submissions["complete"].read_text().replace("\n1,", "\n1,1", 1))
    edited.with_suffix(".json").write_text(json.dumps(record))
    assert cli.main(["upload", "--dataset", "dogs-vs-cats", "--file", str(edited)]) == 2
    assert "changed after `make submit` validated it" in capsys.readouterr().err
    stray = tmp_path / "mine.csv"
    stray.write_text("id,label\n1,0\n")
    assert cli.main(["upload", "--dataset", "dogs-vs-cats", "--file", str(stray)]) == 2
    assert "not validated" in capsys.readouterr().err
