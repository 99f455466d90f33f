"""The fit loop: a prepared `Trainer`'s phases, each one `model.fit` with imgclf's callbacks.

`run_phases` walks the plan's phases ('train', or 'head' then 'finetune'),
skipping those a resumed run already finished, compiles each (a resumed
mid-phase model keeps its restored optimizer), fits, then writes
summary.json after the trainer's end steps (the TTA choice).

Example:
    >>> from imgclf.core.config import TrainConfig
    >>> from imgclf.training.trainer import Trainer
    >>> trainer = Trainer(TrainConfig(data="data/", model="small_cnn", img_size=16, epochs=1, out="runs/loop", verbose=0))
    >>> trainer.prepare()  # split and decode data/
    >>> trainer._write_bundle_start()  # config.yaml, classes.json, preprocess.json: `Trainer.fit_new` does both first
    >>> state = {"epoch": 0, "phase": "", "history": []}
    >>> run = run_phases(trainer, trainer.build_model(), state)
    >>> state["epoch"], state["phases_done"], run.model_path.is_file()
    (1, ['train'], True)
"""

from __future__ import annotations

import time

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_json
from imgclf.core.progress import log
from imgclf.core.run import Run
from imgclf.data.augment import resolve_flip
from imgclf.training.feature_cache import feature_cache_applies, fit_head_on_features, frozen_backbone_with_head
from imgclf.training.head_epoch import solve_head_epoch
from imgclf.training.upper_cache import fit_upper_on_cache, upper_cache_applies


def run_phases(trainer, model, state: dict) -> Run:
    """Train `model` through the remaining phases, update `state`, write summary.json; return the Run."""
    cfg = trainer.cfg
    train_ds = trainer.train_dataset()
    val_ds = trainer.val_dataset()
    trainer.steps = trainer.dist.steps(len(trainer.sets["train"]))
    start = time.perf_counter()
    start_epoch = state.get("epoch", 0)
    first = 0
    phases = trainer.plan.phases(len(trainer.sets["train"]))
    log(trainer.plan.describe(len(trainer.sets["train"]), trainer.steps))
    try:
        for name, end, budget_share in phases:
            if cfg.time_budget:
                if _phase_done(state, name):
                    continue
            elif end <= start_epoch:
                first = end
                continue
            if state.get("phase") != name or not model.compiled:  # resuming mid-phase keeps the restored optimizer
                trainer.prepare_phase(model, name)
            initial = max(first, start_epoch)
            log(f"Phase {name}: " + (f"{cfg.time_budget * budget_share:.1f} minutes" if cfg.time_budget else f"epochs {initial + 1}-{end}")
                + f", {sum(int(w.shape.num_elements() or 0) for w in model.trainable_weights):,} trainable weights")
            fit_phase(trainer, model, name, train_ds, val_ds, state, initial_epoch=initial, epochs=end, first_epoch=first,
                      budget_s=_phase_budget_s(cfg.time_budget, budget_share, name == phases[-1][0], name, state))
            state.setdefault("phases_done", []).append(name)
            if state.get("stopped_early"):
                break
            first = end if not cfg.time_budget else state["epoch"]
            start_epoch = max(start_epoch, state["epoch"])
    except KeyboardInterrupt:
        if not state.get("epoch"):
            raise UserError("Training interrupted before its first epoch finished; nothing was saved.") from None
        raise UserError(
            f"Training interrupted after epoch {state.get('epoch', 0)}. Continue with "
            f"`imgclf train --resume --out {trainer.run_dir}`."
        ) from None
    trainer.summary.update({
        "train_time_s": round(time.perf_counter() - start, 2),
        "best_epoch": state.get("best_epoch"),
        **({f"best_{trainer.settings.monitor}": state.get("best")} if trainer.settings.monitor != "none" else {}),
        **({} if trainer.plan.validation else {"validation": "none (val_fraction 0): the last epoch is kept"}),
        "images": {s: len(d) for s, d in trainer.sets.items()},
        "class_counts": {s: _class_counts(d.labels, trainer.classes) for s, d in trainer.sets.items()},
        "epochs_run": state.get("epoch"),
    })
    if len(phases) > 1 and phases[0][0] == "head":
        _report_kept(trainer, state, phases[0][1])
    for step in trainer.end_steps:
        step.after_fit(trainer)
    atomic_write_json(trainer.run_dir / "summary.json", trainer.summary)
    run = Run(trainer.run_dir)
    if trainer.settings.monitor == "none":
        log(f"Kept the last epoch ({state.get('best_epoch')}): no validation figure picks one. "
            f"Model saved to {run.path / 'model.keras'}")
    else:
        log(f"Best {trainer.settings.monitor}: {state.get('best', float('nan')):.4f} at epoch {state.get('best_epoch')}. "
            f"Model saved to {run.path / 'model.keras'}")
    return run


