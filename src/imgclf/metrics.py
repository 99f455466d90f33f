"""Classification metrics from labels and predicted probabilities, in NumPy.

Computed here rather than by calling scikit-learn so that the definitions are
in one readable place; the tests check every value against scikit-learn.
"""

from __future__ import annotations

import numpy as np


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
        "macro_avg": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())},
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
    return out


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
