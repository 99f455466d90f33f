"""Evaluation: an object you can ask questions of (after fastai's ClassificationInterpretation).

`evaluate(run)` predicts the run's held-out test split (or a folder given with
``data=``), computes the metrics, draws the plots, writes metrics.json and
report.html into the run, and returns an `Evaluation`.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .errors import UserError
from .metrics import classification_metrics, most_confused
from .progress import log
from .run import Run, atomic_write_json


class Evaluation:
    """Predictions on labelled images, with metrics and ways to look at the mistakes.

    Example:
        >>> ev = imgclf.evaluate("runs/leaves")  # doctest: +SKIP
        >>> ev.accuracy, ev.most_confused(3)  # doctest: +SKIP
    """

    def __init__(self, y_true, probs, classes: list[str], paths: list[str], source: str = ""):
        self.y_true = np.asarray(y_true, dtype=np.int64)
        self.probs = np.asarray(probs, dtype=np.float64)
        self.classes = list(classes)
        self.paths = list(paths)
        self.source = source
        self.metrics = classification_metrics(self.y_true, self.probs, self.classes)
        self.metrics["most_confused"] = most_confused(self.metrics["confusion_matrix"], self.classes)
        self.metrics["evaluated_on"] = source

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]

    @property
    def y_pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def confusion_matrix(self) -> np.ndarray:
        return np.asarray(self.metrics["confusion_matrix"])

    def most_confused(self, n: int = 10) -> list[dict]:
        """(true, predicted, count) pairs the model mixes up most. Example: ``ev.most_confused(5)``."""
        return self.metrics["most_confused"][:n]

    def top_losses(self, n: int = 16) -> list[dict]:
        """The n images with the highest loss: confidently wrong ones first.

        Example:
            >>> ev.top_losses(3)[0]["path"]  # doctest: +SKIP
        """
        p_true = self.probs[np.arange(len(self.y_true)), self.y_true]
        order = np.argsort(p_true, kind="stable")[:n]
        return [{
            "path": self.paths[i],
            "true": self.classes[self.y_true[i]],
            "predicted": self.classes[self.y_pred[i]],
            "probability": float(self.probs[i, self.y_pred[i]]),
            "loss": float(-np.log(max(p_true[i], 1e-15))),
        } for i in order]

    def summary(self) -> str:
        """A readable table of the main metrics. Example: ``print(ev.summary())``."""
        m = self.metrics
        width = max(12, *(len(c) for c in self.classes))
        lines = [f"Evaluated {m['num_samples']} images ({self.source})",
                 f"accuracy {m['accuracy']:.4f}   balanced accuracy {m['balanced_accuracy']:.4f}   log loss {m['log_loss']:.4f}"]
        for k in (3, 5):
            if f"top{k}_accuracy" in m:
                lines[-1] += f"   top-{k} {m[f'top{k}_accuracy']:.4f}"
        extra = [(name, m.get(key)) for name, key in (("kappa", "cohen_kappa"), ("ROC-AUC", "roc_auc_macro"),
                                                      ("PR-AUC", "pr_auc_macro"), ("ECE", "expected_calibration_error"))]
        lines.append("   ".join(f"{name} {v:.4f}" for name, v in extra if v is not None))
        if m.get("binary", {}).get("threshold") is not None:
            b = m["binary"]
            lines.append(f"best-F1 threshold on P({self.classes[1]}): {b['threshold']:.4f} -> F1 {b['f1']:.4f}, "
                         f"precision {b['precision']:.4f}, recall {b['recall']:.4f}")
        lines.append(f"{'class':<{width}}  precision  recall     f1  support")
        for c, v in m["per_class"].items():
            lines.append(f"{c:<{width}}  {v['precision']:9.4f}  {v['recall']:6.4f}  {v['f1']:.4f}  {v['support']:7d}")
        for name in ("macro_avg", "weighted_avg"):
            v = m[name]
            lines.append(f"{name.replace('_', ' '):<{width}}  {v['precision']:9.4f}  {v['recall']:6.4f}  {v['f1']:.4f}")
        if m.get("absent_classes"):
            lines.append(f"no images of {', '.join(m['absent_classes'])}: left out of the macro average "
                         "(images predicted as them still count as errors)")
        if m["most_confused"]:
            pairs = ", ".join(f"{p['true']}->{p['predicted']} ({p['count']})" for p in m["most_confused"][:5])
            lines.append(f"most confused: {pairs}")
        return "\n".join(lines)


def _eval_rows(run: Run, data: str | None, split: str | None) -> tuple[list[dict], str]:
    classes = run.classes
    if data:
        from .data.scan import scan_folder

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
    rows = [r for r in manifest if r["split"] == wanted and not r.get("status", "").startswith("skipped")]
    if not rows:
        raise UserError(f"The run has no {wanted} images to evaluate; pass --data DIR.")
    if wanted == "val" and not split:
        log("Note: this run has no test split, so these figures are on the validation images that chose "
            "the checkpoint and are optimistic. Pass --data DIR with held-out images for an honest figure.")
    return rows, f"{wanted} split of the run"


def evaluate(run, data: str | os.PathLike | None = None, split: str | None = None, batch_size: int = 128,
             plots: bool = True, verbose: bool = True, tta: str = "auto", explain: bool = True) -> Evaluation:
    """Evaluate a run on its test split (or `data`), write metrics.json, predictions.npz, plots/ and report.html.

    `tta="flip"` averages each prediction with the mirrored image's (see
    `imgclf.tta`); "auto" (the default) does what training chose on validation; `explain=False` skips Grad-CAM and the embedding projections.

    Example:
        >>> ev = imgclf.evaluate("runs/leaves", data="test/")  # doctest: +SKIP
        >>> round(ev.accuracy, 3)  # doctest: +SKIP
        0.962
    """
    from .data.pipeline import decode_all
    from .predict import load

    run = run if isinstance(run, Run) else Run(run)
    from .data.shard_reader import decode_for_evaluation, shard_source

    shards = shard_source(run, data)  # packed TFRecords (`imgclf datasets pack`), given or trained on
    if not shards:
        rows, source = _eval_rows(run, os.fspath(data) if data else None, split)
    predictor = load(run.path, tta=tta)
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
    probs = np.concatenate([predictor.predict_arrays(decoded.images[i:i + batch_size])
                            for i in range(0, len(decoded), batch_size)])
    elapsed = time.perf_counter() - start
    ev = Evaluation(decoded.labels, probs, classes, decoded.paths, source=source)
    ev.metrics["images_per_s"] = round(len(decoded) / max(elapsed, 1e-9), 1)
    ev.metrics["tta"] = predictor.tta
    ev.metrics["skipped"] = [{"path": p, "reason": r} for p, r in decoded.skipped]
    ev.metrics["top_losses"] = ev.top_losses(16)
    atomic_write_json(run.file("metrics.json"), ev.metrics)
    from .visuals import collect_visuals, plot_run, save_predictions

    visuals = None
    if plots:
        visuals = collect_visuals(getattr(predictor, "model", None), decoded.images, ev.y_true, ev.probs, explain=explain)
    save_predictions(run, ev.y_true, ev.probs, ev.paths, classes, visuals)
    if plots:
        from .report import write_report

        plot_run(run)
        write_report(run, ev)
    return ev
