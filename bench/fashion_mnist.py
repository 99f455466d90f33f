"""Issue 5 benchmark: Fashion-MNIST on this CPU, imgclf's CLI against the Keras "Simple MNIST convnet".

From a clean folder: export the data as PNG class folders with the CLI, train
the baseline with plain Keras on the same pixels (as arrays), train imgclf
with only the CLI and a time budget, evaluate on the official test split, and
print time-to-accuracy checkpoints, final accuracies and throughput figures.
Test accuracy per epoch is measured only for this table; imgclf chooses its
checkpoint on a validation split carved from train, never on test.

    .venv/bin/python bench/fashion_mnist.py --budgets 5,20
    .venv/bin/python bench/fashion_mnist.py --budgets 0.5 --max-images 5000   # a quick smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
THRESHOLDS = (0.90, 0.91, 0.92, 0.93, 0.94, 0.945)
ROOT = Path(__file__).resolve().parent.parent
IMGCLF = [sys.executable, "-m", "imgclf"]


def sh(cmd: list[str]) -> float:
    print("$", " ".join(map(str, cmd)), flush=True)
    start = time.perf_counter()
    subprocess.run(list(map(str, cmd)), check=True, cwd=ROOT)
    return time.perf_counter() - start


def time_to(curve: list[tuple[float, float]], target: float):
    for t, acc, *_ in curve:
        if acc >= target:
            return t
    return None


def load_split(folder: Path, classes: list[str], seed: int = 0):
    """The PNGs as arrays, shuffled: Keras' validation_split takes the last 10% as they come, which
    on class-ordered arrays would hold out whole classes."""
    import numpy as np
    from PIL import Image

    xs, ys = [], []
    for i, c in enumerate(classes):
        for p in sorted((folder / c).glob("*.png")):
            xs.append(np.asarray(Image.open(p)))
            ys.append(i)
    order = np.random.default_rng(seed).permutation(len(ys))
    return np.stack(xs)[order][..., None], np.array(ys)[order]


def baseline(x_tr, y_tr, x_te, y_te, epochs: int):
    """The Keras example 'Simple MNIST convnet', unchanged but for the input shape."""
    import keras
    from keras import layers

    keras.mixed_precision.set_global_policy("float32")
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    x = x_tr.astype("float32") / 255
    xt = x_te.astype("float32") / 255
    y = keras.utils.to_categorical(y_tr, 10)
    curve, train_time = [], 0.0

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            nonlocal train_time
            train_time += time.perf_counter() - self.t0  # the test evaluation below is not counted
            acc = float((self.model.predict(xt, batch_size=1000, verbose=0).argmax(1) == y_te).mean())
            curve.append((train_time, acc))
            print(f"  baseline epoch {epoch + 1}: {train_time:.0f}s test accuracy {acc:.4f}", flush=True)

    model.fit(x, y, batch_size=128, epochs=epochs, validation_split=0.1, verbose=0, callbacks=[Clock()])
    return curve


def imgclf_curve(run: Path, x_te, y_te, classes: list[str]):
    """Test accuracy of every kept epoch against cumulative training time from history.csv."""
    import numpy as np

    from imgclf.inference.tta import tta_views
    from imgclf.models.saving import load_keras_model

    # The run orders its outputs by sorted class name; the arrays use the dataset's order.
    run_classes = json.loads((run / "classes.json").read_text())
    y_te = np.array([run_classes.index(classes[i]) for i in y_te])

    # Each checkpoint predicts the way `imgclf evaluate` does: with the test-time
    # augmentation the run chose on its validation split (the third figure is without).
    tta = json.loads((run / "preprocess.json").read_text()).get("tta", "none")
    with open(run / "history.csv") as f:
        history = list(csv.DictReader(f))
    elapsed, curve = 0.0, []

    def probs_of(model, x):
        return np.concatenate([np.asarray(model(x[i:i + 1000].astype("float32"), training=False)) for i in range(0, len(x), 1000)])

    for row in history:
        elapsed += float(row["time_s"])
        path = run / "checkpoints" / f"epoch-{int(row['epoch']):03d}.keras"
        model = load_keras_model(path)
        views = [probs_of(model, v) for v in tta_views(x_te, tta)]  # the first view is the image itself
        plain, probs = views[0], np.mean(views, axis=0)
        curve.append((elapsed, float((probs.argmax(1) == y_te).mean()), float((plain.argmax(1) == y_te).mean())))
    return curve


def model_for(spec: str, budget: float) -> str:
    """The model for a budget from "small_cnn" or "5=small_cnn,20=small_resnet" (nearest budget at or below)."""
    if "=" not in spec:
        return spec
    pairs = sorted((float(b), m) for b, m in (item.split("=") for item in spec.split(",")))
    chosen = pairs[0][1]
    for b, m in pairs:
        if budget >= b:
            chosen = m
    return chosen


def add_tta_figures(result: dict, run: Path, metrics: dict) -> None:
    """The run's test-time augmentation and the best checkpoint's accuracy without it."""
    summary = json.loads((run / "summary.json").read_text())
    result["tta"] = metrics.get("tta", "none")
    result["tta_choice"] = summary.get("tta", {})
    result["best_val_accuracy"] = summary.get("best_val_accuracy")
    best = int(summary.get("best_epoch") or len(result["curve"]))
    result["test_accuracy_no_tta"] = result["curve"][best - 1][2] if result["curve"] else float("nan")


def throughput(data: Path, model_name: str, n: int = 20000, rounds: int = 5):
    """imgclf's pipeline + fit vs plain fit on in-memory arrays (same model; medians of `rounds` interleaved
    epochs, the ratio as the median of the per-round ratios); decoding alone."""
    import keras

    from imgclf.core.hardware import choose_precision
    from imgclf.data.pipeline import decode_all, make_dataset
    from imgclf.data.scan import scan_folder
    from imgclf.models.factory import create_model

    keras.mixed_precision.set_global_policy(choose_precision("auto"))
    rows = scan_folder(data).rows[:: max(1, len(scan_folder(data).rows) // n)][:n]
    classes = sorted({r["label"] for r in rows})
    labels = [classes.index(r["label"]) for r in rows]
    decode_rates = []
    for _ in range(3):
        start = time.perf_counter()
        decoded = decode_all([r["path"] for r in rows], labels, 28, "grayscale", verbose=False)
        decode_rates.append(len(rows) / (time.perf_counter() - start))
    decode_rate = statistics.median(decode_rates)

    model = create_model(model_name, 10, 28, 1)
    model.compile(keras.optimizers.AdamW(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = decoded.images.astype("float32"), decoded.labels
    ds = make_dataset(decoded, 128, shuffle=True)

    def plain_fit():
        model.fit(x, y, batch_size=128, epochs=1, verbose=0)

    def piped_fit():
        model.fit(ds, epochs=1, verbose=0)

    def rate(fit_once):
        t0 = time.perf_counter()
        fit_once()
        return len(rows) / (time.perf_counter() - t0)

    plain_fit(), piped_fit()  # the first epoch of each includes tracing
    plains, pipeds = [], []
    for _ in range(rounds):  # interleaved, so a slow minute on the shared host hits both alike
        plains.append(rate(plain_fit))
        pipeds.append(rate(piped_fit))
    plain, piped = statistics.median(plains), statistics.median(pipeds)
    ratio = statistics.median(b / a for a, b in zip(plains, pipeds))
    return {"plain_fit_img_s": plain, "imgclf_pipeline_fit_img_s": piped, "ratio": ratio, "rounds": rounds,
            "decode_png_img_s": decode_rate, "decode_over_consumption": decode_rate / piped}


THROUGHPUT_LINE = ("training throughput (medians of {rounds} interleaved epochs): plain model.fit on arrays "
                   "{plain_fit_img_s:.0f} img/s, imgclf pipeline {imgclf_pipeline_fit_img_s:.0f} img/s (ratio {ratio:.2f}); PNG decoding alone "
                   "{decode_png_img_s:.0f} img/s = {decode_over_consumption:.1f}x what training consumes")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "fmnist"))
    ap.add_argument("--model", default="5=small_cnn,20=small_resnet",
                    help="one model for every budget, or BUDGET=MODEL pairs (the validation split chose these)")
    ap.add_argument("--budgets", default="5,20", help="comma-separated training budgets in minutes")
    ap.add_argument("--baseline-epochs", type=int, default=15)
    ap.add_argument("--max-images", type=int, default=0, help="train on a subset (smoke runs)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--throughput-only", action="store_true", help="only measure the pipeline and decoding throughput")
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs and the last results.json baseline; recompute the table")
    args = ap.parse_args()

    from imgclf.core.hardware import machine_summary
    from imgclf.data.builtin import FASHION_CLASSES

    out = Path(args.out)
    data = out / "data"
    if not (data / ".imgclf-export-complete").exists():
        sh(IMGCLF + ["datasets", "export", "fashion-mnist", data])
    print(f"Machine: {machine_summary()}; load average before: {os.getloadavg()}", flush=True)
    if args.throughput_only:
        t = throughput(data / "train", model_for(args.model, min(float(b) for b in args.budgets.split(","))))
        print(THROUGHPUT_LINE.format(**{"rounds": "?", **t}), f"load average after: {os.getloadavg()}")
        return
    x_te, y_te = load_split(data / "test", FASHION_CLASSES)
    results = {"machine": machine_summary(), "load_before": os.getloadavg()}

    previous = json.loads((out / "results.json").read_text()) if args.reuse and (out / "results.json").exists() else {}
    if previous.get("baseline_curve"):
        results["baseline_curve"] = previous["baseline_curve"]
    elif not args.skip_baseline:
        x_tr, y_tr = load_split(data / "train", FASHION_CLASSES)
        results["baseline_curve"] = baseline(x_tr, y_tr, x_te, y_te, args.baseline_epochs)

    results["imgclf"] = {}
    for budget in [float(b) for b in args.budgets.split(",")]:
        model = model_for(args.model, budget)
        run = out / "runs" / f"{model}-{budget:g}min"
        if args.reuse and (run / "metrics.json").exists():
            metrics = json.loads((run / "metrics.json").read_text())
            history_time = sum(float(r["time_s"]) for r in csv.DictReader(open(run / "history.csv")))
            old = previous.get("imgclf", {}).get(str(budget), {})
            results["imgclf"][budget] = {"test_accuracy": metrics["accuracy"], "train_time_s": history_time,
                                         "command_wall_s": old.get("command_wall_s", float("nan")),
                                         "curve": imgclf_curve(run, x_te, y_te, FASHION_CLASSES)}
            add_tta_figures(results["imgclf"][budget], run, metrics)
            results["imgclf"][budget]["model"] = model
            continue
        if run.exists():
            import shutil

            shutil.rmtree(run)
        cmd = IMGCLF + ["train", data / "train", "--model", model, "--time-budget", budget, "--out", run,
                        "--test-fraction", "0", "--keep-epochs"]
        if args.max_images:
            cmd += ["--max-images", args.max_images]
        wall = sh(cmd)
        sh(IMGCLF + ["evaluate", run, "--data", data / "test"])
        metrics = json.loads((run / "metrics.json").read_text())
        history_time = sum(float(r["time_s"]) for r in csv.DictReader(open(run / "history.csv")))
        results["imgclf"][budget] = {"test_accuracy": metrics["accuracy"], "train_time_s": history_time,
                                     "command_wall_s": wall, "curve": imgclf_curve(run, x_te, y_te, FASHION_CLASSES)}
        add_tta_figures(results["imgclf"][budget], run, metrics)
        results["imgclf"][budget]["model"] = model

    results["throughput"] = previous["throughput"] if previous.get("throughput") else throughput(
        data / "train", model_for(args.model, min(float(b) for b in args.budgets.split(","))))
    results["load_after"] = os.getloadavg()

    print("\n== Fashion-MNIST on", results["machine"], "==")
    print(f"load average before {results['load_before']}, after {results['load_after']}")
    header = f"{'accuracy':>9} | {'baseline':>9} | " + " | ".join(f"imgclf {b:g} min" for b in results["imgclf"])
    print("time to test accuracy (s of training)\n" + header)
    for target in THRESHOLDS:
        cells = [time_to(results.get("baseline_curve", []), target)] + [time_to(r["curve"], target) for r in results["imgclf"].values()]
        print(f"{target:>9.3f} | " + " | ".join(f"{c:>9.0f}" if c is not None else f"{'-':>9}" for c in cells))
    if results.get("baseline_curve"):
        b = results["baseline_curve"]
        print(f"baseline final test accuracy {b[-1][1]:.4f} after {b[-1][0]:.0f}s ({len(b)} epochs)")
    for budget, r in results["imgclf"].items():
        print(f"imgclf {budget:g} min budget ({r.get('model', '?')}): test accuracy {r['test_accuracy']:.4f} (test-time augmentation: "
              f"{r.get('tta', 'none')}; best checkpoint without it {r.get('test_accuracy_no_tta', float('nan')):.4f}), "
              f"validation accuracy {r.get('best_val_accuracy') or float('nan'):.4f}, "
              f"training {r['train_time_s']:.0f}s, whole command {r['command_wall_s']:.0f}s")
    base_t91 = time_to(results.get("baseline_curve", []), 0.91)
    ours = [time_to(r["curve"], 0.91) for r in results["imgclf"].values()]
    ours = [t for t in ours if t is not None]
    if base_t91 and ours:
        print(f"time to 0.91: baseline {base_t91:.0f}s, imgclf {min(ours):.0f}s, ratio {base_t91 / min(ours):.2f}x")
    t = results["throughput"]
    print(THROUGHPUT_LINE.format(**{"rounds": "?", **t}))
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
