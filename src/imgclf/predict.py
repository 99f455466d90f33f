"""Prediction behind one interface, from a Run bundle or a saved model.

`load()` returns a `Predictor`; it decodes with the same function and settings
as training (from preprocess.json) and returns class names with probabilities.
Folder prediction streams: paths are expanded lazily and decoded batch by
batch in a thread pool while the model works, so memory stays bounded.
"""

from __future__ import annotations

import glob
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .data.decode import DecodeError, decode_image
from .data.scan import is_hidden_or_system, is_image_name
from .errors import UserError


class Predictor:
    """A trained classifier ready to predict.

    Example:
        >>> clf = imgclf.load("runs/leaves")  # doctest: +SKIP
        >>> clf.predict(["a.jpg"], top_k=2)  # doctest: +SKIP
        [{'path': 'a.jpg', 'class': 'rust', 'probability': 0.93, 'top_k': [['rust', 0.93], ['scab', 0.05]]}]
    """

    def __init__(self, model, classes: list[str], preprocess: dict, source: str = ""):
        self.model = model
        self.classes = list(classes)
        self.preprocess = dict(preprocess)
        self.source = source
        self._fn = None

    def __repr__(self) -> str:
        return f"Predictor({self.source!r}, {len(self.classes)} classes, {self.preprocess['img_size']}px {self.preprocess['color_mode']})"

    def decode(self, source) -> np.ndarray:
        """Decode one input exactly as training did. Example: ``clf.decode("a.jpg").shape``."""
        p = self.preprocess
        return decode_image(source, size=p["img_size"], color_mode=p["color_mode"], resize=p.get("resize", "squash"))

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of decoded uint8 images (N, H, W, C). Example: ``clf.predict_arrays(x)``."""
        if self._fn is None:
            import tensorflow as tf

            model = self.model
            self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        out = self._fn(np.asarray(images, dtype=np.float32))
        return np.asarray(out, dtype=np.float32)

    def predict_proba(self, inputs, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (N, num_classes) for paths, bytes, PIL images or arrays.

        Raises `UserError` if any input cannot be decoded (use `predict` on
        folders, where bad files become rows with an error).

        Example:
            >>> clf.predict_proba(["a.jpg", "b.png"]).shape  # doctest: +SKIP
            (2, 3)
        """
        items = _as_list(inputs)
        arrays = []
        for item in items:
            try:
                arrays.append(self.decode(item))
            except DecodeError as e:
                raise UserError(f"Cannot predict {_describe(item)}: {e.reason}.") from None
        if not arrays:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        stacked = np.stack(arrays)
        return np.concatenate([self.predict_arrays(stacked[i:i + batch_size]) for i in range(0, len(stacked), batch_size)])

    def predict(self, inputs, top_k: int = 1, batch_size: int = 64) -> list[dict]:
        """Top-k classes for each input, as dicts with path, class, probability and top_k.

        Example:
            >>> clf.predict("a.jpg", top_k=3)[0]["class"]  # doctest: +SKIP
            'rust'
        """
        items = _as_list(inputs)
        probs = self.predict_proba(items, batch_size=batch_size)
        return [self._row(_describe(item), p, top_k) for item, p in zip(items, probs)]

    def _row(self, path: str, p: np.ndarray, top_k: int) -> dict:
        order = np.argsort(-p, kind="stable")[: max(1, min(top_k, len(self.classes)))]
        return {
            "path": path,
            "class": self.classes[order[0]],
            "probability": float(p[order[0]]),
            "top_k": [[self.classes[i], float(p[i])] for i in order],
            "error": "",
        }

    def predict_paths(self, paths: Iterable[str], top_k: int = 1, batch_size: int = 64, workers: int = 0) -> Iterator[dict]:
        """Stream predictions for many files; unreadable ones yield a row with ``error`` set.

        Example:
            >>> for row in clf.predict_paths(iter_image_paths(["photos/"])): print(row["class"])  # doctest: +SKIP
        """
        workers = workers or os.cpu_count() or 1

        def decode_safely(path):
            try:
                return self.decode(path), ""
            except DecodeError as e:
                return None, e.reason

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for chunk in _chunks(paths, batch_size):
                decoded = list(pool.map(decode_safely, chunk))
                good = [i for i, (arr, _) in enumerate(decoded) if arr is not None]
                probs = self.predict_arrays(np.stack([decoded[i][0] for i in good])) if good else []
                by_index = dict(zip(good, probs))
                for i, path in enumerate(chunk):
                    if i in by_index:
                        yield self._row(path, by_index[i], top_k)
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


