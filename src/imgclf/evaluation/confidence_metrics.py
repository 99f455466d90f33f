"""The "Confidence" measures of an evaluation: calibration before and after, selective accuracy, sets, rejection.

Computed from the calibrated probabilities that `Predictor` returned and the
run's `Confidence` (imgclf.inference.confidence); stored under
``metrics.json["confidence"]``, drawn by `figures.confidence` and shown in
the report's Confidence section.
"""

from __future__ import annotations

import numpy as np

from imgclf.inference.confidence import conformal
from imgclf.inference.confidence.calibration import nll, reliability

COVERAGES = (0.9, 0.95)


def selective_curve(probs, labels, points: int = 21) -> dict:
    """Accuracy on the most confident share of images, for shares 0.05..1 (selective classification).

    Example:
        >>> c = selective_curve(np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45]]), np.array([0, 1, 0]), points=3)
        >>> c["coverage"], [round(a, 3) for a in c["accuracy"]]
        ([0.05, 0.525, 1.0], [1.0, 0.5, 0.667])
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    order = np.argsort(-probs.max(axis=1), kind="stable")
    correct = (probs.argmax(axis=1) == labels)[order]
    shares = np.linspace(0.05, 1.0, points)
    acc = [float(correct[:max(1, int(round(s * len(labels))))].mean()) if len(labels) else 0.0 for s in shares]
    return {"coverage": [round(float(s), 4) for s in shares], "accuracy": acc}


def confidence_metrics(probs, labels, confidence, extras: list[dict] | None = None) -> dict:
    """Everything the Confidence section shows, for calibrated `probs` of the evaluated images.

    Example:
        >>> from imgclf.inference.confidence.store import Confidence
        >>> m = confidence_metrics(np.array([[0.8, 0.2], [0.3, 0.7]]), np.array([0, 1]), Confidence({"temperature": 2.0}))
        >>> m["temperature"], round(m["ece_before"], 3), round(m["ece_after"], 3)
        (2.0, 0.107, 0.25)
    """
    labels = np.asarray(labels, dtype=int)
    raw = confidence.uncalibrate(probs)  # the model's own probabilities again
    before, after = reliability(raw, labels), reliability(probs, labels)
    out = {"calibrated": confidence.calibrated, "temperature": confidence.temperature, "scaling": confidence.scaling,
           "ece_before": before["ece"], "ece_after": after["ece"], "nll_before": nll(raw, labels),
           "nll_after": nll(probs, labels), "reliability_before": before, "reliability_after": after,
           "selective": selective_curve(probs, labels), "conformal": []}
    if confidence.info.get("conformal"):
        for c in COVERAGES:
            hit, size = conformal.coverage_and_size(probs, labels, confidence.qhat(c))
            out["conformal"].append({"target": c, "coverage": hit, "mean_set_size": size})
    flags = [e["unknown"] for e in extras or [] if "unknown" in e]
    if flags:
        flags = np.asarray(flags)
        right = probs.argmax(axis=1) == labels
        out["rejection"] = {"method": confidence.method, "threshold": float(confidence.reject_threshold()),
                            "reject_rate_asked": confidence.default_reject_rate(),
                            "rejected_share": float(flags.mean()),
                            "accuracy_accepted": float(right[~flags].mean()) if (~flags).any() else 0.0}
    return out
