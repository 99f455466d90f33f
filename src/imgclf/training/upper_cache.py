"""Faster fine-tuning on a CPU: the frozen lower blocks run once, the upper blocks train on their output.

With ``finetune='top'`` only the upper part of the backbone trains; its lower
part is frozen, BatchNorm included (inference mode), so it maps each image to
the same activations every epoch. Plain fine-tuning still runs it forward on
every step; here it runs once per image (Lite0 at 224 px fine-tuned 3.7x as
many images per second as before, bench/RESULTS.md). The activations at the
cut (the output of the last frozen layer the rest can be computed from;
7x7x672 values for Lite0 at 224 px with finetune='top') are kept in memory and the upper blocks, pooling and head train on
them as a separate Keras model that shares their layers and the optimizer, so
the full model holds the trained weights and every callback (schedule, Run
writer, progress) sees the full model.

Augmentation moves to the cached maps: horizontal flips and whole-cell shifts
(presets 'flip' and 'light'); heavier presets, MixUp and CutMix need the
pixels, and switch the cache off, as do EMA and balanced sampling, and maps that
would not fit in MAX_CACHE_BYTES.

Example:
    >>> from imgclf.core.config import make_config
    >>> from imgclf.training.trainer import Trainer
    >>> trainer = Trainer(make_config({"data": "data/", "model": "small_cnn", "img_size": 16, "augment": "light", "finetune_fraction": 0.5, "out": "runs/cached"}))
    >>> trainer.prepare()  # split and decode data/ (what `imgclf train` does first)
    >>> model = trainer.build_model()
    >>> trainer.prepare_phase(model, "finetune")  # the lower half of the backbone stays frozen
    >>> if upper_cache_applies(trainer.settings, "finetune", model, n_images=len(trainer.sets["train"])):
    ...     timings = fit_upper_on_cache(model, trainer.sets, [], batch_size=8, epochs=1, initial_epoch=0, steps=2,
    ...                                  one_hot=trainer.plan.one_hot)
    >>> sorted(timings)
    ['cut', 'fit_s', 'maps_s']
"""

from __future__ import annotations

import time

import numpy as np

from imgclf.core.progress import log
from imgclf.data.pipeline import without_autotuner
from imgclf.training.feature_cache import sync_stop

MAX_CACHE_BYTES = 3 * 2**30  # cached activations of training and validation images, float32
CACHE_AUGMENT = ("none", "", "flip", "light")


def upper_cache_applies(cfg, phase: str, model, n_images: int) -> bool:
    """True when fine-tuning can train on cached lower-block activations (see the module's rules).

    Example:
        >>> from imgclf.core.config import TrainConfig
        >>> from imgclf.models.factory import create_model
        >>> from imgclf.training.recipe import freeze_for_phase
        >>> model = create_model("small_cnn", num_classes=2, img_size=16)
        >>> freeze_for_phase(model, "finetune", TrainConfig(finetune_fraction=0.5))  # the lower half stays frozen
        >>> upper_cache_applies(TrainConfig(augment="light"), "finetune", model, 900)
        True
        >>> upper_cache_applies(TrainConfig(augment="strong"), "finetune", model, 900)  # heavy presets need the pixels
        False
    """
    if phase != "finetune" or getattr(cfg, "feature_cache", "auto") == "off" or not getattr(cfg, "freeze_bn", True):
        return False
    if getattr(cfg, "augment", "none") not in CACHE_AUGMENT or getattr(cfg, "mixup", 0) or getattr(cfg, "cutmix", 0):
        return False
    if getattr(cfg, "ema", False) or getattr(cfg, "sampling", "natural") != "natural":
        return False
    split = split_backbone(model)
    if split is None:
        return False
    cut_shape = tuple(split[1].inputs[0].shape[1:])
    return None not in cut_shape and n_images * int(np.prod(cut_shape)) * 4 <= MAX_CACHE_BYTES


def split_backbone(model):
    """(lower, upper) Keras models of `model`'s backbone cut before its first trainable layer, or None.

    The cut is the latest layer output, before the first trainable layer,
    that the rest of the backbone can be computed from alone (no skip
    connection crosses it). None when the backbone is not a functional model,
    trains from its first layer, or has no such cut.
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    try:
        backbone = model.get_layer("backbone")
    except ValueError:
        return None
    layers = getattr(backbone, "layers", None)
    if not layers or not isinstance(backbone, keras.Model) or not hasattr(backbone, "output"):
        return None
    first = next((i for i, layer in enumerate(layers) if layer.trainable_weights), None)
    if not first or first < 2:
        return None
    for i in range(first - 1, 0, -1):
        try:
            cut = layers[i].output
            upper = keras.Model(cut, backbone.output, name="upper_blocks")
        except (ValueError, AttributeError, TypeError):  # a skip connection crosses it, or a layer with several outputs
            continue
        if any(layer.trainable_weights for layer in layers[:i + 1]):
            return None
        return keras.Model(backbone.input, cut, name="lower_blocks"), upper
    return None


def _lower_maps(model, lower, images, batch_size: int = 64):
    """The frozen blocks' output for `images` (N, H, W, C, 0..255), float32, batch by batch."""
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    inputs = keras.Input(model.input_shape[1:])
    extractor = keras.Model(inputs, lower(model.get_layer("preprocess")(inputs)))
    return np.asarray(extractor.predict(images, batch_size=batch_size, verbose=0), dtype="float32")


