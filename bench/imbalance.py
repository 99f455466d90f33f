"""Issue 20 item 1 benchmark: the imbalance treatment of `--class-weight auto` against fixed ones.

    .venv/bin/python bench/imbalance.py --work /tmp/imb                    # the grid, then the table
    .venv/bin/python bench/imbalance.py --work /tmp/imb --table-only       # the table again from WORK/results.jsonl

Datasets (bench/transfer_data.py's loaders): scikit-learn's digits and Debian's
Fashion-MNIST, made imbalanced about 10:1 by subsampling: class i of K keeps
round(n_max * 0.1 ** (i / (K - 1))) training images (the first ones of a
seeded permutation), and the test set keeps the same profile (a held-out
folder drawn like the training data, as a user's would be). Images are
upsampled to --size px RGB PNGs.

Methods:
* lite0-head W: the head solve of `imgclf train DIR --model efficientnet_lite0
  --weights imagenet --class-weight W`, in this process so that the Lite0
  features (224 px) are computed once per folder rather than once per W: the
  split of `imgclf train` (`training_rows`, 10 % of train/ for validation),
  imgclf's decoder, `compute_features`, and `fit_softmax_regression` with each
  weighting's sample weights (`class_weights`); W = auto is
  `choose_weighting` under the monitor imgclf uses: val_loss when the run
  fine-tunes (the default), val_accuracy for a head-only run. The solve's
  augmented views are left out (the same for every W). Balanced is the old auto.
* small_cnn W: `imgclf train DIR --model small_cnn --epochs E --class-weight W`
  from scratch, the rule path (auto = none under its val_accuracy monitor, so
  only none, sqrt, balanced run), evaluated with imgclf's `evaluate()`.
Accuracy and balanced accuracy on the test folder; one JSON line per result in
WORK/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import transfer_data as data  # noqa: E402

IMGCLF = [sys.executable, "-m", "imgclf"]
METHODS = {
    "lite0-head": ([], ("auto (val_loss)", "auto (val_accuracy)", "none", "sqrt", "balanced")),
    "small_cnn": (["--model", "small_cnn"], ("none", "sqrt", "balanced")),
}
N_MAX = {"digits": (140, 36), "fashion-mnist": (120, 120)}  # (train, test) images of the largest class


def profile(k: int, n_max: int, ratio: float = 10.0) -> list[int]:
    """Class sizes falling geometrically from n_max to n_max / ratio."""
    return [max(1, round(n_max * (1 / ratio) ** (i / (k - 1)))) for i in range(k)]


def make_folder(name: str, root: Path, seed: int, size: int) -> Path:
    """WORK/<dataset>-s<seed>/{train,test}/<class>/*.png with the imbalanced profile."""
    import numpy as np
    from PIL import Image

    out = root / f"{name}-s{seed}"
    if (out / "done").exists():
        return out
    n_train, n_test = N_MAX[name]
    source = data.load_source(name, 10_000)
    for split, pool_of, n_max in (("train", source.pool, n_train), ("test", source.test, n_test)):
        for i, (c, n) in enumerate(zip(source.classes, profile(len(source.classes), n_max))):
            rng = np.random.default_rng([seed, i, split == "test"])
            for j in rng.permutation(len(pool_of[c]))[:n]:
                p = out / split / c / f"{j:05d}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pool_of[c][j], "L").resize((size, size), Image.BICUBIC).convert("RGB").save(p)
    (out / "done").write_text("")
    return out


def run_one(folder: Path, method: str, weighting: str, seed: int, work: Path, epochs: int) -> dict:
    run_dir = work / "runs" / f"{folder.name}-{method}-{weighting}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    flags = METHODS[method][0] + (["--epochs", str(epochs)] if method == "small_cnn" else [])
    cmd = IMGCLF + ["train", str(folder), "--out", str(run_dir), "--seed", str(seed), "--verbose", "0",
                    "--class-weight", weighting] + flags
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    row = {"command": " ".join(["imgclf"] + cmd[3:]), "wall_s": round(time.perf_counter() - t0, 1)}
    (run_dir.parent / f"{run_dir.name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        return {**row, "error": proc.stderr[-600:]}
    summary = json.loads((run_dir / "summary.json").read_text())
    row["chosen"] = (summary.get("class_weighting") or {}).get("weighting")

    from imgclf.evaluation.evaluate import evaluate

    ev = evaluate(run_dir, data=folder / "test", plots=False, verbose=False, explain=False)
    row.update(acc=round(ev.metrics["accuracy"], 4), balanced_acc=round(ev.metrics["balanced_accuracy"], 4),
               n_test=int(ev.metrics["num_samples"]))
    return row


def lite0_head(folder: Path, seed: int) -> list[dict]:
    """The head solve under each weighting on one folder (see the module docstring)."""
    import numpy as np

    from imgclf.data.balance import class_weights
    from imgclf.data.pipeline import decode_all
    from imgclf.data.split import training_rows
    from imgclf.models.factory import create_model
    from imgclf.training.feature_cache import compute_features
    from imgclf.training.head_solver import fit_softmax_regression
    from imgclf.training.imbalance import choose_weighting, held_out_figures

    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    rows, classes = training_rows(folder, val_fraction=0.1, test_fraction=0.1, seed=seed, verbose=False)
    feats, cache = {}, folder / "lite0-features.npz"
    if cache.exists():
        with np.load(cache) as f:
            feats = {s: (f[f"{s}_x"], f[f"{s}_y"]) for s in ("train", "val", "test")}
    else:
        model = create_model("efficientnet_lite0", num_classes=len(classes), img_size=224, weights="imagenet")
        for split in ("train", "val", "test"):
            chosen = [r for r in rows if r["split"] == split]
            dec = decode_all([r["path"] for r in chosen], [classes.index(r["label"]) for r in chosen], 224, "rgb",
                             verbose=False)
            feats[split] = (compute_features(model, dec.images).astype("float64"), np.asarray(dec.labels))
        np.savez(cache, **{f"{s}_x": v[0] for s, v in feats.items()}, **{f"{s}_y": v[1] for s, v in feats.items()})
    (x, y), (xv, yv), (xt, yt) = feats["train"], feats["val"], feats["test"]
    k = len(classes)

    memo = {}

    def solve(cw):  # each weighting solved once; choose_weighting asks again for the same ones
        key = json.dumps(cw, sort_keys=True)
        if key not in memo:
            w = None if cw is None else np.array([cw[int(c)] for c in y])
            with threadpool_limits(1):  # as the head solve runs it (OpenBLAS threads thrash beside others)
                memo[key] = fit_softmax_regression(x, y, xv, yv, k, w)
        return memo[key]

    out, fits = [], {}
    for name in ("none", "sqrt", "balanced"):
        fits[name] = solve(class_weights(y, k, name))
    for monitor in ("val_loss", "val_accuracy"):
        chosen = choose_weighting({n: class_weights(y, k, n) for n in fits}, solve, monitor, k)["weighting"]["chosen"]
        fits[f"auto ({monitor})"] = dict(fits[chosen], chosen=chosen)
    for name, fit in fits.items():
        answers = (xt @ fit["kernel"] + fit["bias"]).argmax(1)
        fig = held_out_figures(yt, answers, k, 0.0)
        out.append({"weighting": name, "chosen": fit.get("chosen"), "acc": fig["accuracy"],
                    "balanced_acc": fig["balanced_accuracy"], "n_test": int(len(yt)), "n_train": int(len(y)),
                    "n_val": int(len(yv)), "selected_by": fit["selected_by"],
                    "command": f"bench/imbalance.py (in process), folder {folder.name}",
                    "wall_s": round(time.perf_counter() - t0, 1)})
    return out


def table(results: list[dict]) -> str:
    lines = ["| dataset | method | class weight | accuracy (seeds) | balanced accuracy (seeds) | auto chose |",
             "|---|---|---|---|---|---|"]
    keys = sorted({(r["dataset"], r["method"], r["weighting"]) for r in results if "acc" in r},
                  key=lambda k: (k[0], k[1], list(METHODS[k[1]][1]).index(k[2])))
    for d, m, w in keys:
        rows = sorted((r for r in results if (r["dataset"], r["method"], r["weighting"]) == (d, m, w) and "acc" in r),
                      key=lambda r: r["seed"])
        acc = " / ".join(f"{r['acc']:.3f}" for r in rows)
        bal = " / ".join(f"{r['balanced_acc']:.3f}" for r in rows)
        mean = lambda k: statistics.mean(r[k] for r in rows)  # noqa: E731
        chose = " / ".join(str(r.get("chosen")) for r in rows) if w.startswith("auto") else ""
        lines.append(f"| {d} | {m} | {w} | {mean('acc'):.3f} ({acc}) | {mean('balanced_acc'):.3f} ({bal}) | {chose} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgclf-imbalance"))
    ap.add_argument("--datasets", default="digits,fashion-mnist")
    ap.add_argument("--methods", default="lite0-head,small_cnn")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    results_path = args.work / "results.jsonl"
    args.work.mkdir(parents=True, exist_ok=True)
    results = [json.loads(line) for line in results_path.read_text().splitlines()] if results_path.exists() else []
    done = {(r["dataset"], r["method"], r["weighting"], r["seed"]) for r in results if "acc" in r}
    if not args.table_only:
        for name in args.datasets.split(","):
            for seed in map(int, args.seeds.split(",")):
                folder = make_folder(name, args.work, seed, args.size)
                for method in args.methods.split(","):
                    if method == "lite0-head":
                        if (name, method, "none", seed) in done:
                            continue
                        for row in lite0_head(folder, seed):
                            row = {"dataset": name, "method": method, "seed": seed, **row}
                            print(json.dumps(row), flush=True)
                            with open(results_path, "a") as f:
                                f.write(json.dumps(row) + "\n")
                            results.append(row)
                        continue
                    for w in METHODS[method][1]:
                        if (name, method, w, seed) in done:
                            continue
                        row = {"dataset": name, "method": method, "weighting": w, "seed": seed,
                               **run_one(folder, method, w, seed, args.work, args.epochs)}
                        print(json.dumps(row), flush=True)
                        with open(results_path, "a") as f:
                            f.write(json.dumps(row) + "\n")
                        results.append(row)
    print(table(results))
    print(f"\nload: {os.getloadavg()}")


if __name__ == "__main__":
    main()
