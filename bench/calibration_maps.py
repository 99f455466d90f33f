"""Issue 16, calibration maps: one temperature, a temperature per predicted class, vector scaling.

    .venv/bin/python bench/calibration_maps.py --work /tmp/imgclf-bench-confidence   # after bench/confidence.py

For each run bench/confidence.py trained (digits, Fashion-MNIST 5 min, Fashion-MNIST classes 0-6), the
model's own probabilities (with the run's test-time augmentation) on its validation split and, for the
Fashion-MNIST runs, on the 10,000 test images of its classes. Three maps are fitted on validation:

* temperature: ``softmax(log p / T)`` (what imgclf always fits);
* class temperature: ``softmax(log p / T[argmax p])`` (imgclf's richer option, chosen on validation by
  `imgclf.inference.confidence.scaling.choose_scaling`);
* vector scaling (Guo et al. 2017): ``softmax(w * log p + b)``, with an L2 pull of (w, b) towards the
  temperature's (1/T, 0) worth 0 (plain) or 100 validation images.

Reported: 5-fold cross-validated NLL on validation, and (maps refitted on all of validation) test NLL,
ECE, accuracy and the share of test images whose predicted class the map changes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

FOLDS = 5


def dump(run_dir: Path, cache: Path) -> dict:
    """The run's uncalibrated probabilities on validation (and Fashion-MNIST test), cached as .npz."""
    if cache.exists():
        return dict(np.load(cache))
    from imgclf.core.run import Run
    from imgclf.data.builtin import FASHION_CLASSES, load_fashion_mnist_arrays
    from imgclf.data.pipeline import decode_all
    from imgclf.inference.predictor import Predictor
    from imgclf.models.saving import as_float32, load_keras_model

    run = Run(run_dir)
    pre, idx = run.preprocess, {c: i for i, c in enumerate(run.classes)}
    clf = Predictor(as_float32(load_keras_model(run.model_path)), run.classes, pre)  # no confidence: raw outputs

    def probs(x):
        return np.concatenate([clf.predict_arrays(np.asarray(x[i:i + 256], np.float32)) for i in range(0, len(x), 256)])

    rows = [r for r in run.manifest() if r["split"] == "val"]
    d = decode_all([r["path"] for r in rows], [idx[r["label"]] for r in rows], pre["img_size"], pre["color_mode"], verbose=False)
    out = {"val_probs": probs(d.images), "val_labels": np.asarray(d.labels)}
    if set(run.classes) <= set(FASHION_CLASSES):
        _, (x_te, y_te), _ = load_fashion_mnist_arrays()
        y = np.array([idx.get(FASHION_CLASSES[i], -1) for i in y_te])
        out["test_probs"], out["test_labels"] = probs(x_te[y >= 0][..., None]), y[y >= 0]
    np.savez(cache, **out)
    return out


def fit_vector(probs, labels, temperature: float, prior_images: float):
    """Vector scaling on log p: (w, b) minimising NLL + prior pull towards (1/T, 0)."""
    from scipy.optimize import minimize

    from imgclf.inference.confidence.calibration import log_probs

    z, y = log_probs(probs), np.asarray(labels, int)
    n, k = z.shape
    onehot = np.eye(k)[y]
    w0 = np.r_[np.full(k, 1.0 / temperature), np.zeros(k)]

    def loss(theta):
        w, b = theta[:k], theta[k:]
        s = z * w + b
        s -= s.max(1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(1, keepdims=True)
        value = -np.log(np.clip((p * onehot).sum(1), 1e-300, None)).mean() + prior_images * ((theta - w0) ** 2).sum() / (2 * n)
        g = (p - onehot) / n
        grad = np.r_[(g * z).sum(0), g.sum(0)] + prior_images * (theta - w0) / n
        return value, grad

    res = minimize(loss, w0, jac=True, method="L-BFGS-B")
    return res.x[:k], res.x[k:]


def apply_vector(probs, w, b):
    from imgclf.inference.confidence.calibration import log_probs

    s = log_probs(probs) * w + b
    s -= s.max(1, keepdims=True)
    p = np.exp(s)
    return p / p.sum(1, keepdims=True)


def maps(probs, labels, seed=0):
    """Each map as a function fitted on (probs, labels): name -> (fit -> apply)."""
    from imgclf.inference.confidence.calibration import apply_temperature, fit_temperature
    from imgclf.inference.confidence.scaling import apply_class_temperatures, fit_class_temperatures

    t = fit_temperature(probs, labels)
    out = {"temperature": lambda p: apply_temperature(p, t)}
    ct = fit_class_temperatures(probs, labels, t)
    out["class_temperature"] = lambda p: apply_class_temperatures(p, ct)
    for prior in (0.0, 100.0):
        w, b = fit_vector(probs, labels, t, prior)
        out[f"vector_prior{int(prior)}"] = lambda p, w=w, b=b: apply_vector(p, w, b)
    return out


def measure(data: dict) -> dict:
    from imgclf.inference.confidence.calibration import ece, log_probs, nll
    from imgclf.inference.confidence.scaling import choose_scaling

    p, y = data["val_probs"], data["val_labels"]
    fold = np.random.default_rng(0).permutation(len(y)) % FOLDS
    cv = {}
    flips = {}
    for k in range(FOLDS):
        fitted = maps(p[fold != k], y[fold != k])
        held = fold == k
        for name, f in fitted.items():
            q = f(p[held])
            cv.setdefault(name, []).append(-log_probs(q)[np.arange(held.sum()), y[held]])
            flips.setdefault(name, []).append(q.argmax(1) != p[held].argmax(1))
    out = {"val_images": int(len(y)), "val_accuracy": float(np.mean(p.argmax(1) == y)),
           "cv_nll": {m: round(float(np.concatenate(v).mean()), 4) for m, v in cv.items()},
           "cv_changed_class": {m: round(float(np.concatenate(v).mean()), 4) for m, v in flips.items()},
           "choice": choose_scaling(p, y)}
    if "test_probs" in data:
        pt, yt = data["test_probs"], data["test_labels"]
        out["test"] = {"images": int(len(yt)), "raw": {"nll": round(nll(pt, yt), 4), "ece": round(ece(pt, yt), 4),
                                                        "accuracy": round(float(np.mean(pt.argmax(1) == yt)), 4)}}
        for name, f in maps(p, y).items():
            q = f(pt)
            out["test"][name] = {"nll": round(nll(q, yt), 4), "ece": round(ece(q, yt), 4),
                                 "accuracy": round(float(np.mean(q.argmax(1) == yt)), 4),
                                 "changed_class": round(float(np.mean(q.argmax(1) != pt.argmax(1))), 4)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/imgclf-bench-confidence")
    ap.add_argument("--runs", default="digits,fmnist-5min,fmnist7-5min")
    args = ap.parse_args()
    results = {}
    for name in args.runs.split(","):
        run = Path(args.work) / "runs" / name
        results[name] = measure(dump(run, Path(args.work) / f"maps-{name}.npz"))
        print(name, json.dumps(results[name], indent=1), flush=True)
    (Path(args.work) / "calibration_maps.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
