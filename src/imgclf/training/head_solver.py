"""The head phase solved, not trained: softmax regression on frozen backbone features.

With the backbone frozen, the new head (dropout then one Dense softmax layer)
is a multinomial logistic regression on the pooled features: a convex problem
that a full-batch L-BFGS solver finishes in seconds, to convergence, whatever
the epoch count or the size of the data. A few SGD steps (what the head phase
used to get on 60 images) stayed inside the warm-up and ended at 0.72 test
accuracy where the same features support 0.98 (issue 14).

Recipe: features of the training images (plus a few augmented views of each
when augmentation is on, so the head learns the invariances fine-tuning will
see), standardised (each feature's spread floored at a tenth of the typical
spread: see `feature_scale`); scikit-learn's `LogisticRegression` for each L2 strength
on a grid, warm-started, run with one BLAS thread; the strength with the
lowest held-out log loss wins (validation, or cross-validation when
validation is small); the standardisation is folded into the classifier's
kernel and bias, so the Keras model is exactly the solved regression. Class
weights become sample weights.

Example:
    >>> from imgclf.core.config import make_config
    >>> from imgclf.training.trainer import Trainer
    >>> trainer = Trainer(make_config({"data": "data/", "model": "small_cnn", "img_size": 16, "out": "runs/solved"}))
    >>> trainer.prepare()  # split and decode data/ (what `imgclf train` does first)
    >>> model = trainer.build_model()
    >>> trainer.prepare_phase(model, "head")  # freeze the backbone, compile
    >>> from imgclf.training.feature_cache import frozen_backbone_with_head
    >>> if frozen_backbone_with_head(model):
    ...     result = solve_head(model, trainer.sets)
    >>> result["selected_by"], 0 <= result["val_accuracy"] <= 1  # 3 validation images: too few to choose C on
    ('...-fold cross-validation', True)
"""

from __future__ import annotations

import time

import numpy as np

from imgclf.core.progress import log
from imgclf.training.feature_cache import compute_features
from imgclf.training.imbalance import choose_weighting

# Inverse L2 strengths tried (scikit-learn's C: the summed log loss is weighed against ||w||^2 / 2).
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
FLOOR_SHARE = 0.1  # standardisation scales floored at this share of the features' RMS standard deviation (feature_scale)
CV_BELOW = 100  # fewer validation images than this: the L2 strength is chosen by cross-validation on the training features
AUGMENTED_IMAGES = 1000  # extra augmented views per image: up to this many extra images in all (2 views at most)


