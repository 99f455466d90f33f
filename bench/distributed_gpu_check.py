"""Issue 8 GPU check: MirroredStrategy through imgclf's own training path, on a machine with one GPU.

    .venv/bin/python bench/distributed_gpu_check.py              # 3 epochs of small_cnn on digits
    .venv/bin/python bench/distributed_gpu_check.py --epochs 5 --batch 128 --memory-mb 8192

The one physical GPU is split into two logical GPUs
(tf.config.set_logical_device_configuration), which TensorFlow treats like two
cards: `imgclf.training.trainer` with --devices auto then sees two GPUs, picks
MirroredStrategy, scales batch and learning rate, and trains. The baseline,
in the same run, is --devices 0: one logical GPU, the default strategy, the
same per-replica batch. It prints replicas, global batch, images/s and
accuracy of both. The two halves share one chip, so this checks correctness
of the multi-device path (variables mirrored, gradients all-reduced, a normal
Run bundle), not speed-up.

Without a GPU it says so and exits 0 at once (before importing TensorFlow).
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def gpu_present() -> bool:
    # Cheap checks first, so a CPU machine does not pay for importing TensorFlow.
    return bool(glob.glob("/dev/nvidia[0-9]*")) or bool(shutil.which("nvidia-smi") and os.environ.get("CUDA_VISIBLE_DEVICES") != "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64, help="batch per replica (default: 64)")
    ap.add_argument("--memory-mb", type=int, default=4096, help="memory of each logical GPU (default: 4096)")
    args = ap.parse_args()
    if not gpu_present():
        print("no GPU on this machine: nothing to check (run this on a machine with a GPU)")
        return 0
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print("no GPU visible to TensorFlow (driver or CUDA libraries missing?): nothing to check")
        return 0
    # Must happen before TensorFlow starts its runtime: the first thing after import.
    tf.config.set_logical_device_configuration(gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=args.memory_mb)] * 2)

    from imgclf.core.hardware import machine_summary
    from imgclf.data.builtin import export_dataset
    from imgclf.training.api import train

    details = tf.config.experimental.get_device_details(gpus[0])
    print(f"machine: {machine_summary()}; GPU: {details.get('device_name', gpus[0].name)} split into 2 logical GPUs "
          f"of {args.memory_mb} MB; TensorFlow {tf.__version__}")
    results = []
    with tempfile.TemporaryDirectory(prefix="imgclf-gpu-check-") as tmp:
        data = export_dataset("digits", os.path.join(tmp, "digits"))
        for devices in ("0", "auto"):
            run = train(str(data / "train"),
                        out=os.path.join(tmp, f"run-{devices}"), model="small_cnn", epochs=args.epochs, batch_size=args.batch,
                        devices=devices, test_fraction=0.0, verbose=1, seed=0)
            summary = json.loads(run.file("summary.json").read_text())
            with open(run.file("history.csv")) as f:
                rows = list(csv.DictReader(f))
            rates = [float(r["images_per_s"]) for r in rows[1:]] or [float(rows[0]["images_per_s"])]
            results.append({"devices": devices, **summary["distribution"], "images_per_s": statistics.median(rates),
                            "val_accuracy": float(rows[-1]["val_accuracy"]), "precision": summary.get("precision")})
    print(f"{'--devices':<10} {'strategy':<9} {'replicas':>8} {'global batch':>12} {'lr x':>5} {'img/s':>9} {'val_acc':>7} precision")
    for r in results:
        print(f"{r['devices']:<10} {r['strategy']:<9} {r['replicas']:>8} {r['global_batch']:>12} {r['lr_scale']:>5g} "
              f"{r['images_per_s']:>9,.0f} {r['val_accuracy']:>7.3f} {r['precision']}")
    mirrored = results[1]
    ok = mirrored["strategy"] == "mirrored" and mirrored["replicas"] == 2 and mirrored["val_accuracy"] >= 0.8
    print("OK: MirroredStrategy trained on 2 replicas" if ok else "FAILED: expected MirroredStrategy on 2 replicas reaching val_acc >= 0.8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
