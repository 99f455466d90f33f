"""Run a TensorFlow SavedModel folder (as written by `imgclf export --format savedmodel`)."""

from __future__ import annotations

import numpy as np

from imgclf.core.errors import UserError
from imgclf.inference.backends.base import EMBEDDING, PROBABILITIES, Backend, no_embedding
from imgclf.inference.backends.metadata import read_sidecar


class SavedModelBackend(Backend):
    """A SavedModel's serving_default signature; outputs by name ('probabilities', 'embedding').

    Example:
        >>> backend, meta = SavedModelBackend.open("runs/leaves/exports/savedmodel")
        >>> backend.predict(np.zeros((1, 16, 16, 3), np.float32)).shape
        (1, 3)
    """

    name = "savedmodel"

    def __init__(self, loaded, source: str):
        self.loaded = loaded  # keep a reference: the signature's variables live in it
        self.source = source
        signatures = dict(loaded.signatures)
        if not signatures:
            raise UserError(f"The SavedModel {source!r} has no serving signature; export it with `imgclf export`.")
        self._sig = signatures.get("serving_default") or next(iter(signatures.values()))
        inputs = self._sig.structured_input_signature[1]
        (self._input, spec), = inputs.items()
        self.input_shape = tuple(spec.shape[1:])
        self.output_names = list(self._sig.structured_outputs)
        self.has_embedding = EMBEDDING in self.output_names
        self._probs = PROBABILITIES if PROBABILITIES in self.output_names else self.output_names[0]

    @classmethod
    def open(cls, path):
        """Open a SavedModel folder; returns (backend, metadata). Example: ``SavedModelBackend.open("exports/savedmodel")``."""
        # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
        import tensorflow as tf

        return cls(tf.saved_model.load(str(path)), str(path)), read_sidecar(path)

    def _outputs(self, x) -> dict:
        return self._sig(**{self._input: np.asarray(x, dtype=np.float32)})

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for a float32 batch of raw pixels. Example: ``backend.predict(x)``."""
        return np.asarray(self._outputs(x)[self._probs], dtype=np.float32)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Penultimate features (the classifier's input). Example: ``backend.embed(x).shape``."""
        if not self.has_embedding:
            raise no_embedding(self.source)
        return np.asarray(self._outputs(x)[EMBEDDING], dtype=np.float32)
