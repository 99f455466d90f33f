"""One output file for a batch-inference job, its format chosen by the extension.

JSON Lines, JSON and CSV are written by `imgclf predict`'s own writer, so the
fields and columns are the same; Parquet has the CSV's columns (one
definition: `writers.table_columns`) with real types (probabilities as
float64, null on error rows). The ``unknown_score`` and ``prediction_set``
columns appear as in `imgclf predict`'s output: when the rows carry them
(rejection on; ``--coverage`` given). The file is written under a temporary name
and renamed at the end: a job that fails halfway leaves no half-written
file behind.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from imgclf.core.errors import UserError
from imgclf.inference.writers import table_columns, table_values, write_predictions

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def output_format(output: str | None) -> str:
    """The format for an --output path, from its extension.

    Example:
        >>> output_format("preds.parquet")
        'parquet'
    """
    if not output:
        raise UserError("An engine job writes a file: pass --output PREDICTIONS.jsonl (or .parquet, .csv).")
    fmt = FORMATS.get(Path(output).suffix.lower())
    if fmt is None:
        raise UserError(f"Cannot tell the output format of {output!r} from its extension. Expected one of "
                        f"{', '.join(sorted(FORMATS))}, for example --output predictions.parquet.")
    return fmt


EXTRA_COLUMNS = ("unknown_score", "prediction_set")  # in this order, as `imgclf predict` writes them


def extra_columns(rows: Iterable[dict]) -> tuple[tuple, Iterator[dict]]:
    """The extra columns the rows carry (from the first row without error) and the rows, none lost.

    An engine's driver does not load the model, so it learns from the rows
    what `imgclf predict` knows from its `Predictor` (every answered row of a
    job has the same keys).

    Example:
        >>> rows = [{"error": "empty file"}, {"error": "", "unknown_score": 3.0}]
        >>> extra, again = extra_columns(rows)
        >>> extra, len(list(again))
        (('unknown_score',), 2)
    """
    it, seen = iter(rows), []
    for row in it:
        seen.append(row)
        if not row["error"]:
            return tuple(c for c in EXTRA_COLUMNS if c in row), itertools.chain(seen, it)
    return (), iter(seen)


def _write_parquet(rows: Iterable[dict], path: str, top_k: int, extra: tuple = (), chunk: int = 4096) -> int:
    cols = table_columns(top_k, extra)
    schema = pa.schema([(c, pa.float64() if c.startswith("probability") or c == "unknown_score" else pa.string())
                        for c in cols])
    errors = 0
    with pq.ParquetWriter(path, schema) as writer:
        buffer: list[list] = [[] for _ in cols]

        def flush():
            writer.write_table(pa.table(dict(zip(cols, buffer)), schema=schema))
            for v in buffer:
                v.clear()

        for row in rows:
            errors += bool(row["error"])
            for column, value in zip(buffer, table_values(row, top_k, extra)):
                column.append(value)
            if len(buffer[0]) >= chunk:
                flush()
        if buffer[0]:
            flush()
    return errors


def write_output(rows: Iterable[dict], output: str, top_k: int) -> int:
    """Write prediction rows to `output` (format from its extension), atomically; return the number of error rows.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "preds.parquet")
        >>> write_output([{"path": "a.jpg", "class": "cat", "probability": 0.9, "top_k": [["cat", 0.9]], "error": ""}],
        ...              path, top_k=3)
        0
        >>> pq.read_table(path).column_names
        ['path', 'class', 'probability', 'class_2', 'probability_2', 'class_3', 'probability_3', 'error']
        >>> _ = write_output([{"path": "b.jpg", "class": "unknown", "probability": 0.6, "top_k": [["cat", 0.6]],
        ...                    "error": "", "unknown_score": 41.5, "prediction_set": ["cat", "dog"]}], path, top_k=1)
        >>> pq.read_table(path).to_pylist()[0]["prediction_set"], pq.read_table(path).column_names[3:]
        ('cat|dog', ['unknown_score', 'prediction_set', 'error'])
    """

    fmt = output_format(output)
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise UserError(f"The folder of --output {output!r} does not exist: create {folder!r} first.")
    partial = os.path.join(folder, f".{os.path.basename(output)}.partial")
    try:
        extra, rows = extra_columns(rows)
        if fmt == "parquet":
            errors = _write_parquet(rows, partial, top_k, extra)
        else:
            errors = write_predictions(rows, fmt, partial, top_k, extra)
        os.replace(partial, output)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return errors
