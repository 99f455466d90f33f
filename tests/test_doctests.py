"""Every docstring example in src/imgclf runs here, module by module, like a user's session.

Each module's examples run in a workspace (the current folder) that holds what
the examples name: ``data/`` (three classes of tiny images), ``cat.jpg``,
``a.png``, ``b.png``, ``b.jpg``, ``my_cnn.yaml``, ``shards/`` (data/ packed) and, for modules whose examples name it,
``runs/leaves``: a small model trained and evaluated once per session, and for
modules whose examples name ``runs/leaves/exports/``, its TFLite, ONNX and
SavedModel exports (made once per session). So an
example reads ``scan_folder("data/")`` and still runs. ``# doctest: +SKIP``
is kept only where a real run cannot happen here (the network, a GPU, a
cluster or Ray, a server that keeps running, a long training) or where the
example is one step inside training (a prepared Trainer or a built backbone;
the test named on the line runs it), with the reason on the line.
"""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil
import shutil

import numpy as np
import pytest
from PIL import Image

import imgclf
from imgclf.data.shards.pack import pack

MODULES = sorted(m.name for m in pkgutil.walk_packages(imgclf.__path__, "imgclf.") if not m.name.endswith("__main__"))
CLASSES = ("cat", "dog", "bird")
MY_CNN = """\
name: my_cnn
input_size: 64
min_size: 16
color_modes: [rgb, grayscale]
layers:
  - Conv2D: {filters: 8, kernel_size: 3, padding: same}
  - ReLU
  - MaxPooling2D: {pool_size: 2}
"""


def _picture(kind: int, rng: np.random.Generator, size: int = 24) -> np.ndarray:
    """A learnable RGB picture: a disc, a square or stripes on noise, one shape per class."""
    img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    c, r = size // 2 + int(rng.integers(-2, 3)), size // 4
    mask = [(yy - c) ** 2 + (xx - c) ** 2 <= r * r, (abs(yy - c) <= r) & (abs(xx - c) <= r), (yy // 3) % 2 == 0][kind]
    img[mask] = rng.integers(160, 256, 3)
    return img


def build_workspace(root):
    """Write what the examples name into `root`; return it."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(CLASSES):
        (root / "data" / name).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(_picture(k, rng)).save(root / "data" / name / f"{i:02d}.png")
    Image.fromarray(_picture(0, rng, 48)).save(root / "cat.jpg", quality=95)
    Image.fromarray(_picture(1, rng)).save(root / "a.png")
    Image.fromarray(_picture(2, rng)).save(root / "b.png")
    Image.fromarray(_picture(1, rng)).save(root / "b.jpg", quality=95)
    (root / "my_cnn.yaml").write_text(MY_CNN)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        pack("data/", "shards/", verbose=False)
    finally:
        os.chdir(cwd)
    return root


def train_leaves(root):
    """runs/leaves in `root`: small_cnn trained for 2 epochs on data/ and evaluated (no plots: plot_run draws them)."""
    cwd = os.getcwd()
    os.chdir(root)
    try:
        run = imgclf.train("data/", out="runs/leaves", epochs=2, batch_size=8, img_size=16, verbose=0,
                           val_fraction=0.25, test_fraction=0.25)
        imgclf.evaluate(run, verbose=False, explain=False, plots=False)
    finally:
        os.chdir(cwd)
    return root


def export_leaves(root):
    """runs/leaves/exports/ in `root`: model.tflite, model.onnx and savedmodel/, as `imgclf export` writes them."""
    from imgclf.export.exporter import export

    for fmt in ("tflite", "onnx", "savedmodel"):
        export(root / "runs" / "leaves", fmt)
    return root


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("doctest"))


@pytest.fixture(scope="session")
def trained_workspace(workspace):
    return train_leaves(workspace)


@pytest.fixture(scope="session")
def exported_workspace(trained_workspace, tmp_path_factory):
    """A copy of the trained workspace whose run has its exports (the others' runs/leaves stays as trained)."""
    root = tmp_path_factory.mktemp("doctest-exported") / "ws"
    shutil.copytree(trained_workspace, root)
    return export_leaves(root)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, request, monkeypatch, tmp_path):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name) if t.examples]
    if not tests:
        pytest.skip("no examples")
    runnable = [e for t in tests for e in t.examples if not e.options.get(doctest.SKIP)]
    if not runnable:
        pytest.skip("every example needs what a test cannot have (see the reasons on the lines)")
    sources = " ".join(e.source for e in runnable)
    needs = "exported_workspace" if "runs/leaves/exports/" in sources else \
        "trained_workspace" if "runs/leaves" in sources else "workspace"
    # a copy per module: examples write files (split.csv, quarantine/, ...) that must not meet another module's
    shutil.copytree(request.getfixturevalue(needs), tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    runner, failures = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS), []
    for test in tests:
        test.globs.update({"np": np, "imgclf": imgclf})
        runner.run(test, out=lambda text: failures.append(text))
    assert runner.failures == 0, "\n".join(failures)
