"""Built-in datasets written out as class folders (train/ and test/), so the demo works offline.

* ``digits``: scikit-learn's 1,797 handwritten digits (8x8), shipped inside
  scikit-learn; split 80/20 stratified with a fixed seed.
* ``fashion-mnist``: 70,000 28x28 clothing images with the official
  60,000/10,000 split, read from Debian's dataset-fashion-mnist package, the
  Keras dataset cache, or downloaded by Keras where the network allows.
"""

from __future__ import annotations

import gzip
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.core.errors import UserError, did_you_mean
from imgclf.core.progress import Progress, log

FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
FASHION_DIRS = ("/usr/share/datasets/fashion-mnist", "~/.keras/datasets/fashion-mnist")
DATASETS = ("digits", "fashion-mnist")


def load_digits_arrays():
    """Digits as uint8 images (N, 8, 8) scaled to 0..255, with labels and class names."""
    # lazy: scikit-learn loads only when these metrics are computed
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    x_tr, x_te, y_tr, y_te = train_test_split(images, d.target, test_size=0.2, stratify=d.target, random_state=0)
    return (x_tr, y_tr), (x_te, y_te), [str(i) for i in range(10)]


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_fashion_mnist() -> Path | None:
    """The first folder holding the four Fashion-MNIST .gz files, or None. Example: ``find_fashion_mnist()``."""
    extra = os.environ.get("IMGCLF_FASHION_MNIST_DIR")
    for d in ([extra] if extra else []) + list(FASHION_DIRS):
        p = Path(d).expanduser()
        if all((p / f).exists() for f in FASHION_FILES):
            return p
    return None


def load_fashion_mnist_arrays():
    """Fashion-MNIST as ((x_train, y_train), (x_test, y_test), class names), from local files or Keras."""
    folder = find_fashion_mnist()
    if folder is not None:
        x_tr, y_tr, x_te, y_te = (_read_idx(folder / f) for f in FASHION_FILES)
        return (x_tr, y_tr), (x_te, y_te), FASHION_CLASSES
    try:
        # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
        import keras

        (x_tr, y_tr), (x_te, y_te) = keras.datasets.fashion_mnist.load_data()
    except Exception as e:  # offline
        raise UserError(
            f"Fashion-MNIST not found locally (looked in {', '.join(FASHION_DIRS)}) and could not be downloaded "
            f"({str(e).splitlines()[0][:120]}). On Debian or Ubuntu: `apt-get install dataset-fashion-mnist`; "
            "or set IMGCLF_FASHION_MNIST_DIR to a folder with the four .gz files."
        ) from None
    return (x_tr, y_tr), (x_te, y_te), FASHION_CLASSES


def _write_split(root: Path, images: np.ndarray, labels: np.ndarray, classes: list[str], label: str) -> None:
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)

    def write(i):
        path = root / classes[labels[i]] / f"{i:05d}.png"
        Image.fromarray(images[i], "L").save(path, optimize=False, compress_level=1)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool, Progress(len(images), label) as bar:
        for _ in pool.map(write, range(len(images)), chunksize=256):
            bar.update(1)


def export_dataset(name: str, out: str | os.PathLike) -> Path:
    """Write a built-in dataset as PNG class folders: OUT/train/<class>/ and OUT/test/<class>/.

    An existing complete export is reused; a folder with other contents is
    never overwritten.

    Example:
        >>> export_dataset("digits", "data/digits")
        PosixPath('data/digits')
    """
    if name not in DATASETS:
        raise UserError(f"Unknown dataset {name!r}: expected one of {', '.join(DATASETS)}." + did_you_mean(name, DATASETS))
    out = Path(out)
    done_marker = out / ".imgclf-export-complete"
    if done_marker.exists() and done_marker.read_text().strip() == name:
        log(f"Using the {name} export already in {out}")
        return out
    if out.exists() and not out.is_dir():
        raise UserError(f"{str(out)!r} is a file; the {name} export needs a folder. Choose another output folder.")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{str(out)!r} exists and is not an empty folder; choose another output folder for the {name} export.")
    (x_tr, y_tr), (x_te, y_te), classes = load_digits_arrays() if name == "digits" else load_fashion_mnist_arrays()
    _write_split(out / "train", x_tr, y_tr, classes, f"Writing {name} train")
    _write_split(out / "test", x_te, y_te, classes, f"Writing {name} test")
    done_marker.write_text(name + "\n")
    log(f"Wrote {len(x_tr)} training and {len(x_te)} test images of {name} to {out}")
    return out
