# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # imgclf quickstart: from a folder of images to a model that runs without TensorFlow
#
# This notebook walks the whole journey on a real dataset that needs no download:
# scikit-learn's 1,797 handwritten digits (8x8 pixels, ten classes), written out as a
# folder with one subfolder per class, exactly the layout your own images need.
#
# **check** the folder → **train** → **evaluate** → look at the **pictures** → **predict**
# → **export** to TFLite → **load the export and predict without TensorFlow**.
#
# It writes into `imgclf-data/` and `runs/` under the current folder. The whole
# notebook takes a few minutes on a laptop CPU. (The test suite runs it with
# `IMGCLF_NOTEBOOK_QUICK=1`, on fewer images and epochs.)

# %%
import os
import shutil
import subprocess
import sys
from pathlib import Path

from IPython.display import Image, display

import imgclf

QUICK = os.environ.get("IMGCLF_NOTEBOOK_QUICK") == "1"  # the test suite's reduced size
EPOCHS = 2 if QUICK else 15
print("imgclf", imgclf.__version__, "(quick run)" if QUICK else "")

# %% [markdown]
# ## 1. The data: a folder of class subfolders
#
# `export_dataset` writes a built-in dataset as PNG files: `train/<class>/` and
# `test/<class>/`. With your own photos you would start from your folder instead.

# %%
data = imgclf.export_dataset("digits", "imgclf-data/digits")
train_dir, test_dir = data / "train", data / "test"

if QUICK:  # a smaller copy: 25 training and 8 test images per class
    small = Path("imgclf-data/digits-small")
    for split, keep in (("train", 25), ("test", 8)):
        for class_dir in sorted((data / split).iterdir()):
            target = small / split / class_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for f in sorted(class_dir.iterdir())[:keep]:
                shutil.copy(f, target / f.name)
    train_dir, test_dir = small / "train", small / "test"

print(sorted(p.name for p in train_dir.iterdir()))

# %% [markdown]
# ## 2. Check the folder
#
# `imgclf check` in Python: images per class, imbalance, sizes, and every problem
# (corrupt files, the same image in two classes, near duplicates). `blocking` is
# true when something would stop training.

# %%
from imgclf.data.check.health import check_folder  # noqa: E402
from imgclf.data.check.report import format_report  # noqa: E402

report = check_folder(train_dir, verbose=False)
print(format_report(report))
assert not report["blocking"]

# %% [markdown]
# ## 3. Train
#
# `small_cnn` from scratch: the images are tiny, so a pretrained photo model has
# nothing to offer. imgclf splits off a validation set, prints its plan, and writes
# everything into one run folder (the *Run bundle*).

# %%
run = imgclf.train(str(train_dir), model="small_cnn", epochs=EPOCHS, img_size=16, batch_size=32,
                   out="runs/quickstart", verbose=0)
print(run.path)
print(sorted(p.name for p in Path(run.path).iterdir()))

# %% [markdown]
# ## 4. Evaluate on the held-out test images
#
# Metrics (accuracy, balanced accuracy, per-class precision and recall, calibration, ...)
# go to `metrics.json`, pictures to `plots/`, and all of it to one `report.html`.

# %%
ev = imgclf.evaluate(run, data=str(test_dir), verbose=False)
print(ev.summary())
print("most confused (true, predicted, count):", ev.most_confused(3))

# %% [markdown]
# ## 5. The pictures, inline

# %%
plots = Path(run.path) / "plots"
for name in ("training_curves", "confusion_matrix", "top_losses"):
    print(name)
    display(Image(filename=str(plots / f"{name}.png"), width=600))

# %% [markdown]
# ## 6. Predict
#
# `imgclf.load` takes a run folder (or an exported file) and gives a `Predictor`.
# Inputs may be paths, PIL images, NumPy arrays or bytes.

# %%
clf = imgclf.load(run.path)
samples = [str(next(iter(sorted(d.iterdir())))) for d in sorted(test_dir.iterdir())][:5]
for row in clf.predict(samples, top_k=3):
    print(Path(row["path"]).parent.name, "->", row["class"], f"{row['probability']:.3f}",
          [name for name, _ in row["top_k"]])

# %% [markdown]
# ## 7. Export to TFLite
#
# The export carries its class names and preprocessing, and is checked against the
# trained model on the validation images before it is kept.

# %%
from imgclf.export.exporter import export  # noqa: E402

result = export(run, format="tflite")
print(result.summary())

# %% [markdown]
# ## 8. Load the export and predict, without TensorFlow
#
# This kernel has TensorFlow loaded already, so the proof runs in a fresh Python
# process: LiteRT runs the `.tflite` file (`pip install 'imgclf[tflite]'`), and
# TensorFlow is never imported.

# %%
code = f"""
import sys, imgclf
clf = imgclf.load({str(result.path)!r})
print(clf.format, clf.classes)
for row in clf.predict({samples!r}):
    print(row["path"].split("/")[-2], "->", row["class"], round(row["probability"], 3))
print("TensorFlow imported:", "tensorflow" in sys.modules)
"""
out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
print(out)
assert "TensorFlow imported: False" in out

# %% [markdown]
# ## Next
#
# - Your own folder: `imgclf check data/`, then `imgclf train data/ --out runs/mine`.
# - Open `runs/quickstart/report.html` in a browser: every metric and picture on one page.
# - `imgclf serve` puts the export behind an HTTP API with a web page.
# - The documentation (`make docs`) has a guide per task and how-to recipes.
