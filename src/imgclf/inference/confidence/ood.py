"""Unknown-image scores from the model's own outputs and features; higher means more likely unknown.

- ``msp``: 1 - the top (calibrated) probability, the usual baseline;
- ``energy``: -logsumexp of the logits (Liu et al. 2020);
- ``mahalanobis``: the smallest Mahalanobis distance of the penultimate
  features to a class mean, with one shared covariance shrunk towards a
  multiple of the identity by Ledoit-Wolf's amount (Lee et al. 2018; the
  shrinkage keeps a few hundred images from giving a noisy precision matrix).
  The features are power-normalised first, a signed square root then unit
  length (`power_l2`, as for Fisher vectors, Perronnin et al. 2010; unit
  length is Mahalanobis++, Mueller and Hein 2025): ReLU features are skewed
  and their norm varies with the image's contrast, and Gaussian class
  statistics fit the normalised ones far better (near unknowns: AUROC 0.83
  -> 0.92 on Fashion-MNIST, bench/RESULTS.md). Runs saved before this keep
  their raw-feature statistics (no ``power_l2`` entry) and are scored as before;
- ``knn``: the distance of the L2-normalised features to their k-th nearest
  training image (Sun et al. 2022).

The feature statistics (`fit_stats`) come from the training images; the
threshold for a false-rejection rate from the validation images' scores.
"""

from __future__ import annotations

import numpy as np

METHODS = ("msp", "energy", "mahalanobis", "knn")
FEATURE_METHODS = ("energy", "mahalanobis", "knn")  # need the penultimate features (and the classifier's weights)
KNN_K = 10
KNN_BANK = 5000  # training images kept for kNN (a seeded sample): enough for the k-th distance, small on disk


def _normalise(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def power_l2(x) -> np.ndarray:
    """Power normalisation: signed square root of each feature, then each row scaled to unit length.

    Example:
        >>> power_l2(np.array([[9.0, 16.0], [-4.0, 0.0]])).round(3)
        array([[ 0.6,  0.8],
               [-1. ,  0. ]])
    """
    x = np.asarray(x, dtype=np.float64)
    x = np.sign(x) * np.sqrt(np.abs(x))
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit_stats(features, labels, n_classes: int, kernel=None, bias=None, seed: int = 0) -> dict:
    """Class means and shared shrunk precision matrix of the power-normalised features, a kNN bank of normalised
    features, the classifier's weights.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> s = fit_stats(rng.normal(size=(40, 3)), np.repeat([0, 1], 20), 2)
        >>> s["means"].shape, s["precision"].shape, s["bank"].shape, str(s["power_l2"])
        ((2, 3), (3, 3), (40, 3), 'True')
    """
    raw = np.asarray(features, dtype=np.float64)
    f = power_l2(raw)
    labels = np.asarray(labels, dtype=int)
    d = f.shape[1]
    means = np.stack([f[labels == c].mean(axis=0) if (labels == c).any() else np.zeros(d) for c in range(n_classes)])
    centred = f - means[labels]
    cov = centred.T @ centred / max(len(f), 1)
    # lazy: scikit-learn loads only when the statistics are fitted (training's end, `imgclf calibrate`)
    from sklearn.covariance import ledoit_wolf_shrinkage

    # Ledoit-Wolf's own amount: a fixed floor (0.1 before) cost 0.02-0.03 AUROC on near unknowns (bench/RESULTS.md).
    shrink = float(ledoit_wolf_shrinkage(centred, assume_centered=True)) if len(f) > 1 else 1.0
    scale = np.trace(cov) / d
    # A tiny ridge keeps a degenerate sample (one image per class: no spread at all) invertible.
    cov = (1 - shrink) * cov + (shrink * scale + 1e-6 * (scale if scale > 0 else 1.0)) * np.eye(d)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(f), min(len(f), KNN_BANK), replace=False))
    stats = {"means": means.astype(np.float32), "precision": np.linalg.inv(cov).astype(np.float32),
             "bank": _normalise(raw[keep]), "power_l2": np.asarray(True)}
    if kernel is not None:
        stats["kernel"] = np.asarray(kernel, dtype=np.float32)
        stats["bias"] = np.asarray(bias if bias is not None else np.zeros(kernel.shape[1]), dtype=np.float32)
    return stats


def msp_score(probs) -> np.ndarray:
    """1 - top probability. Example: ``msp_score(np.array([[0.9, 0.1]]))`` -> ``array([0.1])``.

    Example:
        >>> msp_score(np.array([[0.75, 0.25]]))
        array([0.25])
    """
    return 1.0 - np.asarray(probs, dtype=np.float64).max(axis=1)


