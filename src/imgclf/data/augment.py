"""Data augmentation: presets of Keras preprocessing layers, plus MixUp and CutMix.

Augmentation runs inside the tf.data training pipeline on whole batches of
float 0..255 pixels. It is never part of the saved model, so prediction,
export and serving see exactly the images they are given.

Presets (each includes the one before):
* ``flip``: the mirror image half of the time, nothing else: it costs no
  training speed and lets test-time flipping help (see ``tta.choose_tta``).
* ``light``: + translation by up to 10%, in whole pixels.
* ``standard``: + rotation up to 10 degrees, zoom up to 10%, contrast.
* ``strong``: + RandAugment (2 ops) and random erasing.

Flips adapt to the data: with ``flip='auto'`` there are no flips at all when
the class names look like characters (digits, letters: a flipped 2 is not a
2), horizontal flips otherwise, and never vertical ones unless asked
(``flip='both'``), since most photos have an up.
"""

from __future__ import annotations

import re

PRESETS = ("none", "flip", "light", "standard", "strong")
FLIPS = ("auto", "none", "horizontal", "both")


def resolve_flip(flip: str, classes: list[str]) -> str:
    """Turn flip='auto' into 'none' for character-like classes, else 'horizontal'.

    Example:
        >>> resolve_flip("auto", ["0", "1", "2"]), resolve_flip("auto", ["cat", "dog"])
        ('none', 'horizontal')
    """
    if flip != "auto":
        return flip
    looks_like_characters = all(re.fullmatch(r"[0-9A-Za-z]", c) or c.isdigit() for c in classes)
    return "none" if looks_like_characters else "horizontal"


def augmentation_layers(preset: str, flip: str = "horizontal", seed: int = 0) -> list:
    """The Keras preprocessing layers of a preset, in the order they are applied.

    Example:
        >>> [type(l).__name__ for l in augmentation_layers("light")]
        ['RandomFlip', 'RandomTranslation']
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    from keras import layers

    if preset == "none":
        return []
    # float32 whatever the global mixed-precision policy: pixels are cheap, bfloat16 would blur them.
    f32 = {"dtype": "float32"}
    out = []
    if flip in ("horizontal", "both"):
        out.append(layers.RandomFlip("horizontal" if flip == "horizontal" else "horizontal_and_vertical", seed=seed, **f32))
    if preset == "flip":
        return out
    if preset in ("standard", "strong"):
        out.append(layers.RandomRotation(10 / 360, fill_mode="constant", seed=seed + 1, **f32))
        out.append(layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 2, **f32))
    # Nearest-neighbour sampling moves images by whole pixels: bilinear sampling at fractional
    # shifts blurs every training image, which test images never are (bench/RESULTS.md, session 4).
    out.append(layers.RandomTranslation(0.1, 0.1, fill_mode="constant", interpolation="nearest", seed=seed + 3, **f32))
    if preset in ("standard", "strong"):
        out.append(layers.RandomContrast(0.2, value_range=(0, 255), seed=seed + 4, **f32))
    if preset == "strong":
        out.append(layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.3, seed=seed + 5, **f32))
        out.append(layers.RandomErasing(factor=0.5, scale=(0.02, 0.25), value_range=(0, 255), seed=seed + 6, **f32))
    return out


def mix_batch(x, y_onehot, mixup: float = 0.0, cutmix: float = 0.0, seed=None):
    """MixUp (alpha=`mixup`) or CutMix (alpha=`cutmix`), half the batches each when both are on.

    Mixes each image with another of the same batch; labels are mixed in the
    same proportion (for CutMix, the pasted area's share).

    Example:
        >>> import tensorflow as tf
        >>> x, y = np.zeros((4, 8, 8, 3), "float32"), np.arange(4) % 2
        >>> x2, y2 = mix_batch(x, tf.one_hot(y, 10), mixup=0.2)
        >>> tuple(x2.shape), tuple(y2.shape)
        ((4, 8, 8, 3), (4, 10))
    """
    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    import tensorflow as tf

    n = tf.shape(x)[0]
    perm = tf.random.shuffle(tf.range(n))
    x2, y2 = tf.gather(x, perm), tf.gather(y_onehot, perm)

    def beta(alpha):
        a = tf.random.gamma([n], alpha)
        b = tf.random.gamma([n], alpha)
        return a / (a + b)

    def do_mixup():
        lam = beta(mixup)
        lx = tf.reshape(lam, [-1, 1, 1, 1])
        return x * lx + x2 * (1 - lx), y_onehot * lam[:, None] + y2 * (1 - lam[:, None])

    def do_cutmix():
        h, w = tf.shape(x)[1], tf.shape(x)[2]
        lam = beta(cutmix)
        cut = tf.sqrt(1.0 - lam)
        ch = tf.cast(cut * tf.cast(h, tf.float32), tf.int32)
        cw = tf.cast(cut * tf.cast(w, tf.float32), tf.int32)
        cy = tf.random.uniform([n], 0, h, dtype=tf.int32)
        cx = tf.random.uniform([n], 0, w, dtype=tf.int32)
        y0, y1 = tf.clip_by_value(cy - ch // 2, 0, h), tf.clip_by_value(cy + ch // 2, 0, h)
        x0, x1 = tf.clip_by_value(cx - cw // 2, 0, w), tf.clip_by_value(cx + cw // 2, 0, w)
        rows = tf.range(h)[None, :, None]
        cols = tf.range(w)[None, None, :]
        box = ((rows >= y0[:, None, None]) & (rows < y1[:, None, None]) & (cols >= x0[:, None, None]) & (cols < x1[:, None, None]))
        mask = tf.cast(box, x.dtype)[..., None]
        area = tf.reduce_mean(tf.cast(box, tf.float32), axis=[1, 2])
        return x * (1 - mask) + x2 * mask, y_onehot * (1 - area)[:, None] + y2 * area[:, None]

    if mixup > 0 and cutmix > 0:
        return tf.cond(tf.random.uniform([]) < 0.5, do_mixup, do_cutmix)
    if mixup > 0:
        return do_mixup()
    if cutmix > 0:
        return do_cutmix()
    return x, y_onehot


def make_train_map(preset: str, flip: str, num_classes: int, one_hot: bool, mixup: float = 0.0,
                   cutmix: float = 0.0, seed: int = 0):
    """The function tf.data maps over training batches: augment, one-hot, mix. None if there is nothing to do.

    Example:
        >>> fn = make_train_map("standard", "horizontal", 10, one_hot=False)
        >>> import tensorflow as tf
        >>> ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 16, 16, 3), "float32"), np.arange(4))).batch(2)
        >>> ds.map(fn).element_spec[0].shape  # as data.pipeline.make_dataset maps it
        TensorShape([None, 16, 16, 3])
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras
    import tensorflow as tf

    layers = augmentation_layers(preset, flip, seed)
    one_hot = one_hot or mixup > 0 or cutmix > 0
    if not layers and not one_hot:
        return None

    def apply(x, y):
        for layer in layers:
            if isinstance(layer, keras.layers.RandAugment):
                # RandAugment draws its operations once per call: per image, not per batch.
                x = tf.map_fn(lambda image, layer=layer: layer(image, training=True), x)
            else:
                x = layer(x, training=True)
        x = tf.clip_by_value(x, 0.0, 255.0)
        if one_hot:
            y = tf.one_hot(y, num_classes)
            if mixup > 0 or cutmix > 0:
                x, y = mix_batch(x, y, mixup, cutmix)
        return x, y

    return apply
