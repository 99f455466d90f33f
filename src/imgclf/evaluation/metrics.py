"""Classification metrics from labels and predicted probabilities, in NumPy.

Computed here rather than by calling scikit-learn so that the definitions are
in one readable place; the tests check every value against scikit-learn.
"""

from __future__ import annotations

import numpy as np

from imgclf.inference.confidence.calibration import reliability


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns.

    Example:
        >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), 2).tolist()
        [[1, 0], [1, 1]]
    """
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def _safe_div(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of samples whose true class is among the k most probable.

    Example:
        >>> top_k_accuracy(np.array([2]), np.array([[0.5, 0.3, 0.2]]), 2)
        0.0
    """
    k = min(k, probs.shape[1])
    # Ties resolved like scikit-learn: a class counts if fewer than k classes score strictly higher.
    true_scores = probs[np.arange(len(y_true)), y_true]
    higher = (probs > true_scores[:, None]).sum(axis=1)
    return float(np.mean(higher < k))


def classification_metrics(y_true, probs, classes: list[str]) -> dict:
    """Accuracy, balanced accuracy, per-class and averaged precision/recall/F1, top-k, log loss, confusion matrix.

    Example:
        >>> m = classification_metrics(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), ["a", "b"])
        >>> m["accuracy"], m["macro_avg"]["f1"]
        (1.0, 1.0)
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = len(classes)
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = support > 0
    weights = support / max(support.sum(), 1)
    # Clip like scikit-learn (machine epsilon) so a confident mistake costs the same in both.
    clipped = np.clip(probs[np.arange(len(y_true)), y_true], np.finfo(np.float64).eps, 1.0)
    out = {
        "num_samples": int(len(y_true)),
        "accuracy": float(np.mean(y_pred == y_true)) if len(y_true) else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "log_loss": float(-np.mean(np.log(clipped))) if len(y_true) else 0.0,
        "per_class": {
            c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        # Over the classes the evaluated images contain: a class with no images has no recall to
        # average, and counting it as 0 would blame the model for the data (scikit-learn's
        # labels=all does). Images wrongly given an absent class still count against accuracy and
        # against their true class's recall; `absent_classes` names what was left out.
        "macro_avg": {k: float(v[present].mean()) if present.any() else 0.0
                      for k, v in (("precision", precision), ("recall", recall), ("f1", f1))},
        "absent_classes": [c for i, c in enumerate(classes) if not present[i]],
        "weighted_avg": {
            "precision": float((precision * weights).sum()),
            "recall": float((recall * weights).sum()),
            "f1": float((f1 * weights).sum()),
        },
        "confusion_matrix": cm.tolist(),
    }
    for k in (3, 5):
        if n_classes > k:
            out[f"top{k}_accuracy"] = top_k_accuracy(y_true, probs, k)
    out["cohen_kappa"] = cohen_kappa(cm)
    out["confusion_matrix_normalized"] = row_normalize(cm).round(6).tolist()
    out.update(score_metrics(y_true, probs, classes))
    out["calibration"] = calibration(y_true, probs)
    out["expected_calibration_error"] = out["calibration"]["ece"]
    if n_classes == 2:
        out["binary"] = best_f1_threshold(y_true, probs[:, 1])
    return out


def row_normalize(cm) -> np.ndarray:
    """Each row of a confusion matrix divided by its total (rows of absent classes stay 0).

    Example:
        >>> row_normalize([[3, 1], [0, 0]]).tolist()
        [[0.75, 0.25], [0.0, 0.0]]
    """
    cm = np.asarray(cm, dtype=np.float64)
    return _safe_div(cm, np.broadcast_to(cm.sum(axis=1, keepdims=True), cm.shape))


def cohen_kappa(cm) -> float | None:
    """Cohen's kappa: agreement beyond chance, from a confusion matrix; None when undefined.

    Example:
        >>> round(cohen_kappa([[1, 0], [1, 1]]), 4)
        0.4
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    if n == 0:
        return None
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / n
    off = ~np.eye(len(cm), dtype=bool)
    denominator = expected[off].sum()
    # All samples in one class, predicted as that class: chance agreement is total, kappa is 0/0.
    return float(1 - cm[off].sum() / denominator) if denominator > 0 else None


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (what the Mann-Whitney AUC needs)."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x)) + 1]
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(y_binary, scores) -> float | None:
    """Area under the ROC curve for one class against the rest; None without both positives and negatives.

    Computed as the Mann-Whitney statistic, which equals the trapezoidal area
    under the ROC curve, ties included.

    Example:
        >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    y = np.asarray(y_binary, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y_binary, scores) -> float | None:
    """Area under the precision-recall curve as a step sum (scikit-learn's average precision).

    Example:
        >>> round(average_precision(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])), 4)
        0.8333
    """
    y = np.asarray(y_binary, dtype=bool)
    if not y.any():
        return None
    precision, recall, _ = _pr_points(y, np.asarray(scores, dtype=np.float64))
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _pr_points(y: np.ndarray, scores: np.ndarray):
    """Precision and recall at each distinct score used as a threshold (score >= t is positive), high to low."""
    order = np.argsort(-scores, kind="mergesort")
    s, yy = scores[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(yy)[last_of_tie].astype(np.float64)
    fps = (last_of_tie + 1) - tps
    return tps / (tps + fps), tps / max(y.sum(), 1), s[last_of_tie]


def score_metrics(y_true, probs, classes: list[str]) -> dict:
    """ROC-AUC and PR-AUC (average precision), per class one-vs-rest and macro-averaged.

    Classes with no positive (or no negative) sample have no AUC (None) and are
    left out of the macro average, which is then over the classes that have one.

    Example:
        >>> score_metrics(np.array([0, 1]), np.array([[0.7, 0.3], [0.2, 0.8]]), ["a", "b"])["roc_auc_macro"]
        1.0
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    roc = {c: roc_auc(y_true == i, probs[:, i]) for i, c in enumerate(classes)}
    ap = {c: average_precision(y_true == i, probs[:, i]) for i, c in enumerate(classes)}

    def macro(d):
        values = [v for v in d.values() if v is not None]
        return float(np.mean(values)) if values else None

    return {"roc_auc_macro": macro(roc), "pr_auc_macro": macro(ap), "roc_auc_per_class": roc, "pr_auc_per_class": ap}


