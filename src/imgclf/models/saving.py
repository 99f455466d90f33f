"""Load a saved imgclf ``.keras`` model: its custom layers are registered by importing them first."""

from __future__ import annotations

import keras

import imgclf.models.layers  # noqa: F401  (registers Preprocess with Keras' serialisation)


def load_keras_model(path):
    """Load a saved imgclf .keras model for inference (not compiled).

    Example:
        >>> model = load_keras_model("runs/leaves/model.keras")
    """
    return keras.saving.load_model(path, compile=False)
