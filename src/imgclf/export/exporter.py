"""Export a run's model for production, and prove the export gives the same answers.

Formats: ``keras`` (a float32 .keras with a sidecar JSON), ``savedmodel``
(TensorFlow Serving), ``tflite`` / ``tflite-fp16`` / ``tflite-int8`` (LiteRT,
through TensorFlow's converter, builtin ops only so the small runtime can run
them) and ``onnx`` (Keras' own ONNX export, which uses tf2onnx). Every export
has two outputs, ``probabilities`` and ``embedding`` (the classifier's
input), and carries the class names and preprocessing: inside the file for
.tflite (a metadata buffer) and .onnx (metadata_props), in a sidecar JSON
otherwise. int8 calibrates on a sample of the run's training images.
The run's confidence (temperature, unknown threshold, conformal quantiles:
confidence.json) travels in the same metadata, and the feature statistics
of the unknown score in ``<name>.confidence.npz`` beside the file (inside a
SavedModel folder); every runtime applies them as the run does, and the
parity check compares calibrated probabilities.

After writing, a parity check runs the export and the run's Keras model (in
float32, as the export computes) on validation images: float formats must agree on top-1 for at least 99.5% of
them; int8 reports its accuracy drop and fails past `max_int8_drop`. A failed
check removes the export and raises `ExportCheckError`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgclf.core.config import check_preprocess
from imgclf.core.errors import UserError, did_you_mean
from imgclf.core.fs import atomic_write_json, clean_stale_temporaries, free_name
from imgclf.core.killpoint import kill_point
from imgclf.core.run import Run
from imgclf.core.version import __version__
from imgclf.data.decode import DecodeError, decode_image
from imgclf.inference.backends import open_backend
from imgclf.inference.backends.keras_model import feature_model
from imgclf.inference.backends.metadata import add_tflite_metadata
from imgclf.inference.confidence.store import Confidence, stats_path, write_stats
from imgclf.inference.loader import load
from imgclf.inference.predictor import Predictor

FORMATS = {  # format -> default file name under RUN/exports/
    "keras": "model.keras",
    "savedmodel": "savedmodel",
    "tflite": "model.tflite",
    "tflite-fp16": "model_fp16.tflite",
    "tflite-int8": "model_int8.tflite",
    "onnx": "model.onnx",
}
FLOAT_MIN_AGREEMENT = 0.995


class ExportCheckError(UserError):
    """The exported model does not give the trained model's answers (the export was removed)."""


@dataclass
class ExportResult:
    """What `export` wrote and what its parity check measured."""

    path: Path
    format: str
    parity: dict = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        """Lines for the terminal. Example: ``print(export("runs/x", "onnx").summary())``."""
        p = self.parity
        size = _size(self.path)
        lines = [f"Exported {self.format} to {self.path} ({size / 1e6:.2f} MB) in {self.seconds:.1f}s",
                 f"Parity with the Keras model (float32) on {p['images']} {p['split']} images: top-1 agreement "
                 f"{p['agreement']:.2%}, largest probability difference {p['max_prob_diff']:.2e}"]
        if p.get("run_precision", "float32") != "float32":
            lines.append(f"(the run itself computes in {p['run_precision']}; exports compute in float32)")
        if p.get("keras_accuracy") is not None:
            lines.append(f"Accuracy: Keras {p['keras_accuracy']:.2%}, export {p['export_accuracy']:.2%} "
                         f"(drop {p['accuracy_drop']:+.2%})")
        return "\n".join(lines)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def float32_copy(model):
    """The same model with every layer computing in float32 (runs trained in mixed precision included).

    Converters and runtimes handle float32 everywhere; bfloat16 layers would
    not convert, or would run slowly on CPUs without bf16 support.

    Example:
        >>> from imgclf.models.saving import load_keras_model
        >>> float32_copy(load_keras_model("runs/leaves/model.keras")).dtype_policy.name
        'float32'
    """

    # lazy: imports keras (imgclf.models.saving)
    from imgclf.models.saving import as_float32

    return as_float32(model)


