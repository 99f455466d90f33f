"""Issue 14, item 4: how fast does imgclf fine-tune EfficientNet-Lite0 at 224 px on this CPU?

    .venv/bin/python bench/finetune_speed.py [--per-class 150] [--minutes 3] [--old-src /work/wt-old/src]

Data: Fashion-MNIST t-shirt, pullover and shirt (Debian's dataset-fashion-mnist), --per-class
images each, written as 64 px RGB JPEGs (a small photo set), trained at Lite0's native 224 px.

Three measurements, one after the other in this run (the machine's load is printed):

1. keras   plain `model.fit` on in-memory float32 arrays of the same model, frozen the
           same way (top 30 % of the backbone trainable, BatchNorm frozen), compiled
           with imgclf's optimizer and loss: images/s of its second epoch (the first
           traces the graph). The reference imgclf's own loop must match (ratio >= 0.95).
2. imgclf  `imgclf train DIR --model efficientnet_lite0 --weights imagenet --time-budget M`
           with the upper-block cache switched off (patched out in that process): the
           plain tf.data loop. Median images/s of its fine-tuning epochs (history.csv).
3. cached  the same command as a user types it (the cache on).
4. old     with --old-src: the same command run from an older imgclf's source tree (today's
           baseline before issue 14), if given.

Quoted: median images/s of fine-tuning epochs after the first, and ratios.
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
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

CLASSES = (0, 2, 6)  # t-shirt, pullover, shirt


def make_data(work: Path, per_class: int) -> Path:
    import numpy as np
    from PIL import Image

    from imgclf.data.builtin import load_fashion_mnist_arrays

    out = work / f"fm3-{per_class}"
    if out.exists():
        return out
    (x, y), _, names = load_fashion_mnist_arrays()
    rng = np.random.default_rng(0)
    for c in CLASSES:
        folder = out / names[c]
        folder.mkdir(parents=True)
        for i in rng.choice(np.flatnonzero(y == c), per_class, replace=False):
            Image.fromarray(x[i].squeeze()).convert("RGB").resize((64, 64), Image.BILINEAR).save(folder / f"{i}.jpg")
    return out


def keras_reference(data: Path) -> float:
    """Images/s of the second epoch of plain model.fit on in-memory arrays, frozen as imgclf freezes."""
    import keras
    import numpy as np
    from PIL import Image

    from imgclf.core.config import make_config
    from imgclf.models.factory import create_model
    from imgclf.training.recipe import compile_for_training, freeze_for_phase

    paths = sorted(p for p in data.rglob("*.jpg"))
    classes = sorted({p.parent.name for p in paths})
    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR), dtype="float32") for p in paths])
    y = keras.utils.to_categorical([classes.index(p.parent.name) for p in paths], len(classes))
    cfg = make_config({"model": "efficientnet_lite0", "weights": "imagenet", "finetune": "top", "lr": 2e-4,
                       "label_smoothing": 0.1})
    model = create_model("efficientnet_lite0", num_classes=len(classes), img_size=224, weights="imagenet")
    freeze_for_phase(model, "finetune", cfg)
    compile_for_training(model, cfg, one_hot=True)
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    model.fit(x, y, batch_size=64, epochs=3, verbose=0, shuffle=True, callbacks=[Timer()])
    return len(x) / statistics.median(times[1:])


def imgclf_run(data: Path, out: Path, minutes: float, no_cache: bool, src: Path | None = None) -> dict:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    argv = ["train", str(data), "--out", str(out), "--model", "efficientnet_lite0", "--weights", "imagenet",
            "--time-budget", str(minutes), "--verbose", "0"]
    # The plain loop: the same command with the upper-block cache switched off (a patch in this process only).
    patch = "import imgclf.training.fit_loop as f; f.upper_cache_applies = lambda *a, **k: False; " if no_cache else ""
    cmd = [sys.executable, "-c", f"{patch}import sys; from imgclf.cli import main; sys.exit(main({argv!r}))"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    rows = list(csv.DictReader(open(out / "history.csv")))
    ft = [float(r["images_per_s"]) for r in rows if r["phase"] == "finetune"][1:]
    return {"wall_s": round(wall, 1), "finetune_epochs": len(ft) + 1,
            "finetune_img_s": round(statistics.median(ft), 1) if ft else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=150)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--work", default="/tmp/imgclf-bench-finetune-speed")
    ap.add_argument("--old-src", default="", help="src/ of an older imgclf checkout, for the baseline")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = make_data(work, args.per_class)
    from imgclf.core.hardware import machine_summary

    print(f"Machine: {machine_summary()}; load average at start {os.getloadavg()}")
    results = {"keras_img_s": round(keras_reference(data), 1)}
    print(f"keras model.fit, in-memory arrays: {results['keras_img_s']} img/s", flush=True)
    for name, no_cache, src in (("imgclf_plain", True, None), ("imgclf_cached", False, None),
                                ("old", False, Path(args.old_src) if args.old_src else None)):
        if name == "old" and src is None:
            continue
        out = work / "runs" / name
        if out.exists():
            import shutil

            shutil.rmtree(out)
        results[name] = imgclf_run(data, out, args.minutes, no_cache, src)
        print(f"{name}: {results[name]}", flush=True)
    k = results["keras_img_s"]
    print(f"imgclf plain / keras: {results['imgclf_plain']['finetune_img_s'] / k:.2f}")
    print(f"imgclf cached / keras: {results['imgclf_cached']['finetune_img_s'] / k:.2f}")
    if "old" in results:
        print(f"imgclf cached / old imgclf: {results['imgclf_cached']['finetune_img_s'] / results['old']['finetune_img_s']:.2f}")
    print(f"Load average at end {os.getloadavg()}")
    (work / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
