"""The prediction row: one image's probabilities as the dict every writer, engine and the server use.

Example:
    >>> prediction_row("a.jpg", np.array([0.2, 0.8]), ["cat", "dog"])["class"]
    'dog'
"""

from __future__ import annotations

import numpy as np

UNKNOWN = "unknown"  # the class given when the top probability is below the threshold, or the unknown score above its own


def prediction_row(path: str, p: np.ndarray, classes: list[str], top_k: int = 1, threshold: float = 0.0,
                   extra: dict | None = None) -> dict:
    """One image's probabilities as a prediction row: the shape every writer, engine and the server use.

    Below `threshold` (top probability), or when `extra` says ``unknown``
    (the unknown score crossed its threshold), the class is ``'unknown'``;
    top_k still lists the model's best guesses. `extra`'s ``unknown_score``
    and ``prediction_set`` become columns of the row.

    Example:
        >>> prediction_row("a.jpg", np.array([0.1, 0.7, 0.2]), ["cat", "dog", "fox"], top_k=2)
        {'path': 'a.jpg', 'class': 'dog', 'probability': 0.7, 'top_k': [['dog', 0.7], ['fox', 0.2]], 'error': ''}
        >>> prediction_row("b.jpg", np.array([0.4, 0.3, 0.3]), ["cat", "dog", "fox"], threshold=0.5)["class"]
        'unknown'
        >>> prediction_row("c.jpg", np.array([0.9, 0.1]), ["cat", "dog"], extra={"unknown_score": 9.5, "unknown": True})
        {'path': 'c.jpg', 'class': 'unknown', 'probability': 0.9, 'top_k': [['cat', 0.9]], 'error': '', 'unknown_score': 9.5}
    """
    extra = extra or {}
    order = np.argsort(-p, kind="stable")[: max(1, min(top_k, len(classes)))]
    row = {
        "path": path,
        "class": classes[order[0]] if p[order[0]] >= threshold and not extra.get("unknown") else UNKNOWN,
        "probability": float(p[order[0]]),
        "top_k": [[classes[i], float(p[i])] for i in order],
        "error": "",
    }
    row.update({k: extra[k] for k in ("unknown_score", "prediction_set") if k in extra})
    return row
