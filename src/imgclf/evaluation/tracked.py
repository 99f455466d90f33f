"""`imgclf evaluate --track mlflow`: the evaluation's metrics, report and pictures to the run's MLflow run."""

from __future__ import annotations

from imgclf.core.run import Run
from imgclf.core.tracking import open_tracker, scalar_metrics

EVALUATION_FILES = ("metrics.json", "report.html", "plots")


def log_evaluation(run, kind: str | None) -> str | None:
    """Log an evaluated run's metrics (as ``eval_<name>``) and report; return the MLflow run id, or None if not asked.

    The MLflow run that training recorded in tracking.json is reused when it is
    in the same store; otherwise a new one is made and recorded.

    Example:
        >>> log_evaluation("runs/leaves", "none") is None
        True
    """
    run = run if isinstance(run, Run) else Run(run)
    tracker = open_tracker(kind, run.path.parent, run_name=run.path.name, run_dir=run.path,
                           tags={"imgclf.run": str(run.path.resolve())})
    if tracker is None:
        return None
    metrics = run.read_json("metrics.json")
    flat = {**metrics, "macro_f1": (metrics.get("macro_avg") or {}).get("f1")}
    tracker.log_metrics(scalar_metrics(flat, "eval_"))
    tracker.log_files(run.path, EVALUATION_FILES, artifact_path="evaluation")
    tracker.remember(run.path)
    tracker.end()
    return tracker.run_id
