"""Writing prediction rows as a table, CSV, JSON or JSON Lines, streaming as they come.

File names that are not valid UTF-8 (legal on Linux and other POSIX systems; Python gives
them with surrogates, as `os.fsdecode` does) round-trip: CSV writes the
name's own bytes (read it back with ``errors="surrogateescape"``), JSON
escapes them (``"caf\udce9.png"``, which `json.loads` and `os.fsencode` turn
back into the bytes), and the table shows them as ``caf\xe9.png``.
"""

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
        with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
            yield f
        return
    out = sys.stdout
    errors = getattr(out, "errors", None)
    if errors == "strict" and hasattr(out, "reconfigure"):
        out.reconfigure(errors="surrogateescape")  # a UTF-8 locale's stdout would refuse a non-UTF-8 file name
        try:
            yield out
        finally:
            out.reconfigure(errors=errors)
    else:
        yield out


def shown(path: str) -> str:
    r"""A path for people to read: bytes of a name that is not UTF-8 appear as ``\xe9`` escapes.

    Example:
        >>> import os
        >>> print(shown(os.fsdecode(b"caf\xe9.png")), shown("café.png"))
        caf\xe9.png café.png
    """
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _finite(p):
    return None if isinstance(p, float) and not math.isfinite(p) else p


def _clean(row: dict) -> dict:
    # JSON has no NaN: a model that outputs NaN (e.g. trained into NaN weights) gives null.
    clean = {**row, "probability": _finite(row["probability"])}
    if row.get("top_k"):
        clean["top_k"] = [[c, _finite(p)] for c, p in row["top_k"]]
    return clean


def table_columns(top_k: int, extra: tuple = ()) -> list[str]:
    """The columns of the CSV and Parquet outputs: one definition for `imgclf predict` and the engines.

    `extra`: ``unknown_score`` and/or ``prediction_set`` (rejection on, ``--coverage`` given).

    Example:
        >>> table_columns(2)
        ['path', 'class', 'probability', 'class_2', 'probability_2', 'error']
        >>> table_columns(1, ("unknown_score", "prediction_set"))
        ['path', 'class', 'probability', 'unknown_score', 'prediction_set', 'error']
    """
    cols = ["path", "class", "probability"]
    for k in range(2, top_k + 1):
        cols += [f"class_{k}", f"probability_{k}"]
    return cols + list(extra) + ["error"]


def table_values(row: dict, top_k: int, extra: tuple = ()) -> list:
    """One prediction row as the values of `table_columns`, typed: a missing probability is None, a missing class ''.

    An error row has no probability; a row with fewer than `top_k` guesses
    leaves the extra columns empty.

    Example:
        >>> table_values({"path": "a.jpg", "class": "cat", "probability": 0.9,
        ...               "top_k": [["cat", 0.9], ["dog", 0.1]], "error": ""}, top_k=3)
        ['a.jpg', 'cat', 0.9, 'dog', 0.1, '', None, '']
        >>> table_values({"path": "a.jpg", "class": "cat", "probability": 0.9, "top_k": [["cat", 0.9]], "error": "",
        ...               "unknown_score": 2.5, "prediction_set": ["cat", "dog"]}, 1, ("unknown_score", "prediction_set"))
        ['a.jpg', 'cat', 0.9, 2.5, 'cat|dog', '']
    """
    values = [row["path"], row["class"], None if row["error"] else row["probability"]]
    for k in range(1, top_k):
        values += row["top_k"][k] if k < len(row["top_k"]) else ["", None]
    for name in extra:  # a prediction set as one cell: class names joined by '|'
        value = row.get(name)
        values.append("|".join(value) if isinstance(value, list) else value)
    return values + [row["error"]]


def _csv_cell(value):
    # Probabilities with six decimals, and an empty cell where there is none.
    if value is None:
        return ""
    return f"{value:.6f}" if isinstance(value, float) else value


def write_predictions(rows: Iterable[dict], fmt: str, output: str | None, top_k: int, extra: tuple = (),
                      classes: list[str] | None = None) -> int:
    """Write rows (from `Predictor.predict_paths`) as 'table', 'csv', 'json' or 'jsonl'; return how many had errors.

    `output` None writes to stdout; `extra` names the CSV's extra columns (see `table_columns`). With `classes`
    (``--probabilities``) the CSV gets one column ``p_<class>`` per class, from each row's
    "probabilities" (JSON rows carry that dict as it is).

    Example:
        >>> rows = [{"path": "a.jpg", "class": "cat", "probability": 0.9, "top_k": [["cat", 0.9], ["dog", 0.1]], "error": ""},
        ...         {"path": "b.gif", "class": "", "probability": float("nan"), "top_k": [], "error": "empty file (0 bytes)"}]
        >>> write_predictions(rows, "csv", None, top_k=2)
        path,class,probability,class_2,probability_2,error
        a.jpg,cat,0.900000,dog,0.100000,
        b.gif,,,,,empty file (0 bytes)
        1
        >>> write_predictions(rows[:1], "table", None, top_k=2)
        class                  prob  path  (top-2)
        cat                   0.900  a.jpg  (top-2: dog 0.100)
        0
        >>> write_predictions([dict(rows[0], probabilities={"cat": 0.9, "dog": 0.1})], "csv", None, 1, classes=["cat", "dog"])
        path,class,probability,error,p_cat,p_dog
        a.jpg,cat,0.900000,,0.900000,0.100000
        0
    """
    errors = 0
    with _open_output(output) as f:
        if fmt == "csv":
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(table_columns(top_k, extra) + [f"p_{c}" for c in classes or ()])
        elif fmt == "json":
            f.write("[")
        elif fmt == "table":
            f.write(f"{'class':<20} {'prob':>6}  path" + (f"  (top-2{f'..top-{top_k}' if top_k > 2 else ''})" if top_k > 1 else "") + "\n")
        for n, row in enumerate(rows):
            errors += bool(row["error"])
            if fmt == "csv":
                probs = row.get("probabilities") or {}
                writer.writerow([_csv_cell(v) for v in table_values(row, top_k, extra) + [probs.get(c) for c in classes or ()]])
            elif fmt == "json":
                f.write(("," if n else "") + "\n  " + json.dumps(_clean(row)))
            elif fmt == "jsonl":
                f.write(json.dumps(_clean(row)) + "\n")
            else:
                if row["error"]:
                    f.write(f"{'ERROR':<20} {'':>6}  {shown(row['path'])}  ({row['error']})\n")
                else:
                    others = ", ".join(f"top-{k}: {shown(c)} {p:.3f}" for k, (c, p) in enumerate(row["top_k"][1:], 2))
                    f.write(f"{shown(row['class']):<20} {row['probability']:6.3f}  {shown(row['path'])}"
                            + (f"  ({others})" if others else "") + "\n")
            if n % 64 == 0:
                f.flush()  # let a reader of a pipe see early rows
        if fmt == "json":
            f.write("\n]\n")
    return errors
