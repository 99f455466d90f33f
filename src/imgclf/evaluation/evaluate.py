"""`evaluate(run)`: predict held-out images with a run, measure, draw, report.

`evaluate(run)` predicts the run's held-out test split (or a folder given with
``data=``), computes the metrics, draws the plots, writes metrics.json and
report.html into the run, and returns an `Evaluation`.
"""

from __future__ import annotations

import os
import time
import uuid

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_json, clean_stale_temporaries
from imgclf.core.killpoint import kill_point
from imgclf.core.manifest import is_skipped
from imgclf.core.progress import Progress, log
from imgclf.core.run import Run
from imgclf.data.pipeline import decode_all
from imgclf.data.scan import scan_folder
from imgclf.data.shards.reader import decode_for_evaluation, shard_source
from imgclf.evaluation.confidence_metrics import confidence_metrics
from imgclf.evaluation.figures.run_figures import collect_visuals, plot_run, save_predictions
from imgclf.evaluation.report import write_report
from imgclf.evaluation.results import EVALUATION_ID, Evaluation, check_positive_class
from imgclf.inference.loader import load


def eval_rows(run: Run, data: str | None, split: str | None) -> tuple[list[dict], str]:
    """The manifest rows to evaluate (a `data` folder, or the run's `split`, test by default) and their description.

    Example:
        >>> rows, source = eval_rows(Run("runs/leaves"), None, None)
        >>> len(rows) > 0, source
        (True, 'test split of the run')
    """
    classes = run.classes
    if data:
        scan = scan_folder(data)
        rows = scan.rows
        if scan.layout == "splits":
            wanted = split or ("test" if any(r["split"] == "test" for r in rows) else "val")
            rows = [r for r in rows if r["split"] == wanted]
        unknown = sorted({r["label"] for r in rows} - set(classes))
        if unknown:
            raise UserError(
                f"{data!r} has classes the model was not trained on: {', '.join(unknown)}. "
                f"Expected folders named after the run's classes: {', '.join(classes)}."
            )
        if not rows:
            raise UserError(f"No images found in {data!r}: expected one subfolder per class with images inside.")
        return rows, str(data)
    manifest = run.manifest()
    wanted = split or ("test" if any(r["split"] == "test" for r in manifest) else "val")
    rows = [r for r in manifest if r["split"] == wanted and not is_skipped(r)]
    if not rows:
        raise UserError(f"The run has no {wanted} images to evaluate; pass --data DIR.")
    if wanted == "val" and not split:
        log("Note: this run has no test split, so these figures are on the validation images that chose "
            "the checkpoint and are optimistic. Pass --data DIR with held-out images for an honest figure.")
    return rows, f"{wanted} split of the run"


def evaluate(run, data: str | os.PathLike | None = None, split: str | None = None, batch_size: int = 128,
             plots: bool = True, verbose: bool = True, tta: str = "auto", explain: bool = True,
             positive_class: str | None = None) -> Evaluation:
    """Evaluate a run on its test split (or `data`), write metrics.json, predictions.npz, plots/ and report.html.

    `tta="flip"` averages each prediction with the mirrored image's (see
    `imgclf.inference.tta`); "auto" (the default) does what training chose on validation; `explain=False` skips Grad-CAM and the embedding projections.

    Example:
        >>> ev = imgclf.evaluate("runs/leaves", data="data/", verbose=False, plots=False)
        >>> ev.metrics["num_samples"]
        36
    """

    run = run if isinstance(run, Run) else Run(run)
    clean_stale_temporaries(run.path)
    shards = shard_source(run, data)  # packed TFRecords (`imgclf datasets pack`), given or trained on
    if not shards:
        rows, source = eval_rows(run, os.fspath(data) if data else None, split)
    if positive_class:  # a mistyped name fails before any image is decoded
        check_positive_class(positive_class, run.classes)
    predictor = load(run.path, tta=tta)
    if verbose and not predictor.confidence.calibrated:
        log(f"Note: the run is {predictor.confidence.describe()}.")
    if verbose and predictor.tta != "none":
        how = "chosen on validation when training" if tta in (None, "", "auto") else "asked for"
        log(f"Test-time augmentation: {predictor.tta} ({how}; --tta none turns it off)")
    classes = run.classes
    index = {c: i for i, c in enumerate(classes)}
    pre = predictor.preprocess
    if shards:
        decoded, source = decode_for_evaluation(shards, split, classes, pre, verbose=verbose)
    else:
        decoded = decode_all([r["path"] for r in rows], [index[r["label"]] for r in rows], pre["img_size"], pre["color_mode"],
                             resize=pre.get("resize", "squash"), label="Decoding eval", verbose=verbose)
    if len(decoded) == 0:
        raise UserError(f"None of the {len(decoded.skipped)} images in {source} could be decoded.")
    # One untimed call first: images/s should measure the model, not TensorFlow's one-off graph tracing.
    predictor.predict_arrays(decoded.images[:batch_size])
    start = time.perf_counter()
    probs, extras = [], []
    with Progress(len(decoded), "Predicting", enabled=verbose) as bar:  # TTA makes this the long part (issue 20)
        for i in range(0, len(decoded), batch_size):  # calibrated, with the unknown score where rejection is on
            p, e = predictor.predict_outputs(decoded.images[i:i + batch_size])
            probs.append(p)
            extras += e
            bar.update(len(p))
    probs = np.concatenate(probs)
    elapsed = time.perf_counter() - start
    ev = Evaluation(decoded.labels, probs, classes, decoded.paths, source=source)
    if positive_class:  # two classes: whose probability the best-F1 threshold is on (default: the second)
        ev.set_positive_class(positive_class)
    ev.metrics["images_per_s"] = round(len(decoded) / max(elapsed, 1e-9), 1)
    ev.metrics["tta"] = predictor.tta
    ev.metrics["skipped"] = [{"path": p, "reason": r} for p, r in decoded.skipped]
    ev.metrics["top_losses"] = ev.top_losses(16)
    ev.metrics["confidence"] = confidence_metrics(ev.probs, ev.y_true, predictor.confidence, extras)
    # metrics.json and predictions.npz share an id (`same_evaluation`): predictions first, metrics last, so a
    # kill between them leaves a pair that the figures refuse instead of mixing two evaluations.
    ev.metrics["evaluation_id"] = uuid.uuid4().hex
    visuals = {}
    if plots:
        if verbose:
            log("Explaining and drawing: Grad-CAM, embeddings, figures, report.html" if explain else "Drawing figures and report.html")
        visuals = collect_visuals(getattr(predictor, "model", None), decoded.images, ev.y_true, ev.probs, explain=explain)
    save_predictions(run, ev.y_true, ev.probs, ev.paths, classes, {**visuals, EVALUATION_ID: np.asarray(ev.metrics["evaluation_id"])})
    kill_point("evaluate.predictions")
    atomic_write_json(run.file("metrics.json"), ev.metrics)
    if plots:
        plot_run(run)
        write_report(run, ev)
    return ev
