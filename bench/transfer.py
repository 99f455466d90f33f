"""Issue 14 benchmark: does imgclf's default win on users' own small photo sets?

    .venv/bin/python bench/transfer.py                       # the whole grid, then the tables and the plot
    .venv/bin/python bench/transfer.py --timing-only         # only the wall-time target (N = 20, 3 classes)
    .venv/bin/python bench/transfer.py --plot-only           # tables and plot again from WORK/results.jsonl
    .venv/bin/python bench/transfer.py --datasets lfw --n 5 --seeds 0 --methods probe,small_cnn --skip-timing  # a smoke test

Grid: for each dataset (--datasets digits,fashion-mnist,lfw; see bench/transfer_data.py),
each N training images per class (--n 5,10,20,50,200,all; "all" = the whole
training pool, capped at --max-all per class; an N larger than the pool is
skipped) and each seed (--seeds 0,1), one folder DIR with train/ (N per class)
and test/ (the dataset's own test images, --test-per-class each), and four methods:

* default    `imgclf train DIR --out RUN --seed S --verbose 0`: whatever imgclf does
             with no model flag (the model, weights and finetune it chose are recorded
             from RUN/config.yaml, with `auto_choice` where present).
* lite0      the same plus `--model efficientnet_lite0 --weights imagenet`.
* small_cnn  the same plus `--model small_cnn` (from scratch).
* probe      scikit-learn: LogisticRegressionCV on standardised EfficientNet-Lite0
             ImageNet features (the 'pool' layer, 1280 values) of all N images per
             class, at --probe-size px (224, Lite0's native size, the size imgclf's
             Lite0 runs use too); C chosen by 5-fold stratified cross-validation
             (log loss) over 7 values from 1e-4 to 1e2. A strong, honest baseline.

Measured per run: test accuracy and balanced accuracy on DIR/test, and wall
seconds. Wall time is the training process from its start to its exit
(`imgclf train`, or the probe's own Python process: interpreter, TensorFlow
import, model build, decoding, features, cross-validated fit), start-up
included; evaluation on the test set is not counted for either (the probe's
test features are computed inside its process, timed, and subtracted). imgclf
runs are evaluated in this process by imgclf's own `evaluate()` (the code of
`imgclf evaluate RUN --data TEST`, without the figures), with the test-time
augmentation the run chose.

Targets (issue 14): default >= probe at every N (within 0.5 points at N <= 10),
>= probe + 2 points at N >= 200; `imgclf train` at N = 20 and 3 classes
(Fashion-MNIST t-shirt, trouser, bag) under 60 s wall, start-up included.

Each run appends one JSON line to WORK/results.jsonl as soon as it ends: a
killed bench keeps what it measured, and a rerun skips every (dataset, N,
seed, method) already there (failed runs are retried). The end prints one
markdown table per dataset (median over seeds), the target lines, the machine
and its load, and draws bench/transfer_time_accuracy.png (wall seconds, log
scale, against test accuracy; one panel per dataset, points labelled by N).
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
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # transfer_data
sys.path.insert(0, str(HERE.parent / "src"))  # imgclf, also without the editable install

import transfer_data as data

METHODS = ("default", "lite0", "probe", "small_cnn")
METHOD_FLAGS = {
    "default": [],  # no model flag: what a user gets
    "lite0": ["--model", "efficientnet_lite0", "--weights", "imagenet"],
    "small_cnn": ["--model", "small_cnn"],
}
PROBE_CS = [10.0 ** k for k in range(-4, 3)]  # 7 values of C, 1e-4 .. 1e2
TIMING_N = 20
TIMING_LIMIT_S = 60.0
IMGCLF = [sys.executable, "-m", "imgclf"]  # the CLI of this checkout's virtualenv (same as .venv/bin/imgclf)


# ---------------------------------------------------------------- results file

def load_results(path: Path) -> list[dict]:
    """Every row of results.jsonl (a half-written last line from a kill is ignored)."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