def iter_image_paths(inputs: list[str]) -> Iterator[str]:
    """Expand files, folders (recursively, sorted) and glob patterns into image paths, lazily.

    A path that does not exist, or a file given by name that is not an image
    file, is a `UserError`; non-image files found inside folders are passed
    over silently.

    Example:
        >>> list(iter_image_paths(["photos/", "extra/*.jpg"]))  # doctest: +SKIP
        ['photos/a.jpg', 'photos/sub/b.png', 'extra/c.jpg']
    """
    _check_inputs(inputs)
    for item in inputs:
        if os.path.isdir(item):
            for dirpath, dirnames, filenames in os.walk(item):
                dirnames[:] = sorted(d for d in dirnames if not is_hidden_or_system(d))
                for name in sorted(filenames):
                    if is_image_name(name) and not is_hidden_or_system(name):
                        yield os.path.join(dirpath, name)
        elif os.path.exists(item):
            yield item
        else:
            for match in sorted(glob.glob(item, recursive=True)):
                if os.path.isfile(match) and is_image_name(match):
                    yield match


def _check_inputs(inputs: list[str]) -> None:
    from .data.scan import IMAGE_EXTENSIONS

    for item in inputs:
        if os.path.isdir(item):
            continue
        if os.path.exists(item):
            if not is_image_name(item):
                raise UserError(
                    f"Not an image file: {item!r}. Expected a file ending in {', '.join(IMAGE_EXTENSIONS)}, "
                    "a folder, or a glob pattern such as 'photos/*.jpg'."
                )
        elif not glob.has_magic(item):
            raise UserError(f"File or folder not found: {item!r}. Pass image files, folders or glob patterns.")
        elif not any(os.path.isfile(m) and is_image_name(m) for m in glob.iglob(item, recursive=True)):
            raise UserError(f"The pattern {item!r} matches no image files.")


def load(path: str | os.PathLike) -> Predictor:
    """Load a Run bundle (or a .keras model saved by imgclf) as a `Predictor`.

    Example:
        >>> clf = imgclf.load("runs/leaves")  # doctest: +SKIP
        >>> clf.classes  # doctest: +SKIP
        ['healthy', 'rust', 'scab']
    """
    from .run import Run

    p = Path(path)
    if p.is_dir():
        run = Run(p)
        return Predictor(run.load_model(), run.classes, run.preprocess, source=str(p))
    if p.suffix == ".keras" and p.exists():
        sidecar = p.with_suffix(".json")
        meta_dir = p.parent
        if sidecar.exists():
            meta = json.loads(sidecar.read_text())
            classes, preprocess = meta["classes"], meta["preprocess"]
        elif (meta_dir / "classes.json").exists():
            classes = json.loads((meta_dir / "classes.json").read_text())
            preprocess = json.loads((meta_dir / "preprocess.json").read_text())
        else:
            raise UserError(f"{str(p)!r} has no class names beside it (classes.json or {sidecar.name}).")
        from .models.registry import load_keras_model

        return Predictor(load_keras_model(p), classes, preprocess, source=str(p))
    if not p.exists():
        raise UserError(f"Model not found: {str(path)!r}. Pass a run folder (for example runs/leaves) or a .keras file.")
    raise UserError(f"Cannot load {str(path)!r}: expected a run folder or a .keras file.")
