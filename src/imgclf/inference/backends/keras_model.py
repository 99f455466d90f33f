"""Run an in-memory Keras model (from a Run bundle or a .keras file) with TensorFlow."""

from __future__ import annotations

import threading

import numpy as np

from imgclf.core.errors import UserError
from imgclf.inference.backends.base import EMBEDDING, PROBABILITIES, Backend

CLASSIFIER_LAYER = "classifier"  # the final Dense layer every imgclf model ends with (models/registry.py)


class KerasBackend(Backend):
    """A Keras model called through one traced `tf.function` (much faster than `model.predict` per batch).

    Example:
        >>> from imgclf.models.saving import load_keras_model
        >>> model = load_keras_model("runs/leaves/model.keras")
        >>> KerasBackend(model).predict(np.zeros((1, 16, 16, 3), np.float32)).shape
        (1, 3)
    """

    name = "keras"

    def __init__(self, model, source: str = ""):
        self.model = model
        self.source = source
        self._fn = None
        self._embed_fn = None
        self._both_fn = None
        self._lock = threading.Lock()  # tracing is not safe from two threads at once
        self.input_shape = tuple(model.input_shape[1:])

    @property
    def has_embedding(self) -> bool:
        return isinstance(self.model.output, dict) or any(layer.name == CLASSIFIER_LAYER for layer in self.model.layers)

    def _spec(self, tf):
        # One trace for every batch size: no retracing as the last batch comes up short.
        return tf.TensorSpec((None,) + self.input_shape, tf.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for a float32 batch of raw pixels. Example: ``backend.predict(x)``."""
        if self._fn is None:
            with self._lock:
                if self._fn is None:
                    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
                    import tensorflow as tf

                    model = self.model
                    self._fn = tf.function(lambda t: model(t, training=False), input_signature=[self._spec(tf)])
        out = self._fn(np.asarray(x, dtype=np.float32))
        if isinstance(out, dict):  # an imgclf export: {'probabilities', 'embedding'}
            out = out[PROBABILITIES]
        return np.asarray(out, dtype=np.float32)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Penultimate features: the input of the 'classifier' Dense layer. Example: ``backend.embed(x).shape``."""
        if self._embed_fn is None:
            with self._lock:
                if self._embed_fn is None:
                    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
                    import tensorflow as tf

                    model = self.model
                    if isinstance(model.output, dict):  # an imgclf export carries its embedding output
                        self._embed_fn = tf.function(lambda t: model(t, training=False)[EMBEDDING], input_signature=[self._spec(tf)])
                    else:
                        features = feature_model(model)
                        self._embed_fn = tf.function(lambda t: features(t, training=False), input_signature=[self._spec(tf)])
        return np.asarray(self._embed_fn(np.asarray(x, dtype=np.float32)), dtype=np.float32)

    def predict_with_embedding(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and penultimate features in one call of the model. Example: ``p, f = backend.predict_with_embedding(x)``."""
        if self._both_fn is None:
            with self._lock:
                if self._both_fn is None:
                    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
                    import keras
                    import tensorflow as tf

                    model = self.model
                    if isinstance(model.output, dict):  # an imgclf export: both outputs are there
                        def both(t):
                            out = model(t, training=False)
                            return out[PROBABILITIES], out[EMBEDDING]
                    else:
                        two = keras.Model(model.inputs, [model.output, feature_model(model).output])

                        def both(t):
                            return tuple(two(t, training=False))
                    self._both_fn = tf.function(both, input_signature=[self._spec(tf)])
        p, e = self._both_fn(np.asarray(x, dtype=np.float32))
        return np.asarray(p, dtype=np.float32), np.asarray(e, dtype=np.float32)


def feature_model(model):
    """A Keras model from the same input to the classifier layer's input (the embedding).

    Example:
        >>> from imgclf.models.saving import load_keras_model
        >>> feature_model(load_keras_model("runs/leaves/model.keras")).output_shape  # doctest: +ELLIPSIS
        (None, ...)
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    try:
        layer = model.get_layer(CLASSIFIER_LAYER)
    except ValueError:
        raise UserError(
            f"The model has no layer named {CLASSIFIER_LAYER!r}, so imgclf cannot tell which features to embed. "
            "Models built by imgclf end with one."
        ) from None
    return keras.Model(model.inputs, layer.input, name=f"{model.name}_features")
