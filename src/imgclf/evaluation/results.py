"""`Evaluation`: predictions on labelled images, with their metrics and ways to look at the mistakes.

An object you can ask questions of (after fastai's ClassificationInterpretation);
`imgclf.evaluation.evaluate.evaluate` makes one, and the figures read one back
from a run's predictions.npz.
"""

from __future__ import annotations

import numpy as np

from imgclf.core.errors import UserError, did_you_mean
from imgclf.evaluation.baseline import majority_baseline
from imgclf.evaluation.metrics import best_f1_threshold, classification_metrics, most_confused

EVALUATION_ID = "evaluation_id"  # in metrics.json and predictions.npz: the evaluation that wrote them


def check_positive_class(name: str, classes: list[str]) -> None:
    """Raise `UserError` unless `name` can be the positive class (two classes, one of them).

    Example:
        >>> check_positive_class("bad", ["bad", "ok"])
        >>> check_positive_class("bda", ["bad", "ok"])
        Traceback (most recent call last):
        imgclf.core.errors.UserError: --positive-class 'bda' is not a class of this run (bad, ok). Did you mean 'bad'?
    """
    if len(classes) != 2:
        raise UserError(f"--positive-class applies to two classes; this run has {len(classes)}.")
    if name not in classes:
        raise UserError(f"--positive-class {name!r} is not a class of this run ({', '.join(classes)})."
                        + did_you_mean(name, classes))


def same_evaluation(metrics: dict, predictions: dict, run_path="the run") -> None:
    """Raise `UserError` unless metrics.json and predictions.npz come from the same `evaluate` call.

    Runs evaluated before the id existed have it in neither file and pass.

    Example:
        >>> same_evaluation({"evaluation_id": "a1"}, {"evaluation_id": np.asarray("a1")})
    """
    m, p = metrics.get(EVALUATION_ID), predictions.get(EVALUATION_ID)
    p = None if p is None else str(p)
    if m != p:
        raise UserError(
            f"metrics.json and predictions.npz in {str(run_path)!r} come from different evaluations (one was "
            f"interrupted between writing them): metrics id {m!r}, predictions id {p!r}. "
            f"Run `imgclf evaluate {run_path}` again to write both."
        )


class Evaluation:
    """Predictions on labelled images, with metrics and ways to look at the mistakes.

    Example:
        >>> ev = imgclf.evaluate("runs/leaves", verbose=False, plots=False)
        >>> sorted(ev.metrics)[:3], sorted(ev.most_confused(3)[0])
        (['absent_classes', 'accuracy', 'balanced_accuracy'], ['count', 'predicted', 'true'])
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
        if len(self.classes) == 2:
            self.set_positive_class(self.classes[1])

    def set_positive_class(self, name: str) -> None:
        """Two classes: the best-F1 threshold on P(`name`), which becomes the positive class (default: the second).

        Example:
            >>> ev = Evaluation([0, 1, 1], [[0.8, 0.2], [0.6, 0.4], [0.1, 0.9]], ["bad", "ok"], ["a", "b", "c"])
            >>> ev.set_positive_class("bad"); ev.metrics["binary"]["positive_class"], ev.metrics["binary"]["threshold"]
            ('bad', 0.8)
        """
        check_positive_class(name, self.classes)
        i = self.classes.index(name)
        self.metrics["binary"] = {**best_f1_threshold((self.y_true == i).astype(np.int64), self.probs[:, i]),
                                  "positive_class": name}

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
            >>> ev = Evaluation([0, 1], [[0.9, 0.1], [0.8, 0.2]], ["cat", "dog"], ["a.png", "b.png"])
            >>> ev.top_losses(1)[0]["path"]
            'b.png'
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
        base = majority_baseline(m)
        if base["accuracy"] is not None:
            lines.append(f"majority-class baseline {base['accuracy']:.4f} (always {base['class']!r})"
                         + (f"   warning: {base['warning']}" if base["warning"] else ""))
        extra = [(name, m.get(key)) for name, key in (("kappa", "cohen_kappa"), ("ROC-AUC", "roc_auc_macro"),
                                                      ("PR-AUC", "pr_auc_macro"), ("ECE", "expected_calibration_error"))]
        lines.append("   ".join(f"{name} {v:.4f}" for name, v in extra if v is not None))
        if m.get("binary", {}).get("threshold") is not None:
            b = m["binary"]
            lines.append(f"best-F1 threshold on P({b.get('positive_class', self.classes[1])}): {b['threshold']:.4f} -> "
                         f"F1 {b['f1']:.4f}, precision {b['precision']:.4f}, recall {b['recall']:.4f} "
                         "(--positive-class sets the class)")
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