def extra_views(n_train: int, augment: str) -> int:
    """Augmented views per training image added to the clean one: two for small sets, none past 1,000 images.

    Each view costs a pass of the backbone (about as long as the solve's own
    features), so they are kept to small sets, where they help most.

    Example:
        >>> extra_views(60, "light"), extra_views(800, "light"), extra_views(5000, "light"), extra_views(60, "none")
        (2, 1, 0, 0)
    """
    if augment in ("none", "") or not n_train:
        return 0
    return min(2, AUGMENTED_IMAGES // n_train)


def augmented_features(model, images, layers: list, views: int, batch_size: int = 128):
    """Features of `views` augmented copies of `images`, stacked: shape (views * N, D).

    Example:
        >>> from imgclf.data.augment import augmentation_layers
        >>> from imgclf.models.factory import create_model
        >>> model = create_model("small_cnn", num_classes=2, img_size=16)
        >>> images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
        >>> augmented_features(model, images, augmentation_layers("light"), views=2).shape  # 2 views x 6 images, 96 features
        (12, 96)
    """
    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    import tensorflow as tf

    out = []
    for _ in range(views):
        batches = []
        for start in range(0, len(images), batch_size):
            x = tf.convert_to_tensor(np.asarray(images[start:start + batch_size], dtype="float32"))
            for layer in layers:
                x = layer(x, training=True)
            batches.append(tf.clip_by_value(x, 0.0, 255.0).numpy())
        out.append(compute_features(model, np.concatenate(batches), batch_size=batch_size))
    return np.concatenate(out)


def fit_softmax_regression(x_train, y_train, x_val, y_val, n_classes: int, sample_weight=None, grid=C_GRID,
                           clean_rows: int | None = None, force_cv: bool = False) -> dict:
    """Multinomial logistic regression with the L2 strength of lowest held-out log loss.

    The strength is chosen on the validation images when there are at least
    CV_BELOW of them, else by stratified k-fold cross-validation on the
    training features (a validation split of 2 to 20 images cannot rank 8
    strengths); only the first `clean_rows` rows (the images, not their
    augmented views, which would leak across folds) take part. The final fit uses the training features only, so validation
    stays an honest check (`force_cv` uses cross-validation whatever the
    validation size). Returns {"kernel" (D, K), "bias" (K,), "C",
    "selected_by", "held_out_loss" and "held_out_accuracy" (of the chosen C,
    on validation or out of fold), "val_loss", "val_accuracy", "train_loss", "train_accuracy",
    "tried": [(C, held-out loss), ...]}: kernel and bias act on the raw (not
    standardised) features.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = np.concatenate([rng.normal(0, 1, (40, 5)), rng.normal(3, 1, (40, 5))]); y = np.repeat([0, 1], 40)
        >>> fit = fit_softmax_regression(x[::2], y[::2], x[1::2], y[1::2], n_classes=2)
        >>> fit["kernel"].shape, fit["val_accuracy"] > 0.95, fit["selected_by"]
        ((5, 2), True, '5-fold cross-validation')
    """
    mean = x_train.mean(axis=0)
    scale = feature_scale(x_train)
    xs_train, xs_val = (x_train - mean) / scale, (x_val - mean) / scale
    present = np.unique(y_train)
    folds = _folds(y_train[:clean_rows]) if force_cv or len(y_val) < CV_BELOW else 0
    if folds >= 2:
        w = None if sample_weight is None else sample_weight[:clean_rows]
        tried, oof = _cross_validated_losses(xs_train[:clean_rows], y_train[:clean_rows], w, grid, folds, n_classes)
        selected_by = f"{folds}-fold cross-validation"
    elif not len(y_val):  # no validation split and a class too small for two folds: scikit-learn's default strength
        tried, selected_by, oof = [(1.0, float("nan"), float("nan"))], "default (too few images to cross-validate)", None
    else:
        tried = _validation_losses(xs_train, y_train, xs_val, y_val, sample_weight, grid, n_classes)
        selected_by, oof = "validation", None
    c, held_out_loss, held_out_accuracy = min(tried, key=lambda t: t[1])
    clf = _logistic(c).fit(xs_train, y_train, sample_weight=sample_weight)
    coef, intercept = _softmax_parameters(clf.coef_, clf.intercept_, present, n_classes)
    kernel = (coef / scale).T  # (D, K): standardisation folded in
    bias = intercept - (coef * (mean / scale)).sum(axis=1)
    train_probs, val_probs = _softmax(x_train @ kernel + bias), _softmax(x_val @ kernel + bias)
    return {"kernel": kernel.astype("float32"), "bias": bias.astype("float32"), "C": c, "selected_by": selected_by,
            "held_out_loss": held_out_loss, "held_out_accuracy": held_out_accuracy,
            "val_loss": _log_loss(val_probs, y_val),
            "val_accuracy": float((val_probs.argmax(1) == y_val).mean()) if len(y_val) else float("nan"),
            "train_loss": _log_loss(train_probs, y_train), "train_accuracy": float((train_probs.argmax(1) == y_train).mean()),
            "tried": [(g, round(loss, 5)) for g, loss, _ in tried],
            # The held-out labels and answers of the chosen strength (out of fold, or validation), for other metrics.
            "held_out": ((y_train[:clean_rows], oof[grid.index(c)]) if oof is not None
                         else (y_val, val_probs.argmax(1)))}


def feature_scale(x, floor: float | None = None):
    """Per-feature standardisation scale: sqrt(std^2 + (floor * RMS std)^2), never below a share of the typical spread.

    The kernel is divided by this scale when the standardisation is folded in,
    so a feature that barely varies on these images (common for upsampled or
    grayscale images on an ImageNet backbone) would get a weight in the
    thousands: harmless on the frozen features, but the first fine-tuning
    steps move that feature a little and the logits explode (digits: training
    loss 29, validation accuracy 0.94 -> 0.26). The floor bounds every weight.

    Example:
        >>> x = np.stack([np.linspace(0, 1, 50), np.full(50, 0.3) + np.linspace(0, 1e-6, 50)], axis=1)
        >>> s = feature_scale(x); bool(s[1] >= FLOOR_SHARE * 0.99 * np.sqrt(np.mean(x.std(axis=0) ** 2)))
        True
    """
    floor = FLOOR_SHARE if floor is None else floor
    std = x.std(axis=0)
    typical = float(np.sqrt(np.mean(std ** 2))) or 1.0
    return np.sqrt(std ** 2 + (floor * typical) ** 2)


def _logistic(c: float):
    # lazy: scikit-learn takes a second to import; only the head phase needs it
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=500, tol=1e-5, warm_start=True)


