"""The backbone registry: one entry per pretrained CNN, each with its own input size,
preprocessing, weight file names and last conv block.

One entry point, timm-style::

    model, config = create_backbone("resnet50", weights="imagenet", pooling="avg")

``weights`` is ``"imagenet"`` (Keras downloads and caches it), ``None`` (random
initialisation) or the path of a local Keras weights file; :func:`find_weights_file`
picks a backbone's file out of a folder (``--weights-dir``) so that the pipeline runs
without internet. ``pooling`` is ``"avg"``, ``"max"``, ``"flatten"`` (the last conv
map flattened, e.g. 7x7x512 = 25,088 columns for VGG16), ``"fc"`` (``alexnet`` only: its
4096-wide ``fc7`` layer) or ``None`` (the conv map itself, for a trainable head). Adding a backbone is one :class:`Backbone` entry in
:data:`REGISTRY`. TensorFlow and Keras are imported inside the functions only.
"""

from __future__ import annotations

import importlib
import json
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from competition import paths
from competition.errors import UserError

POOLINGS = ("avg", "max", "flatten", "fc", None)
IMAGENET = "imagenet"


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone.

    ``application`` is the ``keras.applications`` class (or ``module:function`` for a
    project model); ``preprocessing`` the ``keras.applications`` module whose
    ``preprocess_input`` the backbone expects (``None``: the model preprocesses
    itself); ``last_block`` the name of the first layer of the last conv block
    (unfreeze from there to fine-tune); ``weight_stems`` extra file-name stems of its
    weights (``<stem>_notop.weights.h5``) and ``keras_files`` the Keras cache names
    (notop, top), both searched by :func:`find_weights_file`; ``default_pooling`` the
    feature layer used unless ``--pool`` says otherwise.
    """

    name: str
    application: str
    input_size: int
    preprocessing: str | None
    last_block: str
    keras_files: tuple[str, str] = ("", "")
    weight_stems: tuple[str, ...] = ()
    default_pooling: str = "avg"
    poolings: tuple[str | None, ...] = ("avg", "max", "flatten", None)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.input_size, self.input_size, 3)

    @property
    def preprocess_input(self) -> Callable:
        """The function that maps RGB pixels in 0..255 to what the network expects."""
        if self.preprocessing is None:
            return _identity
        return importlib.import_module(f"keras.applications.{self.preprocessing}").preprocess_input

    def weight_file_names(self, include_top: bool = False) -> list[str]:
        """File names :func:`find_weights_file` accepts for this backbone, most specific first."""
        variant = "top" if include_top else "notop"
        names = [f"{stem}_{variant}.weights.h5" for stem in (self.name, *self.weight_stems)]
        keras_file = self.keras_files[1 if include_top else 0]
        return names + ([keras_file] if keras_file else [])


def _identity(images):
    return images


@dataclass(frozen=True)
class BackboneConfig:
    """What :func:`create_backbone` built: the entry, the weights used, the pooling and the output width."""

    backbone: Backbone
    weights: str
    pooling: str | None
    include_top: bool
    feature_dim: int

    @property
    def name(self) -> str:
        return self.backbone.name

    @property
    def input_size(self) -> int:
        return self.backbone.input_size

    @property
    def preprocess_input(self) -> Callable:
        return self.backbone.preprocess_input

    @property
    def last_block(self) -> str:
        return self.backbone.last_block


REGISTRY: dict[str, Backbone] = {
    backbone.name: backbone
    for backbone in (
        Backbone(
            "resnet50", "ResNet50", 224, "resnet", "conv5_block1_1_conv",
            ("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
             "resnet50_weights_tf_dim_ordering_tf_kernels.h5"),
        ),
        Backbone(
            "vgg16", "VGG16", 224, "vgg16", "block5_conv1",
            ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
             "vgg16_weights_tf_dim_ordering_tf_kernels.h5"),
        ),
        Backbone(
            "mobilenet", "MobileNet", 224, "mobilenet", "conv_dw_13",
            ("mobilenet_1_0_224_tf_no_top.h5", "mobilenet_1_0_224_tf.h5"),
            weight_stems=("mobilenet_1.0_224",),
        ),
        Backbone(
            "mobilenet_v2", "MobileNetV2", 224, "mobilenet_v2", "block_16_expand",
            ("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
             "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"),
            weight_stems=("mobilenet_v2_1.0_224",),
        ),
        Backbone(
            "xception", "Xception", 299, "xception", "block14_sepconv1",
            ("xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
             "xception_weights_tf_dim_ordering_tf_kernels.h5"),
        ),
        Backbone(
            # the last block's own conv layers have generated names; mixed9 (no weights) opens it
            "inception_v3", "InceptionV3", 299, "inception_v3", "mixed9",
            ("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
             "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"),
        ),
        Backbone(
            # rescales its own input (include_preprocessing=True): no preprocess_input
            "efficientnetv2_b0", "EfficientNetV2B0", 224, None, "block6h_expand_conv",
            ("efficientnetv2-b0_notop.h5", "efficientnetv2-b0.h5"),
        ),
        Backbone(
            # no ImageNet weights: read from the checkpoint `make train MODEL=alexnet` writes;
            # input size from its alexnet.json; features from fc7 (4096) by default
            "alexnet", "models.alexnet:make_alexnet", 227, None, "conv5",
            default_pooling="fc", poolings=POOLINGS,
        ),
    )
}


def get_backbone(name: str) -> Backbone:
    """The registry entry ``name``, or a UserError listing the known backbones."""
    if name not in REGISTRY:
        raise UserError(f"unknown backbone '{name}': known backbones are {', '.join(REGISTRY)} (set BACKBONE=...)")
    return REGISTRY[name]


def find_weights_file(name: str, weights_dir: Path, include_top: bool = False) -> Path:
    """The weights file for backbone ``name`` in ``weights_dir``, or a UserError naming the files looked for."""
    backbone = get_backbone(name)
    weights_dir = Path(weights_dir)
    if not weights_dir.is_dir():
        raise UserError(f"weights folder {weights_dir} does not exist: pass an existing folder as WEIGHTS_DIR")
    candidates = backbone.weight_file_names(include_top)
    for file_name in candidates:
        if (weights_dir / file_name).is_file():
            return weights_dir / file_name
    raise UserError(
        f"no weights for {name} in {weights_dir} (looked for {', '.join(candidates)}): "
        f"put one there, or pass WEIGHTS=<file>"
    )


def alexnet_checkpoint(dataset: str) -> Path:
    """Where `make train MODEL=alexnet` saves the AlexNet weights the `alexnet` backbone reads."""
    return paths.model_dir(dataset, "alexnet") / "alexnet.weights.h5"


def create_backbone(
    name: str,
    weights: str | Path | None = IMAGENET,
    pooling: str | None = "avg",
    include_top: bool = False,
    dataset: str | None = None,
):
    """Build backbone ``name`` and load its weights; returns ``(keras_model, BackboneConfig)``.

    ``include_top=True`` keeps the ImageNet classifier (``pooling`` is then ignored).
    ``dataset`` is needed only by ``alexnet``, whose weights come from that dataset's
    training run. Errors a user can fix (no internet, a missing or mismatched weights
    file, an unknown name) raise UserError.
    """
    backbone = get_backbone(name)
    if pooling not in POOLINGS:
        raise UserError(f"unknown pooling '{pooling}': choose one of avg, max, flatten, fc (set POOL=...)")
    if backbone.application.startswith("models."):
        return _create_project_backbone(backbone, weights, pooling, include_top, dataset)
    if pooling not in backbone.poolings:
        raise UserError(f"pooling '{pooling}' is not available for {name}: choose one of avg, max, flatten")
    import keras

    application = getattr(keras.applications, backbone.application)
    native_pooling = pooling if pooling in ("avg", "max") else None
    local_file = None if weights in (None, IMAGENET) else _require_weights_file(Path(weights), name)
    try:
        model = application(
            include_top=include_top,
            weights=IMAGENET if weights == IMAGENET else None,
            input_shape=backbone.input_shape,
            pooling=None if include_top else native_pooling,
        )
    except Exception as error:  # Keras raises a bare Exception when the download fails
        if "URL fetch failure" not in str(error):
            raise
        raise UserError(
            f"cannot download the ImageNet weights of {name} (no internet?): pass WEIGHTS=<file> "
            f"or WEIGHTS_DIR=<folder with {backbone.weight_file_names(include_top)[0]}>"
        ) from None
    if local_file is not None:
        _load_weights(model, local_file, name, include_top)
    if pooling == "flatten" and not include_top:
        model = keras.Model(model.input, keras.layers.Flatten(name="flatten_features")(model.output), name=model.name)
    described = IMAGENET if weights == IMAGENET else ("random" if weights is None else str(local_file))
    return model, BackboneConfig(backbone, described, None if include_top else pooling, include_top, _width(model))


def _width(model) -> int:
    shape = model.output.shape
    return int(shape[-1]) if len(shape) == 2 else -1


def _require_weights_file(path: Path, name: str) -> Path:
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist: pass the {name} weights file as WEIGHTS=<file>")
    return path


def _load_weights(model, path: Path, name: str, include_top: bool) -> None:
    """Load ``path`` into ``model``, turning Keras's mismatch errors into one line."""
    try:
        with warnings.catch_warnings():  # Keras warns once per layer before raising
            warnings.simplefilter("ignore")
            model.load_weights(str(path))
    except (ValueError, OSError) as error:
        variant = "with" if include_top else "without"
        reason = str(error).splitlines()[0].split(". Example")[0]
        raise UserError(
            f"weights file {path} does not fit backbone {name} ({reason}): "
            f"pass the {name} weights {variant} the classifier top, e.g. {get_backbone(name).weight_file_names(include_top)[0]}"
        ) from None


