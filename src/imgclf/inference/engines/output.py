"""One output file for a batch-inference job, its format chosen by the extension.

JSON Lines, JSON and CSV are written by `imgclf predict`'s own writer, so the
fields and columns are the same; Parquet has the CSV's columns (one
definition: `writers.table_columns`) with real types (probabilities as
float64, null on error rows). The file is written under a temporary name
and renamed at the end: a job that fails halfway leaves no half-written
file behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

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


def _write_parquet(rows: Iterable[dict], path: str, top_k: int, chunk: int = 4096) -> int:
    cols = table_columns(top_k)
    schema = pa.schema([(c, pa.float64() if c.startswith("probability") else pa.string()) for c in cols])
    errors = 0
    with pq.ParquetWriter(path, schema) as writer:
        buffer: list[list] = [[] for _ in cols]

        def flush():
            writer.write_table(pa.table(dict(zip(cols, buffer)), schema=schema))
            for v in buffer:
                v.clear()

        for row in rows:
            errors += bool(row["error"])
            for column, value in zip(buffer, table_values(row, top_k)):
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
    """

    fmt = output_format(output)
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise UserError(f"The folder of --output {output!r} does not exist: create {folder!r} first.")
    partial = os.path.join(folder, f".{os.path.basename(output)}.partial")
    try:
        if fmt == "parquet":
            errors = _write_parquet(rows, partial, top_k)
        else:
            errors = write_predictions(rows, fmt, partial, top_k)
        os.replace(partial, output)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return errors
