"""Load a saved imgclf ``.keras`` model: its custom layers are registered by importing them first.

Keras loads in safe mode: a Lambda layer (pickled Python code) is refused, not
run, and the refusal is a `UserError` (one line, exit status 2), as is a file
that is not a Keras model at all.
"""

from __future__ import annotations

import os
import zipfile

import keras

import imgclf.models.layers  # noqa: F401  (registers Preprocess with Keras' serialisation)
from imgclf.core.errors import UserError


def load_keras_model(path):
    """Load a saved imgclf .keras model for inference (not compiled), in Keras' safe mode.

    Example:
        >>> model = load_keras_model("runs/leaves/model.keras")
        >>> load_keras_model("my_cnn.yaml")
        Traceback (most recent call last):
        ...
        imgclf.core.errors.UserError: Could not load 'my_cnn.yaml' as a Keras model: ...
    """
    shown = os.fspath(path)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as e:
        reason = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        if "Lambda" in str(e) or "safe_mode" in str(e):
            raise UserError(
                f"Refusing to load {shown!r}: it holds a Lambda layer, Python code that would run when the "
                "model loads, and imgclf loads .keras files in Keras' safe mode. Expected a model of standard "
                "layers (as every imgclf run saves). Rebuild the model without Lambda layers, or use a TFLite "
                "or ONNX export of it."
            ) from None
        raise UserError(
            f"Could not load {shown!r} as a Keras model: {reason}. Expected a .keras file saved by imgclf "
            "(a run's model.keras or `imgclf export --format keras`)."
        ) from None


def as_float32(model):
    """`model` with every layer computing in float32: itself when it already does (runs trained in mixed precision
    otherwise predict in bfloat16, and their exports, which compute in float32, answered differently; issue 20).

    Example:
        >>> as_float32(load_keras_model("runs/leaves/model.keras")).dtype_policy.name
        'float32'
    """
    names = {layer.dtype_policy.name for layer in model.layers if getattr(layer, "dtype_policy", None)}
    if names <= {"float32"} and model.dtype_policy.name == "float32":
        return model

    def to_float32(obj):
        if isinstance(obj, dict):
            if obj.get("class_name") == "DTypePolicy" and isinstance(obj.get("config"), dict):
                return {**obj, "config": {**obj["config"], "name": "float32"}}
            return {k: to_float32(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [to_float32(v) for v in obj]
        return obj

    # Built under a float32 global policy: training sets mixed precision globally (imgclf.train in the same
    # process), and a functional model takes its own policy from the global one when it is rebuilt.
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = model.__class__.from_config(to_float32(model.get_config()))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    copy.set_weights(model.get_weights())
    return copy
