"""The Keras callback between a trial's training and Optuna: each epoch's validation score in, prune or stop out."""

from __future__ import annotations

import time

import keras
import optuna

from imgclf.core.progress import log


class PruneTrial(keras.callbacks.Callback):
    """After every epoch, report `monitor` to the Optuna `trial`; raise `optuna.TrialPruned` when the pruner says so,
    or when the tune's `deadline` (a `time.monotonic()` value) has passed. `spent_s` counts the time spent here;
    the trial's ``alive_s`` attribute, how long it has run, is what the budget counts if the process is killed.

    The pruner is asked only once the trial has run `warmup` of its length:
    that share of its `epochs`, or of its `budget_s` seconds of training
    (every epoch is reported all the same). Regularised recipes (augmentation,
    MixUp, CutMix) trail at first and catch up later: asked from the first
    epoch, the median rule pruned every one of them in a tune of Fashion-MNIST
    (bench/RESULTS.md, issue 17), so the search never saw how they end.

    Example:
        >>> import time
        >>> study = optuna.create_study(direction="maximize")
        >>> trial = study.ask()
        >>> pruner = PruneTrial(trial, deadline=time.monotonic() + 600)
        >>> run = imgclf.train("data/", out="runs/pruned", model="small_cnn", epochs=2, img_size=16, verbose=0, callbacks=[pruner])
        >>> sorted(study.trials[0].intermediate_values)  # one report per epoch
        [1, 2]
    """

    def __init__(self, trial, deadline: float | None = None, monitor: str = "val_accuracy", warmup: float = 0.0,
                 epochs: int = 0, budget_s: float = 0.0):
        super().__init__()
        self.trial, self.deadline, self.monitor = trial, deadline, monitor
        self.warmup, self.epochs, self.budget_s = warmup, epochs, budget_s
        self.spent_s = 0.0
        self.start = time.monotonic()
        self.training_start: float | None = None  # the first epoch's start: a budget counts training time

    def on_train_begin(self, logs=None):
        if self.training_start is None:  # a run of two phases calls this twice
            self.training_start = time.monotonic()

    def progress(self, epochs_done: int) -> float:
        """The share of the trial run so far: of its time budget if it has one, else of its epochs (1 if unknown)."""
        if self.budget_s:
            return (time.monotonic() - (self.training_start or self.start)) / self.budget_s
        return epochs_done / self.epochs if self.epochs else 1.0

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        value = (logs or {}).get(self.monitor)
        try:
            # How long the trial has run, for the budget if this process is killed before the trial ends.
            self.trial.set_user_attr("alive_s", round(time.monotonic() - self.start, 1))
            if value is not None:
                self.trial.report(float(value), step=epoch + 1)
                if self.progress(epoch + 1) >= self.warmup and self.trial.should_prune():
                    log(f"Trial {self.trial.number}: pruned after epoch {epoch + 1} ({self.monitor} {float(value):.4f})")
                    raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")
            last = epoch + 1 >= (self.params or {}).get("epochs", 0)  # a trial that is done anyway completes
            if self.deadline is not None and time.monotonic() > self.deadline and not last:
                log(f"Trial {self.trial.number}: stopped after epoch {epoch + 1}, the tune's time budget is spent")
                raise optuna.TrialPruned("the time budget of the tune is spent")
        finally:
            self.spent_s += time.perf_counter() - start
