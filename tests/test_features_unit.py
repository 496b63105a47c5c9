"""The features stage on small generated image files: names, registry errors, precision choice,
streaming extraction (order, TTA, resume), and the command line."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from competition import cli, paths
from competition.errors import UserError
from competition.h5store import as_strings, get_json_attr, partial_path
from features.backbones import create_backbone, find_weights_file, last_block_index
from features.extract import FeatureExtractor, extract, feature_set_name
from features.precision import choose_precision, cpu_flags
from tests.factories import make_image_store

V2_NOTOP = "mobilenet_v2_1.0_224_notop.weights.h5"


def test_feature_set_names_suffix_non_default_options():
    assert feature_set_name("resnet50") == "resnet50"
    assert feature_set_name("resnet50", "avg", "none") == "resnet50"
    assert feature_set_name("vgg16", "flatten") == "vgg16-flatten"
    assert feature_set_name("resnet50", tta="flip") == "resnet50-flip"
    assert feature_set_name("xception", "max", "flip") == "xception-max-flip"


@pytest.mark.parametrize(
    "gpus, flags, expected",
    [
        ([(8, 0)], set(), "mixed_float16"),
        ([(9, 0), (8, 6)], {"avx512_bf16"}, "mixed_float16"),
        ([(6, 1)], set(), "float32"),  # Pascal: no fast float16
        ([(8, 0), None], set(), "float32"),
        ([], {"avx2", "avx512f", "avx512_bf16"}, "mixed_bfloat16"),
        ([], {"amx_bf16"}, "mixed_bfloat16"),
        ([], {"avx2", "avx512f"}, "float32"),
    ],
)
def test_precision_follows_the_hardware(gpus, flags, expected):
    assert choose_precision(gpus, flags) == expected


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_vgg16_flatten_gives_25088_columns_and_finds_its_last_block():
    model, config = create_backbone("vgg16", weights=None, pooling="flatten")
    assert config.feature_dim == 7 * 7 * 512 == model.output.shape[-1]
    assert model.layers[last_block_index(model, "vgg16")].name == "block5_conv1"
    head_ready, config = create_backbone("vgg16", weights=None, pooling=None)
    assert tuple(head_ready.output.shape[1:]) == (7, 7, 512) and config.feature_dim == -1


def test_backbone_errors_are_one_line_and_say_the_fix(shared_dir, tmp_path):
    weights = shared_dir / "weights"
    with pytest.raises(UserError, match="known backbones are resnet50, vgg16, mobilenet, mobilenet_v2"):
        create_backbone("resnet5")
    with pytest.raises(UserError, match=r"nope\.weights\.h5 does not exist"):
        create_backbone("mobilenet_v2", weights=tmp_path / "nope.weights.h5")
    with pytest.raises(UserError, match=rf"{V2_NOTOP} does not fit backbone mobilenet\b") as mismatch:
        create_backbone("mobilenet", weights=weights / V2_NOTOP)
    assert "\n" not in str(mismatch.value)
    with pytest.raises(UserError, match="no weights for resnet50 in .*put one there, or pass WEIGHTS"):
        find_weights_file("resnet50", weights)
    with pytest.raises(UserError, match="make train DATASET=flowers17 MODEL=alexnet"):
        with paths.using_data_root(tmp_path):
            create_backbone("alexnet", dataset="flowers17")
    assert find_weights_file("mobilenet_v2", weights) == weights / V2_NOTOP
    assert find_weights_file("mobilenet", weights) == weights / "mobilenet_1.0_224_notop.weights.h5"


def test_offline_imagenet_download_names_both_ways_out(monkeypatch):
    from keras.src.utils import file_utils

    def offline(fname, origin, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(UserError, match="cannot download the ImageNet weights of mobilenet_v2.*WEIGHTS=<file> or WEIGHTS_DIR"):
        create_backbone("mobilenet_v2")


@pytest.fixture
def toy_images(workspace):
    """A 20-image train.h5 and 9-image test.h5 (64x64) in the workspace."""
    make_image_store("toy", "train", 20, seed=1)
    make_image_store("toy", "test", 9, labelled=False, seed=2)
    return "toy"


@pytest.fixture(scope="module")
def mobilenet_v2(shared_dir):
    """A float32 MobileNetV2 extractor with the shared ImageNet weights, batch 8."""
    return FeatureExtractor("mobilenet_v2", weights=shared_dir / "weights" / V2_NOTOP, batch_size=8, precision="float32")


def central_crop(images, fraction=0.875):
    border = int((images.shape[1] - images.shape[1] * fraction) / 2)
    return images[:, border:images.shape[1] - border, border:images.shape[2] - border].astype(np.float32)


def reference_features(extractor, images, flip=False):
    """Features computed directly with the Keras model, without the pipeline."""
    import tensorflow as tf

    size = extractor.config.input_size
    batch = extractor.config.preprocess_input(tf.image.resize(central_crop(images), (size, size)))
    if flip:
        batch = tf.reverse(batch, axis=[2])
    return extractor.model(batch, training=False).numpy()


def read(path):
    with h5py.File(path, "r") as handle:
        return handle["features"][:], as_strings(handle["ids"][:]), handle["labels"][:], dict(handle.attrs)


def test_streamed_features_match_the_model_row_for_row(toy_images, mobilenet_v2):
    source = paths.images_file(toy_images, "train")
    target = mobilenet_v2.write(source, paths.features_file(toy_images, "mobilenet_v2", "train"), "mobilenet_v2",
                                progress=False)
    features, ids, labels, attrs = read(target)
    with h5py.File(source, "r") as handle:
        images, source_ids, source_labels = handle["images"][:], as_strings(handle["ids"][:]), handle["labels"][:]
    assert features.dtype == np.float32 and features.shape == (20, 1280)
    assert list(ids) == list(source_ids) and np.array_equal(labels, source_labels)
    np.testing.assert_allclose(features, reference_features(mobilenet_v2, images), rtol=1e-4, atol=1e-4)
    assert attrs["backbone"] == "mobilenet_v2" and attrs["pooling"] == "avg" and attrs["tta"] == "none"
    assert attrs["precision"] == "float32" and attrs["input_size"] == "224" and attrs["weights"].endswith(V2_NOTOP)
    with h5py.File(target, "r") as handle:
        assert get_json_attr(handle, "producer")["settings"]["backbone"] == "mobilenet_v2"
    assert not partial_path(target).exists()


def test_flip_tta_averages_each_image_and_its_mirror(toy_images, shared_dir):
    flip = FeatureExtractor("mobilenet_v2", weights=shared_dir / "weights" / V2_NOTOP, tta="flip", batch_size=8,
                            precision="float32")
    source = paths.images_file(toy_images, "test")
    target = flip.write(source, paths.features_file(toy_images, "mobilenet_v2-flip", "test"), "mobilenet_v2-flip",
                        progress=False)
    with h5py.File(source, "r") as handle:
        images = handle["images"][:]
    expected = (reference_features(flip, images) + reference_features(flip, images, flip=True)) / 2
    np.testing.assert_allclose(read(target)[0], expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(expected, reference_features(flip, images), atol=1e-3)


def interrupt_after_8_rows(extractor, toy_images, other_settings=False):
    """Extract the train features, then turn the file into what an interruption after 8 rows leaves:
    a .partial file with completed_rows = 8, whose first rows hold a marker (7.0) a resumed run
    must not recompute; returns the complete features and the target path."""
    source = paths.images_file(toy_images, "train")
    target = paths.features_file(toy_images, "mobilenet_v2", "train")
    extractor.write(source, target, "mobilenet_v2", progress=False)
    complete = read(target)[0]
    target.rename(partial_path(target))
    with h5py.File(partial_path(target), "a") as handle:
        handle["features"][:8] = 7.0
        handle["features"][8:] = np.nan
        handle.attrs["completed_rows"] = 8
        if other_settings:
            handle.attrs["fingerprint"] = handle.attrs["fingerprint"].replace('"tta": "none"', '"tta": "flip"')
    extractor.write(source, target, "mobilenet_v2", progress=False)
    return complete, target


def test_interrupted_run_resumes_from_the_completed_rows(toy_images, mobilenet_v2):
    complete, target = interrupt_after_8_rows(mobilenet_v2, toy_images)
    resumed = read(target)[0]
    assert np.all(resumed[:8] == 7.0)
    np.testing.assert_allclose(resumed[8:], complete[8:], rtol=1e-5, atol=1e-5)
    assert not partial_path(target).exists()


def test_partial_file_from_other_settings_is_discarded(toy_images, mobilenet_v2):
    complete, target = interrupt_after_8_rows(mobilenet_v2, toy_images, other_settings=True)
    np.testing.assert_allclose(read(target)[0], complete, rtol=1e-5, atol=1e-5)


def test_bfloat16_features_agree_with_float32(toy_images, mobilenet_v2, shared_dir):
    bf16 = FeatureExtractor("mobilenet_v2", weights=shared_dir / "weights" / V2_NOTOP, batch_size=8,
                            precision="mixed_bfloat16")
    source = paths.images_file(toy_images, "test")
    low = read(bf16.write(source, paths.features_file(toy_images, "bf16", "test"), "bf16", progress=False))
    high = read(mobilenet_v2.write(source, paths.features_file(toy_images, "f32", "test"), "f32", progress=False))
    assert low[0].dtype == np.float32 and low[3]["precision"] == "mixed_bfloat16"
    cosine = np.sum(low[0] * high[0], axis=1) / (np.linalg.norm(low[0], axis=1) * np.linalg.norm(high[0], axis=1))
    assert cosine.min() > 0.98, cosine
    assert not np.array_equal(low[0], high[0])  # really computed in bfloat16


def test_command_line_writes_both_splits_and_keeps_them(toy_images, shared_dir, capsys):
    argv = ["features", "--dataset", toy_images, "--backbone", "mobilenet_v2", "--weights-dir",
            str(shared_dir / "weights"), "--batch-size", "16", "--precision", "float32"]
    assert cli.main(argv) == 0
    train, test = (paths.features_file(toy_images, "mobilenet_v2", split) for split in ("train", "test"))
    assert read(train)[0].shape == (20, 1280) and read(test)[0].shape == (9, 1280)
    assert list(read(test)[2]) == [-1] * 9
    modified = train.stat().st_mtime_ns
    test.unlink()  # as if the run had stopped between the splits
    assert cli.main(argv) == 0
    assert f"{train} exists: keeping it (pass --force" in capsys.readouterr().out
    assert train.stat().st_mtime_ns == modified and read(test)[0].shape == (9, 1280)


def test_missing_dataset_and_bad_options_are_user_errors(workspace, capsys):
    assert cli.main(["features", "--dataset", "flowers17", "--backbone", "mobilenet_v2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "flowers17/train.h5 does not exist: build it with `make data DATASET=flowers17`" in err
    with pytest.raises(UserError, match="unknown TTA 'mirror'"):
        extract("flowers17", "mobilenet_v2", tta="mirror")


def test_alexnet_features_come_from_the_trained_checkpoint(toy_images):
    import json

    import keras

    from features.backbones import alexnet_checkpoint
    from models.alexnet import make_alexnet

    architecture = {"num_classes": 2, "input_size": 67, "dense_units": 48}
    trained = make_alexnet(**architecture)
    checkpoint = alexnet_checkpoint(toy_images)
    checkpoint.parent.mkdir(parents=True)
    trained.save_weights(checkpoint)
    checkpoint.with_name("alexnet.json").write_text(json.dumps(architecture))

    train, _ = extract(toy_images, "alexnet", precision="float32", progress=False)
    features, _, _, attrs = read(train)
    assert train.parent.name == "alexnet" and attrs["pooling"] == "fc" and attrs["input_size"] == "67"
    with h5py.File(paths.images_file(toy_images, "train"), "r") as handle:
        images, rgb_mean = handle["images"][:], handle.attrs["rgb_mean"]
    import tensorflow as tf

    resized = tf.image.resize(central_crop(images), (67, 67)).numpy() - rgb_mean.astype(np.float32)
    fc7 = keras.Model(trained.input, trained.get_layer("fc7").output)
    np.testing.assert_allclose(features, fc7(resized, training=False).numpy(), rtol=1e-4, atol=1e-4)

    pooled, _ = extract(toy_images, "alexnet", pool="avg", precision="float32", progress=False)
    assert pooled.parent.name == "alexnet-avg" and read(pooled)[0].shape == (20, 256)


MIRRORED_SCRIPT = """
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from features.pipeline import compile_forward, distribute
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D()])
images = np.arange(11, dtype=np.uint8)[:, None, None, None] * np.ones((11, 8, 8, 3), np.uint8)
batches, forward = distribute(tf.data.Dataset.from_tensor_slices(images).batch(4),
                              compile_forward(model, (8, 8, 3), 8, lambda x: x, flip=True), strategy)
rows = np.concatenate([forward(batch).numpy() for batch in batches])
print(strategy.num_replicas_in_sync, rows[:, 0].tolist())
"""


def test_mirrored_replicas_gather_rows_in_order():
    """Two replicas (logical CPUs standing in for GPUs) split each batch, the last one uneven."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == "2 " + str([float(i) for i in range(11)])
