"""`tune(data, out, time_budget)`: an Optuna study whose trials are ordinary imgclf runs.

OUT holds everything: ``study.db`` (the study, Optuna's RDB storage on
SQLite; ``storage=`` takes any SQLAlchemy URL instead, for several machines
on one study), ``trials/trial-NNNN`` (one run folder per trial, listed by
`imgclf runs OUT`), ``tune.json`` (the search's settings and totals),
``best.yaml`` (the best trial's settings, for ``imgclf train --config``),
``tune.html``, and with ``refit=True`` ``refit/``, best.yaml trained on the
trials' training and validation images together (`imgclf.tuning.refit`).

Trials train for a number of epochs each draws (up to ``trial_epochs``), or
with ``trial_budget`` for that many minutes each, exactly as the final
``imgclf train --time-budget`` run will: what suits 6 epochs is not what
suits the 16 that 10 minutes buy on a fast CPU, and a budget is judged in
time on the machine that will train (bench/RESULTS.md, issue 17).

The study's first trial is the default recipe (`imgclf train DATA` at the
trials' epochs or budget, `imgclf.tuning.space.default_params`): the baseline every
other trial must beat on validation, so best.yaml is never a setting that
did worse than the default there. The sampler is TPE, the pruner the median rule on each epoch's validation
accuracy from the first finished trial on, asked once a trial has run half its length
(`imgclf.tuning.objective.PRUNE_WARMUP`, `imgclf.tuning.pruning`). The time budget counts every session of
the study: a tune killed at any moment and started again with the same OUT
goes on where it stopped, and the trial that was running is tried again with
the same settings. Trials hold out the same test split (the same seed), which
the search never sees.
"""

from __future__ import annotations

import gc
import json
import os
import time
from datetime import datetime
from pathlib import Path

from imgclf.core.config import load_yaml, make_config, to_yaml
from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_json, atomic_write_text
from imgclf.core.progress import log
from imgclf.core.tracking import SPENT, open_tracker
from imgclf.tuning.objective import Objective
from imgclf.tuning.refit import refit as refit_best
from imgclf.tuning.space import candidate_models, data_facts, default_params

STUDY = "imgclf-tune"
# Settings of a trial that best.yaml leaves at their defaults: where it ran, and --max-images (a final run trains on all).
NOT_KEPT = ("out", "auto_choice", "resume", "max_images", "verbose")
SEARCH_KEYS = ("data", "models", "trial_epochs", "trial_budget", "seed", "settings")  # what a resumed study must keep


def _settings_record(data, models, trial_epochs, trial_budget, seed, settings) -> dict:
    # trial_budget only when set: studies made before it existed resume unchanged
    return {"data": os.path.abspath(os.fspath(data)), "models": models, "trial_epochs": trial_epochs,
            **({"trial_budget": trial_budget} if trial_budget else {}), "seed": seed, "settings": settings}


def _check_resume(out: Path, record: dict) -> dict:
    """tune.json of `out`, written now for a new study; a resumed one must have been started with the same search."""
    path = out / "tune.json"
    if not path.exists():
        atomic_write_json(path, record)
        return record
    saved = json.loads(path.read_text(encoding="utf-8"))
    changed = [k for k in SEARCH_KEYS if saved.get(k) != record.get(k)]
    if changed:
        listed = ", ".join(f"{k} {saved.get(k)!r} (asked: {record.get(k)!r})" for k in changed)
        raise UserError(f"{str(out)!r} holds a study started with other settings: {listed}. Resume it with the same "
                        "DATA and options, or pass a new --out for a new search.")
    return saved


def storage_url(out: str | os.PathLike, storage: str | None = None) -> str:
    """The study's database: `storage` if given, else OUT/study.db (SQLite).

    Example:
        >>> storage_url("/tmp/tune")
        'sqlite:////tmp/tune/study.db'
    """
    return storage or "sqlite:///" + str(Path(os.path.abspath(out)) / "study.db")


