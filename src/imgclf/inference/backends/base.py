"""What `Predictor` needs from a runtime: the `Backend` protocol every backend class declares.

A backend takes a batch of raw 0..255 float32 pixels (N, H, W, C) and returns
class probabilities (`predict`) and, where the model has them, the
penultimate features (`embed`). This module imports neither TensorFlow nor
any runtime, so the light backends (.tflite, .onnx) can build on it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from imgclf.core.errors import UserError

# Output names that imgclf's exports carry (see imgclf.export.exporter).
PROBABILITIES = "probabilities"
EMBEDDING = "embedding"


@runtime_checkable
class Backend(Protocol):
    """A model runtime as `Predictor` calls it; the four backends subclass it to declare that they conform.

    Attributes:
        name: the runtime, shown as ``Predictor.format``: 'keras', 'savedmodel', 'tflite' or 'onnx'.
        source: the path the model came from ('' for an in-memory Keras model), used in messages.
        input_shape: the model's input without the batch axis, (H, W, C); -1 or None where unknown.
        has_embedding: whether `embed` can answer (exports carry an 'embedding' output).
        model: an optional capability: the Keras model where there is one (Grad-CAM
            needs its layers); None for the other runtimes, which is the default.

    Example:
        >>> class Constant(Backend):
        ...     name, source, input_shape, has_embedding = "constant", "", (2, 2, 1), False
        ...     def predict(self, x): return np.full((len(x), 3), 1 / 3, np.float32)
        ...     def embed(self, x): raise no_embedding(self.source)
        >>> isinstance(Constant(), Backend), Constant().model
        (True, None)
        >>> Constant().predict(np.zeros((2, 2, 2, 1), np.float32)).shape
        (2, 3)
    """

    name: str
    source: str
    input_shape: tuple
    has_embedding: bool
    model: Any = None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (N, num_classes) for a float32 batch of raw pixels (N, H, W, C)."""
        ...

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Penultimate features (N, D) for the same input; `UserError` when `has_embedding` is False."""
        ...

    def predict_with_embedding(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and penultimate features of one batch (backends that can, in one model call)."""
        return self.predict(x), self.embed(x)


def no_embedding(source: str) -> UserError:
    """The error for `embed` on a model exported without an 'embedding' output.

    Example:
        >>> print(no_embedding("old.onnx"))
        'old.onnx' has no 'embedding' output; re-export it with `imgclf export` to get one.
    """
    return UserError(f"{source!r} has no 'embedding' output; re-export it with `imgclf export` to get one.")


def missing_runtime(package: str, extra: str, fmt: str) -> UserError:
    """The error for a runtime that is not installed.

    Example:
        >>> print(missing_runtime("onnxruntime", "onnx", ".onnx"))
        Running a .onnx model needs the 'onnxruntime' package, which is not installed. Install it with: pip install 'imgclf[onnx]'
    """
    return UserError(
        f"Running a {fmt} model needs the {package!r} package, which is not installed. "
        f"Install it with: pip install 'imgclf[{extra}]'"
    )
