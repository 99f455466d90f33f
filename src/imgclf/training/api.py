"""The training layer's entry points: `train` (new or resumed runs) and `lr_find` (the range test alone)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from imgclf.core.config import load_yaml, make_config
from imgclf.core.errors import UserError
from imgclf.core.run import Run
from imgclf.training.lr_find import find_lr
from imgclf.training.trainer import Trainer


def train(data: str | os.PathLike | None = None, *, config: str | os.PathLike | None = None, callbacks=None,
          track: str | None = None, track_tags: dict | None = None, track_dir: str | os.PathLike | None = None,
          **settings) -> Run:
    """Train a classifier on a folder of class subfolders and return its `Run`.

    Settings are the fields of `TrainConfig` (see `imgclf train --help`);
    `config` is a YAML file of them, which keywords override. `callbacks`
    are extra Keras callbacks, run after imgclf's own in every phase.
    `track="mlflow"` logs the run to MLflow (`imgclf.core.tracking`: the
    store in MLFLOW_TRACKING_URI, else mlruns/ beside the run folder, or in
    `track_dir`), with `track_tags` on the MLflow run; nothing is logged by default.
    Keras's global dtype policy is the caller's again when it returns (the
    run trains in the precision it chose; the saved model keeps it).

    Example:
        >>> import imgclf
        >>> run = imgclf.train("data/", model="small_cnn", epochs=1, img_size=16, out="runs/first", verbose=0)
        >>> run.path.name, run.classes
        ('first', ['bird', 'cat', 'dog'])
    """
    with callers_precision():
        return _train(data, config, callbacks, track, track_tags, track_dir, settings)


@contextlib.contextmanager
def callers_precision():
    """Put Keras's global dtype policy back as the caller had it once the block ends, returning or raising.

    Training sets the policy it computes in (mixed_bfloat16 on a CPU with
    AVX512_BF16, mixed_float16 on older GPUs: `imgclf.core.hardware`); left
    set, every Keras model the caller builds afterwards in the same process
    would compute in it too. Keras not imported yet means its default policy.

    Example:
        >>> import keras
        >>> with callers_precision():
        ...     keras.mixed_precision.set_global_policy("mixed_bfloat16")
        >>> keras.mixed_precision.global_policy().name
        'float32'
    """
    keras = sys.modules.get("keras")
    previous = keras.mixed_precision.global_policy() if keras is not None else None
    try:
        yield
    finally:
        keras = sys.modules.get("keras")
        if keras is not None:
            keras.mixed_precision.set_global_policy(previous or keras.config.floatx())


def _train(data, config, callbacks, track, track_tags, track_dir, settings) -> Run:
    file_settings = load_yaml(config) if config else None
    given = {k: v for k, v in settings.items() if v is not None}
    if data is not None:
        given["data"] = os.fspath(data)
    if given.get("resume"):
        return _resume(file_settings, given)
    cfg = make_config(file_settings, given)
    if not cfg.data and not cfg.manifest:
        raise UserError("No data given: pass DATA, a folder with one subfolder per class, or --manifest split.csv.")
    if track not in (None, "", "none"):
        # lazy: imports keras (imgclf.training.tracked)
        from imgclf.training.tracked import fit_tracked

        return fit_tracked(cfg, track, callbacks=callbacks, tags=track_tags, near=track_dir)
    return Trainer(cfg, callbacks=callbacks).fit_new()


def _resume(file_settings: dict | None, given: dict) -> Run:
    out = given.get("out") or (file_settings or {}).get("out")
    if not out:
        raise UserError("--resume needs --out RUN, the folder of the run to continue.")
    run_dir = Path(out)
    if not (run_dir / "checkpoints" / "last.keras").exists():
        raise UserError(
            f"Nothing to resume in {out!r}: it has no checkpoints/last.keras. Pass the folder of a run "
            "that trained at least one epoch."
        )
    saved = load_yaml(run_dir / "config.yaml")
    _refuse_changes(saved, {**(file_settings or {}), **given}, out)
    cfg = make_config(saved, file_settings, given)
    return Trainer(cfg, run_dir=run_dir).fit_resume()


# What the checkpoint's weights or the run's split depend on: a resume cannot change them.
FIXED_ON_RESUME = ("model", "weights", "img_size", "color_mode", "resize", "seed", "val_fraction", "test_fraction",
                   "group_by", "max_images", "manifest")


def _refuse_changes(saved: dict, asked: dict, out: str) -> None:
    """Raise `UserError`, before anything is written, if `asked` changes a setting fixed by the run."""
    changed = {k: v for k, v in asked.items() if k.replace("-", "_") in FIXED_ON_RESUME
               and str(v) != str(saved.get(k.replace("-", "_"), ""))}
    if changed:
        listed = ", ".join(f"{k} {saved.get(k.replace('-', '_'))!r} (asked: {v!r})" for k, v in changed.items())
        raise UserError(
            f"Cannot resume {out!r} with other settings: the run was trained with {listed}, and its checkpoint "
            "and split depend on them. Resume without these options (epochs, time budget, verbosity and the like "
            "may change), or train a new run with them: `imgclf train DATA --out NEW_FOLDER ...`."
        )


def lr_find(data: str | os.PathLike, out: str | os.PathLike = "lr_find.png", steps: int = 100,
            start: float = 1e-6, end: float = 1.0, **settings) -> dict:
    """Run the learning-rate range test on DATA with the given training settings; write a plot; return the suggestion.

    Example:
        >>> found = lr_find("data/", out="lr_find.png", steps=10, model="small_cnn", img_size=16)  # 100 steps for a real sweep
        >>> 1e-6 <= found["suggested_lr"] <= 1.0
        True
    """
    with tempfile.TemporaryDirectory(prefix="imgclf-lrfind-") as tmp, callers_precision():
        settings = {k: v for k, v in settings.items() if v is not None}
        cfg = make_config(settings, {"data": os.fspath(data), "lr": 1e-3, "verbose": 0})
        trainer = Trainer(cfg)
        trainer.prepare(run_dir=tmp)
        return find_lr(trainer, out=out, steps=steps, start=start, end=end)