def key(row: dict) -> tuple:
    # n_per_class too: "all" means another number under another --max-all.
    return row["dataset"], str(row["n"]), row["n_per_class"], row["seed"], row["method"], row["size"]


def append_result(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------- the grid

def n_values(args, source: data.Source) -> list[tuple[str, int]]:
    """(label, images per class) of each N that fits the pool; "all" = the smallest class's pool, capped at --max-all."""
    pool = source.pool_size()
    out = []
    for label in args.n.split(","):
        n = min(pool, args.max_all) if label == "all" else int(label)
        if n > pool:
            print(f"  {source.name}: N={label} skipped (the pool has {pool} per class)")
        elif label == "all" and any(n == m for _, m in out):
            print(f"  {source.name}: N=all skipped (= N={n} already in the grid)")
        else:
            out.append((label, n))
    if "all" in args.n.split(",") and pool > args.max_all:
        print(f"  {source.name}: N=all is capped at --max-all {args.max_all} of {pool} per class (2 CPU cores)")
    return out


def cells(args, work: Path):
    """(dataset, source, N label, N, seed, cell folder, test folder) for every cell to run, writing the images."""
    names = [data.TIMING_DATASET] if args.timing_only else args.datasets.split(",")
    if not args.timing_only and not args.skip_timing:
        names.append(data.TIMING_DATASET)
    for name in names:
        source = data.load_source(name, args.test_per_class)
        root = work / name
        data.check_settings(root, {"size": args.size, "test_per_class": args.test_per_class})
        test_dir = data.write_test(source, root, args.size)
        counts = {c: len(v) for c, v in source.test.items()}
        print(f"{name}: {len(source.classes)} classes, pool {source.pool_size()} per class (smallest class), "
              f"test {sum(counts.values())} images ({min(counts.values())}-{max(counts.values())} per class), {args.size} px RGB")
        grid = [(str(TIMING_N), TIMING_N)] if name == data.TIMING_DATASET else n_values(args, source)
        for label, n in grid:
            for seed in args.seed_list:
                yield name, source, label, n, seed, root, test_dir


# ---------------------------------------------------------------- imgclf runs

def run_imgclf(method: str, cell: Path, run_dir: Path, seed: int) -> dict:
    """`imgclf train CELL --out RUN --seed S --verbose 0 [flags]`, timed from process start to exit."""
    shutil.rmtree(run_dir, ignore_errors=True)  # a run killed earlier; an existing --out would get a -2 suffix
    run_dir.parent.mkdir(parents=True, exist_ok=True)  # for the log, also when train fails before making RUN
    cmd = IMGCLF + ["train", str(cell), "--out", str(run_dir), "--seed", str(seed), "--verbose", "0"] + METHOD_FLAGS[method]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (run_dir.parent / f"{method}.log").write_text(" ".join(cmd) + "\n\n" + proc.stdout + proc.stderr)
    row = {"command": " ".join(["imgclf"] + cmd[3:]), "wall_s": round(wall, 2), "returncode": proc.returncode}
    if proc.returncode != 0:
        row["error"] = (proc.stderr or proc.stdout).strip()[-800:]
        return row
    try:
        row.update(run_facts(run_dir))
    except (OSError, ValueError, KeyError) as e:  # a bundle without a file this bench reads
        row["error"] = f"reading the run: {type(e).__name__}: {e}"
    return row


def run_facts(run_dir: Path) -> dict:
    """What the run chose and did: model, weights, finetune, size, epochs, training time, split counts."""
    import csv

    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    pre = json.loads((run_dir / "preprocess.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    with open(run_dir / "manifest.csv") as f:
        splits = [r["split"] for r in csv.DictReader(f)]
    return {
        "model": cfg.get("model"), "weights": cfg.get("weights"), "finetune": cfg.get("finetune"),
        "auto_choice": cfg.get("auto_choice"), "epochs": cfg.get("epochs"), "img_size": pre.get("img_size"),
        "color_mode": pre.get("color_mode"), "precision": cfg.get("precision"),
        "epochs_run": summary.get("epochs_run"), "train_time_s": summary.get("train_time_s"),
        # imgclf holds out validation images from train/ and leaves out near-duplicates of test images:
        # the images it actually trained on.
        "n_train": splits.count("train"), "n_val": splits.count("val"), "n_excluded": splits.count("excluded"),
    }


def evaluate_run(run_dir: Path, test_dir: Path) -> dict:
    """Test accuracy and balanced accuracy with imgclf's own evaluate() (`imgclf evaluate RUN --data TEST`)."""
    import gc

    import keras

    from imgclf.evaluation.evaluate import evaluate

    ev = evaluate(run_dir, data=test_dir, plots=False, verbose=False)
    out = {"acc": round(ev.metrics["accuracy"], 4), "balanced_acc": round(ev.metrics["balanced_accuracy"], 4),
           "n_test": int(ev.metrics["num_samples"]), "tta": ev.metrics.get("tta")}
    del ev
    keras.backend.clear_session()  # one process evaluates every run: do not pile up graphs
    gc.collect()
    return out


# ---------------------------------------------------------------- the linear probe

def run_probe(cell: Path, test_dir: Path, seed: int, probe_size: int, cache: Path) -> dict:
    """The probe in its own Python process, so that its wall time includes start-up like `imgclf train`'s."""
    out_json = cell.parent / f"probe-{cell.name}.json"
    out_json.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe-worker", str(cell / "train"), str(test_dir),
           str(seed), str(probe_size), str(cache), str(out_json)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (cell.parent / f"probe-{cell.name}.log").write_text(" ".join(cmd) + "\n\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        return {"wall_s": round(wall, 2), "returncode": proc.returncode, "error": (proc.stderr or proc.stdout).strip()[-800:]}
    row = json.loads(out_json.read_text())
    # The test features are evaluation, not training: off the clock, as imgclf's evaluation is.
    row["wall_s"] = round(wall - row["test_features_s"], 2)
    row["returncode"] = 0
    return row


def probe_worker(train_dir: str, test_dir: str, seed: str, size: str, cache: str, out_json: str) -> None:
    """(Runs in the child process.) Lite0 features -> StandardScaler -> LogisticRegressionCV; writes a JSON result."""
    t_start = time.perf_counter()
    import numpy as np
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from imgclf.data.pipeline import decode_all
    from imgclf.models.factory import create_model

    # scikit-learn 1.9 announces LogisticRegressionCV's 1.10 attribute and l1_ratios changes; nothing to act on here.
    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
    size, seed = int(size), int(seed)
    model = create_model("efficientnet_lite0", num_classes=2, img_size=size, weights="imagenet")
    import keras

    # The layer feeding dropout -> classifier: global-average-pooled backbone features (1280).
    features = keras.Model(model.inputs, model.get_layer("pool").output)
    t_ready = time.perf_counter()

    def folder(root):
        classes = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
        paths, labels = [], []
        for i, c in enumerate(classes):
            for p in sorted((Path(root) / c).iterdir()):
                paths.append(str(p))
                labels.append(i)
        return classes, paths, labels

    def embed(paths, labels):
        # imgclf's own decoder and resize (squash, bilinear), as the Lite0 runs see the images.
        decoded = decode_all(paths, labels, size, "rgb", verbose=False)
        return features.predict(decoded.images, batch_size=64, verbose=0), decoded.labels

    classes, paths, labels = folder(train_dir)
    x_train, y_train = embed(paths, labels)
    t_feat = time.perf_counter()
    per_class = int(np.bincount(y_train).min())
    clf = make_pipeline(StandardScaler(), LogisticRegressionCV(
        Cs=PROBE_CS, cv=StratifiedKFold(min(5, per_class), shuffle=True, random_state=seed),
        scoring="neg_log_loss", max_iter=5000))
    clf.fit(x_train, y_train)
    t_fit = time.perf_counter()

    # Test features depend only on the test images and the size: computed once per dataset, kept in `cache`.
    test_classes, test_paths, test_labels = folder(test_dir)
    assert test_classes == classes, (test_classes, classes)
    cache_file = Path(cache)
    if cache_file.exists() and json.loads(np.load(cache_file)["paths"].item()) == test_paths:
        z = np.load(cache_file)
        x_test, y_test = z["x"], z["y"]
    else:
        x_test, y_test = embed(test_paths, test_labels)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, x=x_test, y=y_test, paths=np.array(json.dumps(test_paths)))
        os.replace(tmp, cache_file)
    t_test = time.perf_counter()
    pred = clf.predict(x_test)
    Path(out_json).write_text(json.dumps({
        "acc": round(float(accuracy_score(y_test, pred)), 4),
        "balanced_acc": round(float(balanced_accuracy_score(y_test, pred)), 4),
        "n_test": len(y_test), "n_train": len(y_train), "img_size": size,
        "model": "efficientnet_lite0 features + LogisticRegressionCV", "weights": "imagenet",
        "C": float(np.ravel(clf[-1].C_)[0]), "cv_folds": min(5, per_class),
        "startup_s": round(t_ready - t_start, 2),  # imports + model build, after the interpreter started
        "train_features_s": round(t_feat - t_ready, 2), "fit_s": round(t_fit - t_feat, 2),
        "test_features_s": round(t_test - t_fit, 2),
    }))


# ---------------------------------------------------------------- report

def machine() -> dict:
    """The machine, library versions and the tree measured (the default model is changing under active work)."""
    from importlib.metadata import PackageNotFoundError, version

    from imgclf.core.hardware import machine_summary

    def installed(*names):
        for name in names:  # TensorFlow's wheel is tensorflow-cpu on some machines (this one)
            try:
                return version(name)
            except PackageNotFoundError:
                pass
        return "?"

    def git(*a):
        try:
            return subprocess.run(["git", *a], check=False, cwd=HERE.parent, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    return {"machine": machine_summary(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "tensorflow": installed("tensorflow", "tensorflow-cpu"), "keras": installed("keras"),
            "scikit-learn": installed("scikit-learn"),
            "commit": git("rev-parse", "--short", "HEAD"), "src_modified": bool(git("status", "--porcelain", "src"))}


def target(n_per_class: int) -> tuple[float, str]:
    """The issue's target for default - probe, in points, at this N."""
    if n_per_class <= 10:
        return -0.5, ">= -0.5"
    if n_per_class >= 200:
        return 2.0, ">= +2.0"
    return 0.0, ">= 0"


def chosen(row: dict) -> str:
    """What the default trained, in a few words: 'small_cnn', 'efficientnet_lite0 head', 'efficientnet_lite0 ft top'."""
    if row.get("weights") in (None, "", "none"):
        return str(row.get("model"))
    return f"{row['model']} " + ("head" if row.get("finetune") == "none" else f"ft {row.get('finetune')}")


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def report(rows: list[dict], methods: list[str]) -> None:
    """Markdown: one table per dataset (median over seeds), the target lines, the timing check."""
    rows = [r for r in rows if "error" not in r]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    for name in datasets:
        mine = [r for r in rows if r["dataset"] == name]
        ns = sorted({(r["n_per_class"], str(r["n"])) for r in mine})
        present = [m for m in methods if any(r["method"] == m for r in mine)]
        first = mine[0]
        print(f"\n### {name} ({first['classes']} classes, {first['size']} px, test {first.get('n_test', '?')} images)\n")
        print("Cells: median test accuracy over seeds (median wall s, start-up included); default: the model it chose.\n")
        print("| N per class | seeds | " + " | ".join(present) + " |")
        print("|---|---|" + "---|" * len(present))
        for n, label in ns:
            cell = [r for r in mine if r["n_per_class"] == n and str(r["n"]) == label]
            cols = []
            for m in present:
                rs = [r for r in cell if r["method"] == m]
                if not rs:
                    cols.append("")
                    continue
                txt = f"{med([r['acc'] for r in rs]):.3f} ({med([r['wall_s'] for r in rs]):.0f} s)"
                if m == "default":
                    txt += " " + "/".join(sorted({chosen(r) for r in rs}))
                cols.append(txt)
            seeds = len({r["seed"] for r in cell})
            print(f"| {label if label == str(n) else f'{label} ({n})'} | {seeds} | " + " | ".join(cols) + " |")
        if {"default", "probe"} <= set(present):
            print("\ndefault - probe (points, median accuracy over seeds):\n")
            for n, label in ns:
                d = med([r["acc"] for r in mine if r["n_per_class"] == n and r["method"] == "default"])
                p = med([r["acc"] for r in mine if r["n_per_class"] == n and r["method"] == "probe"])
                if d is None or p is None:
                    continue
                diff = 100 * (d - p)
                goal, text = target(n)
                print(f"- N={label if label == str(n) else f'{label} ({n})'}: {diff:+.1f} (target {text}) "
                      f"{'PASS' if diff >= goal - 1e-9 else 'FAIL'}")
    timing = [r for r in rows if r["dataset"] == data.TIMING_DATASET and r["method"] == "default"]
    if timing:
        w = med([r["wall_s"] for r in timing])
        print(f"\nWall time, `imgclf train` (default) at N = {TIMING_N} and 3 classes ({', '.join(data.TIMING_CLASSES)}): "
              f"median {w:.1f} s over {len(timing)} run(s) "
              f"({', '.join(str(r['wall_s']) for r in timing)} s), target < {TIMING_LIMIT_S:.0f} s: "
              f"{'PASS' if w < TIMING_LIMIT_S else 'FAIL'}")


def plot(rows: list[dict], methods: list[str], out: Path) -> None:
    """Time-to-accuracy: wall s (log) against test accuracy, medians over seeds, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    rows = [r for r in rows if "error" not in r]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    if not datasets:
        print("nothing to plot")
        return
    style = {"default": ("o", "C0"), "lite0": ("s", "C1"), "probe": ("^", "C2"), "small_cnn": ("D", "C3")}
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4.2), squeeze=False)
    for ax, name in zip(axes[0], datasets):
        for m in methods:
            pts = {}
            for r in rows:
                if r["dataset"] == name and r["method"] == m:
                    pts.setdefault((r["n_per_class"], str(r["n"])), []).append(r)
            if not pts:
                continue
            order = sorted(pts)
            xs = [med([r["wall_s"] for r in pts[k]]) for k in order]
            ys = [med([r["acc"] for r in pts[k]]) for k in order]
            marker, colour = style.get(m, ("x", "k"))
            ax.plot(xs, ys, marker=marker, color=colour, label=m, alpha=0.85)
            for (n, label), x, y in zip(order, xs, ys):
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7, color=colour)
        ax.set_xscale("log")
        # Plain seconds at 1-2-5 steps: matplotlib's default labels every minor tick of a narrow log range.
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(name)
        ax.set_xlabel("wall seconds (start-up included, log scale)")
        ax.set_ylabel("test accuracy")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Time to accuracy: points labelled by N images per class (median over seeds)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"\nPlot: {out}")


# ---------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=",".join(data.DATASETS), help="comma-separated: digits,fashion-mnist,lfw")
    p.add_argument("--n", default="5,10,20,50,200,all", help="training images per class; all = the pool, up to --max-all")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--methods", default="", help=f"comma-separated, of {','.join(METHODS)} (default: all; "
                   "with --timing-only: default)")
    p.add_argument("--work", default="/tmp/imgclf-bench-transfer")
    p.add_argument("--size", type=int, default=64, help="side of the written PNGs (the datasets are 8-28 px)")
    p.add_argument("--probe-size", type=int, default=224, help="input side of the probe's Lite0 (224 = native)")
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--max-all", type=int, default=600, help='cap of N="all" per class, to stay feasible on 2 cores')
    p.add_argument("--timing-only", action="store_true", help=f"only the N={TIMING_N}, 3-class wall-time check")
    p.add_argument("--skip-timing", action="store_true", help="leave the wall-time check out of the grid")
    p.add_argument("--plot-only", action="store_true", help="tables and plot from WORK/results.jsonl, nothing run")
    p.add_argument("--plot", default=str(HERE / "transfer_time_accuracy.png"))
    args = p.parse_args(argv)
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    # The timing check is about `imgclf train` with no model flag; the other methods only when asked for.
    args.method_list = args.methods.split(",") if args.methods else (["default"] if args.timing_only else list(METHODS))
    bad = sorted(set(args.method_list) - set(METHODS))
    if bad:
        p.error(f"unknown method(s) {', '.join(bad)}; expected {', '.join(METHODS)}")
    return args


def main(argv=None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--probe-worker":
        probe_worker(*sys.argv[2:8])
        return
    args = parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = work / "results.jsonl"
    info = machine()
    load_start = os.getloadavg()
    print(f"Machine: {info['machine']}, {info['memory_gib']} GiB; TensorFlow {info['tensorflow']}, Keras {info['keras']}, "
          f"scikit-learn {info['scikit-learn']}; imgclf at {info['commit']}"
          f"{' with uncommitted changes in src/' if info['src_modified'] else ''}")
    print(f"Load average at start: {' '.join(f'{x:.2f}' for x in load_start)} (1, 5, 15 min)")

    if not args.plot_only:
        done = {key(r) for r in load_results(results) if "error" not in r}
        for name, source, label, n, seed, root, test_dir in cells(args, work):
            # "all": every image of every class up to --max-all (classes of digits differ by a few images);
            # n, the smallest class's count, is what the tables and targets use.
            take = min(max(len(v) for v in source.pool.values()), args.max_all) if label == "all" else n
            cell = data.make_cell(source, root, label, take, seed, args.size)
            for method in args.method_list:
                row = {"dataset": name, "n": label, "n_per_class": n, "seed": seed, "method": method,
                       "size": args.size, "classes": len(source.classes)}
                if key(row) in done:
                    continue
                row["load_before"] = round(os.getloadavg()[0], 2)
                if method == "probe":
                    cache = root / f"probe-test-features-{args.probe_size}.npz"
                    row.update(run_probe(cell, test_dir, seed, args.probe_size, cache))
                else:
                    run_dir = work / "runs" / name / cell.name / method
                    row.update(run_imgclf(method, cell, run_dir, seed))
                    if "error" not in row:
                        try:
                            row.update(evaluate_run(run_dir, test_dir))
                        except Exception as e:  # noqa: BLE001 - recorded as a failed run (retried on a rerun), the grid goes on
                            row["error"] = f"evaluation: {type(e).__name__}: {e}"
                row.update(commit=info["commit"], src_modified=info["src_modified"], time=time.strftime("%Y-%m-%dT%H:%M:%S"))
                append_result(results, row)
                if "error" in row:
                    print(f"  {name} N={label} seed {seed} {method}: FAILED after {row['wall_s']:.0f} s: "
                          f"{row['error'].splitlines()[-1] if row['error'] else ''}", flush=True)
                else:
                    chose = f" [{row['model']}, weights {row['weights']}, finetune {row.get('finetune')}]" if method == "default" else ""
                    print(f"  {name} N={label} seed {seed} {method}: acc {row['acc']:.3f} "
                          f"(balanced {row['balanced_acc']:.3f}), {row['wall_s']:.1f} s{chose}", flush=True)

    rows = load_results(results)
    shown = [r for r in rows if r["dataset"] == data.TIMING_DATASET] if args.timing_only else rows
    print(f"\n## Results ({results}; median over seeds)")
    print(f"N = all: the whole training pool, capped at --max-all {args.max_all} per class. "
          f"Test: up to {args.test_per_class} images per class of each dataset's own test split. "
          f"Probe features at {args.probe_size} px.")
    report(shown, list(METHODS) if args.plot_only else args.method_list)
    print(f"\nMachine: {info['machine']}; load average at start {load_start[0]:.2f}, at end {os.getloadavg()[0]:.2f} "
          "(1 min; the CPU may be shared, so wall times are noisy)")
    plot(rows, list(METHODS), Path(args.plot))  # every run in results.jsonl, also after --timing-only


if __name__ == "__main__":
    main()