def serving_model(model):
    """A float32 Keras model with two named outputs: 'probabilities' and 'embedding'.

    Example:
        >>> from imgclf.models.saving import load_keras_model
        >>> model = serving_model(load_keras_model("runs/leaves/model.keras"))
        >>> len(model.outputs), model.output_shape[0]  # doctest: +ELLIPSIS
        (2, (None, ...))
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras


    model = float32_copy(model)
    return keras.Model(model.inputs, {"probabilities": model.output, "embedding": feature_model(model).output},
                       name=model.name)


def _sample_rows(run: Run, splits: tuple, limit: int, seed: int = 0) -> tuple[list[dict], str]:
    rows = run.manifest() if run.file("manifest.csv").exists() else []
    for split in splits:
        chosen = [r for r in rows if r["split"] == split]
        if chosen:
            random.Random(seed).shuffle(chosen)
            return chosen[:limit], split
    return [], ""


def _decode_rows(rows: list[dict], preprocess: dict) -> tuple[np.ndarray, list[str]]:
    images, labels = [], []
    for r in rows:
        try:
            images.append(decode_image(r["path"], size=preprocess["img_size"], color_mode=preprocess["color_mode"],
                                       resize=preprocess.get("resize", "squash")))
            labels.append(r["label"])
        except DecodeError:
            continue  # moved or broken since training: the check uses the rest
    return (np.stack(images) if images else np.zeros((0,), np.uint8)), labels


def _metadata(run: Run, fmt: str) -> dict:
    meta = {"classes": run.classes, "preprocess": run.preprocess, "format": fmt,
            "outputs": {"probabilities": "softmax over classes", "embedding": "input of the classifier layer"},
            "source_run": str(run.path), "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        meta["model"] = run.config.get("model", "")
    except Exception:  # noqa: BLE001 - an old or hand-made run without config.yaml still exports
        meta["model"] = ""
    if run.file("metrics.json").exists():
        m = run.read_json("metrics.json")
        meta["metrics"] = {k: m[k] for k in ("accuracy", "macro_f1", "num_samples") if k in m}

    conf = Confidence.load(run.path)
    if conf.calibrated:
        meta["confidence"] = conf.info
    meta["imgclf_version"] = __version__
    return meta


def _write(model, fmt: str, path: Path, meta: dict, calibration: np.ndarray) -> None:
    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    import tensorflow as tf

    if fmt == "keras":
        model.save(path)
        atomic_write_json(path.with_suffix(".json"), meta)
    elif fmt == "savedmodel":
        model.export(str(path), format="tf_saved_model", verbose=False)
        atomic_write_json(path / "imgclf.json", meta)
    elif fmt.startswith("tflite"):
        # Builtin ops only: a model needing TensorFlow ops would not run in LiteRT's small runtime.
        options = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
        if fmt == "tflite-fp16":
            options["optimizations"] = [tf.lite.Optimize.DEFAULT]
            options["target_spec"]["supported_types"] = [tf.float16]
        elif fmt == "tflite-int8":
            if not len(calibration):
                raise UserError("int8 export needs training images to calibrate on, and none of the run's could be read.")
            samples = calibration.astype(np.float32)
            options["optimizations"] = [tf.lite.Optimize.DEFAULT]
            options["representative_dataset"] = lambda: ([samples[i:i + 1]] for i in range(len(samples)))
        model.export(str(path), format="litert", verbose=False, **options)
        path.write_bytes(add_tflite_metadata(path.read_bytes(), meta))
    elif fmt == "onnx":
        try:
            # lazy: optional extra: imgclf[onnx]
            import onnx
        except ImportError:
            raise UserError("ONNX export needs the onnx and tf2onnx packages: pip install 'imgclf[onnx]'") from None
        model([np.zeros((1,) + tuple(model.input_shape[1:]), np.float32)])  # the ONNX exporter wants a built, called model
        model.export(str(path), format="onnx", verbose=False)
        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "imgclf", json.dumps(meta)
        onnx.save(proto, str(path))


def parity_check(reference, exported, images: np.ndarray, labels: list[str], batch_size: int = 64) -> dict:
    """Compare two Predictors on decoded images: top-1 agreement, largest probability gap, accuracies.

    Example:
        >>> images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype("float32")
        >>> check = parity_check(imgclf.load("runs/leaves"), imgclf.load("runs/leaves/exports/model.onnx"), images,
        ...                      ["cat", "dog", "bird", "cat"])
        >>> check["images"], check["agreement"], check["max_prob_diff"] < 1e-3
        (4, 1.0, True)
    """
    def probs(clf):
        return np.concatenate([clf.predict_arrays(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])

    ref, out = probs(reference), probs(exported)
    index = {c: i for i, c in enumerate(reference.classes)}
    y = np.array([index.get(label, -1) for label in labels])
    result = {"images": int(len(images)), "agreement": float(np.mean(ref.argmax(1) == out.argmax(1))),
              "max_prob_diff": float(np.abs(ref - out).max()), "keras_accuracy": None, "export_accuracy": None,
              "temperature": [reference.confidence.temperature, exported.confidence.temperature],
              "scaling": [reference.confidence.scaling, exported.confidence.scaling]}
    if len(y) and (y >= 0).all():
        result["keras_accuracy"] = float(np.mean(ref.argmax(1) == y))
        result["export_accuracy"] = float(np.mean(out.argmax(1) == y))
        result["accuracy_drop"] = result["keras_accuracy"] - result["export_accuracy"]
    return result


def _target(run: Run, fmt: str, out, overwrite: bool) -> Path:
    if out:
        path = Path(out)
        if path.exists() and not overwrite:
            raise UserError(f"{str(path)!r} already exists. Choose another --out, or pass --overwrite to replace it.")
    else:
        path = run.file("exports") / FORMATS[fmt]
        if not overwrite:  # never replace an earlier export silently
            path = free_name(path)
    if fmt.startswith("tflite") and path.suffix != ".tflite" or fmt in ("onnx", "keras") and path.suffix != f".{fmt}":
        want = ".tflite" if fmt.startswith("tflite") else f".{fmt}"
        raise UserError(f"--out for --format {fmt} must end in {want}, received {str(path)!r}.")
    return path


def export(run, format: str = "tflite", out: str | os.PathLike | None = None, overwrite: bool = False,
           parity_images: int = 500, calibration_images: int = 200, max_int8_drop: float = 0.05) -> ExportResult:
    """Export a run's model to `format` and check that it answers like the trained model.

    Example:
        >>> result = export("runs/leaves", format="keras", out="model.keras")  # or "tflite-int8", "onnx", ...
        >>> result.path.name, result.parity["agreement"]
        ('model.keras', 1.0)
    """

    if format not in FORMATS:
        raise UserError(f"Unknown export format {format!r}: expected one of {', '.join(FORMATS)}." + did_you_mean(format, FORMATS))
    run = run if isinstance(run, Run) else Run(run)
    path = _target(run, format, out, overwrite)
    start = time.perf_counter()
    # lazy: imports keras (imgclf.models.saving)
    from imgclf.models.saving import load_keras_model

    keras_model = load_keras_model(run.model_path)
    pre = check_preprocess(run.preprocess, run.file("preprocess.json"))
    calibration = np.zeros((0,))
    if format == "tflite-int8":
        calibration, _ = _decode_rows(_sample_rows(run, ("train",), calibration_images)[0], pre)
    check_rows, split = _sample_rows(run, ("val", "test", "train"), parity_images)
    images, labels = _decode_rows(check_rows, pre)
    if not len(images):
        raise UserError(f"The run {str(run.path)!r} lists no readable images in manifest.csv to check the export against.")

    path.parent.mkdir(parents=True, exist_ok=True)
    # what killed exports left (their PID is gone): all of them in the run's exports/, this name's elsewhere
    clean_stale_temporaries(path.parent, prefix="" if path.parent == run.file("exports") else f".{path.stem}.tmp")
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        meta = _metadata(run, format)
        _write(serving_model(keras_model), format, tmp, meta, calibration)
        run_conf = Confidence.load(run.path)
        if run_conf.stats:
            write_stats(stats_path(tmp), run_conf.stats)
        kill_point("export.written")
        if format == "keras":
            exported = load(tmp)
        else:
            backend, written = open_backend(tmp)
            exported = Predictor(backend, run.classes, pre, source=str(path),
                                 confidence=Confidence.from_metadata(written or meta, tmp))
        # The reference is the run's model computing in float32, like every export: the check then measures
        # the conversion alone, not the rounding of a run trained in mixed precision (reported beside it).
        # Both apply the run's calibration, the export from what it carries: the check covers it.
        reference = Predictor(float32_copy(keras_model), run.classes, pre, source=str(run.path), confidence=run_conf)
        parity = {**parity_check(reference, exported, images, labels), "split": split,
                  "run_precision": _precision(keras_model)}
        _judge(format, parity, max_int8_drop)
        _replace(tmp, path)
        if run_conf.stats and not path.is_dir():
            os.replace(stats_path(tmp), stats_path(path))
    finally:
        _remove(tmp)
        _remove(stats_path(tmp))
        if format == "keras":
            _remove(tmp.with_suffix(".json"))
    return ExportResult(path=path, format=format, parity=parity, seconds=time.perf_counter() - start)


def _precision(model) -> str:
    names = {getattr(layer, "dtype_policy", None) and layer.dtype_policy.name for layer in model.layers}
    names.discard(None)
    return "float32" if names <= {"float32"} else ", ".join(sorted(n for n in names if n != "float32"))


def _judge(fmt: str, parity: dict, max_int8_drop: float) -> None:
    if fmt == "tflite-int8":
        drop = parity.get("accuracy_drop")
        if drop is not None and drop > max_int8_drop:
            raise ExportCheckError(
                f"The int8 export loses {drop:.1%} accuracy on {parity['images']} {parity['split']} images "
                f"(more than the allowed {max_int8_drop:.1%}); the export was removed. Use --format tflite-fp16 "
                "or tflite, or calibrate on more training images."
            )
    elif len(set(parity.get("temperature", ()))) > 1 or (parity.get("scaling") and parity["scaling"][0] != parity["scaling"][1]):
        run_has, export_has = parity.get("scaling") or parity["temperature"]
        raise ExportCheckError(f"The {fmt} export carries the calibration {export_has} where the run has "
                               f"{run_has}; the export was removed. Please report this as a bug.")
    elif parity["agreement"] < FLOAT_MIN_AGREEMENT:
        raise ExportCheckError(
            f"The {fmt} export agrees with the Keras model on top-1 for only {parity['agreement']:.2%} of "
            f"{parity['images']} {parity['split']} images (at least {FLOAT_MIN_AGREEMENT:.1%} expected; largest "
            f"probability difference {parity['max_prob_diff']:.4f}); the export was removed. Please report this as a bug."
        )


def _replace(tmp: Path, path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    os.replace(tmp, path)
    if tmp.suffix == ".keras":
        os.replace(tmp.with_suffix(".json"), path.with_suffix(".json"))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
