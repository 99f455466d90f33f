"""Class imbalance: how uneven the classes are, class weights, and balanced sampling through tf.data.

Two remedies, not to be combined: weighting the loss (each class's weight
inversely proportional to its size, scikit-learn's "balanced" formula) keeps
every image once per epoch; balanced sampling draws each class equally often,
repeating the small classes' images and showing fewer of the large ones.
"""

from __future__ import annotations

import numpy as np

from imgclf.core.progress import log

AUTO_THRESHOLD = 1.5  # class_weight=auto weights the loss above this imbalance ratio


def imbalance_ratio(labels, num_classes: int) -> float:
    """Largest class size over smallest non-empty class size (1.0 = balanced).

    Example:
        >>> imbalance_ratio([0, 0, 0, 1], 2)
        3.0
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    present = counts[counts > 0]
    return float(present.max() / present.min()) if present.size else 1.0


def class_weights(labels, num_classes: int, mode: str = "auto", sampling: str = "natural") -> dict[int, float] | None:
    """Keras ``class_weight`` for the training labels, or None when no weighting applies.

    ``mode='auto'`` weights only when the imbalance ratio exceeds
    `AUTO_THRESHOLD` and sampling is natural (balanced sampling already
    evens the classes out); ``mode='always'`` weights whatever the ratio.
    Weights average to 1 over the images.

    Example:
        >>> class_weights([0, 0, 0, 1], 2)
        {0: 0.6667, 1: 2.0}
    """
    if mode == "none" or sampling == "balanced":
        return None
    if mode == "auto" and imbalance_ratio(labels, num_classes) <= AUTO_THRESHOLD:
        return None
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    n = counts.sum()
    present = int((counts > 0).sum())
    return {i: round(float(n / (present * c)), 4) if c else 0.0 for i, c in enumerate(counts)}


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


def resolve_balance(labels, classes: list[str], mode: str, sampling: str, summary: dict | None = None) -> dict | None:
    """Class weights for training (or None), logged and recorded in the run `summary`.

    Example:
        >>> resolve_balance([0, 0, 0, 1], ["a", "b"], "auto", "natural")
        {0: 0.6667, 1: 2.0}
    """

    ratio = imbalance_ratio(labels, len(classes))
    weights = class_weights(labels, len(classes), mode, sampling)
    if summary is not None:
        summary["imbalance_ratio"] = round(ratio, 3)
        summary["sampling"] = sampling
        summary["class_weight"] = {c: weights[i] for i, c in enumerate(classes)} if weights else None
    if weights:
        log(f"Classes are imbalanced (largest / smallest = {ratio:.1f}): weighting the loss by inverse class size "
            "(--class-weight none turns this off; --sampling balanced resamples instead)")
    elif sampling == "balanced":
        log(f"Balanced sampling: each class drawn equally often per epoch (imbalance ratio {ratio:.1f})")
    return weights
