"""Every docstring example in src/imgclf runs here, module by module, like a user's session.

Each module's examples run in a workspace (the current folder) that holds what
the examples name: ``data/`` (three classes of tiny images), ``cat.jpg``,
``a.png``, ``b.png``, ``b.jpg``, ``my_cnn.yaml``, ``shards/`` (data/ packed) and, for modules whose examples name it,
``runs/leaves``: a small model trained and evaluated once per session, and for
modules whose examples name ``runs/leaves/exports/``, its TFLite, ONNX and
SavedModel exports (made once per session). So an
example reads ``scan_folder("data/")`` and still runs; an example that needs a
model, a prepared Trainer or a training builds a tiny one itself (small_cnn,
16 px, one epoch), as a user would. ``# doctest: +SKIP`` is allowed only
where a run cannot happen here at all: the network, a GPU, a cluster of
several machines, or a server that runs until stopped; the reason is written
on the line, before the directive, and `test_every_skip_says_why_it_cannot_run_here`
holds that bar.
"""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import imgclf
from imgclf.data.shards.pack import pack

SRC = Path(imgclf.__file__).parent
# What may keep an example from running, said in its comment: nothing else is out of this test's reach.
SKIP_REASONS = re.compile(r"network|download|internet|\bGPUs?\b|cluster|several machines|server", re.IGNORECASE)
# Examples other branches of issue 18 are rewriting; an entry goes once its +SKIPs are gone (the test says when).
PENDING = ()
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


# Modules whose examples train models, export them or start Ray: 15 to 120 s each on two busy cores
# (cli.demo is the whole `imgclf demo` journey, its only test). `-m "not slow"` leaves them out.
SLOW = {"imgclf.cli.demo", "imgclf.core.config", "imgclf.export.exporter", "imgclf.inference.engines",
        "imgclf.inference.engines.ray_engine", "imgclf.training.api", "imgclf.training.fit_loop",
        "imgclf.training.label_issues", "imgclf.training.tracked", "imgclf.training.tta_choice",
        "imgclf.tuning.refit", "imgclf.tuning.study"}


@pytest.mark.parametrize("name", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW else m for m in MODULES])
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
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # MLflow examples write a local store in the workspace
    # Examples read as in a fresh session: a module run earlier in this worker may have set a mixed precision policy
    # and left it (imgclf.train puts the caller's back, `callers_precision`; an example may set one itself).
    keras.mixed_precision.set_global_policy("float32")
    runner, failures = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS), []
    for test in tests:
        test.globs.update({"np": np, "imgclf": imgclf})
        runner.run(test, out=lambda text: failures.append(text))
    assert runner.failures == 0, "\n".join(failures)


def skip_reasons() -> list[tuple[str, str]]:
    """(file:line relative to src/imgclf, the comment before the directive) for every ``+SKIP`` in the sources."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            directive = re.search(r"#\s*doctest:[^\n]*\+SKIP", line)
            if directive:
                before = line[:directive.start()].rstrip()
                reason = before.rsplit("  # ", 1)[1] if "  # " in before else ""
                found.append((f"{path.relative_to(SRC).as_posix()}:{n}", reason))
    return found


def test_every_skip_says_why_it_cannot_run_here():
    """A skipped example names the network, a GPU, a cluster or a server beside its directive; nothing else excuses it."""
    unexcused = [(where, reason) for where, reason in skip_reasons() if not SKIP_REASONS.search(reason)]
    pending = [u for u in unexcused if u[0].startswith(PENDING)]
    bad = [u for u in unexcused if u not in pending]
    assert not bad, ("these examples are skipped without a reason of the allowed kinds (network, GPU, cluster, "
                     "server): make them run in the workspace, or write the reason before the directive, "
                     "e.g. `>>> fetch_weights([\"resnet50\"])  # downloads from the network  # doctest: +SKIP`:\n"
                     + "\n".join(f"  {w}: {r or '(no reason)'}" for w, r in bad))
    stale = [p for p in PENDING if not any(w.startswith(p) for w, _ in pending)]
    assert not stale, f"no unexcused +SKIP left under {stale}: remove them from PENDING in {__file__}"


def test_the_skip_check_reads_reasons():
    assert any(w.startswith("models/weights.py:") and r.startswith("downloads from the network") for w, r in skip_reasons())
    assert SKIP_REASONS.search("starts a server that runs until stopped")
    assert not SKIP_REASONS.search("a built model (tests/test_transfer.py)")
