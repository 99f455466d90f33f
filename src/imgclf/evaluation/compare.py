"""`compare_runs(a, b)`: both runs' answers on the same images, the paired statistics, compare.html.

The images: ``data`` if given, else the images the runs were evaluated on
(their predictions.npz), else run A's test split. A run's saved predictions
are reused when they cover exactly those images (for the same classes);
otherwise the run predicts them now, with its own preprocessing and the
test-time augmentation it chose. Nothing in either run folder is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_json, new_run_dir
from imgclf.core.progress import log
from imgclf.core.run import Run
from imgclf.data.pipeline import decode_all
from imgclf.evaluation.compare_report import write_compare_report
from imgclf.evaluation.compare_stats import bootstrap_differences, mcnemar_exact, per_class_deltas, verdict
from imgclf.evaluation.evaluate import eval_rows
from imgclf.evaluation.figures.run_figures import PREDICTIONS
from imgclf.evaluation.results import same_evaluation
from imgclf.inference.loader import load


@dataclass
class Answers:
    """One run's answers on the compared images: labels, probabilities, paths, and where they came from."""

    y_true: np.ndarray
    probs: np.ndarray
    paths: list[str]
    source: str


def saved_answers(run: Run) -> Answers | None:
    """The answers in a run's predictions.npz (None if it has none, or if metrics.json is from another evaluation).

    Example:
        >>> saved_answers(Run("runs/leaves")).probs.shape[1]
        3
    """
    if not run.file(PREDICTIONS).exists() or not run.file("metrics.json").exists():
        return None
    with np.load(run.file(PREDICTIONS), allow_pickle=False) as npz:
        saved = {k: npz[k] for k in ("y_true", "probs", "paths", "evaluation_id") if k in npz}
    try:
        same_evaluation(run.read_json("metrics.json"), saved, run.path)
    except UserError:
        return None
    where = run.read_json("metrics.json").get("evaluated_on", "")
    return Answers(saved["y_true"].astype(np.int64), saved["probs"], [str(p) for p in saved["paths"]],
                   f"saved predictions ({where})")


