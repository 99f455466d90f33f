"""Runtimes behind `Predictor`: Keras, SavedModel, LiteRT (.tflite) and ONNX Runtime.

Each backend takes a batch of raw 0..255 float32 pixels (N, H, W, C) and
returns class probabilities, and the penultimate features (`embed`) where the
model provides them: the `Backend` protocol (base.py) says exactly what.
Only the Keras and SavedModel backends import TensorFlow, and only when a
model is opened; the TFLite and ONNX backends need only their small runtimes,
so a .tflite or .onnx file predicts without paying for TensorFlow's import.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.inference.backends.base import EMBEDDING, PROBABILITIES, Backend, missing_runtime, no_embedding
from imgclf.inference.backends.litert import LiteRTBackend
from imgclf.inference.backends.onnx_runtime import OnnxBackend
from imgclf.inference.backends.savedmodel import SavedModelBackend

__all__ = ["EMBEDDING", "PROBABILITIES", "Backend", "missing_runtime", "no_embedding", "open_backend"]


def open_backend(path: str | os.PathLike) -> tuple[Backend, dict | None]:
    """Open an exported model file or folder and return (backend, metadata dict or None).

    Example:
        >>> backend, meta = open_backend("runs/leaves/exports/model.tflite")
        >>> backend.predict(np.zeros((1, 16, 16, 3), np.float32)).shape
        (1, 3)
    """
    p = Path(path)
    if p.is_dir() and (p / "saved_model.pb").exists():
        return SavedModelBackend.open(p)
    suffix = p.suffix.lower()
    if suffix == ".tflite":
        return LiteRTBackend.open(p)
    if suffix == ".onnx":
        return OnnxBackend.open(p)
    raise UserError(f"Cannot load {str(path)!r}: expected a run folder, a .keras, .tflite or .onnx file, or a SavedModel folder.")
