"""Experiment tracking, only when asked (``--track mlflow``): params, metrics and files of a run to MLflow.

Where it goes: ``MLFLOW_TRACKING_URI`` when it is set (a server, a database,
any URI MLflow takes), else a local store beside the run folders,
``<parent of the run>/mlruns/mlflow.db`` with the files under
``mlruns/artifacts/`` (offline; ``mlflow ui --backend-store-uri
sqlite:///runs/mlruns/mlflow.db`` shows it). With ``--track none``, the
default, nothing is imported and nothing is written.

One imgclf run is one MLflow run: training records its id in the run folder
(``tracking.json``) and a later ``imgclf evaluate --track mlflow`` adds its
metrics and report to the same MLflow run. MLflow is an optional extra
(``pip install 'imgclf[mlflow]'``), imported only here and only when asked.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
import time
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_json

TRACKERS = ("none", "mlflow")
SPENT = {"seconds": 0.0}  # wall seconds spent in tracking calls by this process (bench/tune.py reports the overhead)
EXPERIMENT = "imgclf"
RECORD = "tracking.json"  # in a run folder: which MLflow run holds it


def tracking_uri(near: str | os.PathLike) -> str:
    """Where MLflow logs go: ``MLFLOW_TRACKING_URI`` if set, else a SQLite store in `near`/mlruns.

    Example:
        >>> os.environ.pop("MLFLOW_TRACKING_URI", None) and None
        >>> tracking_uri("/tmp/runs")
        'sqlite:////tmp/runs/mlruns/mlflow.db'
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if uri:
        return uri
    return "sqlite:///" + str(Path(os.path.abspath(near)) / "mlruns" / "mlflow.db")


def flat_params(settings: dict, prefix: str = "") -> dict[str, str]:
    """Settings as MLflow params: nested keys joined by dots, values as text (at most 500 characters).

    Example:
        >>> flat_params({"lr": 0.01, "versions": {"keras": "3.15"}})
        {'lr': '0.01', 'versions.keras': '3.15'}
    """
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)[:500]
    return out


def scalar_metrics(values: dict, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a dict (metrics.json, a history row) as MLflow metrics; nested dicts are skipped.

    Example:
        >>> scalar_metrics({"accuracy": 0.9, "epoch": 3, "phase": "head", "loss": float("nan")}, "test_")
        {'test_accuracy': 0.9, 'test_epoch': 3.0}
    """
    return {f"{prefix}{k}": float(v) for k, v in values.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)}


def timed(method):
    """Count a tracker method's wall time in `SPENT`. Example: ``timed(lambda self: None)(None)``."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            SPENT["seconds"] += time.perf_counter() - start

    return wrapper


class MlflowTracker:
    """One MLflow run, written through `mlflow.MlflowClient` (no global state, safe beside other users of MLflow).

    Example:
        >>> tracker = MlflowTracker("runs/", run_name="by-hand")  # a local store in runs/mlruns; needs mlflow
        >>> tracker.log_params({"lr": 0.01}); tracker.log_metrics({"val_accuracy": 0.9}, step=1); tracker.end()
        >>> run = tracker.client.get_run(tracker.run_id)
        >>> run.data.params, run.data.metrics, run.info.status
        ({'lr': '0.01'}, {'val_accuracy': 0.9}, 'FINISHED')
    """

    @timed
    def __init__(self, near: str | os.PathLike, run_name: str = "", run_id: str = "", tags: dict | None = None,
                 experiment: str = EXPERIMENT):
        try:
            # lazy: MLflow is an optional extra, imported only when --track mlflow is asked for
            from mlflow import MlflowClient
        except ImportError:
            raise UserError("--track mlflow needs MLflow, which is not installed. Install it with "
                            "`pip install 'imgclf[mlflow]'` (or mlflow-skinny), or leave --track out.") from None
        self.uri = tracking_uri(near)
        local = not os.environ.get("MLFLOW_TRACKING_URI", "").strip()
        if local:
            (Path(near) / "mlruns").mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(self.uri)
        if run_id:
            self.run_id = run_id
            return
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            where = (Path(os.path.abspath(near)) / "mlruns" / "artifacts").as_uri() if local else None
            experiment_id = self.client.create_experiment(experiment, artifact_location=where)
        self.run_id = self.client.create_run(experiment_id, run_name=run_name or None, tags=tags or {}).info.run_id

    @timed
    def log_params(self, params: dict) -> None:
        """Log settings once (nested dicts flattened). Example: ``tracker.log_params({"lr": 0.01})``."""
        # lazy: MLflow is an optional extra
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flat_params(params).items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per call
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    @timed
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        """Log the finite numbers of `metrics` at `step`. Example: ``tracker.log_metrics({"loss": 0.3}, step=2)``."""
        # lazy: MLflow is an optional extra
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step or 0) for k, v in scalar_metrics(metrics).items()]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    @timed
    def set_tags(self, tags: dict) -> None:
        """Set tags (``mlflow.runName`` renames the run). Example: ``tracker.set_tags({"imgclf.run": "runs/a"})``."""
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    @timed
    def log_files(self, folder: str | os.PathLike, names: tuple[str, ...], artifact_path: str | None = None) -> list[str]:
        """Log the files or folders `names` of `folder` that exist; return those logged.

        Example: ``tracker.log_files("runs/leaves", ("config.yaml", "model.keras"))``.
        """
        logged = []
        for name in names:
            path = Path(folder) / name
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path=f"{artifact_path}/{name}" if artifact_path else name)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path), artifact_path=artifact_path)
            else:
                continue
            logged.append(name)
        return logged

    @timed
    def remember(self, run_dir: str | os.PathLike) -> None:
        """Write `run_dir`/tracking.json, so later commands add to this MLflow run. Example: ``tracker.remember("runs/a")``."""
        atomic_write_json(Path(run_dir) / RECORD, {"tracker": "mlflow", "tracking_uri": self.uri, "run_id": self.run_id})

    @timed
    def end(self, status: str = "FINISHED") -> None:
        """Mark the MLflow run finished (or FAILED, KILLED). Example: ``tracker.end()``."""
        self.client.set_terminated(self.run_id, status=status)


def open_tracker(kind: str | None, near: str | os.PathLike, run_name: str = "", run_dir: str | os.PathLike | None = None,
                 tags: dict | None = None) -> MlflowTracker | None:
    """The tracker asked for (None for "none" or None); with `run_dir`, reopen the MLflow run it records, if any.

    Example:
        >>> open_tracker("none", "runs/") is None
        True
    """
    if kind in (None, "", "none"):
        return None
    if kind not in TRACKERS:
        raise UserError(f"Unknown tracker {kind!r}: expected one of {', '.join(TRACKERS)}. Pass --track mlflow or leave it out.")
    if run_dir is not None and (Path(run_dir) / RECORD).exists():
        try:
            record = json.loads((Path(run_dir) / RECORD).read_text(encoding="utf-8"))
        except ValueError:
            record = {}
        if record.get("run_id") and record.get("tracking_uri") == tracking_uri(near):
            return MlflowTracker(near, run_id=record["run_id"])
    return MlflowTracker(near, run_name=run_name, tags=tags)
