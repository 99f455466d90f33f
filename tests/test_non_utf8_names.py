"""File names that are not UTF-8 (issue 19, item 9): valid POSIX names, handled end to end.

Python gives such a name with surrogates (``os.fsdecode(b"caf\\xe9.png")``).
CSV files hold the name's own bytes (read back with
``errors="surrogateescape"``), JSON escapes it (``"caf\\udce9.png"``): both
give back a path that `os.fsencode` turns into the original bytes. The model
is a tiny ONNX file, so nothing here trains.
"""

import csv
import json
import os
import subprocess
import sys

from PIL import Image
from tiny_model import write_tiny_onnx

from imgclf.cli import main
from imgclf.core.manifest import read_manifest

CAFE = b"caf\xe9.png"  # Latin-1 bytes: not valid UTF-8


def _write(path: bytes, colour) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(os.fsdecode(path), "PNG")


def _data(root) -> bytes:
    """red/ and blue/ with four images each, one of them (in red/) named caf\\xe9.png; and a class folder gr\\xfcn/."""
    root = os.fsencode(root)
    for label, colour in ((b"red", (255, 0, 0)), (b"blue", (0, 0, 255)), (b"gr\xfcn", (0, 255, 0))):
        for i in range(4):
            name = CAFE if (label == b"red" and i == 0) else b"%d.png" % i
            _write(root + b"/" + label + b"/" + name, tuple(min(255, c + 3 * i) for c in colour))  # distinct: no duplicates
    return root


def _read_csv(path):
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


def test_split_writes_and_reads_back_the_exact_names(tmp_path):
    data = _data(tmp_path / "data")
    assert main(["split", os.fsdecode(data), "--out", str(tmp_path / "split.csv"), "--val", "0.25"]) == 0
    assert b"red/" + CAFE in (tmp_path / "split.csv").read_bytes()  # the bytes themselves, not an escape
    rows = read_manifest(tmp_path / "split.csv")
    assert len(rows) == 12 and all(os.path.exists(os.fsencode(r["path"])) for r in rows)
    assert {os.fsencode(r["label"]) for r in rows} == {b"red", b"blue", b"gr\xfcn"}


def test_predict_csv_json_and_table_round_trip(tmp_path, capsys):
    data = _data(tmp_path / "data")
    model = str(write_tiny_onnx(tmp_path / "tiny.onnx"))
    assert main(["predict", model, os.fsdecode(data), "--format", "csv", "--output", str(tmp_path / "p.csv")]) == 0
    rows = _read_csv(tmp_path / "p.csv")
    cafe = [r for r in rows if os.fsencode(r["path"]).endswith(b"/red/" + CAFE)]
    assert len(rows) == 12 and len(cafe) == 1 and cafe[0]["class"] == "red" and not cafe[0]["error"]
    assert main(["predict", model, os.fsdecode(data), "--format", "json", "--output", str(tmp_path / "p.json")]) == 0
    rows = json.loads((tmp_path / "p.json").read_text(encoding="ascii"))  # escaped: plain ASCII, valid JSON
    assert sum(os.fsencode(r["path"]).endswith(b"/red/" + CAFE) for r in rows) == 1
    assert all(os.path.exists(os.fsencode(r["path"])) for r in rows)
    capsys.readouterr()
    assert main(["predict", model, os.fsdecode(data)]) == 0  # the table, for people: an escape
    assert "caf\\xe9.png" in capsys.readouterr().out


def test_sort_into_move_moves_and_logs_every_file(tmp_path):
    data = _data(tmp_path / "data")
    model = str(write_tiny_onnx(tmp_path / "tiny.onnx"))
    out = tmp_path / "sorted"
    assert main(["predict", model, os.fsdecode(data), "--sort-into", str(out), "--move",
                 "--format", "csv", "--output", str(tmp_path / "p.csv")]) == 0
    assert not [f for _, _, files in os.walk(data) for f in files]  # all moved
    log = [r for r in _read_csv(out / "sorted.csv") if r["action"] == "moved"]
    assert len(log) == 12 and all(os.path.exists(os.fsencode(r["destination"])) for r in log)
    assert os.path.exists(os.fsencode(out) + b"/red/" + CAFE)


def test_strict_utf8_stdout_does_not_crash(tmp_path):
    """A UTF-8 locale's stdout refuses surrogates; PYTHONIOENCODING=utf-8:strict makes that so here."""
    data = _data(tmp_path / "data")
    model = str(write_tiny_onnx(tmp_path / "tiny.onnx"))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    proc = subprocess.run([sys.executable, "-m", "imgclf", "predict", model, os.fsdecode(data), "--format", "csv"],
                          capture_output=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"/red/" + CAFE + b",red," in proc.stdout


def test_figures_draw_non_utf8_class_and_file_names(tmp_path):
    """`imgclf evaluate` draws class names (folder names) and file names; the font renderer refuses surrogates."""
    import numpy as np

    from imgclf.evaluation.figures.curves import plot_confusion_matrix
    from imgclf.evaluation.figures.grids import plot_top_losses

    classes = ["red", os.fsdecode(b"gr\xfcn")]
    assert plot_confusion_matrix(np.eye(2, dtype=int), classes, tmp_path / "cm.png").stat().st_size > 0
    item = {"path": os.fsdecode(b"/d/red/" + CAFE), "true": classes[1], "predicted": "red", "probability": 0.9, "loss": 2.3}
    assert plot_top_losses(np.zeros((1, 8, 8, 3), np.uint8), [item], tmp_path / "top.png").stat().st_size > 0
