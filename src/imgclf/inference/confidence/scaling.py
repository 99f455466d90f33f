"""The calibration map, chosen on validation: one temperature, or one temperature per predicted class.

Guo et al. (2017) fit temperature scaling, ``softmax(z / T)``, and vector
scaling, ``softmax(w * z + b)`` with a weight and a bias per class. imgclf
does not use vector scaling: a per-class weight or bias reorders the classes
of some images (measured in bench/RESULTS.md, "Issue 16: vector scaling"),
and calibration must never change a predicted class. The richer map imgclf
offers keeps that promise by construction: an image's temperature is the one
of its predicted class, ``softmax(log p / T[argmax p])``. Within a row every
log-probability is divided by the same positive number, so the order of the
classes, the predicted one first, never changes. It has K parameters, each
fitted on the validation images predicted as that class and pulled towards
the shared temperature (a prior worth `CLASS_PRIOR_IMAGES` images), so a
class with few images keeps the shared one.

It is adopted only when it lowers the validation NLL under `FOLDS`-fold
cross-validation by a clear margin: more than `MIN_GAIN` nats per image and
more than two standard errors of the per-image difference; otherwise the
single temperature stays.

Example:
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 3000)
    >>> x = rng.normal(size=(3000, 3)) + 2.0 * np.eye(3)[y]
    >>> z = 2 * x * np.where(x.argmax(1) == 0, 3.0, 1.0)[:, None]  # the true posterior is softmax(2 x): 3x too sure of class 0
    >>> p = np.exp(z); p /= p.sum(1, keepdims=True)
    >>> record = choose_scaling(p, y)
    >>> record["method"], [round(t) for t in record["class_temperatures"]]
    ('class_temperature', [3, 1, 1])
"""

from __future__ import annotations

import numpy as np

from imgclf.inference.confidence.calibration import apply_temperature, fit_temperature, log_probs

FOLDS = 5
MIN_IMAGES = 100  # fewer validation images: one temperature (folds of under 20 images cannot tell the maps apart)
MIN_GAIN = 0.002  # nats per image: a smaller cross-validated gain is not worth K parameters
CLASS_PRIOR_IMAGES = 30.0  # pull of each class's log T towards the shared one, worth this many of its images


def row_temperatures(probs, class_temperatures) -> np.ndarray:
    """Each image's temperature: the one of its predicted class (N,).

    Example:
        >>> row_temperatures(np.array([[0.9, 0.1], [0.2, 0.8]]), [2.0, 0.5])
        array([2. , 0.5])
    """
    probs = np.asarray(probs)
    if not probs.size:
        return np.zeros(0)
    return np.asarray(class_temperatures, dtype=np.float64)[probs.argmax(axis=1)]


def apply_class_temperatures(probs, class_temperatures) -> np.ndarray:
    """``softmax(log p / T[argmax p])`` per row, as float32: the predicted class never changes.

    Example:
        >>> apply_class_temperatures(np.array([[0.9, 0.1], [0.1, 0.9]]), [2.0, 1.0]).round(3)
        array([[0.75, 0.25],
               [0.1 , 0.9 ]], dtype=float32)
    """
    probs = np.asarray(probs, dtype=np.float32)
    return apply_temperature(probs, row_temperatures(probs, class_temperatures)) if probs.size else probs


def undo_class_temperatures(calibrated, class_temperatures) -> np.ndarray:
    """The model's own probabilities again: ``softmax(log q * T[argmax q])`` (argmax q is argmax p).

    Example:
        >>> q = apply_class_temperatures(np.array([[0.9, 0.1]]), [2.0, 1.0])
        >>> undo_class_temperatures(q, [2.0, 1.0]).round(3)
        array([[0.9, 0.1]], dtype=float32)
    """
    calibrated = np.asarray(calibrated, dtype=np.float32)
    return apply_temperature(calibrated, 1.0 / row_temperatures(calibrated, class_temperatures)) if calibrated.size else calibrated


