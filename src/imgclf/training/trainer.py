"""Training: from a folder (or a run to resume) to a Run bundle.

The recipe: decode every image once, pick sizes and precision from the data
and the machine, then fit with AdamW, a short warmup and cosine decay. A
pretrained backbone trains in two phases (the keras.io transfer-learning
guide): first the new head with the backbone frozen, then the top of the
backbone unfrozen at a lower learning rate. BatchNorm inside a pretrained
backbone stays in inference mode throughout.

This module prepares a run (rows, plan, distribution, data, bundle files);
`fit_loop` runs its phases; `tta_choice` is the step after them.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
import os
import random
import shutil
from pathlib import Path

from imgclf.core.config import TrainConfig, to_yaml
from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_json, atomic_write_text, clean_stale_temporaries, new_run_dir
from imgclf.core.hardware import choose_precision, gpu_details
from imgclf.core.manifest import manifest_csv, read_manifest
from imgclf.core.progress import log
from imgclf.core.run import Run
from imgclf.data.augment import make_train_map, resolve_flip
from imgclf.data.balance import resolve_balance
from imgclf.data.sources import DataSource, make_source
from imgclf.data.split import split_sizes_line
from imgclf.models.registry import get_spec
from imgclf.training.auto_model import choose_model
from imgclf.training.distributed.strategy import Distribution
from imgclf.training.fit_loop import run_phases
from imgclf.training.lr_find import find_lr
from imgclf.training.plan import TrainingPlan, check_without_validation, make_plan, model_defaults
from imgclf.training.recipe import compile_for_training, freeze_for_phase
from imgclf.training.confidence import FitConfidence
from imgclf.training.tta_choice import ChooseTTA


class Trainer:
    """Carries one training run through data, model, phases and the bundle. Use `fit_new()` or `fit_resume()`.

    Example:
        >>> run = Trainer(TrainConfig(data="data/", model="small_cnn", img_size=16, epochs=1, out="runs/first", verbose=0)).fit_new()
        >>> run.classes, run.model_path.name
        (['bird', 'cat', 'dog'], 'model.keras')
    """

    def __init__(self, cfg: TrainConfig, run_dir: Path | None = None, callbacks=None, plan: TrainingPlan | None = None):
        self.cfg = cfg  # what was asked for; the resolved values live in `plan`
        self.extra_callbacks = list(callbacks or [])
        self.run_dir = run_dir
        self.plan = plan  # every automatic setting resolved (`make_plan`), set by prepare / fit_resume
        self.summary: dict = {}
        self.dist: Distribution | None = None  # strategy, role and batch/lr scaling
        self.source: DataSource | None = None  # a folder decoded into memory, or streamed shards
        self.rows: list[dict] = []  # manifest rows (path, label, split, sha1, status)
        self.classes: list[str] = []
        self.sets: dict = {}  # {"train": ..., "val": ...}: DecodedSet or StreamedSet
        self.class_weight: dict | None = None
        self.validation = True  # False: no validation split (val_fraction 0), set with the rows
        self.steps: int = 0  # optimizer steps per epoch
        self.end_steps = [ChooseTTA(), FitConfidence()]  # run with `after_fit(trainer)` once the phases are done

    @property
    def settings(self) -> TrainConfig:
        """The config with the plan's resolved values: what the recipe reads and config.yaml records."""
        return self.plan.apply(self.cfg)

    # ---------------------------------------------------------------- data
    def _prepare_rows(self):
        cfg = self.cfg
        rows, self.classes = self.source.rows(cfg)
        if cfg.max_images:
            rows = _limit_train_rows(rows, cfg.max_images, cfg.seed)
        self.rows = rows
        carved = cfg.test_fraction if not cfg.manifest and not (Path(cfg.data) / "test").is_dir() else 0.0
        log(split_sizes_line(rows, carved_test=carved if self.source.in_memory else 0.0))
        excluded = [r for r in rows if r["split"] == "excluded"]
        self.summary["excluded"] = [{"path": r["path"], "reason": r.get("status", "")} for r in excluded]
        if excluded:
            log(f"Left out {len(excluded)} training image(s) that duplicate validation or test images "
                "(they would leak; see manifest.csv)")
        self.validation = any(r["split"] == "val" for r in rows)
        if not self.validation and (cfg.val_fraction > 0 or not self.source.in_memory):
            raise UserError(
                "No validation images: every class is too small to hold one out. Add images, "
                "or add a val/ folder next to train/" + (", or pass --val-fraction 0 to train without validation."
                                                         if self.source.in_memory else ".")
            )
        if not self.validation:
            check_without_validation(cfg)  # before any decoding: a contradiction is refused at once
            log(_no_validation_line(cfg))

    def _load_splits(self):
        """Decode (a folder) or list (shards) the train and val splits; record skipped files; weigh classes."""
        self.sets, skipped = self.source.load(self.rows, self.classes, self.plan, self.cfg, self.run_dir)
        self._write_manifest()
        self.source.check(self.sets, self.classes, validation=self.validation)
        self.summary["skipped"] = [{"path": p, "reason": r} for p, r in skipped]
        self.class_weight = resolve_balance(self.sets["train"].labels, self.classes, self.cfg.class_weight,
                                           self.cfg.sampling, self.summary, monitor=self.settings.monitor,
                                           compare=self.plan.head_solver)

    def _write_manifest(self):
        atomic_write_text(self.run_dir / "manifest.csv", manifest_csv(self.rows))

    # ---------------------------------------------------------------- bundle
    def _write_bundle_start(self):
        plan, spec = self.plan, get_spec(self.cfg.model)
        atomic_write_text(self.run_dir / "config.yaml", to_yaml(self.settings))
        atomic_write_text(self.run_dir / "classes.json", json.dumps(self.classes, indent=2) + "\n")
        atomic_write_json(self.run_dir / "preprocess.json", {
            "img_size": plan.img_size,
            "color_mode": plan.color_mode,
            "channels": 1 if plan.color_mode == "grayscale" else 3,
            "resize": self.cfg.resize,
            "resample": "bilinear",
            "input_range": [0, 255],
            "normalisation": f"{spec.preprocessing} (inside the model graph)",
            "decoder": "imgclf.data.decode.decode_image: EXIF transpose, alpha composited on white",
        })

    # ---------------------------------------------------------------- preparation
    def prepare(self, run_dir: str | os.PathLike | None = None) -> None:
        """Scan, split, plan the automatic settings, set up Keras and decode: all but the model.

        With `run_dir` None a new run folder is created from ``out``.
        """

        cfg = self.cfg
        if cfg.model != "auto":
            get_spec(cfg.model)  # fail fast on an unknown model name, before any work
        if cfg.data and "://" not in cfg.data:
            cfg.data = str(Path(cfg.data).resolve())  # config.yaml must work from any folder
        self.source = make_source(cfg.data)
        self._prepare_rows()
        probe = self.source.probe(self.rows, cfg.seed)
        self._choose_model(probe)
        self._setup_distribution()
        self.plan = make_plan(cfg, get_spec(cfg.model), probe, replicas=self.dist.plan.replicas,
                              split=self.source.split_settings(), in_memory=self.source.in_memory,
                              validation=self.validation)
        log(_input_line(self.plan, probe, cfg.resize))
        if run_dir is None and self.dist.multi_worker:
            cfg.out = str(Path(cfg.out or Path("runs") / cfg.model).absolute())
            self.run_dir = self.dist.run_dir(cfg.out)  # the chief's exact folder, or a worker's scratch folder
        elif run_dir is None:
            self.run_dir = new_run_dir(cfg.out or Path("runs") / cfg.model)
            cfg.out = str(self.run_dir)
            log(f"Run folder: {self.run_dir}")
        else:
            self.run_dir = Path(run_dir)
        self._setup_backend()
        self._load_splits()

    def _choose_model(self, probe: dict) -> None:
        """Resolve ``model='auto'`` (and weights/finetune 'auto') from the data; print and record why."""
        cfg = self.cfg
        if cfg.model != "auto":
            return
        counts = Counter(r["label"] for r in self.rows if r["split"] == "train")
        choice = choose_model(probe, counts, weights=cfg.weights, finetune=cfg.finetune)
        cfg.model, cfg.weights, cfg.finetune, cfg.auto_choice = choice.model, choice.weights, choice.finetune, choice.reason
        log(f"Model (--model auto): {choice.reason}")

    def _setup_backend(self):
        # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
        import keras

        cfg = self.cfg
        self._setup_distribution()
        self.dist.start()  # first: MultiWorkerMirroredStrategy must configure TensorFlow before anything runs
        keras.utils.set_random_seed(cfg.seed)
        policy = choose_precision(cfg.precision, gpus=[] if self.dist.plan.on_cpu else gpu_details())
        keras.mixed_precision.set_global_policy(policy)
        self.summary["precision"] = policy
        self.plan = self.plan.with_precision(policy)  # config.yaml records what was used
        log(f"Precision: {policy}" + (" (chosen automatically for this machine)" if cfg.precision == "auto" else ""))

    def _setup_distribution(self):
        if self.dist is None:
            # The rate the distribution scales (and logs) is the resolved one: 'model' becomes a number.
            self.dist = Distribution.from_config(self.cfg, lr=model_defaults(self.cfg)[0])
            log(self.dist.describe())
            self.summary["distribution"] = self.dist.summary()

    # ---------------------------------------------------------------- datasets
    def train_dataset(self):
        """The training tf.data pipeline (shuffled, augmented). Example: ``trainer.train_dataset()``."""
        ds = self.source.train_dataset(self.sets, self.plan, self.cfg, batch_size=self.dist.global_batch,
                                       map_fn=self._train_map(), drop_remainder=self.dist.drop_remainder,
                                       workers=self.dist.plan.workers, repeat=self.dist.multi_worker)
        return ds if self.source.sets_sharding else self.dist.shard(ds)

    def val_dataset(self):
        """The validation tf.data pipeline (in label order, not augmented), None without a validation split.

        Example: ``trainer.val_dataset()``.
        """
        if not self.plan.validation:
            return None
        ds = self.source.val_dataset(self.sets, self.plan, self.cfg, batch_size=max(self.dist.global_batch, 128),
                                     map_fn=self._val_map(), workers=self.dist.plan.workers)
        return ds if self.source.sets_sharding else self.dist.shard(ds)

    def _train_map(self):
        flip = resolve_flip(self.cfg.flip, self.classes)
        return make_train_map(self.plan.augment, flip, len(self.classes), self.plan.one_hot, self.cfg.mixup,
                              self.cfg.cutmix, self.cfg.seed)

    def _val_map(self):
        if not self.plan.one_hot:
            return None
        # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
        import tensorflow as tf

        n = len(self.classes)
        return lambda x, y: (x, tf.one_hot(y, n))

    # ---------------------------------------------------------------- model
    def build_model(self):
        """A fresh model for the run's classes, size and colour mode. Example: ``trainer.build_model()``."""
        # lazy: imports keras (imgclf.models.factory)
        from imgclf.models.factory import create_model

        cfg, plan = self.cfg, self.plan
        return create_model(
            cfg.model, num_classes=len(self.classes), img_size=plan.img_size,
            channels=1 if plan.color_mode == "grayscale" else 3, weights=plan.weights,
            dropout=cfg.dropout, bn_momentum=cfg.bn_momentum, freeze_bn=cfg.freeze_bn,
        )

    def prepare_phase(self, model, name: str):
        """Freeze what the phase ('train', 'head', 'finetune') keeps fixed and compile with a fresh optimizer.

        Example:
            >>> trainer = Trainer(TrainConfig(data="data/", model="small_cnn", img_size=16, out="runs/phases"))
            >>> trainer.prepare()
            >>> model = trainer.build_model()
            >>> trainer.prepare_phase(model, "head")
            >>> model.get_layer("backbone").trainable, [w.path for w in model.trainable_weights]
            (False, ['classifier/kernel', 'classifier/bias'])
        """
        with self.dist.scope() if self.dist else contextlib.nullcontext():  # the optimizer's variables are mirrored too
            freeze_for_phase(model, name, self.settings)
            compile_for_training(model, self.settings, one_hot=self.plan.one_hot, phase=name)

    # ---------------------------------------------------------------- fit
    def fit_new(self) -> Run:
        """Train a new run (prepare, lr-find if asked, build, phases); return its Run."""
        completed = False
        try:
            run = self._fit_new()
            completed = True
            return self.dist.result(run)
        except (UserError, KeyboardInterrupt):
            # A mistake found before the first epoch (bad weights file, bad YAML
            # architecture, ...) must not leave a half-made run behind that would
            # push the corrected command to a -2 folder.
            self._remove_run_without_epochs()
            raise
        finally:
            if self.dist is not None:
                self.dist.finish(completed)  # a worker's scratch folder; the chief's backup once complete

    def _remove_run_without_epochs(self) -> None:
        run_dir = self.run_dir
        if run_dir is not None and run_dir.is_dir() and not (run_dir / "checkpoints" / "last.keras").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
            log(f"Removed {run_dir}: no epoch had finished.")

    def _fit_new(self) -> Run:
        self.prepare()
        if self.plan.lr == "auto":
            found = find_lr(self, out=self.run_dir / "plots" / "lr_find.png")
            self.plan = self.plan.with_lr(float(f"{found['suggested_lr']:.3g}"))
            # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
            import keras

            keras.utils.set_random_seed(self.cfg.seed)  # the real model starts from the same weights as without lr-find
        self._write_bundle_start()
        with self.dist.scope():  # variables made here are mirrored on every replica (nothing changes on one device)
            model = self.build_model()
        state = self.dist.restored_state() or {"epoch": 0, "phase": "", "history": []}
        return run_phases(self, model, state)

    def fit_resume(self) -> Run:
        """Continue the run in `run_dir` from checkpoints/last.keras; return its Run."""
        # lazy: imports keras (imgclf.training.callbacks)
        from imgclf.training.callbacks import read_state

        cfg = self.cfg
        state = read_state(self.run_dir)
        log(f"Resuming {self.run_dir} after epoch {state.get('epoch', 0)} of {cfg.epochs}")
        self.rows = read_manifest(self.run_dir / "manifest.csv")
        self.validation = any(r["split"] == "val" for r in self.rows)
        self.classes = Run(self.run_dir).classes
        self._setup_distribution()
        # config.yaml holds resolved values: nothing left to probe.
        self.source = make_source(cfg.data)
        self.plan = make_plan(cfg, get_spec(cfg.model), None, replicas=self.dist.plan.replicas,
                              in_memory=self.source.in_memory, validation=self.validation)
        clean_stale_temporaries(self.run_dir)
        clean_stale_temporaries(self.run_dir / "checkpoints")
        self._setup_backend()
        self._load_splits()
        # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
        import keras

        # lazy: imports keras (imgclf.models.layers)
        from imgclf.models import layers  # noqa: F401

        with self.dist.scope():
            model = keras.saving.load_model(self.run_dir / "checkpoints" / "last.keras", compile=True)
        run = run_phases(self, model, state)
        # Only now: a resume that failed leaves the run's settings as they were, so it can be resumed again.
        atomic_write_text(self.run_dir / "config.yaml", to_yaml(self.settings))
        return run


