"""`imgclf augment-preview`: a grid of a few training images and augmented versions of each."""

from __future__ import annotations

import numpy as np

from imgclf.data.augment import make_train_map, resolve_flip
from imgclf.data.decode import decode_image, probe_images
from imgclf.data.scan import require_trainable, scan_folder
from imgclf.evaluation.figures.curves import plot_augmentation_grid


def preview(data: str, preset: str = "strong", out: str = "augment_preview.png", img_size: int = 0,
            flip: str = "auto", samples: int = 8, variants: int = 5, seed: int = 0, mixup: float = 0.0,
            cutmix: float = 0.0) -> str:
    """Write a grid PNG: each row an original image followed by augmented versions of it.

    Example:
        >>> preview("data/", "strong", "aug.png", samples=3, variants=2)
        'aug.png'
    """
    scan = scan_folder(data)
    require_trainable(scan)
    rows = [r for r in scan.rows if r["split"] in ("", "train")]
    rng = np.random.default_rng(seed)
    picks = [rows[i] for i in rng.choice(len(rows), size=min(samples, len(rows)), replace=False)]
    probe = probe_images([r["path"] for r in picks])
    size = img_size or int(min(max(probe["median_side"], 28), 224))
    mode = "grayscale" if probe["grayscale"] else "rgb"
    images, labels = [], []
    for r in picks:
        try:
            images.append(decode_image(r["path"], size=size, color_mode=mode))
            labels.append(r["label"])
        except Exception:  # noqa: BLE001 - a bad file has no place in a preview
            continue
    fn = make_train_map(preset, resolve_flip(flip, scan.classes), len(scan.classes), one_hot=False,
                        mixup=mixup, cutmix=cutmix, seed=seed)
    batch = np.stack(images).astype("float32")
    index = {c: i for i, c in enumerate(scan.classes)}
    y = np.array([index[l] for l in labels], dtype="int32")
    grid = [batch]
    for _ in range(variants):
        x = batch if fn is None else np.asarray(fn(batch, y)[0])
        grid.append(x)
    return str(plot_augmentation_grid(np.stack(grid, axis=1), labels, preset, out))
