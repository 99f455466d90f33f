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

    Example:
        >>> import time
        >>> study = optuna.create_study(direction="maximize")
        >>> trial = study.ask()
        >>> pruner = PruneTrial(trial, deadline=time.monotonic() + 600)
        >>> run = imgclf.train("data/", out="runs/pruned", model="small_cnn", epochs=2, img_size=16, verbose=0, callbacks=[pruner])
        >>> sorted(study.trials[0].intermediate_values)  # one report per epoch
        [1, 2]
    """

    def __init__(self, trial, deadline: float | None = None, monitor: str = "val_accuracy"):
        super().__init__()
        self.trial, self.deadline, self.monitor = trial, deadline, monitor
        self.spent_s = 0.0
        self.start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        value = (logs or {}).get(self.monitor)
        try:
            # How long the trial has run, for the budget if this process is killed before the trial ends.
            self.trial.set_user_attr("alive_s", round(time.monotonic() - self.start, 1))
            if value is not None:
                self.trial.report(float(value), step=epoch + 1)
                if self.trial.should_prune():
                    log(f"Trial {self.trial.number}: pruned after epoch {epoch + 1} ({self.monitor} {float(value):.4f})")
                    raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")
            last = epoch + 1 >= (self.params or {}).get("epochs", 0)  # a trial that is done anyway completes
            if self.deadline is not None and time.monotonic() > self.deadline and not last:
                log(f"Trial {self.trial.number}: stopped after epoch {epoch + 1}, the tune's time budget is spent")
                raise optuna.TrialPruned("the time budget of the tune is spent")
        finally:
            self.spent_s += time.perf_counter() - start
