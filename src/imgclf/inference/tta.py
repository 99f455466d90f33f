"""Test-time augmentation: average a model's probabilities over simple views of each image.

Used by `evaluate`, `predict` and `serve` (``--tta``) and available to any
predictor: it takes a uint8 batch and a function from such a batch to
probabilities, so it works the same for Keras, TFLite or ONNX models. No
TensorFlow here.

Modes, cheapest first (the number is model calls per image):

* ``none`` (1): the image as it is.
* ``flip`` (2): the image and its horizontal mirror.
* ``shift`` (5): the image and four copies moved by about 3.5% of its size
  (one pixel at 28 px) up, down, left and right, borders filled with black as
  RandomTranslation fills them in training. A CNN's answer wobbles with such
  small moves; averaging them steadies it.
* ``flip-shift`` (10): the five shifted views of the image and of its mirror.

On Fashion-MNIST (bench/RESULTS.md) a 20-minute small_resnet scored 0.9361
test accuracy plain, 0.9385 with ``flip`` and 0.9418 with ``flip-shift``; its
validation split said the same (0.9403, 0.9410, 0.9433).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from imgclf.core.errors import UserError

TTA_MODES = ("none", "flip", "shift", "flip-shift")  # "auto" (a Predictor's default) resolves to one of these
TTA_COST = {"none": 1, "flip": 2, "shift": 5, "flip-shift": 10}  # model calls per image
MIN_GAIN = 0.001  # a costlier mode must beat a cheaper one by this much validation accuracy (and by 2 images)
GAIN_PER_CALL = 0.001  # ... and by this much per extra model call per image: flip 0.1 points, flip-shift 0.9
ALPHA = 0.05  # ... and McNemar's exact test (one-sided) must find the gain real at this level


def shift_pixels(size: int) -> int:
    """How far `shift` moves an image of `size` pixels: about 3.5% of it, at least one pixel.

    Example:
        >>> shift_pixels(28), shift_pixels(224)
        (1, 8)
    """
    return max(1, round(0.035 * size))


def _shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The batch moved by (dy, dx) pixels, uncovered borders black (zero)."""
    out = np.zeros_like(images)
    h, w = images.shape[1:3]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def tta_views(images: np.ndarray, mode: str):
    """Yield the views of a uint8 batch (N, H, W, C) that `mode` averages, as contiguous arrays.

    Example:
        >>> sum(1 for _ in tta_views(np.zeros((2, 28, 28, 1), np.uint8), "flip-shift"))
        10
    """
    bases = [images]
    if mode in ("flip", "flip-shift"):
        # Copy: a reversed view would hand the model negative strides.
        bases.append(np.ascontiguousarray(images[:, :, ::-1, :]))
    for base in bases:
        yield base
        if mode in ("shift", "flip-shift"):
            s = shift_pixels(min(images.shape[1:3]))
            for dy, dx in ((s, 0), (-s, 0), (0, s), (0, -s)):
                yield _shifted(base, dy, dx)


def _check(images: np.ndarray, mode: str) -> np.ndarray:
    if mode not in TTA_MODES:
        raise UserError(f"Unknown test-time augmentation {mode!r}: expected one of {', '.join(TTA_MODES)}.")
    images = np.asarray(images)
    if images.ndim != 4:
        raise UserError(f"tta_predict needs a batch of images shaped (N, H, W, C), received shape {images.shape}.")
    return images


def tta_predict(images: np.ndarray, predict: Callable[[np.ndarray], np.ndarray], mode: str = "flip") -> np.ndarray:
    """Probabilities for a uint8 batch (N, H, W, C), averaged over the views of `mode`.

    ``flip`` averages the image and its horizontal mirror: a free gain for
    subjects with no left-right meaning (leaves, cells, products), but wrong for
    ones that have it (text, digits), so it is never on unless training used
    mirrored images and validation chose it. ``shift`` and ``flip-shift`` add
    one-step moves (see the module's docstring) at 5 and 10 model calls per image.

    Example:
        >>> batch = np.zeros((2, 4, 4, 1), np.uint8)
        >>> batch[:, :, :2] = 255  # bright on the left: a "left" class, until the mirror view disagrees
        >>> left_or_right = lambda x: np.stack([x[:, :, :2].mean((1, 2, 3)), x[:, :, 2:].mean((1, 2, 3))], 1) / 255
        >>> tta_predict(batch, left_or_right, mode="none").tolist()
        [[1.0, 0.0], [1.0, 0.0]]
        >>> tta_predict(batch, left_or_right, mode="flip").tolist()
        [[0.5, 0.5], [0.5, 0.5]]
    """
    images = _check(images, mode)
    total, n = None, 0
    for view in tta_views(images, mode):
        p = np.asarray(predict(view), dtype=np.float64)
        total = p if total is None else total + p
        n += 1
    return (total / n).astype(np.float32)


