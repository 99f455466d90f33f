"""Training on several devices or machines with TensorFlow's own strategies.

One machine: with more than one GPU visible (or chosen with ``--devices``)
training runs under `tf.distribute.MirroredStrategy`; otherwise under the
default strategy, on one GPU or the CPU. Several machines
(``--distributed multi-worker``): `tf.distribute.MultiWorkerMirroredStrategy`,
with the cluster and this process's role read from the standard ``TF_CONFIG``
variable, so the same command runs under Kubernetes, Vertex AI or SLURM.

Scaling (Goyal et al. 2017, "Accurate, large minibatch SGD"): ``batch_size``
is per replica, the global batch is batch_size x replicas, and the learning
rate is multiplied by the number of replicas (``--no-scale-lr`` keeps it).
The warmup at the start of every schedule is what makes the larger rate safe.

Only the chief writes the Run bundle. Other workers run the same code into a
scratch folder they delete at the end, because saving a model under a
strategy is a collective operation every worker must join (Keras' own
multi-worker pattern). A backup after every epoch
(`keras.callbacks.BackupAndRestore`, in a folder every worker sees) lets a
restarted job continue from the last finished epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.progress import log
from imgclf.core.run import Run
from imgclf.training.distributed.multiworker import average_batchnorm_statistics, build_from_spec, worker_aware_backup
from imgclf.training.distributed.planning import (
    Plan,
    parse_tf_config,
    plan_strategy,
)

BACKUP_FILES = ("latest.weights.h5", "training_metadata.json", "imgclf_state.json")


class Distribution:
    """The plan for one training process plus the TensorFlow strategy built from it.

    Example:
        >>> from imgclf.core.config import TrainConfig
        >>> from imgclf.models.factory import create_model
        >>> dist = Distribution.from_config(TrainConfig(batch_size=32, lr=0.001))
        >>> with dist.scope():  # one device here; MirroredStrategy on several GPUs, MultiWorkerMirroredStrategy on a cluster
        ...     model = create_model("small_cnn", num_classes=3, img_size=16)
        >>> dist.summary()["strategy"], dist.plan.replicas, dist.global_batch
        ('single', 1, 32)
    """

    def __init__(self, plan: Plan, cfg, lr=None):
        self.plan, self.cfg = plan, cfg
        self.lr = cfg.lr if lr is None else lr  # the peak rate per replica ('model' resolved by the caller)
        self.strategy = None
        self.scratch: Path | None = None  # a non-chief worker's throwaway run folder
        self._restoring = False  # the next fit loads the multi-worker backup (see restored_state)
        self.global_batch, self.lr_scale = plan.scaling(cfg.batch_size, self.lr, cfg.scale_lr)

    @classmethod
    def from_config(cls, cfg, lr=None) -> "Distribution":
        """Plan from the config, the environment and the visible GPUs; nothing is started yet.

        `lr` is the resolved peak rate (``cfg.lr`` may say 'model'); it only scales and logs.
        """
        # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
        import tensorflow as tf

        # A GPU split into logical GPUs (tf.config.set_logical_device_configuration) counts as several.
        count = sum(len(tf.config.get_logical_device_configuration(g) or [None]) for g in tf.config.list_physical_devices("GPU"))
        gpus = [f"/gpu:{i}" for i in range(count)]
        if cfg.distributed == "multi-worker":
            tf_config = parse_tf_config()
        else:
            tf_config = None
            if os.environ.get("TF_CONFIG"):
                log("TF_CONFIG is set, but --distributed is none: training on this machine only "
                    "(pass --distributed multi-worker to join the cluster).")
        plan = plan_strategy(cfg.devices, cfg.distributed, gpus, tf_config)
        dist = cls(plan, cfg, lr=lr)
        dist.check_settings()
        return dist

    @property
    def multi_worker(self) -> bool:
        return self.plan.kind == "multi-worker"

    def check_settings(self) -> None:
        """Refuse settings whose outcome could differ between workers (they would part ways and hang)."""
        cfg = self.cfg
        if cfg.lr == "auto" and self.plan.replicas > 1:
            raise UserError(f"--lr auto runs its range test on one device, not on {self.plan.replicas} replicas (and under "
                            "multi-worker each worker could pick a different rate). Run `imgclf lr-find DATA` first and "
                            "pass its rate as --lr: it is multiplied by the replicas.")
        if not self.multi_worker:
            return
        if cfg.time_budget:
            raise UserError("--time-budget cannot run under --distributed multi-worker: each worker's clock would stop "
                            "training after a different epoch. Pass --epochs instead.")
        if cfg.monitor not in ("auto", "val_accuracy", "val_loss", "none"):
            raise UserError(f"--monitor {cfg.monitor} needs the whole validation set's predictions in one process; under "
                            "--distributed multi-worker each worker sees part of it. Use --monitor val_accuracy or val_loss.")
        if cfg.resume:
            raise UserError("--resume is for one machine. A multi-worker job resumes by itself from its backup: "
                            "run the same command again on every worker.")

    def start(self):
        """Restrict the visible devices and create the strategy (before any other TensorFlow work).

        MultiWorkerMirroredStrategy must configure the runtime before it runs
        anything, so this comes first in training; it returns the strategy.
        """
        # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
        import tensorflow as tf

        if self.strategy is not None:
            return self.strategy
        plan = self.plan
        physical = tf.config.list_physical_devices("GPU")
        split = any(tf.config.get_logical_device_configuration(g) for g in physical)
        devices = plan.devices
        if physical and (plan.on_cpu or not split) and devices != [f"/gpu:{i}" for i in range(len(physical))]:
            tf.config.set_visible_devices([physical[int(d.rsplit(":", 1)[1])] for d in devices], "GPU")
            devices = [f"/gpu:{i}" for i in range(len(devices))]  # the kept GPUs are renumbered from 0
        if plan.kind == "mirrored":
            self.strategy = tf.distribute.MirroredStrategy(devices)
        elif plan.kind == "single" and split and devices:
            self.strategy = tf.distribute.OneDeviceStrategy(devices[0])  # one logical GPU of a split one
        elif plan.kind == "multi-worker":
            self.strategy = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            self.strategy = tf.distribute.get_strategy()
        # Under several replicas the feature cache is off: `training.plan.make_plan` decides it from the replicas.
        return self.strategy

    def scope(self):
        """The strategy's scope: variables made inside are mirrored on every replica."""
        return self.start().scope()

    def describe(self) -> str:
        return self.plan.describe(self.cfg.batch_size, self.lr, self.cfg.scale_lr)

    def summary(self) -> dict:
        """What summary.json records about the distribution."""
        plan = self.plan
        return {"strategy": plan.kind, "devices": plan.devices or ["CPU" if plan.on_cpu else "GPU"], "workers": plan.workers,
                "replicas": plan.replicas, "batch_per_replica": self.cfg.batch_size, "global_batch": self.global_batch,
                "lr_scale": self.lr_scale}

    # ------------------------------------------------------------ data
    def shard(self, dataset):
        """Tell tf.data how workers split an in-memory dataset: by batch (AutoShardPolicy.DATA).

        The default policy (FILE) would find no files to split and fall back to
        DATA with a warning; saying so keeps logs clean. Example: ``ds = dist.shard(ds)``.
        """
        if not self.multi_worker:
            return dataset
        # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return dataset.with_options(options)

    def prebuild(self, model, dataset) -> None:
        """Multi-worker: let `fit` build the model from the dataset's spec (`multiworker.build_from_spec`,
        a Keras 3.15 workaround). Example: ``dist.prebuild(model, train_ds)``."""
        if self.multi_worker:
            build_from_spec(model, dataset.element_spec, self.strategy)

    @property
    def drop_remainder(self) -> bool:
        # Every worker must run the same number of steps, or the last collective waits forever.
        return self.multi_worker

    def steps(self, n_train: int) -> int:
        """Optimizer steps per epoch for `n_train` images at the global batch. Example: ``dist.steps(1000)``."""
        if self.drop_remainder:
            if n_train < self.global_batch:
                raise UserError(f"{n_train} training images cannot fill one global batch of {self.global_batch} "
                                f"({self.cfg.batch_size} per replica x {self.plan.replicas} replicas). Lower --batch-size.")
            return n_train // self.global_batch
        return -(-n_train // self.global_batch)

    # ------------------------------------------------------------ restarts
    def restored_state(self) -> dict | None:
        """imgclf's state from the backup of an interrupted multi-worker job (then the first fit
        restores the weights too), or None for a fresh start."""
        state = self.backup_state() if self.multi_worker else None
        self._restoring = state is not None
        if state is not None:
            log(f"Continuing the multi-worker job from its backup in {self.backup_dir()}: epoch {state.get('epoch', 0)} "
                f"of {self.cfg.epochs} finished.")
        return state

    def result(self, run):
        """What training returns: the chief's Run; a worker returns the chief's run folder (which it did not write)."""
        if self.plan.is_chief:
            return run

        chief = Run.__new__(Run)  # not opened: it may live on another machine
        chief.path = Path(self.cfg.out)
        return chief

    # ------------------------------------------------------------ files
    def run_dir(self, out: str) -> Path:
        """The folder this process writes: the chief's run folder, or a worker's scratch folder.

        The chief's folder keeps its exact name (every worker must find the same
        backup inside it); an existing one is taken over only when it holds a
        backup to continue from.
        """
        if not self.plan.is_chief:
            self.scratch = Path(tempfile.mkdtemp(prefix=f"imgclf-{self.plan.task.replace(' ', '')}-"))
            return self.scratch
        path = Path(out)
        if path.exists() and any(path.iterdir()) and self.backup_state() is None:
            raise UserError(f"{str(path)!r} already exists and holds no backup of an unfinished multi-worker job to continue. "
                            "Pass a new --out (a multi-worker run keeps its exact name so every worker finds its backup).")
        path.mkdir(parents=True, exist_ok=True)

        log(f"Run folder: {path}")
        return path

    def backup_dir(self) -> Path:
        """Where the per-epoch backup lives: --backup-dir, or backup/ inside the run (the same path on every worker)."""
        cfg = self.cfg
        return Path(cfg.backup_dir or Path(cfg.out) / "backup").absolute()

    def backup_state(self) -> dict | None:
        """imgclf's training state saved with the last backup, or None when there is nothing to continue."""
        path = self.backup_dir() / "imgclf_state.json"
        if not path.exists():
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def callbacks(self) -> list:
        """Callbacks every replica runs first: BatchNorm running statistics averaged across replicas."""
        if self.plan.replicas < 2:
            return []

        return [average_batchnorm_statistics(self.strategy)]

    def backup_callback(self, state: dict):
        """A `BackupAndRestore` that every worker runs: all load the shared backup in the first fit
        after a restart, the chief saves into it, the others into their scratch folder (saving is collective)."""
        restore, self._restoring = self._restoring, False

        return worker_aware_backup(self.backup_dir(), self.plan.is_chief, self.scratch, state, restore)

    def finish(self, completed: bool) -> None:
        """Delete a worker's scratch folder; after a completed run the chief deletes its backup files."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        if completed and self.plan.is_chief and self.multi_worker:
            backup = self.backup_dir()
            for name in BACKUP_FILES:  # only our own files: --backup-dir may be a folder with other things in it
                (backup / name).unlink(missing_ok=True)
            if backup.is_dir() and not any(backup.iterdir()):
                backup.rmdir()
