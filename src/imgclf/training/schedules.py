"""Learning-rate schedules over training progress, and the time budget that can drive them.

A schedule here is a function of progress p in [0, 1], not of the step
number, so that the same cosine or one-cycle curve fits a fixed number of
epochs (p = step / total steps) or a wall-clock budget (p = elapsed / planned
end), and ends at its lowest rate exactly when training ends.
"""

from __future__ import annotations

import math
import time

import keras

SCHEDULES = ("cosine", "onecycle", "constant")


def lr_at(p: float, peak: float, kind: str = "cosine", warmup: float = 0.03, floor: float = 0.01) -> float:
    """The learning rate at progress p (0 = start, 1 = end) for a peak rate.

    cosine: linear warmup from peak/10 over the first `warmup` share, then
    cosine decay to floor*peak. onecycle: Smith's one-cycle (30% up from
    peak/25, cosine down to peak/1e4). constant: flat after the warmup.

    Example:
        >>> round(lr_at(0.0, 1.0), 3), round(lr_at(0.5, 1.0, warmup=0.0), 3), round(lr_at(1.0, 1.0), 3)
        (0.1, 0.505, 0.01)
    """
    p = min(max(p, 0.0), 1.0)
    if kind == "onecycle":
        up = 0.3
        if p < up:
            return peak / 25 + (peak - peak / 25) * (1 - math.cos(math.pi * p / up)) / 2
        q = (p - up) / (1 - up)
        return peak / 1e4 + (peak - peak / 1e4) * (1 + math.cos(math.pi * q)) / 2
    if warmup > 0 and p < warmup:
        return peak * (0.1 + 0.9 * p / warmup)
    if kind == "constant":
        return peak
    q = (p - warmup) / max(1 - warmup, 1e-9)
    return peak * (floor + (1 - floor) * (1 + math.cos(math.pi * q)) / 2)


class ProgressSchedule(keras.callbacks.Callback):
    """Set the optimizer's learning rate before every step from training progress.

    With `budget_s`, progress is wall time over the planned end of training:
    the budget less the time the last validation took, re-measured after every
    epoch. Training stops at the step where the next one would pass that end,
    mid-epoch if need be (Keras then validates and saves that shorter last
    epoch), so the whole budget is spent training and the rate reaches its
    floor as the budget ends. Whole-epoch planning wasted half an epoch on
    average: 7% of a 5-minute budget on Fashion-MNIST. Otherwise progress is
    the global step over `total_steps`.

    Example:
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> model.compile(keras.optimizers.SGD(), "sparse_categorical_crossentropy")
        >>> x, y = np.zeros((32, 4), "float32"), np.zeros(32, "int32")  # 4 steps of 8 per epoch
        >>> _ = model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[ProgressSchedule(1e-3, total_steps=8)])
        >>> float(model.optimizer.learning_rate) < 1e-4  # the cosine's end
        True
    """

    def __init__(self, peak: float, total_steps: int = 0, kind: str = "cosine", warmup: float = 0.03,
                 budget_s: float = 0.0, elapsed_s: float = 0.0, start_step: int = 0):
        super().__init__()
        self.peak, self.kind, self.warmup = peak, kind, warmup
        self.total_steps = max(total_steps, 1)
        self.budget_s = budget_s
        self.elapsed_before = elapsed_s  # time already spent in earlier sessions (resume)
        self.step = start_step
        self.planned_end = budget_s
        self._t0 = None
        self._last_batch_end = 0.0
        self._step_s = 0.0  # smoothed time of one training step, to stop before the step that would overrun

    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._t0 if self._t0 else 0.0)

    def progress(self) -> float:
        if self.budget_s:
            return self.elapsed() / max(self.planned_end, 1e-9)
        return self.step / self.total_steps

    def on_train_begin(self, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._last_batch_end = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(lr_at(self.progress(), self.peak, self.kind, self.warmup))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if not self.budget_s:
            return
        now = time.perf_counter()
        step_s, self._last_batch_end = now - self._last_batch_end, now
        if batch == 0:
            return  # an epoch's first step also builds the graph or refills the shuffle buffer
        # Smoothed, so one slow step (a noisy neighbour) does not end training early.
        self._step_s = step_s if not self._step_s else 0.9 * self._step_s + 0.1 * step_s
        if self.elapsed() + self._step_s > self.planned_end:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if not self.budget_s:
            return
        validation_s = time.perf_counter() - self._last_batch_end  # this callback runs first: validation only
        self.planned_end = max(self.budget_s - validation_s, 0.0)
        if self.elapsed() + self._step_s > self.planned_end:
            self.model.stop_training = True
