"""Run a .tflite model with LiteRT (ai-edge-litert), or tflite-runtime, or TensorFlow's interpreter as a last resort."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from imgclf.inference.backends.base import EMBEDDING, PROBABILITIES, Backend, missing_runtime, no_embedding
from imgclf.inference.backends.metadata import read_sidecar, tflite_metadata


def _interpreter_class():
    # The light runtimes first: importing TensorFlow costs seconds.
    try:
        # lazy: optional extra: imgclf[tflite]
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        # lazy: optional runtime
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    raise missing_runtime("ai-edge-litert", "tflite", ".tflite")


class LiteRTBackend(Backend):
    """A .tflite model; outputs are read by name through its signature ('probabilities', 'embedding').

    Example:
        >>> backend, meta = LiteRTBackend.open("runs/leaves/exports/model.tflite")
        >>> backend.predict(np.zeros((2, 16, 16, 3), np.float32)).shape
        (2, 3)
    """

    name = "tflite"

    def __init__(self, content: bytes, source: str):
        Interpreter = _interpreter_class()
        self.source = source
        self.interpreter = Interpreter(model_content=content, num_threads=os.cpu_count() or 1)
        self._lock = threading.Lock()  # an interpreter runs one call at a time
        signatures = self.interpreter.get_signature_list()
        self._runner = None
        if signatures:
            key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
            self._runner = self.interpreter.get_signature_runner(key)
            self._input_name = signatures[key]["inputs"][0]
            self.output_names = list(signatures[key]["outputs"])
        else:
            self.output_names = [PROBABILITIES]
        self.has_embedding = EMBEDDING in self.output_names
        self.input_shape = tuple(int(d) for d in self.interpreter.get_input_details()[0]["shape_signature"][1:])

    @classmethod
    def open(cls, path):
        """Open a .tflite file; returns (backend, metadata). Example: ``LiteRTBackend.open("m.tflite")``."""
        content = Path(path).read_bytes()
        meta = tflite_metadata(content) or read_sidecar(path)
        return cls(content, str(path)), meta

    def _run(self, x: np.ndarray) -> dict:
        x = np.ascontiguousarray(x, dtype=np.float32)
        with self._lock:
            if self._runner is not None:
                return self._runner(**{self._input_name: x})
            it = self.interpreter
            index = it.get_input_details()[0]["index"]
            it.resize_tensor_input(index, x.shape)
            it.allocate_tensors()
            it.set_tensor(index, x)
            it.invoke()
            return {PROBABILITIES: it.get_tensor(it.get_output_details()[0]["index"]).copy()}

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for a float32 batch of raw pixels. Example: ``backend.predict(x)``."""
        out = self._run(x)
        return np.asarray(out.get(PROBABILITIES, next(iter(out.values()))), dtype=np.float32)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Penultimate features (the classifier's input). Example: ``backend.embed(x).shape``."""
        if not self.has_embedding:
            raise no_embedding(self.source)
        return np.asarray(self._run(x)[EMBEDDING], dtype=np.float32)
