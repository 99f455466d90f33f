"""One trial of `imgclf tune`: draw settings, train an ordinary run with the pruning callback, return its score.

`Objective` is what Optuna's ``study.optimize`` calls; it also keeps the
time the search spends outside training (tune.json's ``sessions``).
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.progress import log
from imgclf.evaluation.figures.curves import read_history
from imgclf.training.api import train
from imgclf.tuning.space import suggest

# A trial is pruned only once it has run this share of its epochs or budget (`imgclf.tuning.pruning.PruneTrial`).
PRUNE_WARMUP = 0.5


def best_value(run) -> float:
    """The validation accuracy of a run's saved model (the best epoch by its monitor), from history.csv.

    Example:
        >>> from imgclf.core.run import Run
        >>> 0 <= best_value(Run("runs/leaves")) <= 1
        True
    """
    summary = run.read_json("summary.json")
    best = summary.get("best_epoch")
    rows = read_history(run.file("history.csv"))
    for row in rows:
        if int(float(row.get("epoch", -1))) == best and row.get("val_accuracy") not in (None, ""):
            return float(row["val_accuracy"])
    values = [float(r["val_accuracy"]) for r in rows if r.get("val_accuracy") not in (None, "")]
    if not values:
        raise UserError(f"The trial run {run.path} recorded no validation accuracy: the data needs a validation split.")
    return max(values)


class Objective:
    """One trial: draw settings, train an ordinary run under OUT/trials with the pruning callback, return its score."""

    def __init__(self, data, out: Path, models, facts, trial_epochs, trial_budget, seed, settings, deadline, track, parent,
                 callback):
        self.callback = callback  # the class of the pruning callback (imgclf.tuning.pruning.PruneTrial, imports keras)
        self.data, self.out, self.models, self.facts = data, out, models, facts
        self.trial_epochs, self.trial_budget = trial_epochs, trial_budget
        self.seed, self.settings, self.deadline = seed, settings, deadline
        self.track, self.parent = track, parent
        self.train_s = self.callback_s = 0.0
        # Where the rest of the wall time goes: inside the objective but outside `train`, and the
        # longest wait between one trial's end and the next one's start (Optuna's sampler and storage).
        self.objective_s, self.longest_between_s, self._left = 0.0, 0.0, None
        self.release_s = self.stop_s = 0.0

    def __call__(self, trial) -> float:
        entered = time.perf_counter()
        if self._left is not None:
            self.longest_between_s = max(self.longest_between_s, entered - self._left)
        try:
            return self._trial(trial)
        finally:
            self._release()
            self._left = time.perf_counter()
            self.objective_s += self._left - entered

    def _release(self) -> None:
        """Collect the finished trial's garbage now, then freeze what is left (timed: part of the overhead).

        A trial leaves its model, datasets and per-image records behind, much
        of it in reference cycles that only Python's cyclic collector frees.
        Every full collection walks every live object, the libraries' included
        (0.6 to 0.9 s each in a tune of Fashion-MNIST), and they fell wherever
        an allocation crossed the threshold: several in a row inside Optuna's
        next `ask` made waits of 12 to 49 s between trials (bench/RESULTS.md).
        Here one runs at a known point; freezing then moves everything still
        alive out of the collector's sight, so the next trial's collections
        walk only its own objects. `tune` unfreezes at its end.
        """
        start = time.perf_counter()
        gc.collect()
        gc.freeze()
        self.release_s += time.perf_counter() - start

    def _trial(self, trial) -> float:
        # lazy: Optuna is an optional extra (imgclf[tune])
        from optuna import TrialPruned

        params = suggest(trial, self.models, self.facts, self.trial_epochs, self.trial_budget)
        trial.set_user_attr("settings", {**self.settings, **params, "seed": self.seed})
        pruner = self.callback(trial, deadline=self.deadline, warmup=PRUNE_WARMUP, epochs=params.get("epochs", 0),
                               budget_s=60 * self.trial_budget)
        folder = self.out / "trials" / f"trial-{trial.number:04d}"
        baseline = " (the default recipe, the baseline)" if trial.user_attrs.get("baseline") else ""
        log(f"Trial {trial.number}{baseline}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items()))
        start = time.perf_counter()
        tags = {"imgclf.tune": str(self.out.resolve()), "imgclf.trial": trial.number}
        if self.parent is not None:
            tags["mlflow.parentRunId"] = self.parent.run_id
        pruned = caught = None
        try:
            run = train(self.data, out=str(folder), callbacks=[pruner], verbose=0, seed=self.seed, track=self.track,
                        track_tags=tags, track_dir=self.out, **{**self.settings, **params})
        except TrialPruned as e:
            # Keep the message, not the exception: its traceback holds the training's frames (model, datasets,
            # iterators). They are freed as this block ends; that stop is timed apart (stop_s, part of the overhead).
            pruned, caught = str(e), time.perf_counter()
        finally:
            ended = time.perf_counter()
            self.train_s += (caught or ended) - start - pruner.spent_s
            self.stop_s += ended - (caught or ended)
            self.callback_s += pruner.spent_s
            trial.set_user_attr("run", str(folder))
        if pruned is not None:
            raise TrialPruned(pruned)
        value = best_value(run)
        trial.set_user_attr("train_time_s", run.read_json("summary.json").get("train_time_s"))
        log(f"Trial {trial.number}: validation accuracy {value:.4f} ({run.path})")
        return value
