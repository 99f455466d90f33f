"""The notebook walkthrough (notebooks/quickstart.py, paired with quickstart.ipynb by jupytext) runs top to bottom.

It runs with IMGCLF_NOTEBOOK_QUICK=1 (25 training images per class, 2 epochs) in a
temporary folder, in a real Jupyter kernel (nbclient), so what a user runs is what
is tested: the digits exported, checked, trained on, evaluated, the pictures shown,
predictions, a TFLite export, and that export used in a process without TensorFlow.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "quickstart.py"
PAIRED = ROOT / "notebooks" / "quickstart.ipynb"


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def test_the_ipynb_is_the_py_without_outputs():
    """Both files are committed: quickstart.py is the source (readable diffs), the .ipynb its pair, never run."""
    jupytext = pytest.importorskip("jupytext")
    py, ipynb = jupytext.read(NOTEBOOK), jupytext.read(PAIRED)
    assert _cells(ipynb) == _cells(py), "out of step: run `jupytext --sync notebooks/quickstart.py`"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in ipynb.cells if c.cell_type == "code")


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("ai_edge_litert", reason="the notebook's last step runs the export with LiteRT")
    monkeypatch.setenv("IMGCLF_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    nb = jupytext.read(NOTEBOOK)
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    print(f"\nnotebook ran in {time.perf_counter() - start:.1f} s")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert not [o for o in outputs if o.output_type == "error"]
    assert "accuracy" in text and "TensorFlow imported: False" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs if o.output_type == "display_data") == 3
    assert (tmp_path / "runs" / "quickstart" / "report.html").is_file()
    assert (tmp_path / "runs" / "quickstart" / "exports" / "model.tflite").is_file()
