"""Is run B better than run A on the same images? Paired statistics, NumPy and SciPy only.

- `mcnemar_exact`: McNemar's exact test, a two-sided binomial test on the
  images exactly one of the two runs gets right (the others say nothing
  about which is better).
- `bootstrap_differences`: percentile intervals of B - A in accuracy and
  macro F1, resampling the images (the same resample for both runs, so the
  pairing is kept).
- `per_class_deltas`: recall and F1 of each class, A, B and B - A.

Macro F1 is the mean over the classes the images contain, as in
`imgclf.evaluation.metrics` (metrics.json).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from imgclf.core.errors import UserError


def mcnemar_exact(correct_a, correct_b) -> dict:
    """McNemar's exact test on paired right/wrong answers: counts of the discordant pairs and the two-sided p-value.

    Example (8 images only A gets right, 1 only B: p = 2 * (1 + 9) / 2**9):
        >>> r = mcnemar_exact([1] * 8 + [0] + [1] * 5, [0] * 8 + [1] + [1] * 5)
        >>> r["only_a"], r["only_b"], r["p_value"]
        (8, 1, 0.0390625)
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise UserError(f"Paired answers must have the same length: received {a.size} and {b.size} images.")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_a + only_b
    p = float(binomtest(only_a, n, 0.5, alternative="two-sided").pvalue) if n else 1.0
    return {"only_a": only_a, "only_b": only_b, "both_right": int(np.sum(a & b)), "both_wrong": int(np.sum(~a & ~b)),
            "p_value": min(p, 1.0)}


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    """Macro F1 over the classes present in `y_true` (2 tp / (predicted + support) per class).

    Example:
        >>> macro_f1([0, 0, 1, 1], [0, 1, 1, 1], 3)
        0.7333333333333334
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    tp = np.bincount(y_true[y_true == y_pred], minlength=n_classes)
    support, predicted = np.bincount(y_true, minlength=n_classes), np.bincount(y_pred, minlength=n_classes)
    present = support > 0
    return float(np.mean(2 * tp[present] / (support[present] + predicted[present]))) if present.any() else 0.0


def bootstrap_differences(y_true, pred_a, pred_b, n_classes: int, resamples: int = 2000, level: float = 0.95,
                          seed: int = 0) -> dict:
    """B - A in accuracy and macro F1, each with a percentile bootstrap interval at `level`.

    Example:
        >>> y = np.array([0, 1, 2, 0, 1, 2] * 10)
        >>> d = bootstrap_differences(y, y, np.where(np.arange(60) % 5 == 0, (y + 1) % 3, y), 3, resamples=200)
        >>> round(d["accuracy"]["difference"], 3), d["accuracy"]["high"] < 0
        (-0.2, True)
    """
    y_true, pred_a, pred_b = (np.asarray(v, dtype=np.int64) for v in (y_true, pred_a, pred_b))
    n = len(y_true)
    if n == 0:
        raise UserError("No images to compare: the two runs share no evaluated images.")
    rng = np.random.default_rng(seed)
    right_a, right_b = pred_a == y_true, pred_b == y_true
    acc, f1 = np.empty(resamples), np.empty(resamples)
    for i in range(resamples):
        idx = rng.integers(0, n, n)
        acc[i] = right_b[idx].mean() - right_a[idx].mean()
        f1[i] = macro_f1(y_true[idx], pred_b[idx], n_classes) - macro_f1(y_true[idx], pred_a[idx], n_classes)
    tail = (1 - level) / 2 * 100
    out = {}
    for name, observed, draws in (("accuracy", right_b.mean() - right_a.mean(), acc),
                                  ("macro_f1", macro_f1(y_true, pred_b, n_classes) - macro_f1(y_true, pred_a, n_classes), f1)):
        low, high = np.percentile(draws, [tail, 100 - tail])
        out[name] = {"difference": float(observed), "low": float(low), "high": float(high)}
    out.update({"level": level, "resamples": resamples})
    return out


def per_class_deltas(y_true, pred_a, pred_b, classes: list[str]) -> list[dict]:
    """Per class: support, recall and F1 of A and of B, and B - A of each.

    Example:
        >>> per_class_deltas([0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 1, 0], ["cat", "dog"])[0]["recall_delta"]
        0.5
    """
    y_true, pred_a, pred_b = (np.asarray(v, dtype=np.int64) for v in (y_true, pred_a, pred_b))
    rows = []
    for k, name in enumerate(classes):
        row = {"class": name, "support": int(np.sum(y_true == k))}
        for tag, pred in (("a", pred_a), ("b", pred_b)):
            tp = np.sum((pred == k) & (y_true == k))
            recall = tp / row["support"] if row["support"] else 0.0
            denom = row["support"] + np.sum(pred == k)
            row[f"recall_{tag}"], row[f"f1_{tag}"] = float(recall), float(2 * tp / denom) if denom else 0.0
        row["recall_delta"] = row["recall_b"] - row["recall_a"]
        row["f1_delta"] = row["f1_b"] - row["f1_a"]
        rows.append(row)
    return rows


def verdict(mcnemar: dict, boot: dict, alpha: float = 0.05) -> str:
    """One sentence: which run is better and whether the difference is more than noise at `alpha`.

    Example:
        >>> verdict({"p_value": 0.01, "only_a": 2, "only_b": 12},
        ...         {"accuracy": {"difference": 0.05, "low": 0.02, "high": 0.08}, "level": 0.95})
        'B is better than A: accuracy +5.00 points (95% interval +2.00 to +8.00), McNemar p = 0.01 < 0.05: significant.'
    """
    acc = boot["accuracy"]
    points = f"accuracy {acc['difference'] * 100:+.2f} points ({boot['level'] * 100:.0f}% interval " \
             f"{acc['low'] * 100:+.2f} to {acc['high'] * 100:+.2f})"
    p = mcnemar["p_value"]
    if p < alpha:
        better = "B is better than A" if mcnemar["only_b"] > mcnemar["only_a"] else "A is better than B"
        return f"{better}: {points}, McNemar p = {p:.3g} < {alpha:g}: significant."
    return (f"No significant difference: {points}, McNemar p = {p:.3g} >= {alpha:g}; "
            "the difference may be noise (more test images would tell).")
