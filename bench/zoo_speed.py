"""Issue 4 benchmark: inference speed of every zoo model at its default input size.

    .venv/bin/python bench/zoo_speed.py [--all | --light] [--pattern 'efficientnet*'] [--repeats 3]

For each registered model: build it as `imgclf train` would (raw 0..255 input,
preprocessing inside, a 10-class head, random weights: speed does not depend on
the weight values), run one warm-up batch of 32 (graph tracing), then time
`--repeats` batches of 32 through a compiled tf.function in float32 and quote
the median images/s. mobilenet_v2 is measured first and again last: the ratio
of the two shows how much the shared CPU drifted during the run. The largest
models (EfficientNetB5-B7, V2-M/L, ConvNeXt-Small/Base at 224-600 px) are
skipped unless --all: on two shared cores each takes minutes.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

HEAVY = {"efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_m", "efficientnet_v2_l",
         "convnext_small", "convnext_base"}
# Under about 2 GFLOPs per image at the default size: what a CPU user picks from (--light).
LIGHT = {"small_cnn", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_lite0",
         "efficientnet_lite1", "efficientnet_lite2", "efficientnet_lite3", "efficientnet_b0", "efficientnet_b1",
         "efficientnet_b2", "efficientnet_v2_b0", "efficientnet_v2_b1", "efficientnet_v2_b2", "nasnet_mobile",
         "densenet121", "resnet50", "resnet50_v2"}
BASELINE = "mobilenet_v2"


def images_per_s(name: str, repeats: int, batch: int = 32) -> tuple[float, int, float]:
    """(median images/s, input size, build seconds) for one model."""
    import keras
    import numpy as np
    import tensorflow as tf

    from imgclf.models.factory import create_model
    from imgclf.models.registry import get_spec

    spec = get_spec(name)
    size = spec.default_size or 64
    t0 = time.perf_counter()
    model = create_model(name, num_classes=10, img_size=size, channels=3)
    build_s = time.perf_counter() - t0
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3)).astype("float32"))
    call = tf.function(lambda t: model(t, training=False), jit_compile=False)
    call(x).numpy()  # warm-up: tracing and allocation
    times = []
    for _ in range(repeats):
        t1 = time.perf_counter()
        call(x).numpy()
        times.append(time.perf_counter() - t1)
    keras.backend.clear_session()
    return batch / statistics.median(times), size, build_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="include the heaviest models")
    parser.add_argument("--light", action="store_true", help="only the models under about 2 GFLOPs per image")
    parser.add_argument("--pattern", default="*")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import keras

    from imgclf.core.hardware import machine_summary
    from imgclf.models.registry import get_spec, list_models

    keras.mixed_precision.set_global_policy("float32")
    print(machine_summary())
    print("Note: the CPU is shared with other engineers' jobs while this runs; figures are noisy.")
    names = [n for n in list_models() if fnmatch.fnmatch(n, args.pattern)]
    skipped = [n for n in names if (n in HEAVY and not args.all) or (args.light and n not in LIGHT)]
    names = [n for n in names if n not in skipped]
    first, _, _ = images_per_s(BASELINE, args.repeats)
    print(f"baseline {BASELINE} (first): {first:.1f} images/s")
    print(f"\n| model | input | params (M) | ImageNet top-1 | images/s (batch 32, float32) | build s |")
    print("|---|---|---|---|---|---|")
    for name in names:
        ips, size, build_s = images_per_s(name, args.repeats)
        spec = get_spec(name)
        top1 = f"{spec.imagenet_top1:.3f}" if spec.imagenet_top1 else "-"
        print(f"| {name} | {size} | {spec.params_m or '-'} | {top1} | {ips:.1f} | {build_s:.1f} |", flush=True)
    last, _, _ = images_per_s(BASELINE, args.repeats)
    print(f"\nbaseline {BASELINE} (last): {last:.1f} images/s; last/first = {last / first:.2f} (CPU drift during the run)")
    if skipped:
        print(f"skipped ({'--light' if args.light else 'heaviest; pass --all'}): {', '.join(skipped)}")


if __name__ == "__main__":
    main()
