"""Test-time augmentation: average a model's probabilities over simple views of each image.

Used by `evaluate` (``--tta flip``) and available to any predictor: it takes a
uint8 batch and a function from such a batch to probabilities, so it works the
same for Keras, TFLite or ONNX models. No TensorFlow here.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import UserError

TTA_MODES = ("none", "flip")


def tta_predict(images: np.ndarray, predict: Callable[[np.ndarray], np.ndarray], mode: str = "flip") -> np.ndarray:
    """Probabilities for a uint8 batch (N, H, W, C), averaged over the views of `mode`.

    ``flip`` averages the image and its horizontal mirror: a free gain for
    subjects with no left-right meaning (leaves, cells, products), but wrong for
    ones that have it (text, digits), so it is never on by default.

    Example:
        >>> probs = tta_predict(batch, clf.predict_arrays, mode="flip")  # doctest: +SKIP
        >>> probs.shape  # doctest: +SKIP
        (32, 3)
    """
    if mode not in TTA_MODES:
        raise UserError(f"Unknown test-time augmentation {mode!r}: expected one of {', '.join(TTA_MODES)}.")
    images = np.asarray(images)
    if images.ndim != 4:
        raise UserError(f"tta_predict needs a batch of images shaped (N, H, W, C), received shape {images.shape}.")
    probs = np.asarray(predict(images), dtype=np.float64)
    if mode == "flip":
        # Copy: a reversed view would hand the model negative strides.
        flipped = np.ascontiguousarray(images[:, :, ::-1, :])
        probs = (probs + np.asarray(predict(flipped), dtype=np.float64)) / 2.0
    return probs.astype(np.float32)
