"""The learning-rate range test (Smith 2015; fastai's lr_find): pick a rate from data, not folklore.

Train for ~100 steps while the rate grows exponentially from 1e-6 to 1, record
the loss of every step, stop once the loss explodes, and suggest a tenth of
the rate at which the smoothed loss was lowest (fastai's "min/10" rule: the
loss is still falling steeply there, and far from divergence).
"""

from __future__ import annotations

import math
import os

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.progress import Progress, log
from imgclf.evaluation.figures.curves import plot_lr_find
from imgclf.models.registry import default_lr


TURN_UP = 0.05  # the loss "turned up" once it rose past its minimum by this share of its fall from the start


def smooth_losses(losses, window: int = 0) -> list[float]:
    """Centred moving average of the step losses (window: about 5% of the steps, at least 3; no lag).

    Example:
        >>> smooth_losses([1.0, 3.0, 2.0, 4.0, 3.0])
        [2.0, 2.0, 3.0, 3.0, 3.5]
    """
    losses = np.asarray(losses, dtype=np.float64)
    half = max(1, (window or max(3, len(losses) // 20)) // 2)
    return [float(np.nanmean(losses[max(0, i - half):i + half + 1])) for i in range(len(losses))]


def suggest_lr(lrs, losses) -> tuple[float, list[float]]:
    """The suggested rate (a tenth of the rate at the smoothed minimum) and the smoothed losses.

    Example:
        >>> lrs = np.geomspace(1e-5, 1, 50)
        >>> losses = 1 + (np.log10(lrs) + 2) ** 2  # lowest at 1e-2
        >>> round(suggest_lr(lrs, losses)[0], 5) < 1e-2
        True
    """
    smooth = smooth_losses(losses)
    best = int(np.nanargmin(smooth))
    return float(lrs[best]) / 10, smooth


def turned_up(smooth) -> bool:
    """Whether the smoothed loss rose clearly after its minimum (else the sweep says nothing about divergence).

    Example:
        >>> turned_up([3.0, 2.0, 1.0, 0.9, 1.5]), turned_up([3.0, 2.0, 1.0, 0.9, 0.8])
        (True, False)
    """
    smooth = np.asarray(smooth, dtype=np.float64)
    best = int(np.nanargmin(smooth))
    fall = max(float(smooth[0] - smooth[best]), 1e-12)
    return bool(best < len(smooth) - 1 and float(np.nanmax(smooth[best:])) > smooth[best] + TURN_UP * fall)


def range_test(model, dataset, steps: int, start: float, end: float):
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    lrs, losses = [], []
    bar = Progress(steps, "Range test", unit="step")

    class Sweep(keras.callbacks.Callback):
        prev_mean = 0.0  # Keras' running mean of the loss after the previous step

        def on_train_batch_begin(self, batch, logs=None):
            lr = start * (end / start) ** (batch / max(steps - 1, 1))
            self.model.optimizer.learning_rate.assign(lr)
            lrs.append(lr)

        def on_train_batch_end(self, batch, logs=None):
            # Keras reports the running mean of the epoch; recover this step's loss from it.
            mean = float(logs["loss"])
            step_loss = mean * (batch + 1) - (self.prev_mean * batch if batch else 0.0)
            self.prev_mean = mean
            losses.append(step_loss)
            bar.update(1)
            finite = [l for l in losses if math.isfinite(l)]
            if not math.isfinite(step_loss) or (len(finite) > 10 and step_loss > 4 * min(finite)):
                self.model.stop_training = True

    with bar:
        model.fit(dataset.repeat().take(steps), epochs=1, verbose=0, callbacks=[Sweep()], shuffle=False)  # tf.data shuffles
    n = min(len(lrs), len(losses))
    return np.array(lrs[:n]), np.array(losses[:n])


def find_lr(trainer, out: str | os.PathLike = "lr_find.png", steps: int = 100, start: float = 1e-6,
            end: float = 1.0) -> dict:
    """Run the range test with a prepared `Trainer` (its data, model and recipe); write a plot; return the suggestion.

    The model is built and compiled exactly as training will build it (`Trainer.build_model`,
    `Trainer.prepare_phase`), so the rate found is the rate for that recipe.

    Example:
        >>> from imgclf.core.config import TrainConfig
        >>> from imgclf.training.trainer import Trainer
        >>> trainer = Trainer(TrainConfig(data="data/", model="small_cnn", img_size=16, out="runs/x"))
        >>> trainer.prepare()
        >>> found = find_lr(trainer, out="runs/x/plots/lr_find.png", steps=10)  # 100 steps (the default) for a real sweep
        >>> 1e-6 <= found["suggested_lr"] <= 1.0, os.path.isfile("runs/x/plots/lr_find.png")
        (True, True)
    """
    model = trainer.build_model()
    trainer.prepare_phase(model, "head" if trainer.plan.weights not in ("none", "") else "train")
    lrs, losses = range_test(model, trainer.train_dataset(), steps, start, end)
    if len(losses) < 5:
        raise UserError("The learning-rate range test diverged at once; check the data (are labels right?) or lower --lr start.")
    suggested, smooth = suggest_lr(lrs, losses)
    # If the loss was still falling when the sweep ended (tiny data is memorised
    # at any rate), the test says nothing about where training diverges: keep
    # the default rate instead of a tenth of the sweep's end.
    conclusive = turned_up(smooth)
    if not conclusive:
        suggested = default_lr(trainer.cfg.model, trainer.plan.weights)
        log("The loss never turned up during the range test (too little data to tell); "
            f"keeping the default learning rate {suggested:g}.")
    plot_lr_find(lrs, losses, smooth, suggested, out)
    return {"suggested_lr": suggested, "conclusive": conclusive, "lrs": lrs.tolist(), "losses": losses.tolist(),
            "plot": str(out)}
