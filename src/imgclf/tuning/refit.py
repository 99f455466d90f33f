"""`imgclf tune --refit`: the best trial's settings trained again on its training and validation images together.

A trial holds out a validation split to be judged by; once the search is
over, those images are better spent on training. The refit run reproduces
the trials' split (same DATA, fractions, seed and groups: `data.split`),
moves the validation rows into training and keeps the test rows held out,
writes that split as OUT/refit-split.csv and trains the settings of
best.yaml on it without a validation split (``val_fraction=0``, the last
epoch kept) for as many epochs as the best trial kept: its best epoch by the
monitored metric, or its whole budget when that is unknown. The result,
OUT/refit, is an ordinary run: `imgclf evaluate` judges it on the same test
images as the trials, and predict and export take it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from imgclf.core.config import TrainConfig, load_yaml, make_config
from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_text
from imgclf.core.manifest import manifest_csv, read_manifest
from imgclf.core.progress import log
from imgclf.data.split import training_rows
from imgclf.training.api import train

REFIT = "refit"  # the run folder under OUT
SPLIT_FILE = "refit-split.csv"


def merged_rows(rows: list[dict]) -> list[dict]:
    """The rows with the validation split moved into training; test and left-out rows unchanged.

    Example:
        >>> rows = [{"path": "a.png", "split": "train"}, {"path": "b.png", "split": "val"}, {"path": "c.png", "split": "test"}]
        >>> [r["split"] for r in merged_rows(rows)]
        ['train', 'train', 'test']
    """
    return [dict(r, split="train") if r["split"] == "val" else dict(r) for r in rows]


def kept_epochs(trial_run: str | os.PathLike, cfg: TrainConfig) -> tuple[int, float, str]:
    """(epochs, time budget in minutes, why): the epochs the trial's saved model had trained (its best epoch,
    no budget), else the trial's own epochs or time budget.

    Example:
        >>> kept_epochs("/nowhere", TrainConfig(epochs=6))
        (6, 0.0, "the trial's budget: its best epoch is not known here")
    """
    path = Path(trial_run) / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    best, ran = summary.get("best_epoch"), summary.get("epochs_run") or cfg.epochs
    if best:
        return int(best), 0.0, f"the best trial's best epoch, of {ran}"
    return cfg.epochs, cfg.time_budget, "the trial's budget: its best epoch is not known here"


def _check_same_test(rows: list[dict], trial_run: Path) -> None:
    """Refuse when the split made now holds other test images than the trial's: DATA changed since the search."""
    manifest = trial_run / "manifest.csv"
    if not manifest.exists():
        return  # the trial ran on another machine
    test = {os.path.abspath(r["path"]) for r in rows if r["split"] == "test"}
    before = {os.path.abspath(r["path"]) for r in read_manifest(manifest) if r["split"] == "test"}
    if test != before:
        raise UserError(f"Cannot refit: the split of DATA made now holds {len(test)} test image(s), the trials' "
                        f"({manifest}) {len(before)}, and {len(test ^ before)} differ: DATA changed since the search. "
                        "Expected the same images; restore them, or train best.yaml with `imgclf train --config`.")


def refit(out: str | os.PathLike, trial_run: str | os.PathLike, trial: int, track: str | None = None,
          track_tags: dict | None = None, previous: dict | None = None) -> dict:
    """Train OUT/best.yaml's settings on train + val of the trials' split into OUT/refit; return what was done.

    `trial_run` is the best trial's run folder (its best epoch sets the
    epochs), `trial` its number. `previous` is the "refit" record of an
    earlier session: a finished refit of the same trial is kept, an
    unfinished or outdated one is trained again. Returns {"run", "trial",
    "epochs", "images": {"train", "test"}, "split"}.

    Example:
        >>> from imgclf.tuning.study import tune
        >>> best = tune("data/", "tune/", time_budget=5, trials=1, models="small_cnn", trial_epochs=1, batch_size=8)["best"]
        >>> done = refit("tune/", best["run"], trial=best["trial"])
        Epoch 1/1: ...
        >>> done["run"], done["epochs"]
        ('tune/refit', 1)
    """
    out, trial_run = Path(out), Path(trial_run)
    folder = out / REFIT
    if (previous or {}).get("trial") == trial and (folder / "summary.json").exists():
        log(f"Refit: {folder} already holds trial {trial}'s settings trained on train+val; kept")
        return previous
    if folder.exists():
        log(f"Refit: {folder} is unfinished or from another trial; training it again")
        shutil.rmtree(folder)
    cfg = make_config(load_yaml(out / "best.yaml"))
    epochs, minutes, why = kept_epochs(trial_run, cfg)
    rows, _ = training_rows(cfg.data, cfg.manifest, cfg.val_fraction, cfg.test_fraction, cfg.seed, group_by=cfg.group_by,
                            workers=cfg.workers, verbose=False, max_pixels=cfg.max_pixels)
    _check_same_test(rows, trial_run)
    rows = merged_rows(rows)
    split = atomic_write_text(out / SPLIT_FILE, manifest_csv(rows))
    n_train, n_test = (sum(r["split"] == s for r in rows) for s in ("train", "test"))
    log(f"Refit: trial {trial}'s settings on train+val ({n_train} images; the {n_test} test images stay held out) for "
        + (f"{minutes:g} minutes" if minutes else f"{epochs} epoch{'s' * (epochs != 1)}") + f" ({why}), without validation (the last "
        f"epoch is kept) -> {folder}")
    # The split is the file's; early stopping and the monitored metric need the validation images that now train.
    run = train(config=out / "best.yaml", manifest=str(split), out=str(folder), val_fraction=0.0, monitor="none",
                patience=0, epochs=epochs, time_budget=minutes, track=track, track_tags=track_tags, track_dir=out)
    return {"run": str(run.path), "trial": trial, "epochs": epochs, "images": {"train": n_train, "test": n_test},
            "split": str(split)}
