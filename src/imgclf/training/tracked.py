"""Training with ``--track mlflow``: every epoch's numbers as they come, then the run's settings and files.

The epochs go through `TrackEpochs`, a Keras callback run after imgclf's own
in every phase (the solved head included); when the run is written, its
resolved config.yaml becomes the MLflow params and its files (config,
history, summary, model, exports) the artifacts. The MLflow run's id is kept
in the run folder (tracking.json) for `imgclf evaluate --track mlflow`.
"""

from __future__ import annotations

from pathlib import Path

import keras

from imgclf.core.config import TrainConfig
from imgclf.core.run import Run
from imgclf.core.tracking import open_tracker
from imgclf.training.trainer import Trainer

RUN_FILES = ("config.yaml", "classes.json", "preprocess.json", "history.csv", "summary.json", "model.keras", "exports")


class TrackEpochs(keras.callbacks.Callback):
    """Log each epoch's numbers (loss, accuracy, val_*, lr) to a tracker at step = the epoch (1-based).

    Example:
        >>> from imgclf.models.factory import create_model
        >>> images, labels = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)), np.array([0, 1] * 4)
        >>> model = create_model("small_cnn", num_classes=2, img_size=16)
        >>> model.compile("adam", "sparse_categorical_crossentropy")
        >>> tracker = open_tracker("mlflow", "runs/", run_name="by-hand")  # a local store in runs/mlruns
        >>> _ = model.fit(images, labels, epochs=2, verbose=0, callbacks=[TrackEpochs(tracker)])
        >>> tracker.end()
        >>> [m.step for m in tracker.client.get_metric_history(tracker.run_id, "loss")]
        [1, 2]
    """

    def __init__(self, tracker):
        super().__init__()
        self.tracker = tracker

    def on_epoch_end(self, epoch, logs=None):
        self.tracker.log_metrics(dict(logs or {}), step=epoch + 1)


def fit_tracked(cfg: TrainConfig, kind: str, callbacks=None, tags: dict | None = None, near=None) -> Run:
    """Train a new run from `cfg` with tracker `kind` ("mlflow"); the local MLflow store is in `near`, else beside the run.

    Example:
        >>> from imgclf.core.config import make_config
        >>> cfg = make_config({"data": "data/", "model": "small_cnn", "img_size": 16, "epochs": 1, "out": "runs/a", "verbose": 0})
        >>> run = fit_tracked(cfg, "mlflow")  # MLflow's local store: runs/mlruns
        >>> (run.path / "tracking.json").is_file(), Path("runs/mlruns").is_dir()
        (True, True)
    """
    near = near if near is not None else Path(cfg.out).parent if cfg.out else Path("runs")
    tracker = open_tracker(kind, near, run_name=Path(cfg.out).name if cfg.out else cfg.model, tags=tags)
    try:
        run = Trainer(cfg, callbacks=[*(callbacks or []), TrackEpochs(tracker)]).fit_new()
    except BaseException as e:
        tracker.end("KILLED" if isinstance(e, KeyboardInterrupt) or type(e).__name__ == "TrialPruned" else "FAILED")
        raise
    tracker.set_tags({"mlflow.runName": run.path.name, "imgclf.run": str(run.path.resolve())})
    tracker.log_params(run.config)
    summary = run.read_json("summary.json") if run.file("summary.json").exists() else {}
    tracker.log_metrics({k: summary.get(k) for k in ("train_time_s", "best_epoch", "epochs_run") if k in summary})
    tracker.log_files(run.path, RUN_FILES)
    tracker.remember(run.path)
    tracker.end()
    return run
