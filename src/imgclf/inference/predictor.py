"""`Predictor`: a trained classifier behind one interface, whatever runtime holds the model.

It decodes with the same function and settings as training (from
preprocess.json), runs the model through a backend
(`imgclf.inference.backends`), applies the run's test-time augmentation and
fitted confidence, and returns class names with probabilities. `load()`
(`imgclf.inference.loader`) builds one from a run or an export. Folder
prediction streams: the next batch is decoded in a thread pool while the
model works on this one, so memory stays bounded (two batches in flight).
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from imgclf.core.config import check_preprocess
from imgclf.core.errors import UserError
from imgclf.data.decode import DecodeError, decode_image
from imgclf.inference.backends.base import Backend
from imgclf.inference.backends.keras_model import KerasBackend
from imgclf.inference.confidence import conformal
from imgclf.inference.confidence.store import Confidence
from imgclf.inference.paths import iter_image_paths  # noqa: F401 - re-exported: callers from before the split import it here
from imgclf.inference.rows import UNKNOWN, prediction_row  # noqa: F401 - UNKNOWN re-exported likewise
from imgclf.inference.tta import tta_predict


class Predictor:
    """A trained classifier ready to predict.

    Example:
        >>> clf = imgclf.load("runs/leaves")
        >>> clf.predict(["a.png"], top_k=2)  # doctest: +ELLIPSIS
        [{'path': 'a.png', 'class': '...', 'probability': 0..., 'top_k': [['...', 0...], ['...', 0...]], 'error': ''...}]
    """

    def __init__(self, model, classes: list[str], preprocess: dict, source: str = "", tta: str = "auto",
                 confidence: Confidence | None = None, reject_rate: float | None = None, coverage: float | None = None):
        # `model` is a runtime from imgclf.inference.backends, or an in-memory Keras model to wrap in one.
        self.backend: Backend = model if isinstance(model, Backend) else KerasBackend(model, source)
        self.model = self.backend.model  # the Keras model, where there is one (Grad-CAM needs it); else None
        self.classes = list(classes)
        # Checked here, where every format's preprocessing enters (run, sidecar, TFLite/ONNX metadata).
        self.preprocess = check_preprocess(preprocess, f"the preprocessing of {source or 'the model'!r} "
                                                       "(preprocess.json or the exported metadata)")
        self.source = source
        # "none" or "flip": test-time augmentation applied by predict_arrays; "auto" takes
        # what training chose on its validation split (saved in preprocess.json), so a
        # run predicts the way its reported accuracy was measured.
        self.tta = self.preprocess.get("tta", "none") if tta in (None, "", "auto") else tta
        self.info: dict = {}  # what load() knows besides: model name, metrics summary (shown by `imgclf serve`)
        # Fitted on validation (imgclf.inference.confidence); reject_rate None = the run's (0 = off); coverage None = no sets.
        self.confidence, self.reject_rate, self.coverage = confidence or Confidence(), reject_rate, coverage
        self.unknown_threshold = self.confidence.reject_threshold(reject_rate)
        self._qhat = self.confidence.qhat(coverage) if coverage else None

    def __repr__(self) -> str:
        return (f"Predictor({self.source!r}, {self.backend.name}, {len(self.classes)} classes, "
                f"{self.preprocess['img_size']}px {self.preprocess['color_mode']})")

    @property
    def format(self) -> str:
        """The runtime: 'keras', 'savedmodel', 'tflite' or 'onnx'. Example: ``imgclf.load("m.onnx").format``."""
        return self.backend.name

    def decode(self, source) -> np.ndarray:
        """Decode one input exactly as training did. Example: ``clf.decode("a.jpg").shape``."""
        p = self.preprocess
        return decode_image(source, size=p["img_size"], color_mode=p["color_mode"], resize=p.get("resize", "squash"))

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for a batch of decoded uint8 images (N, H, W, C). Example: ``clf.predict_arrays(x)``."""
        if self.tta not in (None, "", "none"):
            return self.confidence.calibrate(tta_predict(images, self._run_backend, self.tta))
        return self.confidence.calibrate(self._run_backend(images))

    def predict_outputs(self, images: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        """Calibrated probabilities and, per image, the unknown score and decision and the prediction set ({} if none).

        Example:
            >>> clf = imgclf.load("runs/leaves", coverage=0.9)
            >>> probs, extras = clf.predict_outputs(np.stack([clf.decode("a.png")]))
            >>> probs.shape, sorted(extras[0])
            ((1, 3), ['prediction_set', 'unknown', 'unknown_score'])
        """
        features, x = None, np.asarray(images, dtype=np.float32)
        if self.unknown_threshold is None or not self.confidence.needs_features(self.reject_rate):
            probs = self.predict_arrays(images)
        elif self.tta in (None, "", "none"):  # one model call gives both
            probs, features = self.backend.predict_with_embedding(x)
            probs = self.confidence.calibrate(probs)
        else:
            probs, features = self.predict_arrays(images), self.backend.embed(x)
        extras = [{} for _ in range(len(probs))]
        for e, s in zip(extras, self.confidence.unknown_scores(probs, features) if self.unknown_threshold is not None else []):
            e.update(unknown_score=float(s), unknown=bool(s > self.unknown_threshold))
        for e, members in zip(extras, conformal.prediction_sets(probs, self._qhat) if self._qhat is not None else []):
            e["prediction_set"] = [self.classes[i] for i in members]
        return probs, extras

    def _run_backend(self, images: np.ndarray) -> np.ndarray:
        return self.backend.predict(np.asarray(images, dtype=np.float32))

    def _decode_all(self, inputs) -> tuple[list, np.ndarray]:
        items = _as_list(inputs)
        arrays = []
        for item in items:
            try:
                arrays.append(self.decode(item))
            except DecodeError as e:
                raise UserError(f"Cannot predict {_describe(item)}: {e.reason}.") from None
        shape = (0, self.preprocess["img_size"], self.preprocess["img_size"], self.preprocess.get("channels", 3))
        return items, np.stack(arrays) if arrays else np.zeros(shape, np.uint8)

    def embed(self, inputs, batch_size: int = 64) -> np.ndarray:
        """Penultimate features (N, D): the input of the final 'classifier' layer, for search or clustering.

        Works for Keras, SavedModel, TFLite and ONNX models exported by
        imgclf (they carry a second output named 'embedding'). TTA does not apply.

        Example:
            >>> clf = imgclf.load("runs/leaves")
            >>> clf.embed(["a.png", "b.png"]).shape  # doctest: +ELLIPSIS
            (2, ...)
        """
        _, stacked = self._decode_all(inputs)
        if not len(stacked):
            return np.zeros((0, 0), dtype=np.float32)
        x = stacked.astype(np.float32)
        return np.concatenate([self.backend.embed(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    def predict_proba(self, inputs, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (N, num_classes) for paths, bytes, PIL images or arrays.

        Raises `UserError` if any input cannot be decoded (use `predict` on
        folders, where bad files become rows with an error).

        Example:
            >>> clf = imgclf.load("runs/leaves")
            >>> clf.predict_proba(["a.png", "b.png"]).shape
            (2, 3)
        """
        _, stacked = self._decode_all(inputs)
        if not len(stacked):
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.concatenate([self.predict_arrays(stacked[i:i + batch_size]) for i in range(0, len(stacked), batch_size)])

    def predict(self, inputs, top_k: int = 1, batch_size: int = 64, threshold: float = 0.0) -> list[dict]:
        """Top-k classes for each input, as dicts with path, class, probability and top_k.

        Below `threshold` (top probability), the class is ``'unknown'``; top_k
        still lists the model's best guesses.

        Example:
            >>> clf = imgclf.load("runs/leaves")
            >>> clf.predict("a.png", top_k=3)[0]["class"] in clf.classes + ["unknown"]
            True
        """
        items, stacked = self._decode_all(inputs)
        rows = []
        for i in range(0, len(stacked), batch_size):
            probs, extras = self.predict_outputs(stacked[i:i + batch_size])
            rows += [self.row(_describe(item), p, top_k, threshold, e)
                     for item, p, e in zip(items[i:i + batch_size], probs, extras)]
        return rows

    def row(self, path: str, p: np.ndarray, top_k: int = 1, threshold: float = 0.0, extra: dict | None = None) -> dict:
        """The prediction row for one image's probabilities `p` (see `prediction_row`), with this model's classes.

        Example:
            >>> clf = imgclf.load("runs/leaves")
            >>> clf.row("a.png", np.array([0.1, 0.7, 0.2]), top_k=2)["top_k"]
            [['cat', 0.7], ['dog', 0.2]]
        """
        return prediction_row(path, p, self.classes, top_k, threshold, extra)

    def predict_paths(self, paths: Iterable[str], top_k: int = 1, batch_size: int = 64, workers: int = 0,
                      threshold: float = 0.0) -> Iterator[dict]:
        """Stream predictions for many files; unreadable ones yield a row with ``error`` set.

        While the model runs on one batch, the thread pool decodes the next,
        and no more than two batches are ever held: a million files need no
        more memory than a hundred.

        Example:
            >>> clf = imgclf.load("runs/leaves")
            >>> rows = list(clf.predict_paths(iter_image_paths(["data/cat/"])))
            >>> len(rows), rows[0]["path"]
            (12, 'data/cat/00.png')
        """
        workers = workers or os.cpu_count() or 1

        def decode_safely(path):
            try:
                return self.decode(path), ""
            except DecodeError as e:
                return None, e.reason

        with ThreadPoolExecutor(max_workers=workers) as pool:
            chunks = _chunks(paths, batch_size)
            pending = None
            for chunk in itertools.chain(chunks, [None]):
                submitted = (chunk, [pool.submit(decode_safely, p) for p in chunk]) if chunk is not None else None
                if pending is not None:
                    yield from self._predict_chunk(*pending, top_k, threshold)
                pending = submitted

    def _predict_chunk(self, chunk: list, futures: list, top_k: int, threshold: float) -> Iterator[dict]:
        decoded = [f.result() for f in futures]
        good = [i for i, (arr, _) in enumerate(decoded) if arr is not None]
        probs, extras = self.predict_outputs(np.stack([decoded[i][0] for i in good])) if good else ([], [])
        by_index = dict(zip(good, zip(probs, extras)))
        for i, path in enumerate(chunk):
            if i in by_index:
                p, extra = by_index[i]
                yield self.row(path, p, top_k, threshold, extra)
            else:
                yield {"path": path, "class": "", "probability": float("nan"), "top_k": [], "error": decoded[i][1]}


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _as_list(inputs) -> list:
    if isinstance(inputs, (str, os.PathLike, bytes, bytearray)) or (isinstance(inputs, np.ndarray) and inputs.ndim <= 3):
        return [inputs]
    if hasattr(inputs, "mode") and hasattr(inputs, "size"):  # a PIL image
        return [inputs]
    return list(inputs)


def _describe(item) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    return f"<{type(item).__name__}>"
