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
        >>> model.fit(train_ds, callbacks=[ValidationMetrics(val_ds, labels, classes), RunWriter(...)])  # inside training: a model and its validation pipeline  # doctest: +SKIP
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
