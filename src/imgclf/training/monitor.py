"""Validation macro-F1 and balanced accuracy each epoch, so they can choose the checkpoint.

Accuracy flatters a model that ignores a small class; macro-F1 and balanced
accuracy (mean per-class recall) do not. Keras has no streaming metric for
them over a whole validation set, so this callback predicts the validation set
at the end of each epoch and adds ``val_macro_f1`` and
``val_balanced_accuracy`` to the epoch's logs. It must come before the
callbacks that read them (RunWriter, EarlyStopping): Keras hands one logs dict
to the callbacks in order.
"""

from __future__ import annotations

import keras
import numpy as np

from imgclf.evaluation.metrics import classification_metrics

EXTRA_MONITORS = ("val_macro_f1", "val_balanced_accuracy")


class ValidationMetrics(keras.callbacks.Callback):
    """Add val_macro_f1 and val_balanced_accuracy to the logs after every epoch.

    `val_ds` yields (images, labels) batches in the order of `labels` (not shuffled).

    Example:
        >>> import tensorflow as tf
        >>> from imgclf.models.factory import create_model
        >>> images, labels = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)), np.array([0, 1] * 4)
        >>> val_ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
        >>> model = create_model("small_cnn", num_classes=2, img_size=16)
        >>> model.compile("adam", "sparse_categorical_crossentropy")
        >>> fit = model.fit(images, labels, epochs=1, verbose=0, callbacks=[ValidationMetrics(val_ds, labels, ["cat", "dog"])])
        >>> sorted(fit.history)
        ['loss', 'val_balanced_accuracy', 'val_macro_f1']
    """

    def __init__(self, val_ds, labels, classes: list[str]):
        super().__init__()
        self.val_ds = val_ds.map(lambda x, *rest: x)  # images only; labels are known
        self.labels = np.asarray(labels)
        self.classes = list(classes)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        probs = self.model.predict(self.val_ds, verbose=0)
        m = classification_metrics(self.labels, np.asarray(probs, dtype=np.float64), self.classes)
        logs["val_macro_f1"] = m["macro_avg"]["f1"]
        logs["val_balanced_accuracy"] = m["balanced_accuracy"]
