"""How fast is `imgclf evaluate`, and what do TTA and the pictures cost?

Run: .venv/bin/python bench/evaluate_speed.py [--repeats 3] [--out bench/out/evaluate]
Trains small_cnn for 3 epochs on the built-in digits dataset (offline), then
evaluates its 360 test images repeatedly: plain, with --tta flip, and with the
pictures (Grad-CAM, embeddings with t-SNE, every plot, report.html). The
baseline, measured in the same run, is the bare model call
(Predictor.predict_arrays) on the same decoded images. Medians are quoted.
"""

import argparse
import os
import shutil
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import imgclf
from imgclf.core.hardware import machine_summary
from imgclf.data.builtin import export_dataset
from imgclf.data.pipeline import decode_all


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/out/evaluate")
    args = ap.parse_args()
    print(machine_summary())
    shutil.rmtree(args.out, ignore_errors=True)
    data = export_dataset("digits", os.path.join(args.out, "digits"))
    run = imgclf.train(str(data), out=os.path.join(args.out, "run"), epochs=3, verbose=0)
    clf = imgclf.load(run.path)
    rows = [r for r in run.manifest() if r["split"] == "test"]
    index = {c: i for i, c in enumerate(run.classes)}
    pre = clf.preprocess
    decoded = decode_all([r["path"] for r in rows], [index[r["label"]] for r in rows], pre["img_size"], pre["color_mode"], verbose=False)
    n = len(decoded)
    clf.predict_arrays(decoded.images[:128])  # warm-up (tracing)
    base = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        for i in range(0, n, 128):
            clf.predict_arrays(decoded.images[i:i + 128])
        base.append(n / (time.perf_counter() - t))
    print(f"{n} test images, {pre['img_size']}px {pre['color_mode']}")
    print(f"baseline model call:                 {statistics.median(base):9.0f} images/s")
    for label, kwargs in (("evaluate, no pictures", dict(plots=False)), ("evaluate --tta flip, no pictures", dict(plots=False, tta="flip")),
                          ("evaluate with every picture + report", dict(plots=True))):
        speeds, walls = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            ev = imgclf.evaluate(run, verbose=False, **kwargs)
            walls.append(time.perf_counter() - t)
            speeds.append(ev.metrics["images_per_s"])
        print(f"{label:<37} {statistics.median(speeds):9.0f} images/s in the model ({statistics.median(speeds) / statistics.median(base):.2f}x baseline), "
              f"{statistics.median(walls):6.2f} s wall for the whole command")
    print(f"accuracy {ev.accuracy:.4f}, ECE {ev.metrics['expected_calibration_error']:.4f}")


if __name__ == "__main__":
    main()
