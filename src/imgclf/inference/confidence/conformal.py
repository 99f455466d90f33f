"""Split-conformal prediction sets with adaptive prediction sets (APS, Romano et al. 2020).

The score of a class is the probability mass of the classes ranked above it
plus half its own (APS with its random term fixed at 1/2, so the same image
always gets the same set); the set holds the classes whose score is within
the quantile of the true classes' scores on the calibration (validation)
images. For exchangeable data the true class is in the set with probability
at least the coverage asked for. The top class is always in the set, so a
model more accurate than the coverage asked covers as often as it is right
(more than asked); ``keep_top=False`` gives plain APS, whose coverage is the
one asked (within the calibration sample's error) at the price of empty
sets for some confident images (bench/RESULTS.md measures both).
"""

from __future__ import annotations

import numpy as np

from imgclf.inference.confidence.tables import conformal_level, quantile_table, table_quantile


def class_scores(probs) -> np.ndarray:
    """APS score of every class: the mass ranked above it plus half its own (N, K).

    Example:
        >>> class_scores(np.array([[0.2, 0.7, 0.1]])).round(2)
        array([[0.8 , 0.35, 0.95]])
    """
    probs = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-probs, axis=1, kind="stable")
    sorted_p = np.take_along_axis(probs, order, axis=1)
    above = np.cumsum(sorted_p, axis=1) - sorted_p
    scores = np.empty_like(probs)
    np.put_along_axis(scores, order, above + 0.5 * sorted_p, axis=1)
    return scores


def true_class_scores(probs, labels) -> np.ndarray:
    """The APS score of each image's true class: the calibration sample.

    Example:
        >>> true_class_scores(np.array([[0.2, 0.7, 0.1]]), np.array([0])).round(2)
        array([0.8])
    """
    labels = np.asarray(labels, dtype=int)
    return class_scores(probs)[np.arange(len(labels)), labels]


def fit_conformal(probs, labels) -> dict:
    """The calibration images' true-class scores as a quantile table (see `tables.quantile_table`).

    Example:
        >>> fit_conformal(np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([0, 0]))["n"]
        2
    """
    return quantile_table(true_class_scores(probs, labels))


def threshold(table: dict, coverage: float) -> float:
    """The score bound for `coverage` (inf: every class, when too few calibration images for that coverage).

    Example:
        >>> threshold(fit_conformal(np.eye(3)[[0, 1, 2, 0]] * 0.8 + 0.2 / 3, np.array([0, 1, 2, 1])), 0.5)
        0.4333333
    """
    level = conformal_level(table["n"], coverage)
    return float("inf") if level > 1 else table_quantile(table, level)


def prediction_sets(probs, qhat: float, keep_top: bool = True) -> list[list[int]]:
    """Class indices in each image's set, most probable first; the top class is always in unless `keep_top` is False.

    Example:
        >>> prediction_sets(np.array([[0.2, 0.7, 0.1], [0.05, 0.05, 0.9]]), 0.85)
        [[1, 0], [2]]
        >>> prediction_sets(np.array([[0.2, 0.7, 0.1], [0.05, 0.05, 0.9]]), 0.4, keep_top=False)
        [[1], []]
    """
    scores = class_scores(probs)
    out = []
    for p, s in zip(np.asarray(probs), scores):
        order = np.argsort(-p, kind="stable")
        top = [int(order[0])] if keep_top or s[order[0]] <= qhat else []
        out.append(top + [int(j) for j in order[1:] if s[j] <= qhat])
    return out


def coverage_and_size(probs, labels, qhat: float, keep_top: bool = True) -> tuple[float, float]:
    """Empirical coverage (share of sets with the true class) and mean set size (of `prediction_sets`).

    Example:
        >>> coverage_and_size(np.array([[0.2, 0.7, 0.1], [0.05, 0.05, 0.9]]), np.array([0, 1]), 0.85)
        (0.5, 1.5)
    """
    sets = prediction_sets(probs, qhat, keep_top)
    labels = np.asarray(labels, dtype=int)
    if not len(labels):
        return 0.0, 0.0
    hit = np.mean([y in s for y, s in zip(labels, sets)])
    return float(hit), float(np.mean([len(s) for s in sets]))