def fit_class_temperatures(probs, labels, temperature: float) -> list[float]:
    """One temperature per predicted class, each pulled towards the shared `temperature` (K 1-D fits).

    The NLL splits into one sum per predicted class, each depending on that
    class's temperature only, so the K fits are independent.

    Example:
        >>> p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
        >>> [round(t, 2) for t in fit_class_temperatures(p, np.array([0, 1, 1]), 1.0)]
        [1.0, 0.99]
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels, dtype=int)
    predicted = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
    return [round(fit_temperature(probs[predicted == c], labels[predicted == c], center=temperature,
                                  prior_images=CLASS_PRIOR_IMAGES), 6) for c in range(probs.shape[1])]


def _per_image_nll(probs, labels) -> np.ndarray:
    return -log_probs(probs)[np.arange(len(labels)), labels]


def choose_scaling(probs, labels, seed: int = 0) -> dict:
    """Fit both maps on validation and keep the per-class temperatures only for a clear cross-validated gain.

    Returns ``{'method': 'temperature' or 'class_temperature', 'temperature': T,
    'class_temperatures': [...] (when chosen), 'cv': {...} (the comparison)}``.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> y = rng.integers(0, 4, 2000)
        >>> x = rng.normal(size=(2000, 4)) + 2.0 * np.eye(4)[y]
        >>> p = np.exp(6 * x); p /= p.sum(1, keepdims=True)   # 3x too sure (truth: softmax(2 x)), alike for every class
        >>> r = choose_scaling(p, y)
        >>> r["method"], round(r["temperature"]), r["cv"]["gain"] < r["cv"]["margin"]
        ('temperature', 3, True)
    """
    probs = np.asarray(probs, dtype=np.float32)
    labels = np.asarray(labels, dtype=int)
    n = len(labels)
    record = {"method": "temperature", "temperature": round(fit_temperature(probs, labels), 6)}
    if n < MIN_IMAGES or probs.shape[1] < 2:
        record["cv"] = {"skipped": f"{n} validation images (at least {MIN_IMAGES} needed to choose)"}
        return record
    fold = np.random.default_rng(seed).permutation(n) % FOLDS
    shared, per_class = np.empty(n), np.empty(n)
    for k in range(FOLDS):
        fit, held = fold != k, fold == k
        t = fit_temperature(probs[fit], labels[fit])
        shared[held] = _per_image_nll(apply_temperature(probs[held], t), labels[held])
        ct = fit_class_temperatures(probs[fit], labels[fit], t)
        per_class[held] = _per_image_nll(apply_class_temperatures(probs[held], ct), labels[held])
    diff = shared - per_class
    gain, margin = float(diff.mean()), max(MIN_GAIN, 2.0 * float(diff.std(ddof=1)) / np.sqrt(n))
    record["cv"] = {"folds": FOLDS, "nll_temperature": round(float(shared.mean()), 6),
                    "nll_class_temperature": round(float(per_class.mean()), 6),
                    "gain": round(gain, 6), "margin": round(margin, 6)}
    if gain > margin:
        record["method"] = "class_temperature"
        record["class_temperatures"] = fit_class_temperatures(probs, labels, record["temperature"])
    return record


def explain(record: dict) -> str:
    """One line on the choice, for the terminal.

    Example:
        >>> explain({"method": "temperature", "temperature": 0.57, "cv": {"folds": 5, "nll_temperature": 0.3871,
        ...          "nll_class_temperature": 0.3869, "gain": 0.0002, "margin": 0.002}})
        'one temperature 0.570 (a temperature per predicted class lowered the 5-fold NLL by 0.0002 only, margin 0.0020)'
        >>> explain({"method": "class_temperature", "temperature": 0.57, "cv": {"folds": 5, "nll_temperature": 0.3608,
        ...          "nll_class_temperature": 0.3577}})  # as confidence.json's "scaling" keeps it: temperatures beside
        'a temperature per predicted class (shared 0.570; 5-fold NLL 0.3608 -> 0.3577)'
    """
    cv = record.get("cv") or {}
    if record.get("method") == "class_temperature":
        # confidence.json keeps the temperatures beside its "scaling" record: a record without them still explains.
        t = record.get("class_temperatures")
        spread = f", {min(t):.3f}-{max(t):.3f}" if t else ""
        return (f"a temperature per predicted class{spread} (shared {record['temperature']:.3f}; "
                f"{cv.get('folds')}-fold NLL {cv.get('nll_temperature', 0):.4f} -> {cv.get('nll_class_temperature', 0):.4f})")
    line = f"one temperature {record['temperature']:.3f}"
    if "skipped" in cv:
        return line + f" ({cv['skipped']})"
    if cv:
        line += (f" (a temperature per predicted class lowered the {cv['folds']}-fold NLL by {cv['gain']:.4f} only, "
                 f"margin {cv['margin']:.4f})")
    return line


def explain_fit(info: dict) -> str:
    """`explain` for a fitted confidence's info (confidence.json): its "scaling" record with the temperatures beside it.

    Example:
        >>> explain_fit({"temperature": 0.5, "class_temperatures": [0.4, 0.6],
        ...              "scaling": {"method": "class_temperature", "temperature": 0.5, "cv": {"folds": 5}}})
        'a temperature per predicted class, 0.400-0.600 (shared 0.500; 5-fold NLL 0.0000 -> 0.0000)'
    """
    return explain({**info.get("scaling", {"temperature": info["temperature"]}),
                    "class_temperatures": info.get("class_temperatures")})
