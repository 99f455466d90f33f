"""The head phase's fast path: train the head on backbone features computed once.

While the backbone is frozen (transfer learning's first phase) and the inputs
are not augmented, every epoch would push the same images through the same
backbone. Instead the features (the pooled backbone output, the input of the
dropout layer) are computed once for the training and validation images, and
the head's own layers (dropout, classifier) are trained on them. The layers
are shared with the full model, so the full model holds the trained head
afterwards and the fine-tuning phase continues from it.

The usual callbacks (schedule, Run bundle writer, early stopping, progress)
see the full model, so checkpoints and model.keras are complete models.

Example:
    >>> from imgclf.core.config import make_config
    >>> from imgclf.training.trainer import Trainer
    >>> trainer = Trainer(make_config({"data": "data/", "model": "small_cnn", "img_size": 16, "augment": "none", "out": "runs/cached"}))
    >>> trainer.prepare()  # split and decode data/ (what `imgclf train` does first)
    >>> model = trainer.build_model()
    >>> trainer.prepare_phase(model, "head")  # freeze the backbone, compile
    >>> if feature_cache_applies(trainer.settings, "head", model):
    ...     timings = fit_head_on_features(model, trainer.sets, [], batch_size=8, epochs=2, initial_epoch=0,
    ...                                    one_hot=trainer.plan.one_hot)
    >>> sorted(timings)
    ['features_s', 'fit_s']
"""

from __future__ import annotations

import time

import numpy as np

from imgclf.core.progress import log


def feature_cache_applies(cfg, phase: str, model) -> bool:
    """True when the phase trains only the head on inputs that are the same every epoch.

    Example:
        >>> from imgclf.models.factory import create_model
        >>> model = create_model("small_cnn", num_classes=2, img_size=16)
        >>> model.get_layer("backbone").trainable = False  # the head phase of a pretrained backbone
        >>> from imgclf.core.config import TrainConfig
        >>> feature_cache_applies(TrainConfig(augment="none"), "head", model)
        True
        >>> feature_cache_applies(TrainConfig(augment="light"), "head", model)  # augmented inputs change every epoch
        False
    """
    if phase != "head" or getattr(cfg, "feature_cache", "auto") == "off":
        return False
    if getattr(cfg, "augment", "none") not in ("none", "") or getattr(cfg, "mixup", 0) or getattr(cfg, "cutmix", 0):
        return False
    if getattr(cfg, "ema", False) or getattr(cfg, "sampling", "natural") != "natural":
        return False  # EMA swaps the full model's weights; balanced sampling re-draws images
    return frozen_backbone_with_head(model)


def frozen_backbone_with_head(model) -> bool:
    """True when `model` is imgclf's shape (a 'backbone' then [dropout,] classifier) and its backbone is frozen.

    Example:
        >>> from imgclf.models.factory import create_model
        >>> model = create_model("small_cnn", num_classes=2, img_size=16)
        >>> frozen_backbone_with_head(model)
        False
        >>> model.get_layer("backbone").trainable = False
        >>> frozen_backbone_with_head(model)
        True
    """
    try:
        backbone = model.get_layer("backbone")
    except ValueError:
        return False
    return not backbone.trainable_weights and head_layers(model) is not None


def head_layers(model):
    """The layers after the pooled features: [dropout,] classifier; None if the model is not imgclf's shape."""
    names = [layer.name for layer in model.layers]
    if "classifier" not in names:
        return None
    start = names.index("dropout") if "dropout" in names else names.index("classifier")
    head = model.layers[start:]
    if [layer.name for layer in head][-1] != "classifier":
        return None
    return head


def compute_features(model, images, batch_size: int = 128):
    """Pooled backbone features of `images` (N, H, W, C, 0..255) as float32, shape (N, D).

    Example:
        >>> from imgclf.models.factory import create_model
        >>> model = create_model("small_cnn", num_classes=2, img_size=16)
        >>> compute_features(model, np.zeros((5, 16, 16, 3), np.uint8)).shape  # small_cnn pools 96 channels
        (5, 96)
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    head = head_layers(model)
    extractor = keras.Model(model.inputs, head[0].input)
    feats = extractor.predict(images, batch_size=batch_size, verbose=0)
    return np.asarray(feats, dtype="float32")


def sync_stop(full, head):
    """A callback that lets early stopping (it sets full.stop_training) stop the head model's loop."""
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    class SyncStop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            head.stop_training = head.stop_training or full.stop_training

        def on_epoch_end(self, epoch, logs=None):
            head.stop_training = head.stop_training or full.stop_training

    return SyncStop()


def fit_head_on_features(model, sets: dict, callbacks: list, *, batch_size: int, epochs: int, initial_epoch: int,
                         class_weight=None, one_hot: bool = False, seed: int = 0) -> dict:
    """Train `model`'s head on cached backbone features, driving `callbacks` with the full model.

    `model` must be compiled (its optimizer and loss are reused: the optimizer
    only ever sees the head's weights, the same variables in both models).
    Returns timings: {"features_s": ..., "fit_s": ...}.

    Example:
        >>> from imgclf.models.factory import create_model
        >>> model = create_model("small_cnn", num_classes=2, img_size=16)
        >>> model.get_layer("backbone").trainable = False  # the head phase of a pretrained backbone
        >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> from imgclf.data.pipeline import DecodedSet
        >>> rng = np.random.default_rng(0)
        >>> sets = {s: DecodedSet(rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), np.array([0, 1] * 4), [])
        ...         for s in ("train", "val")}
        >>> import keras
        >>> history = keras.callbacks.History()
        >>> _ = fit_head_on_features(model, sets, [history], batch_size=4, epochs=2, initial_epoch=0)
        >>> sorted(history.history)
        ['accuracy', 'loss', 'val_accuracy', 'val_loss']
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    t0 = time.perf_counter()
    n_classes = model.output_shape[-1]
    splits = ("train", "val") if len(sets["val"]) else ("train",)  # no validation split (val_fraction 0): train only
    feats = {split: compute_features(model, sets[split].images) for split in splits}
    labels = {split: np.asarray(sets[split].labels) for split in splits}
    if one_hot:
        labels = {k: np.eye(n_classes, dtype="float32")[v] for k, v in labels.items()}
    features_s = time.perf_counter() - t0
    log(f"Feature cache: backbone features of {len(labels['train'])} + {len(labels.get('val', ()))} images "
        f"computed once in {features_s:.1f}s; the head trains on them (the backbone is frozen, inputs not augmented).")

    inputs = keras.Input((feats["train"].shape[1],), name="features")
    x = inputs
    for layer in head_layers(model):
        x = layer(x)
    head = keras.Model(inputs, x, name="head_on_features")
    acc = keras.metrics.CategoricalAccuracy(name="accuracy") if one_hot else keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    head.compile(optimizer=model.optimizer, loss=model.loss, metrics=[acc])
    head.history = None
    # Callbacks see the full model: RunWriter saves it, the schedule sets its optimizer's rate.
    cb = keras.callbacks.CallbackList(list(callbacks) + [sync_stop(model, head)], add_history=False,
                                      add_progbar=False, model=model)
    model.stop_training = False
    keras.utils.set_random_seed(seed)  # the shuffling order of the cached features
    t1 = time.perf_counter()
    head.fit(feats["train"], labels["train"], batch_size=batch_size, epochs=epochs, initial_epoch=initial_epoch,
             validation_data=(feats["val"], labels["val"]) if "val" in feats else None, class_weight=class_weight, callbacks=cb, verbose=0,
             shuffle=True)
    return {"features_s": round(features_s, 3), "fit_s": round(time.perf_counter() - t1, 3)}
