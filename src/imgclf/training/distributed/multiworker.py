"""Keras pieces of multi-worker training: backup, BatchNorm statistics, and two Keras 3.15 workarounds.

`distribute.py` decides where training runs; this module holds what every
worker must run inside `fit` so that the workers stay identical and a
restarted job continues. Each piece is needed only under
MultiWorkerMirroredStrategy and imports Keras lazily.
"""

from __future__ import annotations

from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_json

# The Keras versions whose internals the two workarounds below were verified against
# (`Trainer._maybe_symbolic_build`, `keras.src.backend.tensorflow.trainer.reduce_per_replica`).
VERIFIED_KERAS = ((3, 15), (3, 16))  # the 3.15 series, as pyproject.toml pins: the one this project tests


def check_keras_version(version: str | None = None) -> None:
    """Refuse to patch a Keras whose internals the multi-worker workarounds were not verified on.

    Example:
        >>> check_keras_version("3.15.0")
        >>> check_keras_version("3.16.1")
        Traceback (most recent call last):
        ...
        imgclf.core.errors.UserError: Multi-worker training patches Keras internals that were verified on Keras >=3.15,<3.16, received Keras 3.16.1. ...
    """
    if version is None:
        # lazy: Keras imports TensorFlow (seconds); only multi-worker training calls this
        import keras

        version = keras.__version__
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        major_minor = None
    low, high = VERIFIED_KERAS
    if major_minor is None or not low <= major_minor < high:
        raise UserError(
            f"Multi-worker training patches Keras internals that were verified on Keras "
            f">={low[0]}.{low[1]},<{high[0]}.{high[1]}, received Keras {version}. "
            f"Install a verified version (pip install 'keras>={low[0]}.{low[1]},<{high[0]}.{high[1]}'), "
            "or train on one machine (--distributed none), which needs no patch."
        )


def build_from_spec(model, spec, strategy) -> None:
    """Make `fit` build metrics, loss and optimizer from the dataset's element spec.

    Keras 3.15 builds them from a batch it first reduces across replicas,
    which MultiWorkerMirroredStrategy cannot do for an (images, labels) pair
    (ValueError: "Attempt to convert a value (PerReplica...)"). The spec holds
    all that building needs (shapes and dtypes); the build still happens in
    the strategy's scope, as Keras would do it.

    Example:
        >>> import tensorflow as tf
        >>> from imgclf.models.factory import create_model
        >>> strategy = tf.distribute.get_strategy()  # on a cluster: MultiWorkerMirroredStrategy (tests/test_distributed.py)
        >>> with strategy.scope():
        ...     model = create_model("small_cnn", num_classes=3, img_size=16)
        ...     model.compile("adam", "sparse_categorical_crossentropy")
        >>> train_ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 16, 16, 3), "float32"), np.arange(4) % 3)).batch(2)
        >>> build_from_spec(model, train_ds.element_spec, strategy)
        >>> model.fit(train_ds, epochs=1, verbose=0).history["loss"][0] > 0  # built from the spec, then trained
        True
    """

    check_keras_version()  # before patching: other Keras versions build differently

    def symbolic_build(iterator=None, data_batch=None):
        with strategy.scope():
            model._symbolic_build(data_batch=spec)

    model._maybe_symbolic_build = symbolic_build
    _patch_keras_multi_worker_logs()


def _patch_keras_multi_worker_logs() -> None:
    """Average each step's scalar logs (loss, metrics) across workers with axis=None.

    Keras 3.15 reduces them with ``strategy.reduce("MEAN", v, axis=0)`` under
    MultiWorkerMirroredStrategy, which fails on scalars ("Invalid reduction
    dimension 0 for input with 0 dimensions"; tensorflow/tensorflow#72388).
    Only this process is affected, and only multi-worker training calls this.
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "imgclf_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not tf_trainer._collective_all_reduce_multi_worker(strategy):
            return original(values, strategy, reduction)

        def one(v):
            local = strategy.experimental_local_results(v)[0]
            if len(local.shape) == 0:
                return strategy.reduce("MEAN", v, axis=None)
            return original(v, strategy, reduction)

        # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
        import keras

        return keras.tree.map_structure(one, values)

    reduce_per_replica.imgclf_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def average_batchnorm_statistics(strategy):
    """A callback that averages BatchNorm's running statistics across replicas. Example: ``fit(..., callbacks=[average_batchnorm_statistics(strategy)])``."""
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras
    import tensorflow as tf

    class AverageBatchNormStatistics(keras.callbacks.Callback):
        """Average BatchNorm's moving mean and variance across workers before validation and after each epoch.

        Gradients are averaged every step, so trainable weights stay identical;
        but Keras 3 updates BatchNorm's running statistics on each replica (each
        worker, each GPU) from its own share of the batch and never reconciles
        them. Without this, replicas would validate different models and the
        saved one would hold the statistics of one replica's data only.
        """

        _average = None

        def _sync(self):
            if self._average is None:
                stats = [w for w in self.model.weights if w.name in ("moving_mean", "moving_variance")]
                if not stats:
                    return

                @tf.function
                def average():
                    def per_replica():  # each replica averages its copies with all others' (all workers, all devices)
                        flat = tf.concat([tf.reshape(tf.cast(w.value, tf.float32), [-1]) for w in stats], 0)
                        mean = tf.distribute.get_replica_context().all_reduce("MEAN", flat)  # one all-reduce for all
                        offset = 0
                        for w in stats:
                            n = w.value.shape.num_elements()
                            w.assign(tf.cast(tf.reshape(mean[offset:offset + n], w.value.shape), w.value.dtype))
                            offset += n

                    strategy.run(per_replica)

                self._average = average
            self._average()

        def on_test_begin(self, logs=None):
            self._sync()

        def on_epoch_end(self, epoch, logs=None):
            self._sync()

    return AverageBatchNormStatistics()


def worker_aware_backup(backup_dir: Path, is_chief: bool, scratch: Path | None, state: dict, restore: bool):
    """Keras' BackupAndRestore for a multi-worker job: all load the shared backup, only the chief writes it.

    Example: ``worker_aware_backup(Path("/shared/backup"), True, None, state, restore=False)``.
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras


    class WorkerAwareBackup(keras.callbacks.BackupAndRestore):
        """Keras' BackupAndRestore writes the same files from every worker; this one lets only the
        chief write the shared folder, and saves imgclf's own state (history, best epoch) beside it."""

        def __init__(self):
            super().__init__(str(backup_dir), delete_checkpoint=False)  # the trainer removes it after the last phase

        def on_train_begin(self, logs=None):
            if restore:
                super().on_train_begin(logs)
                # imgclf_state.json, written after the weights, says which epoch to continue from
                # (the trainer passes it as initial_epoch); Keras' own epoch must not override it.
                self.model._initial_epoch = None
            if not is_chief:
                self._redirect(scratch / "backup")

        def _redirect(self, folder: Path):
            self.backup_dir = str(folder)
            self._weights_path = str(folder / "latest.weights.h5")
            self._training_metadata_path = str(folder / "training_metadata.json")

        def _save_model(self):
            super()._save_model()
            atomic_write_json(Path(self.backup_dir) / "imgclf_state.json", state)

    return WorkerAwareBackup()
