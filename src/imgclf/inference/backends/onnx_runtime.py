"""Run a .onnx model with ONNX Runtime (CPU)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from imgclf.inference.backends.base import EMBEDDING, PROBABILITIES, Backend, missing_runtime, no_embedding
from imgclf.inference.backends.metadata import METADATA_KEY, read_sidecar


class OnnxBackend(Backend):
    """A .onnx model; outputs are read by name ('probabilities', 'embedding'), metadata from metadata_props.

    Example:
        >>> backend, meta = OnnxBackend.open("runs/leaves/exports/model.onnx")
        >>> backend.predict(np.zeros((2, 16, 16, 3), np.float32)).shape, meta["classes"]
        ((2, 3), ['bird', 'cat', 'dog'])
    """

    name = "onnx"

    def __init__(self, session, source: str):
        self.session = session  # InferenceSession.run is thread-safe
        self.source = source
        self._input = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]
        self.has_embedding = EMBEDDING in self.output_names
        self._probs = PROBABILITIES if PROBABILITIES in self.output_names else self.output_names[0]
        shape = session.get_inputs()[0].shape[1:]
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in shape)

    @classmethod
    def open(cls, path):
        """Open a .onnx file; returns (backend, metadata). Example: ``OnnxBackend.open("m.onnx")``."""
        try:
            # lazy: optional extra: imgclf[onnx]
            import onnxruntime as ort
        except ImportError:
            raise missing_runtime("onnxruntime", "onnx", ".onnx") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = os.cpu_count() or 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        props = session.get_modelmeta().custom_metadata_map
        meta = json.loads(props[METADATA_KEY]) if METADATA_KEY in props else read_sidecar(path)
        return cls(session, str(Path(path))), meta

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for a float32 batch of raw pixels. Example: ``backend.predict(x)``."""
        (out,) = self.session.run([self._probs], {self._input: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(out, dtype=np.float32)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Penultimate features (the classifier's input). Example: ``backend.embed(x).shape``."""
        if not self.has_embedding:
            raise no_embedding(self.source)
        (out,) = self.session.run([EMBEDDING], {self._input: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(out, dtype=np.float32)

    def predict_with_embedding(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and penultimate features from one session run. Example: ``p, f = backend.predict_with_embedding(x)``."""
        if not self.has_embedding:
            raise no_embedding(self.source)
        p, e = self.session.run([self._probs, EMBEDDING], {self._input: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(p, dtype=np.float32), np.asarray(e, dtype=np.float32)
