"""Temperature scaling (Guo et al. 2017) and the calibration measures: NLL, ECE, reliability bins.

The temperature works on probabilities: ``softmax(log p / T)`` equals
``softmax(z / T)`` for the logits ``z`` behind ``p`` (a log-softmax differs
from the logits by one constant per row), so it applies to the output of any
runtime. Dividing every logit by the same positive number never changes the
order of the classes, so the predicted class never changes.
"""

from __future__ import annotations

import numpy as np

TINY = 1e-30  # floor for log(p): float32 softmax underflows to 0 for very confident outputs
T_RANGE = (0.1, 20.0)  # temperatures searched (log-uniformly)
PRIOR_IMAGES = 10.0  # a pull of log T towards 0 worth this many images: on a small validation set with no
# error the NLL falls forever as T -> 0, and one lucky split would make every answer 100% sure


def log_probs(probs) -> np.ndarray:
    """Natural log of probabilities, floored so that a 0 stays finite.

    Example:
        >>> log_probs(np.array([[0.5, 0.5, 0.0]])).round(2)
        array([[ -0.69,  -0.69, -69.08]])
    """
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), TINY, None))


def apply_temperature(probs, temperature) -> np.ndarray:
    """``softmax(log(probs) / temperature)``, as float32; temperature 1 returns the input unchanged.

    `temperature` is one number, or one per row (N,): each row is still
    divided by a single positive number, so its class order never changes.

    Example:
        >>> apply_temperature(np.array([[0.9, 0.1]]), 2.0).round(3)
        array([[0.75, 0.25]], dtype=float32)
        >>> apply_temperature(np.array([[0.9, 0.1]]), 1.0)
        array([[0.9, 0.1]], dtype=float32)
        >>> apply_temperature(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([1.0, 2.0])).round(3)
        array([[0.9 , 0.1 ],
               [0.75, 0.25]], dtype=float32)
    """
    probs = np.asarray(probs, dtype=np.float32)
    t = np.asarray(temperature, dtype=np.float64)
    if probs.size == 0 or (t == 1.0).all():
        return probs
    z = log_probs(probs) / (t[:, None] if t.ndim else t)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def nll(probs, labels) -> float:
    """Mean negative log-likelihood of the true classes.

    Example:
        >>> round(nll(np.array([[0.5, 0.5], [0.9, 0.1]]), np.array([0, 0])), 4)
        0.3993
    """
    labels = np.asarray(labels, dtype=int)
    if not len(labels):
        return 0.0
    return float(-log_probs(probs)[np.arange(len(labels)), labels].mean())


def fit_temperature(probs, labels, center: float = 1.0, prior_images: float = PRIOR_IMAGES) -> float:
    """The temperature that minimises the validation NLL of ``softmax(log p / T)`` (bounded 1-D search).

    A small penalty on ``(log T - log center)^2`` (worth `prior_images`
    images) keeps a tiny validation set without errors from driving T to 0;
    `center` is returned when no temperature does better than it.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 2000)
        >>> x = rng.normal(size=(2000, 3)) + 2.0 * np.eye(3)[y]   # the true posterior is softmax(2 x) ...
        >>> p = np.exp(6 * x); p /= p.sum(1, keepdims=True)      # ... made 3x overconfident
        >>> 2.6 < fit_temperature(p, y) < 3.4
        True
    """
    # lazy: SciPy loads only when a temperature is fitted (training's end, `imgclf calibrate`)
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=int)
    if not len(labels):
        return float(center)
    z = log_probs(probs)
    picked = z[np.arange(len(labels)), labels]

    def loss(log_t):
        t = np.exp(log_t)
        s = z / t
        m = s.max(axis=1)
        lse = m + np.log(np.exp(s - m[:, None]).sum(axis=1))
        return float((lse - picked / t).mean()) + prior_images * (log_t - log_c) ** 2 / (2 * len(labels))

    log_c = float(np.log(center))
    res = minimize_scalar(loss, bounds=tuple(np.log(T_RANGE)), method="bounded", options={"xatol": 1e-4})
    t = float(np.exp(res.x))
    return t if loss(np.log(t)) < loss(log_c) else float(center)


def reliability(probs, labels, bins: int = 15) -> dict:
    """Confidence bins: mean confidence, accuracy and count per bin, and the ECE (expected calibration error).

    The ECE is the count-weighted mean gap between accuracy and confidence
    over `bins` equal-width bins of the top probability.

    Example:
        >>> r = reliability(np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]]), np.array([0, 1, 0]), bins=5)
        >>> round(r["ece"], 4), r["count"]
        (0.4333, [0, 0, 1, 1, 1])
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == labels) if len(probs) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    out = {"edges": edges.tolist(), "confidence": [], "accuracy": [], "count": []}
    ece = 0.0
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        c = float(conf[sel].mean()) if n else 0.0
        a = float(correct[sel].mean()) if n else 0.0
        out["confidence"].append(c)
        out["accuracy"].append(a)
        out["count"].append(n)
        ece += n * abs(a - c)
    out["ece"] = float(ece / max(len(labels), 1))
    return out


def ece(probs, labels, bins: int = 15) -> float:
    """Expected calibration error over `bins` equal-width confidence bins (see `reliability`).

    Example:
        >>> ece(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]))
        0.0
    """
    return reliability(probs, labels, bins)["ece"]
