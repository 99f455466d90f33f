"""The image folders of bench/transfer.py: real datasets written once as RGB PNGs, then N per class linked.

Layout under WORK (bench/transfer.py's --work):

    WORK/<dataset>/pool/<class>/<i>.png      training pool, written on demand (only images a cell uses)
    WORK/<dataset>/test/<class>/<i>.png      the fixed test set (the dataset's own test split)
    WORK/<dataset>/n<N>-s<seed>/train/<class>/<i>.png -> ../../../pool/<class>/<i>.png
    WORK/<dataset>/n<N>-s<seed>/test/<class>/<i>.png  -> ../../../test/<class>/<i>.png

A cell folder is what a user would hand to `imgclf train DIR`: train/ and
test/ inside (imgclf carves its validation images out of train/). Links keep
every image written once. The N images of a class are the first N of a
permutation seeded by (seed, class), so a smaller N is a subset of a larger
one with the same seed (a learning curve, not independent draws).

Datasets (all real images, all available offline here):

* ``digits``: scikit-learn's handwritten digits (8x8, 16 grey levels), imgclf's
  own 80/20 split (`imgclf.data.builtin.load_digits_arrays`): about 143
  training images per class, 36 test images per class.
* ``fashion-mnist``: Debian's dataset-fashion-mnist (28x28), the official
  60,000/10,000 split, 10 classes.
* ``lfw``: scikit-image's `lfw_subset` (25x25 grey crops of real photographs
  from Labeled Faces in the Wild: 100 faces, then 100 non-faces cut from the
  backgrounds of the same photos), split 70/30 per class with a fixed seed.
* ``fashion-mnist-3cls``: t-shirt, trouser and bag only, for the wall-time
  target at N = 20 and 3 classes.

Every image is upsampled (bicubic) to SIZE x SIZE and saved as RGB, as a
user's photos would arrive.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DATASETS = ("digits", "fashion-mnist", "lfw")
TIMING_DATASET = "fashion-mnist-3cls"
TIMING_CLASSES = ("t-shirt", "trouser", "bag")
LFW_TRAIN_SHARE = 0.7


@dataclass
class Source:
    """A dataset in memory: per class, the training pool and the test images (uint8 grey, native size)."""

    name: str
    classes: list[str]
    pool: dict[str, np.ndarray]  # class -> (n, h, w) uint8
    test: dict[str, np.ndarray]

    def pool_size(self) -> int:
        """The smallest class's pool: the largest N every class can give."""
        return min(len(v) for v in self.pool.values())


def _by_class(images: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, np.ndarray]:
    return {c: images[labels == i] for i, c in enumerate(classes)}


def load_source(name: str, test_per_class: int) -> Source:
    """Load `name` into memory, with at most `test_per_class` test images per class (the first ones, in dataset order).

    Example: ``load_source("lfw", 100).pool_size()`` -> 70.
    """
    # lazy: these pull in scikit-learn / scikit-image only for the dataset asked for
    from imgclf.data import builtin

    if name == "digits":
        (x_tr, y_tr), (x_te, y_te), classes = builtin.load_digits_arrays()
    elif name in ("fashion-mnist", TIMING_DATASET):
        (x_tr, y_tr), (x_te, y_te), classes = builtin.load_fashion_mnist_arrays()
    elif name == "lfw":
        from skimage.data import lfw_subset

        faces = np.rint(lfw_subset() * 255).astype(np.uint8)  # float 0..1 in scikit-image 0.26
        labels = np.repeat([0, 1], 100)  # the docstring: the first 100 are faces, the next 100 non-faces
        classes = ["face", "non-face"]
        rng = np.random.default_rng(0)  # fixed: the same 70/30 split on every run and machine
        tr, te = [], []
        for i in range(2):
            idx = rng.permutation(np.flatnonzero(labels == i))
            cut = round(LFW_TRAIN_SHARE * len(idx))
            tr.extend(idx[:cut])
            te.extend(idx[cut:])
        x_tr, y_tr, x_te, y_te = faces[tr], labels[tr], faces[te], labels[te]
    else:
        raise SystemExit(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS + (TIMING_DATASET,))}")
    pool = _by_class(x_tr, np.asarray(y_tr), list(classes))
    test = {c: v[:test_per_class] for c, v in _by_class(x_te, np.asarray(y_te), list(classes)).items()}
    if name == TIMING_DATASET:
        pool = {c: pool[c] for c in TIMING_CLASSES}
        test = {c: test[c] for c in TIMING_CLASSES}
        classes = list(TIMING_CLASSES)
    return Source(name, list(classes), pool, test)


def _save(img: np.ndarray, path: Path, size: int) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(img, "L").resize((size, size), Image.BICUBIC).convert("RGB")
    tmp = path.with_suffix(".tmp.png")
    rgb.save(tmp, compress_level=1)
    os.replace(tmp, path)  # a killed bench never leaves a half-written PNG behind


def check_settings(root: Path, settings: dict) -> None:
    """Refuse to mix images of another --size / --test-per-class in one dataset folder."""
    marker = root / "settings.json"
    if marker.exists():
        old = json.loads(marker.read_text())
        if old != settings:
            raise SystemExit(f"{root} was written with {old}, this run asks for {settings}: "
                             "pass another --work (or delete that folder).")
    else:
        root.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(settings) + "\n")


def write_test(source: Source, root: Path, size: int) -> Path:
    """WORK/<dataset>/test/<class>/*.png (written once); returns the folder."""
    for c in source.classes:
        for i, img in enumerate(source.test[c]):
            _save(img, root / "test" / c / f"{i:05d}.png", size)
    return root / "test"


def choose(source: Source, cls: str, n: int, seed: int) -> np.ndarray:
    """Pool indices of the `n` images of class `cls` for `seed`: a prefix of one seeded permutation."""
    rng = np.random.default_rng([seed, source.classes.index(cls)])
    return rng.permutation(len(source.pool[cls]))[:n]


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(os.path.relpath(target, link.parent))


def make_cell(source: Source, root: Path, label: str, n: int, seed: int, size: int) -> Path:
    """WORK/<dataset>/n<label>-s<seed>/ with train/ (n per class, or the class's whole pool if smaller) and test/.

    Example: ``make_cell(load_source("lfw", 100), Path("/tmp/w/lfw"), "5", 5, 0, 64)``.
    """
    cell = root / f"n{label}-s{seed}"
    for c in source.classes:
        for i in choose(source, c, n, seed):
            pool_png = root / "pool" / c / f"{i:05d}.png"
            _save(source.pool[c][i], pool_png, size)
            _link(pool_png, cell / "train" / c / pool_png.name)
        for test_png in sorted((root / "test" / c).glob("*.png")):
            _link(test_png, cell / "test" / c / test_png.name)
    return cell
