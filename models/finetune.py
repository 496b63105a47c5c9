"""``finetune:<backbone>``: a pretrained backbone without its top and a new head
(Flatten, Dense(D, relu), Dropout, Dense(classes, softmax)); ``pooling=avg`` or ``max`` replaces
the Flatten with global pooling, a head with far fewer weights to learn from a small train set.

Stage ``head`` trains the head with the backbone frozen (RMSprop); stage ``finetune`` unfreezes
the backbone's last conv block (VGG16: ``layers[15:]``) and trains on with SGD. The backbone's
batch normalisation layers stay frozen, in inference mode, throughout.
"""

from __future__ import annotations

from competition.errors import UserError
from competition.reproducibility import DEFAULT_SEED, seed_everything
from models.augment import ImageStream, resized_view, training_transform
from models.crossval import FitFold, FoldResult, TrainContext
from models.deep import configure_precision, finish_fold, fit_stage

STAGES = ("head", "finetune")

HEAD_POOLINGS = {"flatten": "Flatten", "avg": "GlobalAveragePooling2D", "max": "GlobalMaxPooling2D"}


def build_finetune_model(backbone_name: str, weights, n_classes: int, dense_units: int, dropout: float,
                         pooling: str = "flatten"):
    """The backbone (no top, no pooling) with the new head; returns ``(model, backbone_model, config)``."""
    import keras

    from features.backbones import create_backbone

    base, config = create_backbone(backbone_name, weights=weights, pooling=None, include_top=False)
    inputs = keras.Input(base.input_shape[1:], name="image")
    features = base(inputs, training=False)
    x = getattr(keras.layers, HEAD_POOLINGS[pooling])(name=f"head_{pooling}")(features)
    x = keras.layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"finetune_{backbone_name}"), base, config


def unfreeze_from_layer(base, index: int) -> None:
    """Make ``base.layers[index:]`` trainable, except batch normalisation, which stays frozen: Keras 3
    would otherwise normalise with batch statistics in training (the nested ``training=False``
    does not hold for trainable BN layers) and the features collapse."""
    import keras

    base.trainable = True
    for position, layer in enumerate(base.layers):
        layer.trainable = position >= index and not isinstance(layer, keras.layers.BatchNormalization)


def resolve_weights(context: TrainContext, backbone_name: str):
    """The weights to start from: ``--weights`` (imagenet or a file), else the backbone's file in ``--weights-dir``."""
    from features.backbones import IMAGENET, find_weights_file

    if context.weights:
        return None if context.weights == "random" else context.weights
    if context.weights_dir:
        return str(find_weights_file(backbone_name, context.weights_dir))
    return IMAGENET


def train_finetune(context: TrainContext) -> FitFold:
    """A fold fitter that fine-tunes ``context.spec``'s backbone on train.h5 and predicts test.h5."""
    import keras

    from features.backbones import get_backbone, last_block_index

    spec, settings = context.spec, context.spec.settings
    backbone_name = spec.sources[0]
    get_backbone(backbone_name)  # unknown names fail before any training
    if settings["pooling"] not in HEAD_POOLINGS:
        raise UserError(f"unknown head pooling {settings['pooling']!r}: "
                        f"use --set pooling= one of {', '.join(HEAD_POOLINGS)}")
    weights = resolve_weights(context, backbone_name)
    n_classes = len(context.train.label_names)
    policy = configure_precision()

    def fit_fold(fold_dir, train_index, held_out_index) -> FoldResult:
        keras.backend.clear_session()
        seed_everything(DEFAULT_SEED)
        model, base, config = build_finetune_model(
            backbone_name, weights, n_classes, settings["dense_units"], settings["dropout"], settings["pooling"])
        size = config.input_size
        stream = ImageStream(context.train.path, context.train.labels, n_classes,
                             training_transform(size, settings["augment"]), resized_view(size),
                             config.preprocess_input, settings["batch_size"], seed=DEFAULT_SEED)
        base.trainable = False
        model.compile(optimizer=keras.optimizers.RMSprop(settings["head_learning_rate"]),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        fit_stage(model, stream, train_index, held_out_index, settings["head_epochs"], fold_dir, "head",
                  context.callbacks)
        unfreeze_from = settings["unfreeze_from"]
        if unfreeze_from is None:
            unfreeze_from = last_block_index(base, backbone_name)
        unfreeze_from_layer(base, unfreeze_from)
        model.compile(optimizer=keras.optimizers.SGD(settings["finetune_learning_rate"], momentum=settings["momentum"]),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        fit_stage(model, stream, train_index, held_out_index, settings["finetune_epochs"], fold_dir, "finetune",
                  context.callbacks)
        return finish_fold(model, stream, context, fold_dir, held_out_index, STAGES, {
            "unfreeze_from": int(unfreeze_from), "backbone_layers": len(base.layers),
            "weights": str(config.weights), "precision": policy,
        })

    return fit_fold