def _phase_budget_s(minutes: float, share: float, last: bool, phase: str, state: dict) -> float:
    """Seconds of the time budget for a phase: its share, or for the last phase all that the others left."""
    if not minutes:
        return 0.0
    if not last:
        return 60 * minutes * share
    others = sum(h.get("time_s", 0) for h in state.get("history", []) if h.get("phase") != phase)
    return max(60 * minutes - others, 1.0)


def _report_kept(trainer, state: dict, head_end: int) -> None:
    """Say whether model.keras is the head or a fine-tuned epoch (the better on validation is kept)."""
    best_epoch = state.get("best_epoch") or 0
    kept = "head" if best_epoch <= head_end else "finetune"
    trainer.summary["kept_phase"] = kept
    monitor = trainer.settings.monitor
    if monitor == "none":
        return  # the last epoch is kept whatever it scores: nothing compared
    if kept == "head":
        log(f"Kept the head (epoch {best_epoch}): fine-tuning did not improve {monitor} on validation "
            f"({state.get('best', float('nan')):.4f}), so model.keras is the head alone.")
    else:
        log(f"Kept fine-tuned epoch {best_epoch}: it beat the head on validation {monitor}.")


def _callbacks(trainer, phase, val_ds, state, epochs, first_epoch, initial_epoch, budget_s,
               steps: int | None = None) -> tuple[list, object, object]:
    """imgclf's callbacks for one phase, in the order they must run: (callbacks, schedule, early stopper or None)."""
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    # lazy: imports keras (imgclf.training.callbacks)
    from imgclf.training.callbacks import EpochProgress, RunWriter
    from imgclf.training.monitor import EXTRA_MONITORS, ValidationMetrics
    from imgclf.training.schedules import ProgressSchedule

    cfg, dist = trainer.settings, trainer.dist  # settings: 'auto' values resolved (monitor)
    steps = steps or trainer.steps
    peak = trainer.plan.lr * dist.lr_scale * (cfg.finetune_lr_scale if phase == "finetune" else 1.0)
    spent = sum(h.get("time_s", 0) for h in state.get("history", []) if h.get("phase") == phase)
    schedule = ProgressSchedule(
        peak, total_steps=steps * (epochs - first_epoch), kind=cfg.schedule,
        budget_s=budget_s, elapsed_s=spent if budget_s else 0.0,
        start_step=(initial_epoch - first_epoch) * steps,
    )
    callbacks = [schedule, *dist.callbacks()]
    if cfg.ema:
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))  # validate and save the average
    if cfg.monitor in EXTRA_MONITORS:  # before RunWriter and EarlyStopping, which read them
        callbacks.append(ValidationMetrics(val_ds, trainer.sets["val"].labels, trainer.classes))
    images_per_epoch = len(trainer.sets["train"]) * steps // max(trainer.steps, 1)  # fine-tuning may pass more than once
    callbacks.append(RunWriter(trainer.run_dir, phase, state, images_per_epoch, monitor=cfg.monitor,
                               keep_epochs=cfg.keep_epochs))
    if dist.multi_worker:  # after RunWriter: the backup holds this epoch's state
        callbacks.append(dist.backup_callback(state))
    stopper = None
    if cfg.patience:
        stopper = keras.callbacks.EarlyStopping(monitor=cfg.monitor, patience=cfg.patience,
                                                mode="min" if cfg.monitor == "val_loss" else "max")
        callbacks.append(stopper)
    callbacks.append(keras.callbacks.TensorBoard(log_dir=str(trainer.run_dir / "logs"), write_graph=False, profile_batch=0))
    callbacks += trainer.extra_callbacks
    if cfg.verbose != 0:
        shown = 0 if budget_s else epochs
        callbacks.append(EpochProgress(shown, steps, dist.global_batch, schedule=schedule if budget_s else None))
    return callbacks, schedule, stopper


