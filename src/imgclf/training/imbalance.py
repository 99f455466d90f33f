"""The imbalance treatment chosen on validation, inside the head solve.

`--class-weight auto` on an imbalanced set used to weight the loss by
inverse class size always; on a real 14:1 inspection set that cost 15 points
of accuracy (issue 20). When the head is solved on cached features
(`training.head_solver`) each candidate costs one more solve of a few
seconds, so the candidates are compared instead of guessed: no weighting,
square-root weights and inverse-size weights (which is what balanced sampling
amounts to in a solve, where no images are drawn). The one with the best
monitored metric on the held-out images (validation, or out of fold) wins;
ties go to the milder treatment. Fine-tuning then uses the winner's weights.

Example:
    >>> from imgclf.training.head_solver import fit_softmax_regression
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], [60, 12]); x = rng.normal(y[:, None] * 2.0, 1.0, (72, 4))  # 5:1, features of two classes
    >>> def solve(weights):  # the head solve, with the class weights as sample weights
    ...     w = None if weights is None else np.array([weights[c] for c in y[::2]])
    ...     return fit_softmax_regression(x[::2], y[::2], x[1::2], y[1::2], 2, sample_weight=w)
    >>> fit = choose_weighting({"none": None, "balanced": {0: 0.6, 1: 3.0}}, solve, "val_loss", 2)
    >>> fit["weighting"]["chosen"], sorted(fit["weighting"]["candidates"])
    ('none', ['balanced', 'none'])
"""

from __future__ import annotations

import numpy as np

from imgclf.core.progress import log

# monitor -> (figure of `held_out_figures`, larger is better)
MONITORED = {"val_loss": ("loss", False), "val_accuracy": ("accuracy", True),
             "val_balanced_accuracy": ("balanced_accuracy", True), "val_macro_f1": ("macro_f1", True)}


def held_out_figures(labels, answers, n_classes: int, loss: float) -> dict:
    """Accuracy, balanced accuracy (mean recall over present classes), macro F1 and the given log loss.

    Example:
        >>> held_out_figures(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]), 2, 0.5)
        {'loss': 0.5, 'accuracy': 0.75, 'balanced_accuracy': 0.5, 'macro_f1': 0.4286}
    """
    labels, answers = np.asarray(labels), np.asarray(answers)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (labels, answers), 1)
    support, predicted, hits = cm.sum(1), cm.sum(0), np.diag(cm)
    present = support > 0
    recall = hits[present] / support[present]
    precision = np.divide(hits, predicted, out=np.zeros(n_classes), where=predicted > 0)[present]
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(recall)), where=precision + recall > 0)
    return {"loss": round(float(loss), 4), "accuracy": round(float(hits.sum() / max(len(labels), 1)), 4),
            "balanced_accuracy": round(float(recall.mean()), 4), "macro_f1": round(float(f1.mean()), 4)}


def pick(figures: dict, monitor: str) -> str:
    """The candidate with the best monitored figure; the first (mildest) of equals.

    Example:
        >>> pick({"none": {"accuracy": 0.9}, "sqrt": {"accuracy": 0.9}, "balanced": {"accuracy": 0.8}}, "val_accuracy")
        'none'
    """
    key, larger = MONITORED.get(monitor, MONITORED["val_loss"])
    best = None
    for name, fig in figures.items():
        if best is None or (fig[key] > figures[best][key] if larger else fig[key] < figures[best][key]):
            best = name
    return best


def choose_weighting(weightings: dict, fit_with, monitor: str, n_classes: int) -> dict:
    """Solve with each of `weightings` ({name: class weights or None}) through `fit_with`; return the best fit.

    The fit gets "weighting": {"chosen", "why", "monitor", "candidates":
    {name: held-out figures}}, and the choice is printed with accuracy and
    balanced accuracy of every candidate.

    Example:
        >>> def solve(weights):  # the solve of tests/test_imbalance.py; here a stand-in that needs weights to find class 1
        ...     answers = np.array([0, 0, 0 if weights is None else 1])
        ...     return {"held_out": (np.array([0, 0, 1]), answers), "held_out_loss": 0.3, "selected_by": "validation"}
        >>> choose_weighting({"none": None, "balanced": {0: 0.75, 1: 1.5}}, solve, "val_accuracy", 2)["weighting"]["chosen"]
        'balanced'
    """
    fits, figures = {}, {}
    for name, weights in weightings.items():
        fits[name] = fit_with(weights)
        labels, answers = fits[name]["held_out"]
        figures[name] = held_out_figures(labels, answers, n_classes, fits[name]["held_out_loss"])
    chosen = pick(figures, monitor)
    key = MONITORED.get(monitor, MONITORED["val_loss"])[0]
    by = fits[chosen]["selected_by"]
    where = "the validation images" if by == "validation" else f"the training images ({by})"
    why = (f"best {monitor} ({figures[chosen][key]:.4f}) on {where}" if len(fits) > 1
           else "the only candidate")
    fit = fits[chosen]
    fit["weighting"] = {"chosen": chosen, "why": why, "monitor": monitor, "candidates": figures}
    shown = "; ".join(f"{n} {f['accuracy']:.3f} / {f['balanced_accuracy']:.3f}" for n, f in figures.items())
    log(f"Imbalance treatment (--class-weight auto): {chosen}, {why}. Held-out accuracy / balanced accuracy: {shown}")
    return fit
