"""Training: from a folder (or a run to resume) to a Run bundle.

The recipe: decode every image once, pick sizes and precision from the data
and the machine, then fit with AdamW, a short warmup and cosine decay. A
pretrained backbone trains in two phases (the keras.io transfer-learning
guide): first the new head with the backbone frozen, then the top of the
backbone unfrozen at a lower learning rate. BatchNorm inside a pretrained
backbone stays in inference mode throughout.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np

from imgclf.core.config import TrainConfig, to_yaml
from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_json, atomic_write_text, new_run_dir
from imgclf.core.hardware import choose_precision, gpu_details
from imgclf.core.manifest import is_skipped, manifest_csv, read_manifest, skip_reason
from imgclf.core.manifest import skipped as skipped_status
from imgclf.core.progress import log
from imgclf.core.run import Run
from imgclf.data.augment import make_train_map, resolve_flip
from imgclf.data.balance import resolve_balance
from imgclf.data.decode import probe_images
from imgclf.data.pipeline import decode_all, make_dataset, sha1_files
from imgclf.data.shards.reader import make_split_dataset, streamed_sets
from imgclf.data.split import training_rows
from imgclf.inference.tta import choose_tta
from imgclf.models.registry import default_label_smoothing, default_lr, get_spec
from imgclf.training.distributed.strategy import Distribution
from imgclf.training.feature_cache import feature_cache_applies, fit_head_on_features
from imgclf.training.lr_find import find_lr
from imgclf.training.recipe import compile_for_training, freeze_for_phase


class Trainer:
    """Carries one training run through data, model, phases and the bundle. Use `train()`."""

    def __init__(self, cfg: TrainConfig, run_dir: Path | None = None, callbacks=None):
        self.cfg = cfg
        self.extra_callbacks = list(callbacks or [])
        self.run_dir = run_dir
        self.summary: dict = {}
        self.dist = None  # distribute.Distribution: strategy, role and batch/lr scaling

    def _resolve_model_defaults(self) -> None:
        """Turn lr and label_smoothing 'model' into the values the model was tuned with (idempotent; config.yaml
        then records the numbers used)."""

        cfg = self.cfg
        if cfg.lr == "model":
            cfg.lr = default_lr(cfg.model, cfg.weights)
        if cfg.label_smoothing == "model":
            cfg.label_smoothing = default_label_smoothing(cfg.model, cfg.weights)

    # ---------------------------------------------------------------- data
    def _prepare_rows(self):
        cfg = self.cfg
        if self.shards:  # packed by `imgclf datasets pack`: its split, made by the same code as below
            from imgclf.data.shards.reader import shard_rows

            rows, self.classes = shard_rows(self.shards, cfg)
        else:
            # The same code as `imgclf split`: duplicates and --group-by groups never straddle splits.
            rows, self.classes = training_rows(cfg.data, cfg.manifest, cfg.val_fraction, cfg.test_fraction, cfg.seed,
                                               group_by=cfg.group_by, workers=cfg.workers, verbose=cfg.verbose != 0,
                                               max_pixels=cfg.max_pixels)
        if cfg.max_images:
            rows = _limit_train_rows(rows, cfg.max_images, cfg.seed)
        self.rows = rows
        excluded = [r for r in rows if r["split"] == "excluded"]
        self.summary["excluded"] = [{"path": r["path"], "reason": r.get("status", "")} for r in excluded]
        if excluded:
            log(f"Left out {len(excluded)} training image(s) that duplicate validation or test images "
                "(they would leak; see manifest.csv)")
        if not any(r["split"] == "val" for r in rows):
            raise UserError(
                "No validation images: every class is too small to hold one out. Add images, "
                "or add a val/ folder next to train/."
            )

    def _resolve_auto_settings(self):
        cfg, spec = self.cfg, get_spec(self.cfg.model)
        if self.shards:
            from imgclf.data.shards.reader import shard_probe

            probe = shard_probe(self.shards)  # made from the files when packing, as below
        else:
            probe = probe_images([r["path"] for r in self.rows if r["split"] == "train"], seed=cfg.seed)
        if cfg.color_mode == "auto":
            cfg.color_mode = "grayscale" if probe["grayscale"] and "grayscale" in spec.color_modes else "rgb"
        elif cfg.color_mode not in spec.color_modes:
            raise UserError(
                f"{cfg.model!r} takes {' or '.join(spec.color_modes)} images, received color_mode={cfg.color_mode!r}. "
                "Use --color-mode rgb (grayscale images are converted)."
            )
        if not cfg.img_size:
            if spec.default_size:
                cfg.img_size = spec.default_size
            else:
                # Small images keep their size (cheap and sharp); tiny ones are
                # upsampled so three conv stages still have room; large ones
                # are shrunk to keep a CPU epoch short.
                cfg.img_size = int(min(max(probe["median_side"], 28), 96))
        cfg.img_size = max(cfg.img_size, spec.min_size)
        if cfg.augment == "auto":
            # Augmentation pays off only once the model has seen the data a few
            # times; in short runs it costs accuracy (measured in bench/).
            cfg.augment = "light" if (cfg.epochs >= 15 or cfg.time_budget >= 10) else "none"
        self.probe = probe

    @property
    def shards(self) -> str:
        """The root (folder or URL) of packed TFRecord shards when DATA is one, else ''."""
        if getattr(self, "_shards_for", None) != self.cfg.data:
            from imgclf.data.shards.reader import shards_root

            self._shards, self._shards_for = shards_root(self.cfg.data), self.cfg.data
        return self._shards

    def _stream_splits(self):
        """Training from shards: nothing is decoded ahead; the pack already left out undecodable files."""

        self.sets = streamed_sets(self.shards, self.classes, self.cfg.max_pixels)
        self._write_manifest()
        self.summary["skipped"] = [{"path": r["path"], "reason": skip_reason(r)}
                                   for r in self.rows if is_skipped(r)]
        self.class_weight = resolve_balance(self.sets["train"].labels, self.classes, self.cfg.class_weight,
                                            self.cfg.sampling, self.summary)

    def _decode_splits(self):
        if self.shards:
            return self._stream_splits()
        cfg = self.cfg
        index = {c: i for i, c in enumerate(self.classes)}
        self.sets = {}
        sha1 = {}
        for split in ("train", "val"):
            rows = [r for r in self.rows if r["split"] == split]
            decoded = decode_all(
                [r["path"] for r in rows], [index[r["label"]] for r in rows], cfg.img_size, cfg.color_mode,
                resize=cfg.resize, workers=cfg.workers, cache=cfg.cache, max_pixels=cfg.max_pixels,
                cache_path=self.run_dir / "cache" / f"{split}.npy", label=f"Decoding {split}", verbose=cfg.verbose != 0,
            )
            self.sets[split] = decoded
            sha1.update(decoded.all_sha1)
        sha1.update(sha1_files([r["path"] for r in self.rows if r["split"] not in ("train", "val")], cfg.workers))
        skipped = {p: reason for s in self.sets.values() for p, reason in s.skipped}
        for r in self.rows:
            r["sha1"] = sha1.get(r["path"], "")
            r["status"] = skipped_status(skipped[r['path']]) if r["path"] in skipped else (
                "ok" if r["split"] in ("train", "val") else r.get("status", ""))  # test rows: the split's verdict
        self._write_manifest()
        if skipped:
            log(f"Skipped {len(skipped)} file(s) that could not be decoded (see {self.run_dir / 'manifest.csv'}):")
            for path, reason in list(skipped.items())[:10]:
                log(f"  {path}: {reason}")
            if len(skipped) > 10:
                log(f"  ... and {len(skipped) - 10} more")
        empty = [c for i, c in enumerate(self.classes) if not (self.sets["train"].labels == i).any()]
        if empty:
            raise UserError(f"No decodable training images left for class(es) {', '.join(empty)}; see manifest.csv for the reasons.")
        if len(self.sets["val"]) == 0:
            raise UserError("No decodable validation images left; see manifest.csv for the reasons.")
        self.summary["skipped"] = [{"path": p, "reason": r} for p, r in skipped.items()]

        self.class_weight = resolve_balance(self.sets["train"].labels, self.classes, cfg.class_weight, cfg.sampling, self.summary)

    def _write_manifest(self):
        atomic_write_text(self.run_dir / "manifest.csv", manifest_csv(self.rows))

    # ---------------------------------------------------------------- bundle
    def _write_bundle_start(self):
        cfg = self.cfg
        spec = get_spec(cfg.model)
        atomic_write_text(self.run_dir / "config.yaml", to_yaml(cfg))
        atomic_write_text(self.run_dir / "classes.json", json.dumps(self.classes, indent=2) + "\n")
        atomic_write_json(self.run_dir / "preprocess.json", {
            "img_size": cfg.img_size,
            "color_mode": cfg.color_mode,
            "channels": 1 if cfg.color_mode == "grayscale" else 3,
            "resize": cfg.resize,
            "resample": "bilinear",
            "input_range": [0, 255],
            "normalisation": f"{spec.preprocessing} (inside the model graph)",
            "decoder": "imgclf.data.decode.decode_image: EXIF transpose, alpha composited on white",
        })

    # ---------------------------------------------------------------- fit
    def prepare(self, run_dir: str | os.PathLike | None = None) -> None:
        """Scan, split, resolve automatic settings, set up Keras and decode: all but the model.

        With `run_dir` None a new run folder is created from ``out``.
        """

        cfg = self.cfg
        get_spec(cfg.model)  # fail fast on an unknown model name, before any work
        self._resolve_model_defaults()
        if cfg.data and "://" not in cfg.data:
            cfg.data = str(Path(cfg.data).resolve())  # config.yaml must work from any folder
        self._setup_distribution()
        self._prepare_rows()
        self._resolve_auto_settings()
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
        self._decode_splits()

    def train_dataset(self):
        """The training tf.data pipeline (shuffled, augmented). Example: ``trainer.train_dataset()``."""

        cfg = self.cfg
        if self.shards:  # streamed; several workers each read their own files, as many steps each
            return self._shard_dataset("train", self.dist.global_batch, shuffle=True, map_fn=self._train_map(),
                                       repeat=self.dist.multi_worker)
        return self.dist.shard(make_dataset(self.sets["train"], self.dist.global_batch, shuffle=True, seed=cfg.seed, balanced=cfg.sampling == "balanced",
                                            map_fn=self._train_map(), drop_remainder=self.dist.drop_remainder))

    def val_dataset(self):
        """The validation tf.data pipeline (in label order, not augmented). Example: ``trainer.val_dataset()``."""

        batch = max(self.dist.global_batch, 128)
        if self.shards:
            return self.dist.shard(self._shard_dataset("val", batch, map_fn=self._val_map(), shard_policy="data"))
        return self.dist.shard(make_dataset(self.sets["val"], batch, map_fn=self._val_map()))

    def _shard_dataset(self, split: str, batch_size: int, shuffle: bool = False, map_fn=None, **kwargs):
        cfg = self.cfg
        return make_split_dataset(self.shards, split, batch_size=batch_size, img_size=cfg.img_size, color_mode=cfg.color_mode,
                                  resize=cfg.resize, shuffle=shuffle, seed=cfg.seed, map_fn=map_fn, max_pixels=cfg.max_pixels,
                                  drop_remainder=self.dist.drop_remainder and shuffle, num_workers=self.dist.plan.workers, **kwargs)

    def fit_new(self) -> Run:
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
        if self.cfg.lr == "auto":
            found = find_lr(self, out=self.run_dir / "plots" / "lr_find.png")
            self.cfg.lr = float(f"{found['suggested_lr']:.3g}")
            # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
            import keras

            keras.utils.set_random_seed(self.cfg.seed)  # the real model starts from the same weights as without lr-find
        self._write_bundle_start()
        with self.dist.scope():  # variables made here are mirrored on every replica (nothing changes on one device)
            model = self.build_model()
        state = self.dist.restored_state() or {"epoch": 0, "phase": "", "history": []}
        return self._run_phases(model, state)

    def fit_resume(self) -> Run:
        # lazy: imports keras (imgclf.training.callbacks)
        from imgclf.training.callbacks import read_state

        cfg = self.cfg
        state = read_state(self.run_dir)
        log(f"Resuming {self.run_dir} after epoch {state.get('epoch', 0)} of {cfg.epochs}")
        self.rows = read_manifest(self.run_dir / "manifest.csv")
        self.classes = Run(self.run_dir).classes
        atomic_write_text(self.run_dir / "config.yaml", to_yaml(cfg))
        self._setup_backend()
        self._decode_splits()
        # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
        import keras

        # lazy: imports keras (imgclf.models.layers)
        from imgclf.models import layers  # noqa: F401

        with self.dist.scope():
            model = keras.saving.load_model(self.run_dir / "checkpoints" / "last.keras", compile=True)
        return self._run_phases(model, state)

    def _setup_backend(self):
        # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
        import keras


        cfg = self.cfg
        self._setup_distribution()
        self.dist.start()  # first: MultiWorkerMirroredStrategy must configure TensorFlow before anything runs
        keras.utils.set_random_seed(cfg.seed)
        requested = cfg.precision
        policy = choose_precision(requested, gpus=[] if self.dist.plan.on_cpu else gpu_details())
        keras.mixed_precision.set_global_policy(policy)
        self.summary["precision"] = policy
        if cfg.precision == "auto":
            cfg.precision = policy.replace("mixed_", "")  # config.yaml records what was used
        log(f"Precision: {policy}" + (" (chosen automatically for this machine)" if requested == "auto" else ""))

    def _setup_distribution(self):
        if self.dist is None:
            self.dist = Distribution.from_config(self.cfg)
            log(self.dist.describe())
            self.summary["distribution"] = self.dist.summary()

    def build_model(self):
        # lazy: imports keras (imgclf.models.factory)
        from imgclf.models.factory import create_model

        cfg = self.cfg
        return create_model(
            cfg.model, num_classes=len(self.classes), img_size=cfg.img_size,
            channels=1 if cfg.color_mode == "grayscale" else 3, weights=cfg.weights,
            dropout=cfg.dropout, bn_momentum=cfg.bn_momentum, freeze_bn=cfg.freeze_bn,
        )

    def _phases(self) -> list[tuple[str, int, float]]:
        """(name, last epoch, share of the time budget) of each phase: 'train', or 'head' then 'finetune'."""
        cfg = self.cfg
        if cfg.weights in ("none", ""):
            return [("train", cfg.epochs, 1.0)]
        if cfg.finetune == "none" or (cfg.epochs < 2 and not cfg.time_budget):
            return [("head", cfg.epochs, 1.0)]
        head = cfg.head_epochs or self._auto_head_epochs()
        head = min(head, cfg.epochs - 1)
        return [("head", head, 0.3), ("finetune", cfg.epochs, 0.7)]

    def _auto_head_epochs(self) -> int:
        # A linear head on frozen features converges in about 150 optimizer
        # steps: many epochs of a small dataset, one of a large one. Never more
        # than half the epochs, so that fine-tuning gets its share.
        cfg = self.cfg
        sets = getattr(self, "sets", None)
        if not sets:
            return max(1, cfg.epochs // 3)
        steps = max(1, -(-len(sets["train"]) // cfg.batch_size))
        return max(1, min(-(-150 // steps), cfg.epochs // 2))

    def _run_phases(self, model, state: dict) -> Run:
        cfg = self.cfg
        train_ds = self.train_dataset()
        val_ds = self.val_dataset()
        self.steps = self.dist.steps(len(self.sets["train"]))
        start = time.perf_counter()
        start_epoch = state.get("epoch", 0)
        first = 0
        try:
            for name, end, budget_share in self._phases():
                if cfg.time_budget:
                    if _phase_done(state, name):
                        continue
                elif end <= start_epoch:
                    first = end
                    continue
                if state.get("phase") != name or not model.compiled:  # resuming mid-phase keeps the restored optimizer
                    self.prepare_phase(model, name)
                initial = max(first, start_epoch)
                log(f"Phase {name}: " + (f"{cfg.time_budget * budget_share:.1f} minutes" if cfg.time_budget else f"epochs {initial + 1}-{end}")
                    + f", {sum(int(w.shape.num_elements() or 0) for w in model.trainable_weights):,} trainable weights")
                self._fit(model, name, train_ds, val_ds, state, initial_epoch=initial, epochs=end, first_epoch=first,
                          budget_s=60 * cfg.time_budget * budget_share)
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
                f"`imgclf train --resume --out {self.run_dir}`."
            ) from None
        self.summary.update({
            "train_time_s": round(time.perf_counter() - start, 2),
            "best_epoch": state.get("best_epoch"),
            f"best_{cfg.monitor}": state.get("best"),
            "images": {s: len(d) for s, d in self.sets.items()},
            "class_counts": {s: _class_counts(d.labels, self.classes) for s, d in self.sets.items()},
            "epochs_run": state.get("epoch"),
        })
        self._choose_tta(self.summary["train_time_s"])
        atomic_write_json(self.run_dir / "summary.json", self.summary)
        run = Run(self.run_dir)
        log(f"Best {cfg.monitor}: {state.get('best', float('nan')):.4f} at epoch {state.get('best_epoch')}. "
            f"Model saved to {run.path / 'model.keras'}")
        return run

    def _choose_tta(self, train_time_s: float) -> None:
        """Choose the run's test-time augmentation on validation (see `tta.choose_tta`).

        The views cost up to 10 model calls per image, so the decision runs on a
        sample sized to take about 5% of the training time (at least 20 s,
        at most 10,000 images, at least 300 or no decision).
        """

        val = self.sets["val"]
        images = getattr(val, "images", None)  # streamed shards hold no array: keep TTA off
        if (images is None or not len(images) or not self.dist.plan.is_chief
                or not (self.run_dir / "model.keras").exists()):
            return
        flips = self.cfg.augment != "none" and resolve_flip(self.cfg.flip, self.classes) in ("horizontal", "both")
        run = Run(self.run_dir)
        # lazy: imports keras (imgclf.models.saving)
        from imgclf.models.saving import load_keras_model
        model = load_keras_model(run.model_path)  # the saved best epoch, as evaluate loads it

        def predict(x):
            return model.predict(x, batch_size=256, verbose=0)

        probe = images[:256]
        predict(probe)  # the first call traces the model
        t = time.perf_counter()
        predict(probe)
        per_image = (time.perf_counter() - t) / len(probe)
        views = 10 if flips else 5
        affordable = int(max(20.0, 0.05 * train_time_s) / max(per_image * views, 1e-9))
        n = min(len(val.labels), 10_000, affordable)
        if n < min(300, len(val.labels)):
            choice = {"tta": "none", "reason": f"deciding would take too long ({per_image * 1000:.1f} ms per model call)"}
        else:
            labels = val.labels
            if n < len(labels):  # a class-blind random sample decides as well as the whole split
                keep = np.sort(np.random.default_rng(self.cfg.seed).choice(len(labels), n, replace=False))
                images, labels = images[keep], labels[keep]
            choice = choose_tta(images, labels, predict, flips)
            choice["images"] = int(len(labels))
        self.summary["tta"] = choice
        atomic_write_json(self.run_dir / "preprocess.json", {**run.preprocess, "tta": choice["tta"]})
        if choice["tta"] != "none":
            log(f"Test-time augmentation: {choice['tta']} {choice['reason']}; evaluate and predict use it "
                "(--tta none turns it off).")

    @property
    def _one_hot(self) -> bool:
        cfg = self.cfg
        return cfg.label_smoothing > 0 or cfg.mixup > 0 or cfg.cutmix > 0

    def _train_map(self):
        cfg = self.cfg
        flip = resolve_flip(cfg.flip, self.classes)
        return make_train_map(cfg.augment, flip, len(self.classes), self._one_hot, cfg.mixup, cfg.cutmix, cfg.seed)

    def _val_map(self):
        if not self._one_hot:
            return None
        # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
        import tensorflow as tf

        n = len(self.classes)
        return lambda x, y: (x, tf.one_hot(y, n))

    def prepare_phase(self, model, name: str):
        self._resolve_model_defaults()
        with self.dist.scope() if self.dist else contextlib.nullcontext():  # the optimizer's variables are mirrored too
            freeze_for_phase(model, name, self.cfg)
            compile_for_training(model, self.cfg, one_hot=self._one_hot)

    def _fit(self, model, phase, train_ds, val_ds, state, initial_epoch, epochs, first_epoch, budget_s):
        # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
        import keras

        # lazy: imports keras (imgclf.training.callbacks)
        from imgclf.training.callbacks import EpochProgress, RunWriter
        from imgclf.training.monitor import EXTRA_MONITORS, ValidationMetrics
        from imgclf.training.schedules import ProgressSchedule

        cfg = self.cfg
        peak = cfg.lr * self.dist.lr_scale * (cfg.finetune_lr_scale if phase == "finetune" else 1.0)
        spent = sum(h.get("time_s", 0) for h in state.get("history", []) if h.get("phase") == phase)
        schedule = ProgressSchedule(
            peak, total_steps=self.steps * (epochs - first_epoch), kind=cfg.schedule,
            budget_s=budget_s, elapsed_s=spent if budget_s else 0.0,
            start_step=(initial_epoch - first_epoch) * self.steps,
        )
        if budget_s:
            epochs = initial_epoch + 100_000  # the schedule stops training when the budget is spent
        callbacks = [schedule, *self.dist.callbacks()]
        if cfg.ema:
            callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))  # validate and save the average
        if cfg.monitor in EXTRA_MONITORS:  # before RunWriter and EarlyStopping, which read them
            callbacks.append(ValidationMetrics(val_ds, self.sets["val"].labels, self.classes))
        callbacks.append(RunWriter(self.run_dir, phase, state, len(self.sets["train"]), monitor=cfg.monitor, keep_epochs=cfg.keep_epochs))
        if self.dist.multi_worker:  # after RunWriter: the backup holds this epoch's state
            callbacks.append(self.dist.backup_callback(state))
        if cfg.patience:
            stopper = keras.callbacks.EarlyStopping(monitor=cfg.monitor, patience=cfg.patience,
                                                    mode="min" if cfg.monitor == "val_loss" else "max")
            callbacks.append(stopper)
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(self.run_dir / "logs"), write_graph=False, profile_batch=0))
        callbacks += self.extra_callbacks
        if cfg.verbose != 0:
            callbacks.append(EpochProgress(0 if budget_s else epochs, self.steps, self.dist.global_batch, schedule=schedule if budget_s else None))

        if not self.shards and feature_cache_applies(cfg, phase, model):  # frozen backbone, same inputs every epoch
            fit_head_on_features(model, self.sets, callbacks, batch_size=cfg.batch_size, epochs=epochs,
                                 initial_epoch=initial_epoch, class_weight=self.class_weight, one_hot=self._one_hot, seed=cfg.seed)
        else:
            self.dist.prebuild(model, train_ds)
            model.fit(train_ds, class_weight=self.class_weight, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch,
                      callbacks=callbacks, verbose=0, shuffle=False,  # tf.data shuffles; EpochProgress reports
                      steps_per_epoch=self.steps if self.shards and self.dist.multi_worker else None)  # endless shard stream
        if cfg.patience and stopper.stopped_epoch > 0:
            state["stopped_early"] = True
            log(f"Early stopping: no improvement in {cfg.monitor} for {cfg.patience} epochs.")


def _phase_done(state: dict, name: str) -> bool:
    return name in state.get("phases_done", [])


def _class_counts(labels, classes) -> dict:
    counts = np.bincount(labels, minlength=len(classes))
    return {c: int(n) for c, n in zip(classes, counts)}


def _limit_train_rows(rows: list[dict], limit: int, seed: int) -> list[dict]:
    train = sorted((r for r in rows if r["split"] == "train"), key=lambda r: r["path"])
    if len(train) <= limit:
        return rows
    keep = {r["path"] for r in random.Random(seed).sample(train, limit)}
    return [r for r in rows if r["split"] != "train" or r["path"] in keep]
