"""`imgclf runs [DIR]`: one row per run folder under DIR, read from the files every run already has.

A run is a folder with classes.json and config.yaml (what `imgclf train`
writes); its row takes the settings from config.yaml, the training time from
summary.json and the scores from metrics.json (written by `imgclf evaluate`),
so runs made by any earlier version are listed as they are. Missing figures
are empty cells, never an error.
"""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from imgclf.core.config import load_yaml
from imgclf.core.errors import UserError, did_you_mean

COLUMNS = ("run", "data", "model", "weights", "budget", "accuracy", "macro_f1", "balanced_accuracy", "ece",
           "train_time_s", "size_mb", "date")
FORMATS = ("table", "csv", "json", "markdown")


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Every run folder under `root` (itself included), in path order; a run's subfolders and mlruns/ are not searched.

    Example:
        >>> [p.name for p in find_runs("data/")]
        []
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"Folder not found: {str(root)!r}. Pass the folder that holds your runs, for example runs/.")
    found = []
    for folder, subfolders, files in os.walk(root):
        if "classes.json" in files and "config.yaml" in files:
            found.append(Path(folder))
            subfolders[:] = []  # checkpoints/, exports/, plots/: nothing else is a run in there
        else:  # MLflow's artifact store keeps copies of runs' files: not runs
            subfolders[:] = sorted(d for d in subfolders if d != "mlruns" and not d.startswith("."))
    return sorted(found)


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def run_row(path: str | os.PathLike, root: str | os.PathLike | None = None) -> dict:
    """The table row of one run folder: settings, scores, training time, model size and date.

    Example:
        >>> row = run_row("runs/leaves")
        >>> row["model"], row["accuracy"] is not None
        ('small_cnn', True)
    """
    path = Path(path)
    try:
        cfg = dict(load_yaml(path / "config.yaml"))
    except UserError:
        cfg = {}
    summary, metrics = _read_json(path / "summary.json"), _read_json(path / "metrics.json")
    model_file = path / "model.keras"
    budget = cfg.get("time_budget") or 0
    stamp_file = model_file if model_file.exists() else path / "config.yaml"
    return {
        "run": os.path.relpath(path, root) if root is not None else str(path),
        "data": cfg.get("data") or cfg.get("manifest") or "",
        "model": cfg.get("model", ""),
        "weights": cfg.get("weights", ""),
        "budget": f"{budget:g} min" if budget else (f"{cfg['epochs']} epochs" if "epochs" in cfg else ""),
        "accuracy": metrics.get("accuracy"),
        "macro_f1": (metrics.get("macro_avg") or {}).get("f1"),
        "balanced_accuracy": metrics.get("balanced_accuracy"),
        "ece": metrics.get("expected_calibration_error"),
        "train_time_s": summary.get("train_time_s"),
        "size_mb": round(model_file.stat().st_size / 1e6, 2) if model_file.exists() else None,
        "date": datetime.fromtimestamp(stamp_file.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M"),
    }


def list_runs(root: str | os.PathLike = "runs", sort: str = "date", descending: bool = False) -> list[dict]:
    """Rows (`run_row`) of every run under `root`, sorted by column `sort`; empty cells go last.

    Example:
        >>> [r["model"] for r in list_runs("runs/", sort="accuracy", descending=True)]
        ['small_cnn']
    """
    if sort not in COLUMNS:
        raise UserError(f"Cannot sort by {sort!r}: expected one of {', '.join(COLUMNS)}." + did_you_mean(sort, COLUMNS))
    rows = [run_row(p, root) for p in find_runs(root)]
    present = [r for r in rows if r[sort] is not None and r[sort] != ""]
    missing = [r for r in rows if r[sort] is None or r[sort] == ""]
    present.sort(key=lambda r: r[sort], reverse=descending)
    return present + missing


DECIMALS = {"train_time_s": 1, "size_mb": 2}  # other floats are scores in [0, 1]: four decimals


def _cell(value, column: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, float) and column in DECIMALS:
        return f"{value:.{DECIMALS[column]}f}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_runs(rows: list[dict], fmt: str = "table") -> str:
    """Rows as an aligned text table, CSV, JSON or a Markdown table.

    Example:
        >>> print(format_runs([{"run": "a", "accuracy": 0.5}], "markdown"))
        | run | accuracy |
        |---|---|
        | a | 0.5000 |
    """
    if fmt not in FORMATS:
        raise UserError(f"Unknown format {fmt!r}: expected one of {', '.join(FORMATS)}." + did_you_mean(fmt, FORMATS))
    columns = list(rows[0]) if rows else list(COLUMNS)
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    cells = [[_cell(r.get(c), c) for c in columns] for r in rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        return "\n".join(lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells])
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)
