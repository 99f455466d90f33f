"""Grad-CAM on every registered model: finds the feature map from the graph, returns sane maps, and how long it takes.

Run: .venv/bin/python bench/gradcam_all_models.py [PATTERN ...]   (default: every model)
Builds each model with random weights at max(64, min_size) pixels and explains
two random images. Prints one line per model and the machine; exits 1 if any fails.
Baseline in the same run: a plain forward pass of the same batch, so the
Grad-CAM cost is quoted as a ratio to it.
"""

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from imgclf.core.hardware import machine_summary
from imgclf.evaluation.explain import find_feature_map, gradcam
from imgclf.models.factory import create_model
from imgclf.models.registry import get_spec, list_models


def main(*patterns: str) -> int:
    print(machine_summary())
    failures, ratios = [], []
    print(f"{'model':<22} {'feature map':<20} {'build s':>8} {'forward s':>9} {'gradcam s':>9} {'ratio':>6}")
    names = sorted({n for p in (patterns or ("*",)) for n in list_models(p)})
    for name in names:
        size = max(64, get_spec(name).min_size)
        try:
            t0 = time.perf_counter()
            model = create_model(name, num_classes=3, img_size=size)
            t1 = time.perf_counter()
            x = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
            model(x.astype(np.float32), training=False)  # warm-up
            t2 = time.perf_counter()
            model(x.astype(np.float32), training=False)
            t3 = time.perf_counter()
            gradcam(model, x)  # first call includes building the grad model
            t4 = time.perf_counter()
            maps = gradcam(model, x)
            t5 = time.perf_counter()
            shape = tuple(find_feature_map(model)[0].shape[1:])
            ok = maps.shape == (2, size, size) and np.isfinite(maps).all() and 0 <= maps.min() and maps.max() <= 1 + 1e-6
            ratio = (t5 - t4) / max(t3 - t2, 1e-9)
            ratios.append(ratio)
            print(f"{name:<22} {str(shape):<20} {t1 - t0:8.2f} {t3 - t2:9.3f} {t5 - t4:9.3f} {ratio:6.1f}" + ("" if ok else "  BAD MAPS"))
            if not ok:
                failures.append(name)
        except Exception as e:  # report and go on: the point is to see every model
            print(f"{name:<22} FAILED: {type(e).__name__}: {e}")
            failures.append(name)
    print(f"{len(ratios)} models explained; median Grad-CAM / forward time ratio {statistics.median(ratios):.1f}" if ratios else "")
    print(f"failures: {', '.join(failures) or 'none'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