def _validation_losses(xs_train, y_train, xs_val, y_val, sample_weight, grid, n_classes) -> list:
    present, clf, tried = np.unique(y_train), _logistic(grid[0]), []
    for c in grid:  # warm-started: each strength starts from the last solution
        clf.set_params(C=c)
        clf.fit(xs_train, y_train, sample_weight=sample_weight)
        probs = _full_probs(clf.predict_proba(xs_val), present, n_classes)
        tried.append((c, _log_loss(probs, y_val), float((probs.argmax(1) == y_val).mean())))
    return tried


def _folds(y) -> int:
    """Folds of stratified cross-validation the smallest class allows (at most 5; 0 or 1 = none)."""
    counts = np.bincount(y)
    return int(min(5, counts[counts > 0].min())) if len(counts) else 0


def _cross_validated_losses(xs, y, sample_weight, grid, folds: int, n_classes: int) -> tuple[list, np.ndarray]:
    # lazy: scikit-learn takes a second to import; only the head phase needs it
    from sklearn.model_selection import StratifiedKFold

    losses, hits, answers = np.zeros(len(grid)), np.zeros(len(grid)), np.zeros((len(grid), len(y)), dtype=np.int64)
    for train_idx, held_idx in StratifiedKFold(folds, shuffle=True, random_state=0).split(xs, y):
        present, clf = np.unique(y[train_idx]), _logistic(grid[0])
        w = None if sample_weight is None else sample_weight[train_idx]
        for i, c in enumerate(grid):
            clf.set_params(C=c)
            clf.fit(xs[train_idx], y[train_idx], sample_weight=w)
            probs = _full_probs(clf.predict_proba(xs[held_idx]), present, n_classes)
            losses[i] += _log_loss(probs, y[held_idx]) * len(held_idx) / len(y)
            hits[i] += (probs.argmax(1) == y[held_idx]).sum()
            answers[i, held_idx] = probs.argmax(1)
    return [(c, loss, hit / len(y)) for c, loss, hit in zip(grid, losses.tolist(), hits.tolist())], answers


def smoothing_scale(logits, labels, label_smoothing: float) -> float:
    """The factor on the logits that minimises the label-smoothed cross-entropy: the same argmax, other confidence.

    The solve fits hard labels, so on separable features its logits grow
    large; the smoothed loss fine-tuning then uses punishes that confidence
    with large gradients, which undid the head in its first epochs (digits,
    50 images per class: validation accuracy 0.88 -> 0.68). Scaling the
    head to the smoothed loss's optimum keeps every prediction and starts
    fine-tuning at a low loss.

    Example:
        >>> logits = np.array([[8.0, 0.0], [0.0, 8.0]]); labels = np.array([0, 1])
        >>> round(smoothing_scale(logits, labels, 0.1), 2) < 1.0
        True
    """
    # lazy: SciPy comes with scikit-learn; only the head phase needs it
    from scipy.optimize import minimize_scalar

    k = logits.shape[1]
    target = np.full(logits.shape, label_smoothing / k)
    target[np.arange(len(labels)), labels] += 1 - label_smoothing

    def loss(log_t):
        z = logits * np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-(target * log_p).sum(axis=1).mean())

    return float(np.exp(minimize_scalar(loss, bounds=(-5.0, 3.0), method="bounded").x))


def _softmax_parameters(coef, intercept, present, n_classes: int):
    """scikit-learn's coefficients as a K-way softmax layer's (K, D) weights and (K,) biases.

    A binary problem has one logit z for class 1: softmax([-z/2, z/2]) = sigmoid(z).
    A class absent from training gets a bias far below the others (never predicted).
    """
    if coef.shape[0] == 1:
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    full_coef = np.zeros((n_classes, coef.shape[1]))
    full_bias = np.full(n_classes, -30.0)
    full_coef[present], full_bias[present] = coef, intercept
    return full_coef, full_bias


def _full_probs(probs, present, n_classes: int):
    full = np.zeros((len(probs), n_classes))
    full[:, present] = probs
    return full


def _softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _log_loss(probs, labels) -> float:
    if not len(labels):
        return float("nan")  # no validation images (val_fraction 0)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))))


