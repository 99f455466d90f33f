"""Class imbalance: how uneven the classes are, class weights, and balanced sampling through tf.data.

Two remedies, not to be combined: weighting the loss (each class's weight
inversely proportional to its size, scikit-learn's "balanced" formula, or to
its square root) keeps every image once per epoch; balanced sampling draws each class equally often,
repeating the small classes' images and showing fewer of the large ones.
"""

from __future__ import annotations

import numpy as np

from imgclf.core.progress import log

AUTO_THRESHOLD = 1.5  # class_weight=auto considers weighting only above this imbalance ratio
WEIGHTINGS = ("none", "sqrt", "balanced")  # the loss weightings, mildest first


def imbalance_ratio(labels, num_classes: int) -> float:
    """Largest class size over smallest non-empty class size (1.0 = balanced).

    Example:
        >>> imbalance_ratio([0, 0, 0, 1], 2)
        3.0
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    present = counts[counts > 0]
    return float(present.max() / present.min()) if present.size else 1.0


def class_weights(labels, num_classes: int, mode: str = "balanced") -> dict[int, float] | None:
    """Keras ``class_weight`` for the training labels under one weighting (None for 'none').

    'balanced' weighs each class by the inverse of its size (scikit-learn's
    "balanced"), 'sqrt' by the inverse square root (a milder remedy: a 16x
    smaller class weighs 4x, not 16x). Weights average to 1 over the images,
    so the loss keeps its scale.

    Example:
        >>> class_weights([0, 0, 0, 1], 2)
        {0: 0.6667, 1: 2.0}
        >>> class_weights([0] * 16 + [1], 2, "sqrt")
        {0: 0.85, 1: 3.4}
    """
    if mode == "none":
        return None
    power = 0.5 if mode == "sqrt" else 1.0
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    present = counts > 0
    scale = counts.sum() / (counts[present] ** (1.0 - power)).sum()
    return {i: round(float(scale / c ** power), 4) if c else 0.0 for i, c in enumerate(counts)}


def rule_weighting(monitor: str) -> tuple[str, str]:
    """(weighting, why) for an imbalanced set when no head solve can compare the weightings on validation.

    Square-root weights, the middle course: on imbalanced digits (10:1, small_cnn from scratch,
    bench/RESULTS.md issue 20) no weighting scored 0.940 test accuracy, square-root weights 0.973 and
    inverse-size weights 0.983, while on the issue's inspection set inverse-size weights made validation
    accuracy swing 0.19 <-> 0.63 between epochs and cost 15 points.

    Example:
        >>> rule_weighting("val_accuracy")[0], rule_weighting("val_macro_f1")[0]
        ('sqrt', 'sqrt')
    """
    return "sqrt", "no head solve to compare on; square-root weights are the middle course (bench/RESULTS.md)"


def resolve_balance(labels, classes: list[str], mode: str, sampling: str, summary: dict | None = None,
                    monitor: str = "val_accuracy", compare: bool = False) -> dict | None:
    """Class weights for training (or None), logged and recorded in the run `summary`.

    `mode` 'none', 'sqrt' or 'balanced' is applied as asked; 'auto' leaves a
    set whose imbalance ratio is at most `AUTO_THRESHOLD` alone, defers to the
    head solve when `compare` (it compares the weightings on validation,
    `training.imbalance`), and otherwise follows `rule_weighting`. Balanced
    sampling is never combined with weights.

    Example:
        >>> resolve_balance([0, 0, 0, 1], ["a", "b"], "balanced", "natural")
        {0: 0.6667, 1: 2.0}
        >>> resolve_balance([0] * 9 + [1], ["a", "b"], "auto", "natural", monitor="val_accuracy")
        {0: 0.8333, 1: 2.5}
    """
    ratio = imbalance_ratio(labels, len(classes))
    chosen, why = mode, "as asked (--class-weight)"
    if sampling == "balanced":
        chosen, why = "none", "balanced sampling evens the classes out instead"
    elif mode == "auto" and ratio <= AUTO_THRESHOLD:
        chosen, why = "none", f"the classes are nearly balanced (ratio {ratio:.1f} <= {AUTO_THRESHOLD})"
    elif mode == "auto" and compare:
        chosen, why = "auto", "compared on validation in the head solve"
    elif mode == "auto":
        chosen, why = rule_weighting(monitor)
    weights = None if chosen == "auto" else class_weights(labels, len(classes), chosen)
    if summary is not None:
        summary["imbalance_ratio"] = round(ratio, 3)
        summary["sampling"] = sampling
        summary["class_weight"] = {c: weights[i] for i, c in enumerate(classes)} if weights else None
        summary["class_weighting"] = {"weighting": chosen, "why": why}
    if sampling == "balanced":
        log(f"Balanced sampling: each class drawn equally often per epoch (imbalance ratio {ratio:.1f})")
    elif ratio > AUTO_THRESHOLD and chosen != "auto":
        log(f"Classes are imbalanced (largest / smallest = {ratio:.1f}): loss weighting {chosen}: {why} "
            "(--class-weight none|sqrt|balanced or --sampling balanced sets it)")
    return weights


def balanced_index_dataset(labels, epoch_size: int, seed: int = 0):
    """A tf.data dataset of `epoch_size` image indices drawn with every class equally likely.

    Each class's indices are shuffled and repeated on their own, so within a
    class every image is seen before any repeats; which class comes next is
    drawn at random, again each epoch.

    Example:
        >>> ds = balanced_index_dataset(np.array([0] * 90 + [1] * 10), 100)
        >>> minority = np.bincount(np.array(list(ds.as_numpy_iterator())) >= 90)[1]
        >>> bool(30 < minority < 70)  # about half of the draws, where natural sampling gives 10
        True
    """
    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    import tensorflow as tf

    labels = np.asarray(labels)
    per_class = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c).astype(np.int64)
        per_class.append(
            tf.data.Dataset.from_tensor_slices(idx)
            .shuffle(len(idx), seed=seed + int(c), reshuffle_each_iteration=True)
            .repeat()
        )
    k = len(per_class)
    mixed = tf.data.Dataset.sample_from_datasets(per_class, weights=[1.0 / k] * k, seed=seed,
                                                 rerandomize_each_iteration=True)
    return mixed.take(epoch_size)

