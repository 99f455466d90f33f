"""Fit a `Confidence` from validation outputs: calibration map, unknown-score threshold, conformal quantiles.

Pure NumPy: training's end step and `imgclf calibrate` compute the outputs
(`imgclf.training.confidence`) and call `fit_confidence` with them.
"""

from __future__ import annotations

import time

import numpy as np

from imgclf.inference.confidence import conformal, ood
from imgclf.inference.confidence.calibration import nll, reliability
from imgclf.inference.confidence.scaling import choose_scaling
from imgclf.inference.confidence.store import Confidence
from imgclf.inference.confidence.tables import quantile_table

DEFAULT_METHOD = "mahalanobis"  # the unknown score used by default: best AUROC on near unknowns in bench/confidence.py (RESULTS.md)
DEFAULT_REJECT_RATE = 0.05


def fit_confidence(val_probs, val_labels, val_features=None, train_features=None, train_labels=None,
                   kernel=None, bias=None, reject_rate: float = DEFAULT_REJECT_RATE, method: str = DEFAULT_METHOD,
                   seed: int = 0) -> Confidence:
    """Fit everything on the validation images' uncalibrated probabilities (and features, for the feature scores).

    The calibration map is one temperature, or one per predicted class where
    cross-validation on these images shows a clear gain (`scaling.choose_scaling`);
    the unknown-score tables and the conformal quantiles are fitted on the
    calibrated probabilities. Without features (a model with no 'classifier'
    layer), the unknown score falls back to max-softmax.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 600)
        >>> x = rng.normal(size=(600, 3)) + 2.0 * np.eye(3)[y]
        >>> p = np.exp(6 * x); p /= p.sum(1, keepdims=True)
        >>> c = fit_confidence(p, y, method="msp")
        >>> 2.7 < c.temperature < 3.3, c.info["ece_after"] < c.info["ece_before"], c.method
        (True, True, 'msp')
    """
    val_labels = np.asarray(val_labels, dtype=int)
    n_classes = np.asarray(val_probs).shape[1]
    scaling = choose_scaling(val_probs, val_labels, seed=seed)
    info = {"temperature": scaling["temperature"]}
    if scaling["method"] == "class_temperature":
        info["class_temperatures"] = scaling["class_temperatures"]
    probs = Confidence(info).calibrate(val_probs)
    before, after = reliability(val_probs, val_labels), reliability(probs, val_labels)
    info.update({
        "scaling": {k: v for k, v in scaling.items() if k != "class_temperatures"},  # the choice and its evidence
        "fitted_on": {"images": int(len(val_labels)), "split": "val"},
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ece_before": round(before["ece"], 6), "ece_after": round(after["ece"], 6),
        "nll_before": round(nll(val_probs, val_labels), 6), "nll_after": round(nll(probs, val_labels), 6),
        "accuracy": round(float(np.mean(np.asarray(probs).argmax(1) == val_labels)), 6) if len(val_labels) else 0.0,
        "conformal": conformal.fit_conformal(probs, val_labels)})
    stats = None
    tables = {"msp": quantile_table(ood.msp_score(probs))}
    if val_features is not None and train_features is not None and len(train_features):
        stats = ood.fit_stats(train_features, train_labels, n_classes, kernel, bias, seed=seed)
        for m in ood.FEATURE_METHODS:
            if m == "energy" and "kernel" not in stats:
                continue
            tables[m] = quantile_table(ood.scores(m, probs, val_features, stats))
    if method not in tables:
        method = "msp"
    info["reject"] = {"method": method, "reject_rate": float(reject_rate), "tables": tables}
    return Confidence(info, stats)