def calibration(y_true, probs, n_bins: int = 15) -> dict:
    """Expected calibration error of the top-1 confidence, with the reliability-diagram bins.

    Bins are equal-width on (0, 1], right-closed, as scikit-learn's
    calibration_curve draws them; ECE is the sample-weighted mean gap between
    accuracy and confidence over the bins.

    Example:
        >>> round(calibration(np.array([0, 1]), np.array([[0.9, 0.1], [0.6, 0.4]]))["ece"], 3)
        0.35
    """
    r = reliability(probs, y_true, bins=n_bins)  # the one binning, shared with the fitted calibration
    return {"ece": r["ece"], "bin_edges": np.round(r["edges"], 6).tolist(), "bin_accuracy": r["accuracy"],
            "bin_confidence": r["confidence"], "bin_count": r["count"]}


def best_f1_threshold(y_true, p_positive) -> dict:
    """For a two-class problem: the threshold on P(second class) that maximises F1, and the metrics there.

    Example:
        >>> best_f1_threshold(np.array([0, 1, 1]), np.array([0.2, 0.4, 0.9]))["threshold"]
        0.4
    """
    y = np.asarray(y_true) == 1
    scores = np.asarray(p_positive, dtype=np.float64)
    if not y.any():
        return {"threshold": None, "note": "no sample of the positive class"}
    precision, recall, thresholds = _pr_points(y, scores)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    best = int(np.argmax(f1))  # first maximum: the highest threshold among equals
    t = float(thresholds[best])
    pred = scores >= t
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())
    return {"threshold": t, "f1": float(f1[best]), "precision": float(precision[best]), "recall": float(recall[best]),
            "accuracy": float((tp + tn) / len(y)), "confusion_matrix": [[tn, fp], [fn, tp]]}


def most_confused(cm, classes: list[str], n: int = 10) -> list[dict]:
    """The off-diagonal cells with the most samples, largest first.

    Example:
        >>> most_confused([[5, 2], [0, 3]], ["cat", "dog"])
        [{'true': 'cat', 'predicted': 'dog', 'count': 2}]
    """
    cm = np.asarray(cm)
    pairs = [(int(cm[i, j]), i, j) for i in range(len(classes)) for j in range(len(classes)) if i != j and cm[i, j] > 0]
    pairs.sort(key=lambda t: (-t[0], t[1], t[2]))
    return [{"true": classes[i], "predicted": classes[j], "count": c} for c, i, j in pairs[:n]]