def _open_study(url: str, shared: bool, seed: int):
    # lazy: Optuna is an optional extra (imgclf[tune])
    import optuna
    from optuna.storages import RDBStorage, RetryFailedTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # On a shared database the trial of a crashed machine is failed by the heartbeat and tried again once.
    kwargs = {"heartbeat_interval": 60, "grace_period": 180, "failed_trial_callback": RetryFailedTrialCallback(max_retry=1)} if shared else {}
    storage = RDBStorage(url, **kwargs)
    study = optuna.load_study(study_name=STUDY, storage=storage) if STUDY in [
        s.study_name for s in optuna.get_all_study_summaries(storage)] else None
    done = len(study.trials) if study else 0
    # Seeded by the trials so far: a resumed session does not draw the first session's settings again.
    sampler = optuna.samplers.TPESampler(seed=seed + done, n_startup_trials=5)
    # Pruning from the first finished trial on, which is the default recipe: a trial behind it at the same epoch
    # stops (from the first epoch: Optuna prunes at steps >= n_warmup_steps, and the callback reports epoch 1 as step 1). Waiting for three finished trials meant no pruning at all in the few-trial searches
    # an hour buys on a laptop CPU (bench/RESULTS.md: three trials of 14 minutes in a 60-minute search).
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
    return optuna.create_study(study_name=STUDY, storage=storage, direction="maximize", sampler=sampler, pruner=pruner,
                               load_if_exists=True)


def requeue_interrupted(study) -> int:
    """Mark trials left running by a killed session as failed and queue their settings again; return how many.

    Only for a study of one process (the default SQLite file): on a shared
    database another machine's trial may still be running.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> _ = study.ask()  # a trial that never told: what a killed session leaves RUNNING
        >>> requeue_interrupted(study)
        1
    """
    # lazy: Optuna is an optional extra (imgclf[tune])
    from optuna.trial import TrialState

    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for t in stale:
        # Its time until the last epoch it finished counts against the budget, not the time until now.
        study._storage.set_trial_user_attr(t._trial_id, "spent_s", float(t.user_attrs.get("alive_s", 0.0)))
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        kept = {k: t.user_attrs[k] for k in ("baseline",) if k in t.user_attrs}  # an interrupted default stays the baseline
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, **kept}, skip_if_exists=False)
        log(f"Trial {t.number} was interrupted: it runs again with the same settings")
    return len(stale)


def _seconds(trial) -> float:
    if "spent_s" in trial.user_attrs:  # an interrupted trial: until its last finished epoch
        return float(trial.user_attrs["spent_s"])
    if trial.datetime_start is None:
        return 0.0
    end = trial.datetime_complete or trial.datetime_start
    return (end - trial.datetime_start).total_seconds()


def spent_seconds(study) -> float:
    """Seconds the study's finished trials took, over every session (what the time budget counts).

    Example:
        >>> import optuna
        >>> spent_seconds(optuna.create_study())
        0
    """
    return sum(_seconds(t) for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None)


def write_best(study, out: Path, data, settings: dict) -> Path | None:
    """OUT/best.yaml: the best trial's settings as a config `imgclf train --config` takes (None if no trial finished).

    Example:
        >>> import optuna
        >>> study = optuna.create_study(direction="maximize")
        >>> study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs={"run": "runs/leaves"}))
        >>> Path("tune").mkdir(exist_ok=True)
        >>> write_best(study, Path("tune/"), "data/", {})
        PosixPath('tune/best.yaml')
    """
    try:
        best = study.best_trial
    except ValueError:
        return None
    run_dir = Path(best.user_attrs["run"])
    # The run's resolved settings when its folder is here; the trial's own record when it ran on another machine.
    chosen = load_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").exists() else best.user_attrs["settings"]
    chosen = {k: v for k, v in chosen.items() if k not in NOT_KEPT}
    cfg = make_config(chosen, {"data": os.path.abspath(os.fspath(data))})
    header = (f"# imgclf tune: the best of {len(study.trials)} trials, trial {best.number} "
              f"(validation accuracy {best.value:.4f}, run {run_dir})\n"
              f"# train it: imgclf train --config {out / 'best.yaml'} --out runs/best\n"
              "# (the trials' --max-images is not kept: a run from this file trains on every image)\n")
    return atomic_write_text(out / "best.yaml", header + to_yaml(cfg))