def _create_project_backbone(backbone: Backbone, weights, pooling, include_top, dataset):
    """A backbone trained by this project (``alexnet``): its checkpoint, with the dataset's mean
    subtraction built in, cut at the feature layer that ``pooling`` names."""
    import keras

    if dataset is None:
        raise UserError(f"backbone {backbone.name} has no ImageNet weights: pass the dataset it was trained on")
    if weights == IMAGENET:
        weights = alexnet_checkpoint(dataset)
        if not weights.is_file():
            raise UserError(
                f"{weights} does not exist: {backbone.name} has no ImageNet weights; "
                f"run `make train DATASET={dataset} MODEL={backbone.name}` first, or pass WEIGHTS=<file>"
            )
    module_name, function_name = backbone.application.split(":")
    make_model = getattr(importlib.import_module(module_name), function_name)
    architecture = _project_architecture(Path(weights), dataset) if weights is not None else {}
    trained = make_model(**architecture) if architecture else make_model(num_classes=_class_count(dataset))
    if weights is not None:
        _load_weights(trained, Path(weights), backbone.name, include_top=True)
    conv_map = trained.get_layer(f"{backbone.last_block}_bn").output
    outputs = {
        "fc": trained.get_layer("fc7").output,
        "flatten": trained.get_layer("flatten").output,
        "avg": keras.layers.GlobalAveragePooling2D(name="avg_pool")(conv_map),
        "max": keras.layers.GlobalMaxPooling2D(name="max_pool")(conv_map),
        None: conv_map,
    }
    cut = trained if include_top else keras.Model(trained.input, outputs[pooling], name=f"{backbone.name}_features")
    size = int(trained.input.shape[1])
    image = keras.Input((size, size, 3), name="rgb")
    subtract_mean = keras.layers.Normalization(mean=_rgb_mean(dataset), variance=[1.0, 1.0, 1.0], name="rgb_mean")
    model = keras.Model(image, cut(subtract_mean(image)), name=backbone.name)
    described = "random" if weights is None else str(weights)
    entry = replace(backbone, input_size=size)
    return model, BackboneConfig(entry, described, None if include_top else pooling, include_top, _width(model))


def _project_architecture(weights: Path, dataset: str) -> dict:
    """The model-building arguments saved as ``alexnet.json`` beside a project checkpoint."""
    description = weights.with_name("alexnet.json")
    if not description.is_file():
        raise UserError(f"{description} is missing beside {weights}: rerun `make train DATASET={dataset} MODEL=alexnet`")
    return json.loads(description.read_text())


def _rgb_mean(dataset: str) -> list[float]:
    """The mean RGB colour of the dataset's train images, which the project's own models subtract."""
    import h5py

    with h5py.File(paths.images_file(dataset, "train"), "r") as handle:
        return [float(value) for value in handle.attrs["rgb_mean"]]


def _class_count(dataset: str) -> int:
    import h5py

    with h5py.File(paths.images_file(dataset, "train"), "r") as handle:
        return len(handle["label_names"])


def last_block_index(model, name: str) -> int:
    """The index in ``model.layers`` where backbone ``name``'s last conv block starts (unfreeze from here)."""
    first_layer = get_backbone(name).last_block
    for index, layer in enumerate(model.layers):
        if layer.name == first_layer:
            return index
    raise ValueError(f"layer {first_layer} not found in {model.name}: is this a {name} model?")