def solve_head(model, sets: dict, *, augment_layers: list | None = None, views: int = 0,
               class_weight: dict | None = None, use_val: bool = False, label_smoothing: float = 0.0,
               weightings: dict | None = None, monitor: str = "val_loss") -> dict:
    """Fit `model`'s classifier by softmax regression on its frozen backbone's features, in place.

    `sets` holds in-memory "train" and "val" sets (`.images`, `.labels`);
    `views` augmented copies of every training image (made with
    `augment_layers`) join the clean features. With `use_val` (a head-only
    run on few images, where one validation image per class is a fifth of the
    data) the validation images join the fit too and the strength is chosen by
    cross-validation over all of them: the held-out figures are then
    out-of-fold estimates, the honest ones. With `label_smoothing` (the loss
    fine-tuning will use) the logits are scaled to minimise that loss (see
    `smoothing_scale`). Returns the fit's figures (see
    `fit_softmax_regression`) and its timings. With `weightings` ({name:
    class weights or None}) each is solved and the best by `monitor` on the
    held-out images is kept (`training.imbalance.choose_weighting`); the
    result's "weighting" says which and why.

    Example:
        >>> from imgclf.models.factory import create_model
        >>> model = create_model("small_cnn", num_classes=2, img_size=16)
        >>> model.get_layer("backbone").trainable = False  # the head phase of a pretrained backbone
        >>> from imgclf.data.pipeline import DecodedSet
        >>> rng = np.random.default_rng(0)
        >>> sets = {s: DecodedSet(rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), np.array([0, 1] * 4), [])
        ...         for s in ("train", "val")}
        >>> fit = solve_head(model, sets)
        >>> fit["selected_by"], 0 <= fit["val_accuracy"] <= 1
        ('4-fold cross-validation', True)
    """
    t0 = time.perf_counter()
    train, val = sets["train"], sets["val"]
    y_train, y_val = np.asarray(train.labels), np.asarray(val.labels)
    x_train = compute_features(model, train.images)
    # No validation split (val_fraction 0): the strength is chosen by cross-validation on the training images.
    x_val = compute_features(model, val.images) if len(y_val) else np.zeros((0, x_train.shape[1]), "float32")
    x_fit, y_fit = (np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])) if use_val else (x_train, y_train)
    clean = len(y_fit)
    if views and augment_layers:  # clean rows first: cross-validation uses only them
        x_fit = np.concatenate([x_fit, augmented_features(model, train.images, augment_layers, views)])
        y_fit = np.concatenate([y_fit, np.tile(y_train, views)])
    features_s = time.perf_counter() - t0
    n_classes = model.output_shape[-1]
    # lazy: threadpoolctl comes with scikit-learn; only the solve needs it
    from threadpoolctl import threadpool_limits

    def fit_with(cw):
        weights = None if not cw else np.asarray([cw[int(c)] for c in y_fit], dtype="float64")
        return fit_softmax_regression(x_fit.astype("float64"), y_fit, x_val.astype("float64"), y_val, n_classes, weights,
                                      clean_rows=clean, force_cv=use_val or not len(y_val))

    # One BLAS thread: beside TensorFlow's thread pools, OpenBLAS' own threads made the solve 30x slower (63 s vs 2 s).
    with threadpool_limits(1):
        fit = choose_weighting(weightings, fit_with, monitor, n_classes) if weightings else fit_with(class_weight)
    fit["scale"] = 1.0
    if label_smoothing:
        fit["scale"] = smoothing_scale(x_fit[:clean] @ fit["kernel"] + fit["bias"], y_fit[:clean], label_smoothing)
        fit["kernel"], fit["bias"] = fit["kernel"] * fit["scale"], fit["bias"] * fit["scale"]
    model.get_layer("classifier").set_weights([fit["kernel"], fit["bias"]])
    fit.update(features_s=round(features_s, 3), fit_s=round(time.perf_counter() - t0 - features_s, 3),
               views=views + 1, feature_rows=len(y_fit), val_in_fit=use_val)
    figures = (f"out-of-fold loss {fit['held_out_loss']:.4f}, accuracy {fit['held_out_accuracy']:.4f}"
               if use_val or not len(y_val) else f"validation loss {fit['val_loss']:.4f}, accuracy {fit['val_accuracy']:.4f}")
    log(f"Head solved: softmax regression on {clean} images' backbone features"
        + (" (training and validation images: too few to hold any out)" if use_val else "")
        + (f", {views} augmented view(s) of each training image" if views else "")
        + f"; L2 strength C={fit['C']:g} chosen by {fit['selected_by']} ({figures}); "
        f"features {features_s:.1f}s, solve {fit['fit_s']:.1f}s")
    return fit