def paired_gain(right_before, right_after, extra_calls: int) -> dict:
    """Is the accuracy gain of a costlier mode real and worth `extra_calls` more model calls per image?

    McNemar's exact test: of the images the two modes disagree about, the
    costlier one must win more than a fair coin would (one-sided binomial test,
    p < ALPHA); the gain must also reach MIN_GAIN, two images, and
    GAIN_PER_CALL per extra call.

    Example:
        >>> before = np.array([True] * 170 + [False] * 7); after = before.copy(); after[170:174] = True
        >>> result = paired_gain(before, after, extra_calls=4)
        >>> result["better"], result["worse"], round(result["p_value"], 3), result["adopt"]  # 4 of 177: not enough
        (4, 0, 0.062, False)
    """
    # lazy: SciPy comes with scikit-learn; only the end of training decides on TTA
    from scipy.stats import binomtest

    before, after = np.asarray(right_before, bool), np.asarray(right_after, bool)
    better, worse = int((after & ~before).sum()), int((before & ~after).sum())
    p = float(binomtest(better, better + worse, 0.5, alternative="greater").pvalue) if better + worse else 1.0
    gain = (better - worse) / max(len(before), 1)
    need = max(MIN_GAIN, 2 / max(len(before), 1), GAIN_PER_CALL * extra_calls)
    return {"gain": round(gain, 5), "better": better, "worse": worse, "p_value": round(p, 5),
            "adopt": bool(gain >= need - 1e-9 and p < ALPHA)}


def choose_tta(images: np.ndarray, labels: np.ndarray, predict: Callable[[np.ndarray], np.ndarray],
               trained_with_flips: bool) -> dict:
    """Decide on the validation split which test-time augmentation should be this run's default.

    Each mode costs more model calls per image (TTA_COST), so a costlier mode
    is chosen only when it beats the best cheaper one on validation by at least
    0.1 percentage points and two images, by GAIN_PER_CALL for each extra call
    (worth its cost), and when McNemar's exact test on the images the two
    modes disagree about finds the gain real (p < ALPHA): 4 images better and
    none worse of 177 is p = 0.06, luck as often as not (issue 20). Mirrored views are tried only for a model that saw mirrored images in
    training. All views are predicted once and shared between the modes. The
    evidence is returned (and saved in the run) so the choice can be checked;
    `evaluate`, `predict` and `serve` apply it unless told ``--tta none``.

    Example:
        >>> images = np.zeros((4, 8, 8, 1), np.uint8)
        >>> images[2:] = 255  # two dark images (class 0), two bright ones (class 1)
        >>> brightness = lambda x: np.stack([1 - x.mean((1, 2, 3)) / 255, x.mean((1, 2, 3)) / 255], 1)
        >>> choice = choose_tta(images, [0, 0, 1, 1], brightness, trained_with_flips=True)
        >>> choice["tta"], choice["val_accuracy"]  # already right without views: the cheapest mode wins
        ('none', {'none': 1.0, 'flip': 1.0, 'shift': 1.0, 'flip-shift': 1.0})

    With a trained model and labelled images (on Fashion-MNIST's validation split a model trained
    20 minutes chose 'flip-shift': bench/RESULTS.md):

        >>> from pathlib import Path
        >>> from imgclf.inference.loader import load
        >>> clf = load("runs/leaves", tta="none")
        >>> paths = sorted(Path("data").rglob("*.png"))
        >>> images = np.stack([clf.decode(p) for p in paths])
        >>> labels = [clf.classes.index(p.parent.name) for p in paths]
        >>> choice = choose_tta(images, labels, clf.predict_arrays, trained_with_flips=True)
        >>> choice["tta"] in ("none", "flip", "shift", "flip-shift"), sorted(choice["val_accuracy"])
        (True, ['flip', 'flip-shift', 'none', 'shift'])
    """
    images = _check(images, "flip-shift")
    labels = np.asarray(labels)
    views = [np.asarray(predict(v), dtype=np.float64) for v in tta_views(images, "flip-shift" if trained_with_flips else "shift")]
    # tta_views order: plain, 4 shifts[, mirror, 4 shifted mirrors]
    members = {"none": [0], "shift": [0, 1, 2, 3, 4]}
    if trained_with_flips:
        members.update({"flip": [0, 5], "flip-shift": list(range(10))})
    right = {m: sum(views[i] for i in members[m]).argmax(1) == labels for m in sorted(members, key=TTA_COST.get)}
    accuracy = {m: round(float(r.mean()), 5) for m, r in right.items()}
    chosen, tests = "none", {}
    for mode in accuracy:  # cheapest first
        if mode == "none":
            continue
        tests[mode] = paired_gain(right[chosen], right[mode], TTA_COST[mode] - TTA_COST[chosen])
        tests[mode]["against"] = chosen
        if tests[mode]["adopt"]:
            chosen = mode
    reason = ("no costlier view raised validation accuracy enough, and surely, for its cost" if chosen == "none" else
              f"raised validation accuracy {accuracy['none']:.4f} -> {accuracy[chosen]:.4f} for {TTA_COST[chosen]} model calls "
              f"per image (McNemar p = {tests[chosen]['p_value']:.3g})")
    out = {"tta": chosen, "val_accuracy": accuracy, "calls_per_image": TTA_COST[chosen], "reason": reason, "tests": tests}
    if not trained_with_flips:
        out["note"] = "mirrored views not tried: the model was not trained on mirrored images"
    return out