def _sessions(record: dict, wall: float, objective: Objective, tracker_s: float) -> list[dict]:
    """The timings of every session that ran trials (tune.json's "sessions"), this one last if it ran any."""
    sessions = list(record.get("sessions", []))
    if objective.train_s > 0:
        # train_s: inside `train`, less the pruning callback and the tracker; overhead_s: the rest of wall_s
        # (sampler, storage, callback, tracker), of which objective_s was in the objective outside `train`
        # (release_s of it collecting each trial's garbage, `Objective._release`; stop_s freeing a pruned trial's training)
        # and optuna_s in Optuna between and around the trials. A killed session writes none.
        sessions.append({"wall_s": round(wall, 2), "train_s": round(objective.train_s - tracker_s, 2),
                         "callback_s": round(objective.callback_s, 4), "tracker_s": round(tracker_s, 2),
                         "objective_s": round(objective.objective_s - objective.train_s - objective.callback_s, 2),
                         "optuna_s": round(wall - objective.objective_s, 2),
                         "longest_between_trials_s": round(objective.longest_between_s, 2),
                         "release_s": round(objective.release_s, 2), "stop_s": round(objective.stop_s, 2),
                         "overhead_s": round(wall - objective.train_s + tracker_s, 2)})
    return sessions


def tune(data: str | os.PathLike, out: str | os.PathLike, time_budget: float, trials: int | None = None,
         storage: str | None = None, models: str = "", trial_epochs: int = 10, trial_budget: float = 0.0, seed: int = 0,
         track: str | None = None, refit: bool = False, **settings) -> dict:
    """Search training settings on `data` for `time_budget` minutes (or `trials` trials); write OUT (see above).

    `settings` are training settings every trial keeps (batch_size,
    max_images, test_fraction, ...). With `trial_budget` (minutes), every
    trial trains for that time budget instead of drawing its epochs from
    `trial_epochs`, and best.yaml keeps the budget. Returns tune.json's content: the best
    trial, its value, the counts of trials by state, and the timings. With
    `refit`, best.yaml is then trained on the trials' training and validation
    images together into OUT/refit (`imgclf.tuning.refit`; "refit" in the result).

    Example:
        >>> result = tune("data/", "tune/", time_budget=5, trials=1, models="small_cnn", trial_epochs=1, batch_size=8)
        >>> result["trials"]["complete"], Path(result["best"]["config"]).name
        (1, 'best.yaml')
    """
    if time_budget <= 0:
        raise UserError(f"Invalid time budget: expected minutes > 0, received {time_budget!r}. Pass --time-budget 60.")
    if trial_budget < 0 or trial_budget > time_budget:
        raise UserError(f"Invalid trial budget: expected minutes from 0 (epochs instead) to the search's {time_budget:g}, "
                        f"received {trial_budget!r}. Pass --trial-budget with the minutes the final run will train, "
                        "e.g. --time-budget 60 --trial-budget 10.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in settings.items() if v is not None}
    facts = data_facts(data)
    names = candidate_models(models, facts["median_side"])
    record = _check_resume(out, _settings_record(data, names, trial_epochs, trial_budget, seed, settings))
    study = _open_study(storage_url(out, storage), shared=bool(storage), seed=seed)
    if not storage:
        requeue_interrupted(study)
    if not study.trials:  # a new study: the default recipe first (skip_if_exists: several machines may start it)
        study.enqueue_trial(default_params(names, facts, trial_epochs, trial_budget), user_attrs={"baseline": "the default recipe"},
                            skip_if_exists=True)
    remaining = time_budget * 60 - spent_seconds(study)
    # lazy: Optuna is an optional extra (imgclf[tune])
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    # lazy: imports keras and Optuna; here, before the clock of the trials starts
    from imgclf.tuning.pruning import PruneTrial

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    done = sum(t.state in finished for t in study.trials)
    parent = open_tracker(track, out, run_name=f"tune {out.name}", run_dir=out)
    if parent is not None:
        parent.remember(out)  # a resumed session adds to the same MLflow run
    objective = Objective(data, out, names, facts, trial_epochs, trial_budget, seed, settings, time.monotonic() + remaining,
                          track, parent, PruneTrial)
    start, tracked_before = time.perf_counter(), SPENT["seconds"]
    if remaining > 0 and (trials is None or done < trials):
        log(f"Tuning {', '.join(names)} on {data}: {remaining / 60:.1f} minutes left of {time_budget:g}"
            + (f", {trials - done} trials to go" if trials else ""))
        try:
            study.optimize(objective, timeout=remaining, catch=(UserError,),
                           callbacks=[MaxTrialsCallback(trials, states=finished)] if trials else None)
        finally:
            gc.unfreeze()  # what the trials froze (`Objective._release`) is collectable again for the caller
    wall, tracker_s = time.perf_counter() - start, SPENT["seconds"] - tracked_before
    best_path = write_best(study, out, data, settings)
    counts = {s.name.lower(): sum(t.state == s for t in study.trials) for s in TrialState}
    result = {**record, "time_budget_min": time_budget, "trials": counts, "storage": "OUT/study.db" if storage is None else "given with --storage",
              "sessions": _sessions(record, wall, objective, tracker_s),
              "updated": datetime.now().isoformat(timespec="seconds")}
    if best_path is not None:
        best = study.best_trial
        result["best"] = {"trial": best.number, "value": best.value, "params": best.params, "run": best.user_attrs.get("run"),
                          "config": str(best_path)}
        baseline = [t for t in study.trials if t.user_attrs.get("baseline") and t.state == TrialState.COMPLETE]
        if baseline:  # how far the search got past the default recipe, on validation
            result["default"] = {"trial": baseline[0].number, "value": baseline[0].value,
                                 "gain": round(best.value - baseline[0].value, 6)}
            log(f"Best trial {best.number}: validation accuracy {best.value:.4f}, the default recipe's "
                f"(trial {baseline[0].number}) {baseline[0].value:.4f}")
    if refit and best_path is not None:
        tags = {"imgclf.tune": str(out.resolve()), "imgclf.refit": result["best"]["trial"],
                **({"mlflow.parentRunId": parent.run_id} if parent is not None else {})}
        result["refit"] = refit_best(out, result["best"]["run"], result["best"]["trial"], track=track, track_tags=tags,
                                     previous=record.get("refit"))
    elif refit:
        log("Refit: skipped, no trial finished")
    if not refit and result.get("refit", {}).get("trial") != result.get("best", {}).get("trial"):
        result.pop("refit", None)  # an earlier session's refit of a trial that is no longer the best
    # lazy: the report draws with Matplotlib (Optuna's visualisations)
    from imgclf.tuning.report import write_tune_report

    result["report"] = str(write_tune_report(study, out, result))
    if parent is not None:
        parent.log_params({"data": record["data"], "models": ",".join(names), "trial_epochs": trial_epochs,
                           "trial_budget": trial_budget, "seed": seed})
        # The budget may grow on a resume: a metric, since MLflow params cannot change.
        parent.log_metrics({"time_budget_min": time_budget, **{f"trials_{k}": v for k, v in counts.items()},
                            **({"best_val_accuracy": result["best"]["value"]} if "best" in result else {})})
        parent.log_files(out, ("best.yaml", "tune.html", "tune.json"))
        parent.end()
    atomic_write_json(out / "tune.json", result)
    return result
