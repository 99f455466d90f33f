"""Custom layers that travel inside saved models (registered for .keras loading)."""

from __future__ import annotations

import keras
from keras import ops

# Per-channel statistics of ImageNet, in RGB order, on the 0..255 scale.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
PREPROCESS_MODES = ("none", "unit", "tf", "torch", "caffe")


@keras.saving.register_keras_serializable(package="imgclf")
class Preprocess(keras.layers.Layer):
    """Scale raw 0..255 pixels to what a backbone expects, inside the model graph.

    Modes: ``none`` (the backbone does it itself), ``unit`` (to [0, 1]),
    ``tf`` (to [-1, 1]), ``torch`` ([0, 1] then ImageNet mean/std),
    ``caffe`` (RGB to BGR, then subtract the ImageNet mean).

    Example:
        >>> Preprocess("tf")(np.full((1, 2, 2, 3), 255.0)).numpy().max()
        np.float32(1.0)
    """

    def __init__(self, mode: str = "unit", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESS_MODES:
            raise ValueError(f"Preprocess mode must be one of {PREPROCESS_MODES}, received {mode!r}")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "none":
            return x
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.cast(ops.convert_to_tensor(IMAGENET_MEAN), self.compute_dtype)
            std = ops.cast(ops.convert_to_tensor(IMAGENET_STD), self.compute_dtype)
            return (x - mean) / std
        # caffe
        x = ops.flip(x, axis=-1)
        return x - ops.cast(ops.convert_to_tensor(IMAGENET_MEAN[::-1]), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