def fit_phase(trainer, model, phase, train_ds, val_ds, state, initial_epoch, epochs, first_epoch, budget_s) -> None:
    """One phase's `fit` (or the head solved / trained on cached features); sets ``state["stopped_early"]`` when early stopping ends it."""
    cfg, dist, plan = trainer.cfg, trainer.dist, trainer.plan
    if phase == "head" and plan.head_solver and frozen_backbone_with_head(model):  # the plan checked data and settings
        callbacks, _, _ = _callbacks(trainer, phase, val_ds, state, epochs, first_epoch, initial_epoch, budget_s)
        solve_head_epoch(trainer, model, callbacks, val_ds, epoch=initial_epoch)
        return
    steps = plan.steps_per_epoch(phase, trainer.steps, epochs - first_epoch)
    callbacks, _, stopper = _callbacks(trainer, phase, val_ds, state, epochs, first_epoch, initial_epoch, budget_s, steps)
    if budget_s:
        epochs = initial_epoch + 100_000  # the schedule stops training when the budget is spent
    n_cached = len(trainer.sets["train"]) + len(trainer.sets["val"])
    if trainer.source.in_memory and upper_cache_applies(trainer.settings, phase, model, n_cached):
        fit_upper_on_cache(model, trainer.sets, callbacks, batch_size=cfg.batch_size, epochs=epochs,
                           initial_epoch=initial_epoch, steps=steps, augment=plan.augment,
                           flip=resolve_flip(cfg.flip, trainer.classes), class_weight=trainer.class_weight,
                           one_hot=plan.one_hot, seed=cfg.seed)
    elif trainer.source.in_memory and feature_cache_applies(trainer.settings, phase, model):  # frozen backbone, same inputs every epoch
        fit_head_on_features(model, trainer.sets, callbacks, batch_size=cfg.batch_size, epochs=epochs,
                             initial_epoch=initial_epoch, class_weight=trainer.class_weight,
                             one_hot=trainer.plan.one_hot, seed=cfg.seed)
    else:
        dist.prebuild(model, train_ds)
        endless = not trainer.source.in_memory and dist.multi_worker  # each worker streams its own files without end
        if steps > trainer.steps:  # a short fine-tuning phase passes over the data several times per epoch
            train_ds, endless = train_ds.repeat(), True
        model.fit(train_ds, class_weight=trainer.class_weight, validation_data=val_ds, epochs=epochs,
                  initial_epoch=initial_epoch, callbacks=callbacks, verbose=0, shuffle=False,  # tf.data shuffles; EpochProgress reports
                  steps_per_epoch=steps if endless else None)
    if stopper is not None and stopper.stopped_epoch > 0:
        state["stopped_early"] = True
        log(f"Early stopping: no improvement in {trainer.settings.monitor} for {cfg.patience} epochs.")


def _phase_done(state: dict, name: str) -> bool:
    return name in state.get("phases_done", [])


def _class_counts(labels, classes) -> dict:
    counts = np.bincount(labels, minlength=len(classes))
    return {c: int(n) for c, n in zip(classes, counts)}
