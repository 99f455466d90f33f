"""`load()`: a `Predictor` for a Run bundle, a .keras file, a SavedModel folder, a .tflite or a .onnx file.

The class names, the preprocessing and the fitted confidence come from the
run, from metadata inside the file (.tflite, .onnx), or from the sidecar JSON
that `imgclf export` writes; the runtime from `imgclf.inference.backends`.
A .tflite or .onnx model never imports TensorFlow.

Example:
    >>> load("runs/nothing-here")
    Traceback (most recent call last):
    imgclf.core.errors.UserError: Model not found: 'runs/nothing-here'. Pass a run folder (for example runs/leaves), a .keras, .tflite or .onnx file, or a SavedModel folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.run import Run
from imgclf.inference.backends import metadata, open_backend
from imgclf.inference.confidence.store import Confidence
from imgclf.inference.predictor import Predictor


def load(path: str | os.PathLike, tta: str = "auto", reject_rate: float | None = None,
         coverage: float | None = None) -> Predictor:
    """Load a Run bundle or an exported model (.keras, SavedModel folder, .tflite, .onnx) as a `Predictor`.

    Class names and preprocessing come from the run, from metadata inside the
    file (.tflite, .onnx), or from the sidecar JSON that `imgclf export` writes.
    A .tflite or .onnx model is run by LiteRT or ONNX Runtime without importing
    TensorFlow. `tta="flip"` averages each image with its mirror; "auto" (the
    default) does what training chose on validation (`imgclf.inference.tta.choose_tta`).
    Probabilities are calibrated (confidence.json); `reject_rate` (None: the run's, 0: off) sets the share of
    known images called 'unknown'; `coverage` (e.g. 0.9) adds conformal prediction sets.

    Example:
        >>> clf = imgclf.load("runs/leaves")
        >>> clf.classes, clf.format
        (['bird', 'cat', 'dog'], 'keras')
        >>> imgclf.load("runs/leaves/exports/model.tflite").format  # `imgclf export` wrote it
        'tflite'
    """
    p = Path(path)
    if not p.exists():
        raise UserError(
            f"Model not found: {str(path)!r}. Pass a run folder (for example runs/leaves), a .keras, "
            ".tflite or .onnx file, or a SavedModel folder."
        )
    if p.is_dir() and (p / "classes.json").exists() and not (p / "saved_model.pb").exists():
        run = Run(p)
        # lazy: imports keras (imgclf.models.saving)
        from imgclf.models.saving import as_float32, load_keras_model  # heavy: TensorFlow, which .tflite and .onnx never need

        # float32 as every export computes, also for a run trained in mixed precision: evaluate measures what ships
        clf = Predictor(as_float32(load_keras_model(run.model_path)), run.classes, run.preprocess, source=str(p), tta=tta,
                        confidence=Confidence.load(p), reject_rate=reject_rate, coverage=coverage)
        clf.info = _run_info(run)
        return clf
    if p.suffix == ".keras" and p.is_file():
        meta = metadata.require(metadata.read_sidecar(p), p)
        # lazy: imports keras (imgclf.models.saving)
        from imgclf.models.saving import as_float32, load_keras_model  # heavy: TensorFlow, which .tflite and .onnx never need

        clf = Predictor(as_float32(load_keras_model(p)), meta["classes"], meta["preprocess"], source=str(p), tta=tta,
                        confidence=Confidence.from_metadata(meta, p), reject_rate=reject_rate, coverage=coverage)
        clf.info = {k: meta[k] for k in ("model", "metrics") if k in meta}
        return clf
    if p.is_dir() and not (p / "saved_model.pb").exists():
        raise UserError(
            f"{str(path)!r} is neither an imgclf run (no classes.json) nor a SavedModel folder (no saved_model.pb)."
        )

    backend, meta = open_backend(p)
    meta = metadata.require(meta, p)
    clf = Predictor(backend, meta["classes"], meta["preprocess"], source=str(p), tta=tta,
                    confidence=Confidence.from_metadata(meta, p), reject_rate=reject_rate, coverage=coverage)
    clf.info = {k: meta[k] for k in ("model", "metrics") if k in meta}
    return clf


def _run_info(run) -> dict:
    info = {}
    try:
        info["model"] = run.config.get("model", "")
    except Exception:  # noqa: BLE001 - a hand-made run without config.yaml still predicts
        pass
    if run.file("metrics.json").exists():
        m = run.read_json("metrics.json")
        info["metrics"] = {k: m[k] for k in ("accuracy", "macro_f1", "num_samples") if k in m}
    return info