def _map_dataset(maps, labels, batch_size: int, augment: str, flip: str, one_hot: int, seed: int, shuffle: bool):
    """tf.data over cached maps: shuffle, batch, flip and shift the maps like the image augmentation would."""
    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((maps, labels.astype("int32")))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    h, w = maps.shape[1], maps.shape[2]
    flips = augment in ("flip", "light") and flip in ("horizontal", "both")
    shift = round(0.1 * h) if augment == "light" else 0  # maps under 5 cells: one cell would be 20% of the image

    def apply(x, y):
        if flips:
            mirrored = tf.random.uniform((tf.shape(x)[0], 1, 1, 1), seed=seed) < 0.5
            x = tf.where(mirrored, tf.reverse(x, axis=[2]), x)
        if shift:  # one whole-cell shift per batch, zero-filled: 10% of the side, like RandomTranslation
            offsets = tf.random.uniform((2,), -shift, shift + 1, dtype=tf.int32, seed=seed + 1)
            dy, dx = offsets[0], offsets[1]  # indexed: a graph tensor cannot be unpacked
            x = tf.pad(x, [[0, 0], [shift, shift], [shift, shift], [0, 0]])
            x = x[:, shift + dy:shift + dy + h, shift + dx:shift + dx + w, :]
        if one_hot:
            y = tf.one_hot(y, one_hot)
        return x, y

    if shuffle and (flips or shift or one_hot):
        ds = ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
    elif one_hot:
        ds = ds.map(lambda x, y: (x, tf.one_hot(y, one_hot)))
    return without_autotuner(ds.prefetch(tf.data.AUTOTUNE))


def fit_upper_on_cache(model, sets: dict, callbacks: list, *, batch_size: int, epochs: int, initial_epoch: int,
                       steps: int, augment: str = "none", flip: str = "horizontal", class_weight=None,
                       one_hot: bool = False, seed: int = 0) -> dict:
    """Fine-tune `model`'s upper blocks and head on cached lower-block maps, driving `callbacks` with the full model.

    `model` must be compiled for the phase (its optimizer and loss are
    reused). `steps` optimizer steps make an epoch (the data repeats when it
    holds fewer batches). Returns timings {"maps_s", "fit_s", "cut"}.
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    t0 = time.perf_counter()
    lower, upper = split_backbone(model)
    splits = ("train", "val") if len(sets["val"]) else ("train",)  # no validation split (val_fraction 0): train only
    maps = {split: _lower_maps(model, lower, sets[split].images) for split in splits}
    maps_s = time.perf_counter() - t0
    n_classes = model.output_shape[-1]
    log(f"Fine-tuning cache: the frozen blocks ran once on {len(sets['train'])} + {len(sets['val'])} images in "
        f"{maps_s:.1f}s ({maps['train'].nbytes / 2**20:.0f} MB of {tuple(maps['train'].shape[1:])} maps); "
        f"the upper blocks train on them.")
    inputs = keras.Input(maps["train"].shape[1:], name="lower_maps")
    x = upper(inputs)
    after = model.layers[[layer.name for layer in model.layers].index("backbone") + 1:]
    for layer in after:  # pool, dropout, classifier: the same layer objects as the full model's
        x = layer(x)
    trainer_model = keras.Model(inputs, x, name="upper_on_cache")
    acc = keras.metrics.CategoricalAccuracy(name="accuracy") if one_hot else keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    trainer_model.compile(optimizer=model.optimizer, loss=model.loss, metrics=[acc])
    trainer_model.history = None  # fit returns it; the CallbackList given has no History callback
    labels = {k: np.asarray(sets[k].labels) for k in splits}
    k = n_classes if one_hot else 0
    train_ds = _map_dataset(maps["train"], labels["train"], batch_size, augment, flip, k, seed, shuffle=True)
    val_ds = (_map_dataset(maps["val"], labels["val"], max(batch_size, 128), "none", flip, k, seed, shuffle=False)
              if "val" in maps else None)
    cb = keras.callbacks.CallbackList(list(callbacks) + [sync_stop(model, trainer_model)], add_history=False,
                                      add_progbar=False, model=model)
    model.stop_training = False
    t1 = time.perf_counter()
    trainer_model.fit(train_ds.repeat(), steps_per_epoch=steps, epochs=epochs, initial_epoch=initial_epoch,
                      validation_data=val_ds, class_weight=class_weight, callbacks=cb, verbose=0, shuffle=False)
    return {"maps_s": round(maps_s, 3), "fit_s": round(time.perf_counter() - t1, 3), "cut": upper.inputs[0].name}
