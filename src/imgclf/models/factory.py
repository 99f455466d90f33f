"""Build and load imgclf's Keras models: backbone + head, from a registry name (timm's ``create_model``)."""

from __future__ import annotations

import re
from pathlib import Path

import keras

from imgclf.core.errors import UserError
from imgclf.models.layers import Preprocess
from imgclf.models.registry import get_spec
from imgclf.models.weights import load_backbone_weights


def create_model(
    name: str,
    num_classes: int,
    img_size: int | None = None,
    channels: int = 3,
    weights: str | None = None,
    dropout: float = 0.2,
    bn_momentum: float = 0.9,
    freeze_bn: bool = True,
):
    """Build backbone + head as one Keras model taking raw 0..255 pixels.

    `weights` is None/"none" (random), "imagenet" (the Keras download path), or
    a path to a .weights.h5 file or a .keras model whose backbone is reused.
    A pretrained backbone is called with ``training=False`` (unless
    `freeze_bn` is False) so that its BatchNorm layers stay in inference mode,
    with their ImageNet statistics, during fine-tuning.

    Example:
        >>> model = create_model("small_cnn", num_classes=10, img_size=28, channels=1)
        >>> model.output_shape
        (None, 10)
    """
    spec = get_spec(name)
    size = img_size or spec.default_size
    if size < spec.min_size:
        raise UserError(
            f"Input size {size} is too small for {name!r}: it needs at least {spec.min_size} pixels. "
            f"Pass --img-size {spec.min_size} or more."
        )
    weights = None if weights in (None, "", "none") else weights
    if weights == "imagenet" and not spec.pretrained:
        raise UserError(
            f"No ImageNet weights exist for {name!r}. Use --weights none, or a model listed by "
            "`imgclf models --pretrained`."
        )
    inputs = keras.Input((size, size, channels), name="image")
    x = Preprocess(spec.preprocessing, name="preprocess")(inputs)
    backbone = spec.build((size, size, channels), weights="imagenet" if weights == "imagenet" else None, bn_momentum=bn_momentum)
    backbone.name = "backbone"
    pretrained = weights is not None
    if weights not in (None, "imagenet"):
        load_backbone_weights(backbone, weights)
    x = backbone(x, training=False) if pretrained and freeze_bn else backbone(x)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")(x)
    # A YAML architecture's name is its path; Keras names may not hold '/'.
    return keras.Model(inputs, outputs, name=re.sub(r"[^\w.-]", "_", Path(name).stem if name.endswith((".yaml", ".yml")) else name))
