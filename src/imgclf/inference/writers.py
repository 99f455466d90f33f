"""Writing prediction rows as a table, CSV, JSON or JSON Lines, streaming as they come."""

from __future__ import annotations

import csv
import json
import math
import sys
from contextlib import contextmanager
from typing import Iterable


@contextmanager
def _open_output(path: str | None):
    if path:
        with open(path, "w", newline="", encoding="utf-8") as f:
            yield f
    else:
        yield sys.stdout


def _clean(row: dict) -> dict:
    p = row["probability"]
    return {**row, "probability": None if isinstance(p, float) and math.isnan(p) else p}


def write_predictions(rows: Iterable[dict], fmt: str, output: str | None, top_k: int) -> int:
    """Write rows (from `Predictor.predict_paths`) and return how many had errors.

    Example:
        >>> write_predictions(clf.predict_paths(paths), "csv", "preds.csv", top_k=3)  # doctest: +SKIP
        0
    """
    errors = 0
    with _open_output(output) as f:
        if fmt == "csv":
            header = ["path", "class", "probability"]
            for k in range(2, top_k + 1):
                header += [f"class_{k}", f"probability_{k}"]
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header + ["error"])
        elif fmt == "json":
            f.write("[")
        elif fmt == "table":
            f.write(f"{'class':<20} {'prob':>6}  path\n")
        for n, row in enumerate(rows):
            errors += bool(row["error"])
            if fmt == "csv":
                extra = []
                for k in range(1, top_k):
                    extra += row["top_k"][k] if k < len(row["top_k"]) else ["", ""]
                prob = "" if row["error"] else f"{row['probability']:.6f}"
                writer.writerow([row["path"], row["class"], prob] + [f"{v:.6f}" if isinstance(v, float) else v for v in extra] + [row["error"]])
            elif fmt == "json":
                f.write(("," if n else "") + "\n  " + json.dumps(_clean(row)))
            elif fmt == "jsonl":
                f.write(json.dumps(_clean(row)) + "\n")
            else:
                if row["error"]:
                    f.write(f"{'ERROR':<20} {'':>6}  {row['path']}  ({row['error']})\n")
                else:
                    others = "  ".join(f"{c} {p:.3f}" for c, p in row["top_k"][1:])
                    f.write(f"{row['class']:<20} {row['probability']:6.3f}  {row['path']}" + (f"  [{others}]" if others else "") + "\n")
            if n % 64 == 0:
                f.flush()  # let a reader of a pipe see early rows
        if fmt == "json":
            f.write("\n]\n")
    return errors