def _key(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


def _reorder(answers: Answers, paths: list[str]) -> Answers | None:
    """`answers` in the order of `paths`, or None unless they cover exactly those images."""
    where = {_key(p): i for i, p in enumerate(answers.paths)}
    if len(where) != len(paths) or any(_key(p) not in where for p in paths):
        return None
    order = np.array([where[_key(p)] for p in paths], dtype=np.int64)
    return Answers(answers.y_true[order], answers.probs[order], list(paths), answers.source)


def predict_rows(run: Run, rows: list[dict], batch_size: int = 128, verbose: bool = True) -> Answers:
    """Predict the images of manifest `rows` with `run` (its preprocessing and TTA), writing nothing.

    Example:
        >>> rows, _ = eval_rows(Run("runs/leaves"), "data/", None)
        >>> predict_rows(Run("runs/leaves"), rows, verbose=False).probs.shape
        (36, 3)
    """
    predictor = load(run.path)
    pre = predictor.preprocess
    index = {c: i for i, c in enumerate(run.classes)}
    decoded = decode_all([r["path"] for r in rows], [index[r["label"]] for r in rows], pre["img_size"], pre["color_mode"],
                         resize=pre.get("resize", "squash"), label=f"Decoding for {run.path.name}", verbose=verbose)
    if decoded.skipped:
        raise UserError(f"{len(decoded.skipped)} of the images to compare cannot be decoded (first: "
                        f"{decoded.skipped[0][0]}: {decoded.skipped[0][1]}). Remove them (`imgclf check --quarantine`) "
                        "so both runs answer on the same images.")
    probs = np.concatenate([predictor.predict_arrays(decoded.images[i:i + batch_size])
                            for i in range(0, len(decoded), batch_size)])
    return Answers(np.asarray(decoded.labels, dtype=np.int64), probs, list(decoded.paths), "predicted now")


def paired_answers(run_a: Run, run_b: Run, data: str | None = None, batch_size: int = 128,
                   verbose: bool = True) -> tuple[Answers, Answers]:
    """Both runs' answers on the same images, in the same order (see the module's docstring for which images).

    Example:
        >>> a, b = paired_answers(Run("runs/leaves"), Run("runs/leaves"))
        >>> a.paths == b.paths
        True
    """
    if run_a.classes != run_b.classes:
        raise UserError(f"The runs have different classes: {run_a.classes} and {run_b.classes}. Compare runs trained "
                        "on the same classes (in the same order).")
    saved = {"a": saved_answers(run_a), "b": saved_answers(run_b)}
    if data:
        rows, _ = eval_rows(run_a, os.fspath(data), None)
        paths = [r["path"] for r in rows]
    elif saved["a"] is not None or saved["b"] is not None:
        paths = (saved["a"] or saved["b"]).paths
        rows = None
    else:
        rows, _ = eval_rows(run_a, None, None)
        paths = [r["path"] for r in rows]
    for run in (run_a, run_b):
        check_unseen(run, paths)
    out = {}
    for tag, run in (("a", run_a), ("b", run_b)):
        reused = _reorder(saved[tag], paths) if saved[tag] is not None else None
        if reused is None:
            if rows is None:
                rows = _rows_of(run, paths, run_a.classes, saved["a"] or saved["b"])
            if verbose:
                log(f"Predicting {len(rows)} images with {run.path} (its saved predictions are on other images)")
            reused = predict_rows(run, rows, batch_size, verbose)
            reused = _reorder(reused, paths)
        out[tag] = reused
    if not np.array_equal(out["a"].y_true, out["b"].y_true):
        raise UserError("The two runs' saved predictions give different labels to the same images. Pass --data DIR "
                        "so both are judged on the same labelled folder.")
    return out["a"], out["b"]


def check_unseen(run: Run, paths: list[str]) -> None:
    """Raise `UserError` if `run` trained or chose its checkpoint on any of `paths` (its manifest's train/val rows).

    Example:
        >>> check_unseen(Run("runs/leaves"), ["elsewhere/new.png"])
    """
    if not run.file("manifest.csv").exists():
        return
    seen = {_key(r["path"]) for r in run.manifest() if r.get("split") in ("train", "val")}
    overlap = [p for p in paths if _key(p) in seen]
    if overlap:
        raise UserError(f"{run.path} trained (or chose its checkpoint) on {len(overlap)} of the {len(paths)} images to "
                        f"compare, for example {overlap[0]}: a comparison on them would flatter it. Pass --data DIR "
                        "with images neither run has seen (each run's test split is one when they share it).")


def _rows_of(run: Run, paths: list[str], classes: list[str], answers: Answers) -> list[dict]:
    """Manifest-like rows for `paths`, labelled as in the saved `answers` that named them."""
    labels = {_key(p): classes[int(y)] for p, y in zip(answers.paths, answers.y_true)}
    return [{"path": p, "label": labels[_key(p)]} for p in paths]


def compare_runs(run_a, run_b, data: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                 resamples: int = 2000, alpha: float = 0.05, batch_size: int = 128, verbose: bool = True) -> dict:
    """Compare two runs on the same images; write compare.json, disagreements.png and compare.html into `out`.

    Returns the result (also compare.json): the McNemar test, bootstrap
    intervals of B - A, per-class deltas, the verdict and the folder.

    Example:
        >>> r = compare_runs("runs/leaves", "runs/leaves", out="cmp", verbose=False)
        >>> r["mcnemar"]["p_value"], r["verdict"].startswith("No significant difference")
        (1.0, True)
    """
    run_a = run_a if isinstance(run_a, Run) else Run(run_a)
    run_b = run_b if isinstance(run_b, Run) else Run(run_b)
    a, b = paired_answers(run_a, run_b, os.fspath(data) if data else None, batch_size, verbose)
    classes = run_a.classes
    pred_a, pred_b = a.probs.argmax(axis=1), b.probs.argmax(axis=1)
    mcnemar = mcnemar_exact(pred_a == a.y_true, pred_b == a.y_true)
    boot = bootstrap_differences(a.y_true, pred_a, pred_b, len(classes), resamples=resamples)
    folder = new_run_dir(out or f"compare-{run_a.path.name}-vs-{run_b.path.name}")
    result = {
        "run_a": str(run_a.path), "run_b": str(run_b.path), "images": int(len(a.y_true)),
        "images_from": data and str(data) or "the runs' evaluated images",
        "answers": {"a": a.source, "b": b.source},
        "accuracy": {"a": float(np.mean(pred_a == a.y_true)), "b": float(np.mean(pred_b == a.y_true))},
        "mcnemar": mcnemar, "bootstrap": boot, "alpha": alpha,
        "per_class": per_class_deltas(a.y_true, pred_a, pred_b, classes),
        "verdict": verdict(mcnemar, boot, alpha), "folder": str(folder),
    }
    atomic_write_json(Path(folder) / "compare.json", result)
    write_compare_report(folder, result, a.paths, a.y_true, pred_a, pred_b, classes)
    return result