def energy_score(logits) -> np.ndarray:
    """-logsumexp(logits): low (very negative) for images the classifier has strong evidence about.

    Example:
        >>> energy_score(np.array([[10.0, 0.0], [0.0, 0.0]])).round(3)
        array([-10.   ,  -0.693])
    """
    z = np.asarray(logits, dtype=np.float64)
    m = z.max(axis=1)
    return -(m + np.log(np.exp(z - m[:, None]).sum(axis=1)))


def mahalanobis_score(features, stats: dict) -> np.ndarray:
    """Smallest squared Mahalanobis distance to a class mean (shared covariance); the features power-normalised
    first when the statistics were fitted so (``stats["power_l2"]``, every run fitted since it was added).

    Example:
        >>> s = {"means": np.zeros((1, 2)), "precision": np.eye(2)}
        >>> mahalanobis_score(np.array([[1.0, 0.0], [3.0, 4.0]]), s)
        array([ 1., 25.])
        >>> mahalanobis_score(np.array([[1.0, 0.0], [3.0, 4.0]]), {**s, "power_l2": np.asarray(True)}).round(3)
        array([1., 1.])
    """
    f = np.asarray(features, dtype=np.float64)
    if bool(stats.get("power_l2", False)):
        f = power_l2(f)
    means = np.asarray(stats["means"], dtype=np.float64)
    prec = np.asarray(stats["precision"], dtype=np.float64)
    fp = f @ prec
    # (f - m) P (f - m) = f P f - 2 f P m + m P m, for every class at once
    d = (fp * f).sum(axis=1)[:, None] - 2 * fp @ means.T + ((means @ prec) * means).sum(axis=1)[None, :]
    return d.min(axis=1)


def knn_score(features, stats: dict, k: int = KNN_K) -> np.ndarray:
    """Distance of the normalised features to their k-th nearest neighbour in the training bank.

    Example:
        >>> s = {"bank": np.array([[1.0, 0.0], [0.0, 1.0]])}
        >>> knn_score(np.array([[2.0, 0.0], [-1.0, 0.0]]), s, k=1).round(3)
        array([0.   , 1.414])
    """
    bank = np.asarray(stats["bank"], dtype=np.float32)
    k = max(1, min(k, len(bank)))
    q = _normalise(features)
    out = np.empty(len(q))
    for i in range(0, len(q), 1024):
        sim = q[i:i + 1024] @ bank.T
        kth = -np.partition(-sim, k - 1, axis=1)[:, k - 1]
        out[i:i + 1024] = np.sqrt(np.clip(2.0 - 2.0 * kth, 0.0, None))
    return out


def logits_from(features, stats: dict) -> np.ndarray:
    """The classifier's logits recomputed from the penultimate features: features @ kernel + bias.

    Example:
        >>> logits_from(np.array([[1.0, 2.0]]), {"kernel": np.eye(2), "bias": np.array([0.5, 0.0])})
        array([[1.5, 2. ]])
    """
    return np.asarray(features, dtype=np.float64) @ np.asarray(stats["kernel"], np.float64) + stats["bias"]


def scores(method: str, probs, features=None, stats: dict | None = None) -> np.ndarray:
    """The unknown score of `method` (one of `METHODS`) for a batch.

    Example:
        >>> scores("msp", np.array([[0.6, 0.4]]))
        array([0.4])
    """
    if method == "msp":
        return msp_score(probs)
    if method == "energy":
        return energy_score(logits_from(features, stats))
    if method == "mahalanobis":
        return mahalanobis_score(features, stats)
    if method == "knn":
        return knn_score(features, stats)
    raise ValueError(f"unknown score {method!r}; expected one of {', '.join(METHODS)}")


def auroc(known, unknown) -> float:
    """Area under the ROC curve of telling unknown (high score) from known images (ties count half).

    Example:
        >>> auroc([0.1, 0.2, 0.3], [0.25, 0.9])
        0.8333333333333334
    """
    known, unknown = np.asarray(known, np.float64), np.asarray(unknown, np.float64)
    if not len(known) or not len(unknown):
        return float("nan")
    both = np.concatenate([known, unknown])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    sorted_b = both[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_b, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    r_unknown = ranks[len(known):].sum()
    return float((r_unknown - len(unknown) * (len(unknown) + 1) / 2) / (len(known) * len(unknown)))


def fpr_at_95(known, unknown) -> float:
    """Share of unknown images accepted when the threshold accepts 95% of known ones (FPR at 95% TPR).

    Example:
        >>> fpr_at_95(np.arange(100.0), np.array([50.0, 96.0, 200.0]))
        0.3333333333333333
    """
    known, unknown = np.asarray(known, np.float64), np.asarray(unknown, np.float64)
    if not len(known) or not len(unknown):
        return float("nan")
    thr = np.quantile(known, 0.95)
    return float(np.mean(unknown <= thr))
