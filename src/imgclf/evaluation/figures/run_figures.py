"""What an evaluation keeps for its pictures, and drawing every picture of a run from it.

`evaluate` saves ``predictions.npz`` in the run: labels, probabilities and
paths of every evaluated image, plus the small things the pictures need that
would otherwise cost the model again (the images of the top losses and of a
sample, Grad-CAM maps, 2-D projections of the embeddings). `plot_run` redraws
every figure from that file, metrics.json and history.csv alone: no
TensorFlow, no access to the original images.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_bytes
from imgclf.core.progress import log
from imgclf.core.run import Run
from imgclf.evaluation.explain import embeddings, gradcam, project
from imgclf.evaluation.figures.charts import (
    plot_confusion_clustered,
    plot_embedding,
    plot_per_class,
    plot_reliability,
    plot_roc_pr,
)
from imgclf.evaluation.figures.confidence import plot_confidence
from imgclf.evaluation.figures.curves import plot_confusion_matrix, plot_training_curves
from imgclf.evaluation.figures.grids import plot_gradcam, plot_sample_predictions, plot_top_losses
from imgclf.evaluation.results import Evaluation, same_evaluation

PREDICTIONS = "predictions.npz"
GRID = 12  # images per picture grid


def _top_loss_order(y_true, probs, n: int) -> np.ndarray:
    # The same order as Evaluation.top_losses: lowest probability of the true class first.
    p_true = probs[np.arange(len(y_true)), y_true]
    return np.argsort(p_true, kind="stable")[:n]


def collect_visuals(model, images: np.ndarray, y_true, probs, seed: int = 0, n: int = GRID, explain: bool = True) -> dict:
    """Arrays for the pictures: top-loss and sample images, Grad-CAM maps, embedding projections.

    `model` is the Keras model (None for runtimes without one, such as
    TFLite): the images are still kept, Grad-CAM and embeddings are skipped.

    Example:
        >>> images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3)).astype("uint8")  # a decoded split
        >>> probs = np.full((6, 3), 1 / 3)
        >>> sorted(collect_visuals(None, images, [0, 1, 2, 0, 1, 2], probs))  # doctest: +ELLIPSIS
        [...]
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    pred, conf = probs.argmax(axis=1), probs.max(axis=1)
    rng = np.random.default_rng(seed)
    total = len(y_true)
    top = _top_loss_order(y_true, probs, n)
    sample = np.sort(rng.choice(total, min(n, total), replace=False))
    out = {"top_loss_index": top, "top_loss_images": images[top], "sample_index": sample, "sample_images": images[sample]}
    if model is None or not explain:
        return out

    # Grad-CAM for half wrong (most confident mistakes first), the rest right (a random draw).
    wrong = np.flatnonzero(pred != y_true)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][: n // 2]
    right = np.flatnonzero(pred == y_true)
    right = np.sort(rng.choice(right, min(n - len(wrong), len(right)), replace=False)) if len(right) else right
    cam_index = np.concatenate([wrong, right]).astype(np.int64)
    try:
        out["gradcam_maps"] = gradcam(model, images[cam_index]).astype(np.float16)
        out["gradcam_index"], out["gradcam_images"] = cam_index, images[cam_index]
    except UserError as e:
        log(f"No Grad-CAM pictures: {e}")
    try:
        proj = project(embeddings(model, images), seed=seed)
        out["embedding_index"] = proj.pop("index")
        out.update({f"embedding_{k}": v.astype(np.float32) for k, v in proj.items()})
    except UserError as e:
        log(f"No embedding picture: {e}")
    return out


def save_predictions(run: Run, y_true, probs, paths: list[str], classes: list[str], visuals: dict | None = None) -> Path:
    """Write predictions.npz (atomically) into the run. Example: ``save_predictions(run, y, p, paths, classes)``."""
    arrays = {"y_true": np.asarray(y_true, dtype=np.int64), "probs": np.asarray(probs, dtype=np.float32),
              "paths": np.asarray(paths, dtype=str), "classes": np.asarray(classes, dtype=str)}
    arrays.update(visuals or {})
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(run.file(PREDICTIONS), buf.getvalue())


def load_predictions(run: Run) -> dict:
    """The arrays of the run's predictions.npz. Example: ``load_predictions(run)["probs"].shape``."""
    path = run.file(PREDICTIONS)
    if not path.exists():
        raise UserError(f"{str(run.path)!r} has no {PREDICTIONS}: run `imgclf evaluate {run.path}` first.")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def plot_run(run) -> list[Path]:
    """Draw every figure of an evaluated run into run/plots/ from its saved files; return their paths.

    Example:
        >>> [p.name for p in plot_run("runs/leaves")][:2]
        ['confusion_matrix.png', 'per_class.png']
    """

    run = run if isinstance(run, Run) else Run(run)
    if not run.file("metrics.json").exists():
        raise UserError(f"{str(run.path)!r} has no metrics.json: run `imgclf evaluate {run.path}` first.")
    metrics = json.loads(run.file("metrics.json").read_text())
    d = load_predictions(run)
    same_evaluation(metrics, d, run.path)
    classes = [str(c) for c in d["classes"]]
    ev = Evaluation(d["y_true"], d["probs"], classes, [str(p) for p in d["paths"]])
    plots = run.file("plots")
    done = []
    if len(classes) <= 50:
        done.append(plot_confusion_matrix(ev.confusion_matrix, classes, plots / "confusion_matrix.png"))
    else:
        done.append(plot_confusion_clustered(ev.confusion_matrix, classes, plots / "confusion_matrix.png"))
    done.append(plot_per_class(metrics, plots / "per_class.png"))
    done.append(plot_roc_pr(ev.y_true, ev.probs, classes, plots / "roc_pr.png"))
    done.append(plot_reliability(metrics["calibration"], plots / "reliability.png"))
    pred, conf = ev.y_pred, ev.probs.max(axis=1)
    if "top_loss_index" in d:
        items = ev.top_losses(len(d["top_loss_index"]))
        done.append(plot_top_losses(d["top_loss_images"], items, plots / "top_losses.png"))
        s = d["sample_index"]
        done.append(plot_sample_predictions(d["sample_images"], ev.y_true[s], pred[s], conf[s], classes, plots / "sample_predictions.png"))
    if "gradcam_maps" in d:
        g = d["gradcam_index"]
        done.append(plot_gradcam(d["gradcam_images"], d["gradcam_maps"], ev.y_true[g], pred[g], conf[g], classes, plots / "gradcam.png"))
    projections = {k[len("embedding_"):]: v for k, v in d.items() if k.startswith("embedding_")}
    if len(projections) > 1:
        done.append(plot_embedding(projections, ev.y_true, pred, classes, plots / "embedding.png"))
    if metrics.get("confidence"):
        done.append(plot_confidence(metrics["confidence"], plots / "confidence.png"))
    if run.file("history.csv").exists():
        summary = run.read_json("summary.json") if run.file("summary.json").exists() else {}
        done.append(plot_training_curves(run.file("history.csv"), plots / "training_curves.png",
                                         kept_epoch=(summary or {}).get("best_epoch")))
    # Pictures this evaluation could not draw (say Grad-CAM after --no-explain) must not
    # survive from an earlier evaluation into this report as if they belonged to it.
    for name in EVALUATION_PICTURES:
        stale = plots / name
        if stale.exists() and stale not in done:
            stale.unlink()
    return done


# Every picture `plot_run` may draw; training_curves.png, lr_find.png and previews belong to training.
EVALUATION_PICTURES = ("confusion_matrix.png", "per_class.png", "roc_pr.png", "reliability.png", "top_losses.png",
                       "sample_predictions.png", "gradcam.png", "embedding.png", "confidence.png")
