"""Runtimes behind `Predictor`: Keras, SavedModel, LiteRT (.tflite) and ONNX Runtime.

Each backend takes a batch of raw 0..255 float32 pixels (N, H, W, C) and
returns class probabilities, and the penultimate features (`embed`) where the
model provides them. Only the Keras and SavedModel backends import
TensorFlow; the TFLite and ONNX backends need only their small runtimes, so a
.tflite or .onnx file predicts without paying for TensorFlow's import.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgclf.core.errors import UserError

# Output names that imgclf's exports carry (see export.py).
PROBABILITIES = "probabilities"
EMBEDDING = "embedding"


def open_backend(path: str | os.PathLike):
    """Open an exported model file or folder and return (backend, metadata dict or None).

    Example:
        >>> backend, meta = open_backend("runs/leaves/exports/model.tflite")  # doctest: +SKIP
        >>> backend.predict(x).shape  # doctest: +SKIP
        (1, 3)
    """
    p = Path(path)
    if p.is_dir() and (p / "saved_model.pb").exists():
        # lazy: imported on first use: the module and this one load each other
        from imgclf.inference.backends.savedmodel import SavedModelBackend

        return SavedModelBackend.open(p)
    suffix = p.suffix.lower()
    if suffix == ".tflite":
        # lazy: imported on first use: the module and this one load each other
        from imgclf.inference.backends.litert import LiteRTBackend

        return LiteRTBackend.open(p)
    if suffix == ".onnx":
        # lazy: imported on first use: the module and this one load each other
        from imgclf.inference.backends.onnx_runtime import OnnxBackend

        return OnnxBackend.open(p)
    raise UserError(f"Cannot load {str(path)!r}: expected a run folder, a .keras, .tflite or .onnx file, or a SavedModel folder.")


def missing_runtime(package: str, extra: str, fmt: str) -> UserError:
    """The error for a runtime that is not installed. Example: ``raise missing_runtime("onnxruntime", "onnx", ".onnx")``."""
    return UserError(
        f"Running a {fmt} model needs the {package!r} package, which is not installed. "
        f"Install it with: pip install 'imgclf[{extra}]'"
    )
