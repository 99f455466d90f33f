"""Issue 16: the unknown score on data it was not chosen on: scikit-learn's digits, classes 0-6 known, 7-9 unknown.

    PYTHONPATH=$PWD/src .venv/bin/python bench/confidence_digits_unknown.py [--work DIR] [--seed N]

Trains `imgclf train WORK/train --test-fraction 0` (defaults) on the digits 0-6 of
scikit-learn's training split, then scores the test split's digits (0-6 known,
7-9 near unknowns) with Mahalanobis fitted on the run's training images as before
(raw features, shrinkage at least 0.1) and as now (power-normalised features,
Ledoit-Wolf's shrinkage), and with max-softmax as the baseline: AUROC and FPR at
95 % TPR, printed as JSON with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
KNOWN = 7  # digits 0..6 are known, 7..9 unknown


def write_known(root: Path, x, y, names) -> Path:
    if not (root / ".complete").exists():
        for i, (img, label) in enumerate(zip(x, y)):
            if label < KNOWN:
                path = root / str(names[label]) / f"{i:05d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img, "L").save(path)
        (root / ".complete").write_text("")
    return root


def class_stats(features, labels, floor: float) -> dict:
    """The statistics as imgclf fitted them before: raw features, shrunk by max(floor, Ledoit-Wolf's amount)."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    d = features.shape[1]
    means = np.stack([features[labels == c].mean(0) for c in range(labels.max() + 1)])
    centred = features - means[labels]
    cov = centred.T @ centred / len(features)
    shrink = max(floor, ledoit_wolf_shrinkage(centred, assume_centered=True))
    scale = np.trace(cov) / d
    return {"means": means, "precision": np.linalg.inv((1 - shrink) * cov + (shrink + 1e-6) * scale * np.eye(d))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/imgclf-bench-digits-unknown")
    ap.add_argument("--seed", default="0")
    args = ap.parse_args()
    import imgclf
    from imgclf.core.hardware import machine_summary
    from imgclf.core.run import Run
    from imgclf.data.builtin import load_digits_arrays
    from imgclf.inference.confidence import ood

    work = Path(args.work)
    (x, y), (xt, yt), names = load_digits_arrays()
    y, yt = np.asarray(y), np.asarray(yt)
    train_dir = write_known(work / "train", x, y, names)
    run = work / f"run-seed{args.seed}"
    if not (run / "confidence.json").exists():
        subprocess.run([sys.executable, "-m", "imgclf", "train", str(train_dir), "--out", str(run), "--test-fraction", "0",
                        "--verbose", "0", "--seed", args.seed], check=True)
    clf, record = imgclf.load(run), Run(run)

    def decoded(arrays):
        return np.stack([clf.decode(Image.fromarray(a, "L")) for a in arrays]).astype(np.float32)

    index = {c: i for i, c in enumerate(record.classes)}
    rows = [r for r in record.manifest() if r["split"] == "train"]
    train = clf.backend.embed(decoded([np.asarray(Image.open(r["path"]).convert("L")) for r in rows])).astype(np.float64)
    labels = np.array([index[r["label"]] for r in rows])
    known, near = (clf.backend.embed(decoded(xt[m])).astype(np.float64) for m in (yt < KNOWN, yt >= KNOWN))
    out = {"machine": machine_summary(), "load": os.getloadavg(), "train_images": len(train), "known": len(known),
           "near": len(near)}
    fitted = {"mahalanobis, raw features, shrinkage >= 0.1 (before)": class_stats(train, labels, 0.1),
              "mahalanobis, power-normalised, Ledoit-Wolf (now)": ood.fit_stats(train, labels, KNOWN)}  # what imgclf ships
    for name, stats in fitted.items():
        k, u = ood.mahalanobis_score(known, stats), ood.mahalanobis_score(near, stats)
        out[name] = {"auroc": round(ood.auroc(k, u), 4), "fpr95": round(ood.fpr_at_95(k, u), 3)}
    probs = clf.predict_arrays(decoded(xt))
    k, u = ood.msp_score(probs[yt < KNOWN]), ood.msp_score(probs[yt >= KNOWN])
    out["max-softmax (baseline)"] = {"auroc": round(ood.auroc(k, u), 4), "fpr95": round(ood.fpr_at_95(k, u), 3)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
