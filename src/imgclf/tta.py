"""Test-time augmentation: average a model's probabilities over simple views of each image.

Used by `evaluate` (``--tta flip``) and available to any predictor: it takes a
uint8 batch and a function from such a batch to probabilities, so it works the
same for Keras, TFLite or ONNX models. No TensorFlow here.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import UserError

TTA_MODES = ("none", "flip")  # "auto" (a Predictor's default) resolves to one of these


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


def choose_tta(images: np.ndarray, labels: np.ndarray, predict: Callable[[np.ndarray], np.ndarray],
               trained_with_flips: bool) -> dict:
    """Decide on the validation split whether flip TTA should be this run's default.

    Mirroring at prediction time only makes sense for a model that saw mirrored
    images in training, and it doubles the cost of every prediction, so it is
    chosen only when it raises validation accuracy. The evidence is returned
    (and saved in the run) so the choice can be checked. `evaluate`, `predict`
    and `serve` apply the run's choice unless told ``--tta none``.

    Example:
        >>> choice = choose_tta(val_images, val_labels, clf.predict_arrays, trained_with_flips=True)  # doctest: +SKIP
        >>> choice["tta"], choice["val_accuracy"]  # doctest: +SKIP
        ('flip', {'none': 0.9423, 'flip': 0.9437})
    """
    if not trained_with_flips:
        return {"tta": "none", "reason": "the model was not trained on mirrored images"}
    labels = np.asarray(labels)
    plain = np.asarray(predict(images), dtype=np.float64)
    both = (plain + np.asarray(predict(np.ascontiguousarray(images[:, :, ::-1, :])), dtype=np.float64)) / 2.0
    accuracy = {k: round(float((p.argmax(1) == labels).mean()), 5) for k, p in (("none", plain), ("flip", both))}
    chosen = "flip" if accuracy["flip"] > accuracy["none"] else "none"
    return {"tta": chosen, "val_accuracy": accuracy,
            "reason": "raised validation accuracy" if chosen == "flip" else "did not raise validation accuracy"}
