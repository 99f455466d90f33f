"""`imgclf augment-preview`: a grid of a few training images and augmented versions of each."""

from __future__ import annotations

import numpy as np

from imgclf.data.augment import make_train_map, resolve_flip
from imgclf.data.decode import decode_image, probe_images
from imgclf.data.scan import require_trainable, scan_folder
from imgclf.evaluation.figures.curves import plot_augmentation_grid


def stratified_picks(rows: list[dict], classes: list[str], n: int, seed: int = 0) -> list[dict]:
    """`n` rows taken round the classes in turn (each class's images in a seeded random order).

    Example:
        >>> rows = [{"label": "a", "path": f"a{i}"} for i in range(6)] + [{"label": "b", "path": "b0"}]
        >>> [r["label"] for r in stratified_picks(rows, ["a", "b"], 3)]
        ['a', 'b', 'a']
    """
    rng = np.random.default_rng(seed)
    queues = {c: [r for r in rows if r["label"] == c] for c in classes}
    queues = {c: [q[i] for i in rng.permutation(len(q))] for c, q in queues.items() if q}
    picks = []
    while len(picks) < n and any(queues.values()):
        for c in list(queues):
            if queues[c] and len(picks) < n:
                picks.append(queues[c].pop())
    return picks


def preview(data: str, preset: str = "strong", out: str = "augment_preview.png", img_size: int = 0,
            flip: str = "auto", samples: int = 0, variants: int = 5, seed: int = 0, mixup: float = 0.0,
            cutmix: float = 0.0, color_mode: str = "") -> str:
    """Write a grid PNG: each row an original image followed by augmented versions of it.

    Rows go round the classes (one image of each class in turn, chosen by
    `seed`), so every class shows; `samples` 0 means one row per class.

    Example:
        >>> preview("data/", "strong", "aug.png", samples=3, variants=2)
        'aug.png'
    """
    scan = scan_folder(data)
    require_trainable(scan)
    rows = [r for r in scan.rows if r["split"] in ("", "train")]
    picks = stratified_picks(rows, scan.classes, samples or len(scan.classes), seed)
    probe = probe_images([r["path"] for r in picks])
    size = img_size or int(min(max(probe["median_side"], 28), 224))
    mode = color_mode or ("grayscale" if probe["grayscale"] else "rgb")
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