def _input_line(plan, probe: dict | None, resize: str) -> str:
    """What the model sees, said once: 300 px photos shrunk to 96 px surprise no one who reads it.

    Example:
        >>> from types import SimpleNamespace
        >>> _input_line(SimpleNamespace(img_size=96, color_mode="rgb"), {"median_side": 300}, "squash")
        'Input: 96x96 px rgb; images (median side 300 px) are resized to it (--resize squash; --img-size sets the side)'
    """
    side = (probe or {}).get("median_side")
    seen = f"images (median side {side:g} px)" if side else "images"
    return (f"Input: {plan.img_size}x{plan.img_size} px {plan.color_mode}; {seen} are resized to it "
            f"(--resize {resize}; --img-size sets the side)")


def _no_validation_line(cfg) -> str:
    """What a run without validation images does instead, said once at the start.

    Example:
        >>> from imgclf.core.config import TrainConfig
        >>> print(_no_validation_line(TrainConfig(epochs=3)))
        No validation split (--val-fraction 0, no val/ folder): all 3 epochs train and the last is kept. Skipped, as they need validation images: the best-epoch choice, early stopping, the test-time augmentation choice (none) and confidence calibration (`imgclf calibrate RUN --data DIR` fits it later).
    """
    length = (f"{cfg.time_budget:g} minutes of training, the last epoch kept" if cfg.time_budget
              else "its 1 epoch trains and is kept" if cfg.epochs == 1 else f"all {cfg.epochs} epochs train and the last is kept")
    return (f"No validation split (--val-fraction 0, no val/ folder): {length}. "
            "Skipped, as they need validation images: the best-epoch choice, early stopping, the test-time augmentation "
            "choice (none) and confidence calibration (`imgclf calibrate RUN --data DIR` fits it later).")


def _limit_train_rows(rows: list[dict], limit: int, seed: int) -> list[dict]:
    train = sorted((r for r in rows if r["split"] == "train"), key=lambda r: r["path"])
    if len(train) <= limit:
        return rows
    keep = {r["path"] for r in random.Random(seed).sample(train, limit)}
    return [r for r in rows if r["split"] != "train" or r["path"] in keep]
