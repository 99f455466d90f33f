"""Issue 16 benchmark: calibration, unknown rejection and conformal prediction sets, measured.

    .venv/bin/python bench/confidence.py                         # budgets 5 and 20 minutes (the issue's recipes)
    .venv/bin/python bench/confidence.py --budgets 3 --ood-budget 3   # the reduced run recorded in RESULTS.md

Parts (each writes WORK/<part>.json; a rerun reuses finished runs with --reuse):

* calibration: `imgclf train FMNIST/train --model small_cnn --time-budget B --test-fraction 0`
  for each budget, then on the 10,000 Fashion-MNIST test images: accuracy, ECE
  (15 bins) and NLL of the model's own probabilities and of the calibrated ones
  (temperature fitted on validation at the end of training), and the empirical
  coverage and mean size of the conformal sets at 0.90 and 0.95. The same for
  scikit-learn's digits (`imgclf datasets export digits`, default settings).
* unknown: train on Fashion-MNIST classes 0-6 (t-shirt .. shirt); known = the
  7,000 test images of those classes, unknown = (a) the 3,000 test images of
  classes 7-9 (sneaker, bag, ankle boot: near), (b) scikit-learn's digits
  upsampled to 28 px (far), (c) 500 uniform-noise and 500 blank images. AUROC
  and FPR at 95% TPR for max-softmax, energy, Mahalanobis and kNN, and the
  operating point of the run's default at its reject rate (0.05).

Images are written once as 28x28 grey PNGs under WORK/data (Debian's
dataset-fashion-mnist through `imgclf.data.builtin`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

IMGCLF = [sys.executable, "-m", "imgclf"]
KNOWN = 7  # Fashion-MNIST classes 0..6 are known in the unknown-rejection part


def sh(cmd) -> float:
    t = time.perf_counter()
    print("$", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True)
    return time.perf_counter() - t


def write_folder(root: Path, x: np.ndarray, y: np.ndarray, classes: list[str]) -> Path:
    if (root / ".complete").exists():
        return root
    for i, (img, label) in enumerate(zip(x, y)):
        path = root / classes[label] / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, "L").save(path, compress_level=1)
    (root / ".complete").write_text("")
    return root


def outputs(run: Path, x: np.ndarray):
    """Calibrated probabilities (with the run's TTA, as `imgclf predict` gives them), the model's own
    probabilities (the temperature undone), and the penultimate features of grey images `x`."""
    import imgclf
    clf = imgclf.load(run)
    size, channels = clf.preprocess["img_size"], clf.preprocess.get("channels", 3)
    imgs = np.stack([clf.decode(Image.fromarray(a, "L")) for a in x]) if x.shape[1] != size or channels != 1 else x[..., None]
    probs, feats = [], []
    for i in range(0, len(imgs), 256):
        batch = imgs[i:i + 256]
        probs.append(clf.predict_arrays(batch))
        feats.append(clf.backend.embed(batch.astype(np.float32)))
    cal = np.concatenate(probs)
    return cal, clf.confidence.uncalibrate(cal), np.concatenate(feats), clf.confidence


def calibration_part(run: Path, x, names: list[str]) -> dict:
    """`names`: each image's class name (the run orders its classes by folder name, not as the dataset does)."""
    from imgclf.core.run import Run
    from imgclf.inference.confidence import conformal
    from imgclf.inference.confidence.calibration import ece, nll

    index = {c: i for i, c in enumerate(Run(run).classes)}
    y = np.array([index[n] for n in names])
    cal, raw, _, conf = outputs(run, x)
    out = {"temperature": conf.temperature, "accuracy_before": float(np.mean(raw.argmax(1) == y)),
           "accuracy_after": float(np.mean(cal.argmax(1) == y)), "ece_before": ece(raw, y), "ece_after": ece(cal, y),
           "nll_before": nll(raw, y), "nll_after": nll(cal, y), "test_images": int(len(y)), "conformal": {}}
    for c in (0.9, 0.95):
        hit, size = conformal.coverage_and_size(cal, y, conf.qhat(c))
        # Plain APS (empty sets allowed): the quantile's own coverage, without the top class forced in.
        plain_hit, plain_size = conformal.coverage_and_size(cal, y, conf.qhat(c), keep_top=False)
        out["conformal"][str(c)] = {"coverage": hit, "mean_set_size": size, "plain_aps_coverage": plain_hit,
                                    "plain_aps_mean_set_size": plain_size}
    return out


def unknown_part(run: Path, known_x, unknown_sets: dict) -> dict:
    from imgclf.inference.confidence import ood

    cal, _, feats, conf = outputs(run, known_x)
    known = {m: ood.scores(m, cal, feats, conf.stats) for m in ood.METHODS}
    out = {"known_images": int(len(known_x)), "default": conf.method, "reject_rate": conf.default_reject_rate(), "sets": {}}
    thr = conf.reject_threshold()
    out["known_rejected"] = float(np.mean(known[conf.method] > thr))
    for name, x in unknown_sets.items():
        c2, _, f2, _ = outputs(run, x)
        row = {"images": int(len(x))}
        for m in ood.METHODS:
            s = ood.scores(m, c2, f2, conf.stats)
            row[m] = {"auroc": ood.auroc(known[m], s), "fpr95": ood.fpr_at_95(known[m], s)}
            if m == conf.method:
                row["rejected_at_default"] = float(np.mean(s > thr))
        out["sets"][name] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/imgclf-bench-confidence")
    ap.add_argument("--budgets", default="5,20", help="minutes of training for the calibration runs")
    ap.add_argument("--models", default="5=small_cnn,20=small_resnet,3=small_cnn")
    ap.add_argument("--ood-budget", type=float, default=5.0)
    ap.add_argument("--parts", default="digits,calibration,unknown")
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args()

    from imgclf.data.builtin import load_digits_arrays, load_fashion_mnist_arrays

    work = Path(args.work)
    (x_tr, y_tr), (x_te, y_te), classes = load_fashion_mnist_arrays()
    y_tr, y_te = np.asarray(y_tr), np.asarray(y_te)
    load = {"load_before": os.getloadavg()}
    models = dict(kv.split("=") for kv in args.models.split(","))
    results = {}

    def train(data: Path, run: Path, extra: list) -> float:
        if args.reuse and (run / "confidence.json").exists():
            return float("nan")
        if run.exists():
            import shutil

            shutil.rmtree(run)
        return sh(IMGCLF + ["train", data, "--out", run, "--test-fraction", "0", "--verbose", "0"] + extra)

    if "digits" in args.parts:
        (dx, dy), (dxt, dyt), dclasses = load_digits_arrays()
        data = write_folder(work / "digits" / "train", dx, np.asarray(dy), [str(c) for c in dclasses])
        wall = train(data, work / "runs" / "digits", [])
        results["digits"] = {**calibration_part(work / "runs" / "digits", dxt, [str(dclasses[i]) for i in dyt]),
                             "train_wall_s": wall}
        print(json.dumps(results["digits"], indent=1), flush=True)
    if "calibration" in args.parts:
        data = write_folder(work / "fmnist" / "train", x_tr, y_tr, classes)
        for b in args.budgets.split(","):
            run = work / "runs" / f"fmnist-{b}min"
            wall = train(data, run, ["--model", models.get(b, "small_cnn"), "--time-budget", b])
            results[f"fmnist_{b}min"] = {**calibration_part(run, x_te, [classes[i] for i in y_te]), "model": models.get(b, "small_cnn"),
                                         "train_wall_s": wall}
            print(json.dumps(results[f"fmnist_{b}min"], indent=1), flush=True)
    if "unknown" in args.parts:
        keep = y_tr < KNOWN
        data = write_folder(work / "fmnist7" / "train", x_tr[keep], y_tr[keep], classes[:KNOWN])
        run = work / "runs" / f"fmnist7-{args.ood_budget:g}min"
        wall = train(data, run, ["--model", "small_cnn", "--time-budget", f"{args.ood_budget:g}"])
        (dx, _), (dxt, _), _ = load_digits_arrays()
        digits28 = np.stack([np.asarray(Image.fromarray(a, "L").resize((28, 28), Image.BICUBIC)) for a in np.concatenate([dx, dxt])])
        rng = np.random.default_rng(0)
        odd = np.concatenate([rng.integers(0, 256, (500, 28, 28)), np.zeros((500, 28, 28))]).astype(np.uint8)
        sets = {"fmnist 7-9 (near)": x_te[y_te >= KNOWN], "digits (far)": digits28, "noise + blank": odd}
        results["unknown"] = {**unknown_part(run, x_te[y_te < KNOWN], sets), "train_wall_s": wall}
        print(json.dumps(results["unknown"], indent=1), flush=True)
    results.update(load, load_after=os.getloadavg())
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
