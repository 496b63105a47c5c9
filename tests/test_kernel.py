"""`make kernel` / `make kernel-push`: one self-contained script, its metadata, and a real run of it."""

import ast
import base64
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from competition import cli
from kernels.build import REPO_ROOT
from competition.errors import UserError
from kernels.runner import competition_input, prepare_source
from tests.fixtures_data import write_competition_archives
from tests.kaggle_stub import API_PREFIX, KaggleStub, StubUnavailable, json_response

SAVE_KERNEL = API_PREFIX + "kernels.KernelsApiService/SaveKernel"
SLUG = "dogs-vs-cats-transfer-learning"


@pytest.fixture
def kernels_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELS_DIR", str(tmp_path / "kernels"))
    return tmp_path / "kernels"


def embedded_files(script: str) -> dict[str, bytes]:
    """The project files a built kernel script carries, by path."""
    tree = ast.parse(script)
    value = next(node.value for node in tree.body
                 if isinstance(node, ast.Assign) and node.targets[0].id == "PROJECT_ZIP")
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(ast.literal_eval(value))))
    return {name: archive.read(name) for name in archive.namelist()}


def script_settings(script: str) -> dict:
    tree = ast.parse(script)
    return ast.literal_eval(next(node.value for node in tree.body
                                 if isinstance(node, ast.Assign) and node.targets[0].id == "SETTINGS"))


def test_kernel_folder_holds_metadata_and_one_script_with_the_project(kernels_dir, capsys):
    assert cli.main(["kernel", "--dataset", "dogs-vs-cats", "--username", "someone",
                     "--weights-dataset", "someone/mobilenet-weights", "--method", "stack"]) == 0
    folder = kernels_dir / SLUG
    assert sorted(p.name for p in folder.iterdir()) == ["kernel-metadata.json", "kernel.py"]
    metadata = json.loads((folder / "kernel-metadata.json").read_text())
    assert metadata == {
        "id": f"someone/{SLUG}", "title": "dogs vs cats transfer learning", "code_file": "kernel.py",
        "language": "python", "kernel_type": "script", "is_private": True, "enable_gpu": True,
        "enable_tpu": False, "enable_internet": False, "dataset_sources": ["someone/mobilenet-weights"],
        "competition_sources": ["dogs-vs-cats"], "kernel_sources": [], "model_sources": [],
    }
    from slugify import slugify  # what the kaggle client checks the title against

    assert slugify(metadata["title"]) == SLUG
    script = (folder / "kernel.py").read_text()
    files = embedded_files(script)
    for package in ("competition", "features", "models", "ensembles", "kernels"):
        assert f"{package}/__init__.py" in files
    assert files["ensembles/blend.py"] == (REPO_ROOT / "ensembles" / "blend.py").read_bytes()
    assert not any("/build/" in name or name.startswith("tests/") for name in files)
    settings = script_settings(script)
    assert settings["method"] == "stack" and settings["competition"] == "dogs-vs-cats"
    assert settings["models"] == ["logreg:mobilenet_v2", "logreg:mobilenet", "logreg:mobilenet_v2+mobilenet"]
    assert settings["producer"]["stage"] == "kernel"
    assert "kernel-push" in capsys.readouterr().out


def test_kernel_refuses_benchmarks_and_bad_slugs(kernels_dir, capsys):
    assert cli.main(["kernel", "--dataset", "flowers17", "--username", "someone"]) == 2
    assert "not a Kaggle competition" in capsys.readouterr().err
    assert cli.main(["kernel", "--dataset", "dogs-vs-cats", "--username", "someone", "--slug", "Bad_Slug"]) == 2
    assert "--slug" in capsys.readouterr().err
    assert not kernels_dir.exists()


