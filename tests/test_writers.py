"""Prediction rows -> CSV and Parquet columns: one definition (`writers.table_columns`) for both outputs."""

import csv
import math

import pytest

from imgclf.inference.writers import table_columns, table_values, write_predictions

ROWS = [
    {"path": "a.jpg", "class": "cat", "probability": 0.9123456, "top_k": [["cat", 0.9123456], ["dog", 0.05]], "error": ""},
    {"path": 'b, "odd".png', "class": "unknown", "probability": 0.4, "top_k": [["dog", 0.4]], "error": ""},
    {"path": "c.gif", "class": "", "probability": float("nan"), "top_k": [], "error": "not an image (unknown or corrupt format)"},
]


@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_csv_has_the_shared_columns_and_values(tmp_path, top_k):
    out = tmp_path / "p.csv"
    assert write_predictions(ROWS, "csv", str(out), top_k) == 1
    with open(out, newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    assert lines[0] == table_columns(top_k)
    for row, line in zip(ROWS, lines[1:]):
        expected = ["" if v is None else f"{v:.6f}" if isinstance(v, float) else v for v in table_values(row, top_k)]
        assert line == expected


@pytest.mark.parametrize("top_k", [1, 3])
def test_parquet_has_the_csv_columns(tmp_path, top_k):
    pq = pytest.importorskip("pyarrow.parquet")
    from imgclf.inference.engines.output import write_output

    assert write_output(iter(ROWS), str(tmp_path / "p.parquet"), top_k) == 1
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.column_names == table_columns(top_k)
    for row, got in zip(ROWS, table.to_pylist()):
        want = dict(zip(table_columns(top_k), table_values(row, top_k)))
        assert got == want and not any(isinstance(v, float) and math.isnan(v) for v in got.values())
