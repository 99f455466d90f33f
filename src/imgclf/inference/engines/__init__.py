"""Batch inference on a distributed engine: `imgclf predict MODEL INPUT --engine ray --output preds.parquet`.

imgclf runs on Ray Data (an optional extra: ``pip install 'imgclf[ray]'``):
each Ray actor loads the model once and predicts batches with the decoder and
model call of `imgclf predict` (see `worker.BatchPredictor`), so the answers
are the same; rows come back in input order and are written to one JSONL,
JSON, CSV or Parquet file. The engine runs on Ray's local runner without any
set-up, and unchanged on a Ray cluster (``RAY_ADDRESS``). Why Ray and not
Apache Beam: see docs/guide/scaling.md ("Batch inference on a cluster").
"""

from __future__ import annotations

import importlib.util
import json
import os

from imgclf.core.errors import UserError
from imgclf.core.progress import Progress
from imgclf.inference.engines.inputs import resolve_inputs
from imgclf.inference.files import validate_confidence_options, validate_options

ENGINES = ("local", "ray")
EXTRAS = {"ray": ("ray", "ray")}  # engine -> (module that must import, imgclf extra that installs it)


def parse_options(pairs: list[str] | None) -> dict:
    """``["actors=4", "num_gpus=0.5", "address=auto"]`` -> ``{"actors": 4, "num_gpus": 0.5, "address": "auto"}``.

    Values are read as JSON where they parse (numbers, true/false, objects), as text otherwise.

    Example:
        >>> parse_options(["actors=2", "runtime_env={\\"pip\\": [\\"imgclf[ray]\\"]}"])
        {'actors': 2, 'runtime_env': {'pip': ['imgclf[ray]']}}
    """
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--engine-option takes KEY=VALUE, received {pair!r}. Example: --engine-option actors=4")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


def require_engine(engine: str) -> None:
    """Raise a `UserError` saying how to install the engine when its package is missing.

    Example:
        >>> require_engine("local")
    """
    if engine not in ENGINES:
        raise UserError(f"Unknown engine {engine!r}. Expected one of {', '.join(ENGINES)}.")
    if engine in EXTRAS and importlib.util.find_spec(EXTRAS[engine][0]) is None:
        module, extra = EXTRAS[engine]
        raise UserError(f"--engine {engine} needs the {module!r} package, which is not installed. "
                        f"Install it with: pip install 'imgclf[{extra}]'")


def check_model_path(model: str) -> None:
    """Fail fast, before any worker starts, if MODEL is not something `imgclf.load` can open.

    Example:
        >>> check_model_path("gs://bucket/model.tflite")  # a URL: the workers open it
        >>> check_model_path("runs/nothing-here")
        Traceback (most recent call last):
        imgclf.core.errors.UserError: Model not found: 'runs/nothing-here'. Pass a run folder (for example runs/leaves), a .keras, .tflite or .onnx file, or a SavedModel folder; on a cluster, a path every node can read.
    """
    if "://" in model:
        return  # a URL is opened by the workers
    if not os.path.exists(model):
        raise UserError(f"Model not found: {model!r}. Pass a run folder (for example runs/leaves), a .keras, "
                        ".tflite or .onnx file, or a SavedModel folder; on a cluster, a path every node can read.")
    if os.path.isdir(model) and not any(os.path.exists(os.path.join(model, n)) for n in ("classes.json", "saved_model.pb")):
        raise UserError(f"{model!r} is neither an imgclf run (no classes.json) nor a SavedModel folder (no saved_model.pb).")


def predict_with_engine(model: str, inputs: list[str], output: str, engine: str = "ray", top_k: int = 1,
                        threshold: float = 0.0, batch_size: int = 64, tta: str | None = None, options: dict | None = None,
                        progress: bool | None = None, fmt: str | None = None, reject_rate: float | None = None,
                        coverage: float | None = None) -> dict:
    """Predict every image under `inputs` on `engine` and write `output`; returns ``{'images', 'errors'}``.

    The format comes from the extension of `output`; `fmt`, where given, must agree with it.
    `reject_rate` and `coverage` are `imgclf predict`'s (see `imgclf.inference.files.predict_files`).

    Example:
        >>> predict_with_engine("runs/leaves/exports/model.tflite", ["data/"], "preds.parquet", engine="ray",
        ...                     options={"actors": 1, "num_cpus": 1}, progress=False)  # Ray on this machine
        {'images': 36, 'errors': 0}
    """
    # lazy: output imports pyarrow, which only the ray extra installs (parse_options and ENGINES must not need it)
    from imgclf.inference.engines.output import output_format, write_output

    validate_options(top_k, threshold, batch_size)
    validate_confidence_options(reject_rate, coverage)
    if fmt and fmt != output_format(output):
        raise UserError(f"--format {fmt} disagrees with --output {output!r}: an engine job takes its format from the "
                        f"extension. Drop --format, or name the output something.{fmt}.")
    output_format(output)
    require_engine(engine)
    if engine == "local":
        raise UserError("The local engine is plain `imgclf predict` (leave out --engine).")
    check_model_path(model)
    found = resolve_inputs(inputs)
    progress = True if progress is None else progress
    # lazy: imports pyarrow (and, when it runs, ray), which only the ray extra installs
    from imgclf.inference.engines.ray_engine import run_ray

    counts = {"images": 0}
    with Progress(len(found.paths) or None, "Predicting", enabled=progress) as bar:
        def counted(rows):
            for row in rows:
                counts["images"] += 1
                bar.update(1)
                yield row

        rows = run_ray(model, found, options or {}, top_k=top_k, threshold=threshold, tta=tta, batch_size=batch_size,
                       reject_rate=reject_rate, coverage=coverage)
        counts["errors"] = write_output(counted(rows), output, top_k)
    return counts