def run_cli(env, *argv):
    return subprocess.run([sys.executable, "-m", "competition", *argv], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


def test_username_comes_from_the_kaggle_configuration(tmp_path):
    env = KaggleStub().client_env(tmp_path / "config")  # writes kaggle.json for stub-user; no server needed
    env.update(KERNELS_DIR=str(tmp_path / "kernels"), HOME=str(tmp_path))
    result = run_cli(env, "kernel", "--dataset", "dogs-vs-cats")
    assert result.returncode == 0, result.stderr
    metadata = json.loads((tmp_path / "kernels" / SLUG / "kernel-metadata.json").read_text())
    assert metadata["id"] == f"stub-user/{SLUG}"
    env.update(KAGGLE_CONFIG_DIR=str(tmp_path / "empty"))
    result = run_cli(env, "kernel", "--dataset", "dogs-vs-cats")
    assert result.returncode == 2 and "--username" in result.stderr and result.stderr.count("\n") == 1


def test_push_sends_the_built_kernel_with_the_real_client(tmp_path):
    try:
        stub = KaggleStub().start()
    except StubUnavailable as error:
        pytest.skip(str(error))
    try:
        stub.add_route("POST", SAVE_KERNEL, lambda request: json_response(
            {"ref": f"/code/stub-user/{SLUG}", "url": f"https://www.kaggle.com/code/stub-user/{SLUG}",
             "versionNumber": 1}))
        env = stub.client_env(tmp_path / "config")
        env.update(KERNELS_DIR=str(tmp_path / "kernels"), HOME=str(tmp_path))
        assert run_cli(env, "kernel", "--dataset", "dogs-vs-cats").returncode == 0
        result = run_cli(env, "kernel-push", "--dataset", "dogs-vs-cats")
    finally:
        stub.stop()
    assert result.returncode == 0, result.stderr
    assert f"https://www.kaggle.com/code/stub-user/{SLUG}" in result.stdout
    (request,) = [r for r in stub.requests if r.path == SAVE_KERNEL]
    body = request.json
    assert body["slug"] == f"stub-user/{SLUG}" and body["competitionDataSources"] == ["dogs-vs-cats"]
    assert body["enableGpu"] is True and body["enableInternet"] is False and body["isPrivate"] is True
    assert body["kernelType"] == "script" and body["language"] == "python"
    assert body["text"] == (tmp_path / "kernels" / SLUG / "kernel.py").read_text()


def test_push_errors_name_the_fix(tmp_path, kernels_dir, capsys):
    assert cli.main(["kernel-push", "--dataset", "dogs-vs-cats"]) == 2
    assert "make kernel" in capsys.readouterr().err
    assert cli.main(["kernel", "--dataset", "dogs-vs-cats", "--username", "someone"]) == 0
    env = {name: value for name, value in os.environ.items() if not name.startswith("KAGGLE_")}
    env.update(HOME=str(tmp_path), KAGGLE_CONFIG_DIR=str(tmp_path / "empty"), KERNELS_DIR=str(kernels_dir))
    result = run_cli(env, "kernel-push", "--dataset", "dogs-vs-cats")
    assert result.returncode == 2 and result.stderr.startswith("error: no Kaggle credentials")


def test_prepare_source_extracts_kaggle_zips_or_reads_extracted_folders(tmp_path):
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    with zipfile.ZipFile(zipped / "train.zip", "w") as archive:
        archive.writestr("train/cat.0.jpg", b"jpeg")
    (zipped / "sampleSubmission.csv").write_text("id,label\n1,0\n")
    source = prepare_source(zipped, tmp_path / "work")
    assert (source / "train" / "cat.0.jpg").read_bytes() == b"jpeg"
    assert (source / "sampleSubmission.csv").read_text() == "id,label\n1,0\n"
    extracted = tmp_path / "extracted"
    (extracted / "train").mkdir(parents=True)
    assert prepare_source(extracted, tmp_path / "work2") == extracted
    newer_layout = tmp_path / "input" / "competitions" / "dogs-vs-cats"
    newer_layout.mkdir(parents=True)
    assert competition_input(tmp_path / "input", "dogs-vs-cats") == newer_layout
    with pytest.raises(UserError, match="no dogs-vs-cats-redux-kernels-edition data"):
        competition_input(tmp_path / "input", "dogs-vs-cats-redux-kernels-edition")


def simulated_kaggle_input(root, shared_dir, per_class=12, n_test=8):
    """``root/dogs-vs-cats/`` zipped like Kaggle's (train.zip, test1.zip, sampleSubmission.csv)
    and ``root/weights/`` holding the shared MobileNetV2 weights, as an attached dataset."""
    competition = write_competition_archives(root / "dogs-vs-cats", shared_dir, per_class, n_test)
    (competition / "sampleSubmission.csv").symlink_to(shared_dir / "data" / "dogs-vs-cats" / "sampleSubmission.csv")
    (root / "weights").mkdir()
    weights = "mobilenet_v2_1.0_224_notop.weights.h5"
    (root / "weights" / weights).symlink_to(shared_dir / "weights" / weights)


@pytest.mark.slow
def test_built_kernel_runs_the_whole_pipeline_on_a_simulated_kaggle_input(tmp_path, shared_dir, kernels_dir):
    assert cli.main(["kernel", "--dataset", "dogs-vs-cats", "--username", "someone", "--backbones", "mobilenet_v2",
                     "--models", "logreg:mobilenet_v2,knn:mobilenet_v2"]) == 0
    alone = tmp_path / "alone"
    alone.mkdir()
    script = shutil.copy(kernels_dir / SLUG / "kernel.py", alone / "kernel.py")  # nothing else travels with it
    simulated_kaggle_input(tmp_path / "input", shared_dir)
    env = {name: value for name, value in os.environ.items()
           if name not in ("DATA_DIR", "REPORTS_DIR", "SUBMISSIONS_DIR", "PYTHONPATH")}
    env.update(KAGGLE_INPUT_DIR=str(tmp_path / "input"), KAGGLE_OUTPUT_DIR=str(tmp_path / "working"),
               KAGGLE_WORK_DIR=str(tmp_path / "work"))
    result = subprocess.run([sys.executable, script], cwd=alone, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    unpacked = result.stdout.split("project code unpacked to ")[1].split()[0]
    assert f"project code from {unpacked}" in result.stdout  # the embedded copy ran, not the checkout
    with open(tmp_path / "working" / "submission.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "label"]
    assert [row[0] for row in rows[1:]] == [str(i) for i in range(1, 9)]
    assert {row[1] for row in rows[1:]} <= {"0", "1"}
    record = json.loads((tmp_path / "working" / "submission.json").read_text())
    assert record["method"] == "weighted" and len(record["models"]) == 2 and record["uploadable"] is False
    assert record["oof_scores"]["ensemble"]["accuracy"] >= 0.75  # 24 training images: the blend is noisy
