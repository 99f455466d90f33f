"""Issue 7 benchmark: inference speed by runtime, folder prediction vs a tutorial loop, cold start.

    .venv/bin/python bench/inference.py [--quick]

Prints the machine, then:
  1. images/s at batch 1 and 32 and p50 latency at batch 1, for small_cnn (64 px)
     and mobilenet_v2 (224 px, random weights), with Keras model.predict, a direct
     Keras call, SavedModel, TFLite fp32, TFLite int8 and ONNX Runtime;
  2. `imgclf predict` on a folder of 5,000 JPEGs vs the tutorial loop
     (keras.utils.load_img + model.predict per file, timed on a sample);
  3. cold start of `imgclf predict MODEL one.jpg` from a .tflite, a .onnx and a .keras;
  4. peak memory of `imgclf predict` on 1,000 and 10,000 files (streaming keeps it flat).
Medians are quoted; the baseline of each comparison is measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

HERE = Path(__file__).resolve().parent
IMGCLF = str(Path(sys.executable).with_name("imgclf"))


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up: tracing, allocation
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def runtime_table(name: str, size: int, work: Path, repeats1: int, repeats32: int) -> None:
    import keras
    import tensorflow as tf

    import imgclf
    from imgclf.export.exporter import serving_model
    from imgclf.inference.backends.litert import LiteRTBackend
    from imgclf.inference.backends.onnx_runtime import OnnxBackend
    from imgclf.inference.backends.savedmodel import SavedModelBackend
    from imgclf.models.factory import create_model

    keras.mixed_precision.set_global_policy("float32")
    model = create_model(name, num_classes=10, img_size=size, channels=3)
    serve = serving_model(model)
    serve([np.zeros((1, size, size, 3), np.float32)])
    rng = np.random.default_rng(0)
    calib = rng.integers(0, 256, (16, size, size, 3)).astype(np.float32)
    paths = {"savedmodel": work / f"{name}_sm", "tflite": work / f"{name}.tflite", "int8": work / f"{name}_int8.tflite",
             "onnx": work / f"{name}.onnx"}
    builtins = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    serve.export(str(paths["savedmodel"]), format="tf_saved_model", verbose=False)
    serve.export(str(paths["tflite"]), format="litert", verbose=False, target_spec=builtins)
    serve.export(str(paths["int8"]), format="litert", verbose=False, target_spec=builtins,
                 optimizations=[tf.lite.Optimize.DEFAULT], representative_dataset=lambda: ([calib[i:i + 1]] for i in range(16)))
    serve.export(str(paths["onnx"]), format="onnx", verbose=False)
    direct = tf.function(lambda t: model(t, training=False), input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)])
    runners = {
        "Keras model.predict": lambda x: model.predict(x, verbose=0),
        "Keras direct call model(x)": lambda x: model(x, training=False),
        "Keras call in one tf.function (imgclf's Keras path)": lambda x: direct(x),
        "SavedModel": SavedModelBackend.open(paths["savedmodel"])[0].predict,
        "TFLite fp32 (LiteRT)": LiteRTBackend.open(paths["tflite"])[0].predict,
        "TFLite int8 (LiteRT)": LiteRTBackend.open(paths["int8"])[0].predict,
        "ONNX Runtime": OnnxBackend.open(paths["onnx"])[0].predict,
    }
    x1 = rng.integers(0, 256, (1, size, size, 3)).astype(np.float32)
    x32 = rng.integers(0, 256, (32, size, size, 3)).astype(np.float32)
    print(f"\n{name} at {size}px, {model.count_params() / 1e6:.2f}M parameters")
    print(f"| runtime | img/s batch 1 | img/s batch 32 | p50 ms batch 1 |")
    print(f"|---|---:|---:|---:|")
    for label, run in runners.items():
        t1 = statistics.median(timed(lambda: run(x1), repeats1))
        t32 = statistics.median(timed(lambda: run(x32), repeats32))
        print(f"| {label} | {1 / t1:,.0f} | {32 / t32:,.0f} | {1000 * t1:.2f} |", flush=True)
    del imgclf


def folder_vs_tutorial(work: Path, n_files: int, tutorial_sample: int) -> None:
    import keras

    from imgclf.export.exporter import serving_model  # noqa: F401 (keeps imports symmetrical)
    from imgclf.models.factory import create_model

    size = 64
    folder = work / "jpegs"
    rng = np.random.default_rng(1)
    for i in range(n_files):
        sub = folder / f"c{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(sub / f"{i:05d}.jpg", quality=90)
    model = create_model("small_cnn", num_classes=10, img_size=size, channels=3)
    model_path = work / "folder_model.keras"
    model.save(model_path)
    meta = {"classes": [f"c{i}" for i in range(10)],
            "preprocess": {"img_size": size, "color_mode": "rgb", "channels": 3, "resize": "squash"}}
    model_path.with_suffix(".json").write_text(json.dumps(meta))

    files = sorted(str(p) for p in folder.rglob("*.jpg"))
    # The tutorial loop: open each file, make a batch of one, call model.predict.
    t0 = time.perf_counter()
    for path in files[:tutorial_sample]:
        img = keras.utils.load_img(path, target_size=(size, size))
        x = keras.utils.img_to_array(img)[None]
        model.predict(x, verbose=0)
    naive = tutorial_sample / (time.perf_counter() - t0)

    def cli(model_file):
        t = time.perf_counter()
        subprocess.run([IMGCLF, "predict", str(model_file), str(folder), "--format", "csv", "--output",
                        str(work / "preds.csv"), "--no-progress"], check=True, stderr=subprocess.DEVNULL)
        return n_files / (time.perf_counter() - t)

    keras_rate = cli(model_path)
    print(f"\nFolder prediction, {n_files} JPEGs (96 px, resized to {size}), small_cnn, whole command incl. start-up:")
    print(f"| method | img/s | vs tutorial loop |")
    print(f"|---|---:|---:|")
    print(f"| tutorial loop: load_img + model.predict per file ({tutorial_sample} files) | {naive:,.0f} | 1.0x |")
    print(f"| imgclf predict model.keras folder/ | {keras_rate:,.0f} | {keras_rate / naive:.1f}x |")
    from imgclf.export.exporter import serving_model as sm

    tfl = work / "folder_model.tflite"
    import tensorflow as tf

    s = sm(model)
    s.export(str(tfl), format="litert", verbose=False, target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]})
    tfl.with_suffix(".json").write_text(json.dumps(meta))
    tfl_rate = cli(tfl)
    print(f"| imgclf predict model.tflite folder/ | {tfl_rate:,.0f} | {tfl_rate / naive:.1f}x |")
    return tfl, model_path, files[0]


def cold_start(models: list[Path], image: str, repeats: int) -> None:
    print(f"\nCold start: `imgclf predict MODEL one.jpg`, process start to printed answer (median of {repeats}):")
    print("| model | seconds | TensorFlow imported |")
    print("|---|---:|---|")
    for m in models:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            subprocess.run([IMGCLF, "predict", str(m), image], check=True, capture_output=True)
            times.append(time.perf_counter() - t)
        code = ("import sys, imgclf.cli; imgclf.cli.main(['predict', %r, %r]); "
                "print('TF' if 'tensorflow' in sys.modules else 'noTF', file=sys.stderr)" % (str(m), image))
        tf_used = "yes" if "noTF" not in subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stderr else "no"
        print(f"| {m.suffix} | {statistics.median(times):.2f} | {tf_used} |", flush=True)


def memory_is_flat(work: Path, counts=(1000, 10000)) -> None:
    """Peak RSS of `imgclf predict model.tflite folder/` for 1,000 and 10,000 files: streaming keeps it flat."""
    import psutil
    import tensorflow as tf

    from imgclf.export.exporter import serving_model
    from imgclf.models.factory import create_model

    model = serving_model(create_model("small_cnn", num_classes=10, img_size=32, channels=3))
    tfl = work / "mem_model.tflite"
    model.export(str(tfl), format="litert", verbose=False, target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]})
    tfl.with_suffix(".json").write_text(json.dumps({"classes": [f"c{i}" for i in range(10)],
                                                    "preprocess": {"img_size": 32, "color_mode": "rgb", "resize": "squash"}}))
    rng = np.random.default_rng(2)
    print("\nMemory while streaming: `imgclf predict model.tflite folder/ --format csv --output preds.csv` (32 px PNGs)")
    print("| files | seconds | img/s | peak RSS MB |")
    print("|---:|---:|---:|---:|")
    for n in counts:
        folder = work / f"many{n}"
        for i in range(n):
            sub = folder / f"c{i % 10}"
            sub.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(sub / f"{i:06d}.png")
        t = time.perf_counter()
        proc = subprocess.Popen([IMGCLF, "predict", str(tfl), str(folder), "--format", "csv", "--output",
                                 str(work / "many.csv"), "--no-progress"], stderr=subprocess.DEVNULL)
        watch, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                peak = max(peak, watch.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - t
        print(f"| {n:,} | {elapsed:.1f} | {n / elapsed:,.0f} | {peak / 1e6:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats and files (a smoke run)")
    parser.add_argument("--only", choices=("runtimes", "folder", "memory"), help="run one part (folder includes cold start)")
    args = parser.parse_args()
    from imgclf.core.hardware import machine_summary

    print(f"Machine: {machine_summary()} (shared with other engineers' work while measured: figures are noisy)")
    q = args.quick
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only in (None, "runtimes"):
            runtime_table("small_cnn", 64, work, 10 if q else 30, 3 if q else 8)
            runtime_table("mobilenet_v2", 224, work, 5 if q else 15, 2 if q else 4)
        if args.only == "runtimes":
            return
        if args.only == "memory":
            memory_is_flat(work)
            return
        tfl, keras_file, image = folder_vs_tutorial(work, 500 if q else 5000, 100 if q else 300)
        onnx_file = work / "folder_model.onnx"
        from imgclf.export.exporter import serving_model
        from imgclf.models.saving import load_keras_model

        served = serving_model(load_keras_model(keras_file))
        served([np.zeros((1, 64, 64, 3), np.float32)])  # the ONNX exporter wants a called model
        served.export(str(onnx_file), format="onnx", verbose=False)  # its sidecar folder_model.json is already there
        cold_start([tfl, onnx_file, keras_file], image, 2 if q else 3)
        if args.only is None:
            memory_is_flat(work, (200, 2000) if q else (1000, 10000))


if __name__ == "__main__":
    main()
