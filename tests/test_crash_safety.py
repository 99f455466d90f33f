"""kill -9 at chosen moments (issue 19): nothing lost, every move logged, resume exact, no stale temporary trusted.

Each kill is a real SIGKILL of a child process at a named point
(``IMGCLF_TEST_KILL_AT``, see imgclf/core/killpoint.py); what it left is then
used by the next command, in this process.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import imgclf
from imgclf.core.errors import UserError
from imgclf.data.check.journal import JOURNAL_NAME, LEGACY_NAME, Journal
from imgclf.data.check.quarantine import restore
from imgclf.training.callbacks import read_state
from tests.conftest import make_image_folder

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
DEAD_PID = 4_000_000  # above Linux's pid_max: never a live process
TRAIN = {"model": "small_cnn", "img_size": 16, "batch_size": 8, "epochs": 2, "verbose": 0, "augment": "none",
         "val_fraction": 0.2, "test_fraction": 0.2}


def _killed(code: str, point: str, timeout: int = 120) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=timeout,
                         env={**ENV, "IMGCLF_TEST_KILL_AT": point})
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    return out


def _start_killed(code: str, point: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**ENV, "IMGCLF_TEST_KILL_AT": point})


def _wait_killed(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]


def _iterations(path: Path) -> int:
    import keras

    from imgclf.models import layers  # noqa: F401  (registers the Preprocess layer)

    model = keras.saving.load_model(path, compile=True)
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A run whose training was killed after epoch 1's checkpoint, before its state.json; evaluated once.

    Then an evaluation and an export of it are started, each to be killed at its point, in the
    background (TensorFlow takes seconds to import): ``killed_run.evaluating``, ``killed_run.exporting``.
    """
    root = tmp_path_factory.mktemp("crash")
    data = make_image_folder(root / "data", per_class=8, size=16)
    out = root / "runs" / "r"
    _killed(f"import imgclf; imgclf.train({data!r}, out={str(out)!r}, **{TRAIN!r})", "checkpoint.saved:1")
    first = imgclf.evaluate(str(out), plots=False, verbose=False)
    procs = {"first_evaluation": first.metrics["evaluation_id"],
             "evaluating": _start_killed(f"import imgclf; imgclf.evaluate({str(out)!r}, plots=False, verbose=False)",
                                         "evaluate.predictions"),
             "exporting": _start_killed("from imgclf.export.exporter import export; "
                                        f"export({str(out)!r}, format='keras', parity_images=8)", "export.written")}
    yield out, procs
    for p in (procs["evaluating"], procs["exporting"]):
        if p.poll() is None:
            p.kill()
            p.wait()


def test_train_killed_between_checkpoint_and_state_resumes_exactly(killed_run):
    run, _ = killed_run
    assert not (run / "checkpoints" / "state.json").exists()  # the kill came before epoch 1's state.json ...
    assert read_state(run)["epoch"] == 1  # ... but the checkpoint carries its own state
    per_epoch = _iterations(run / "checkpoints" / "last.keras")
    stale = run / "checkpoints" / f".last.tmp{DEAD_PID}.keras"
    stale.write_bytes(b"half a model from a killed save")
    imgclf.train(out=str(run), resume=True, verbose=0)
    assert _iterations(run / "checkpoints" / "last.keras") == 2 * per_epoch  # not 3: no epoch repeated
    assert [h["epoch"] for h in read_state(run)["history"]] == [1, 2]
    assert not stale.exists()


@pytest.mark.parametrize("change, name", [({"img_size": 24}, "img_size"), ({"model": "mobilenet_v2"}, "model")])
def test_a_refused_resume_leaves_the_run_resumable(killed_run, change, name):
    run, _ = killed_run
    config = (run / "config.yaml").read_bytes()
    with pytest.raises(UserError, match=f"Cannot resume .*{name}"):
        imgclf.train(out=str(run), resume=True, verbose=0, **change)
    assert (run / "config.yaml").read_bytes() == config


def test_evaluate_killed_between_its_files_is_not_mixed(killed_run):
    from imgclf.evaluation.figures.run_figures import load_predictions, plot_run
    from imgclf.evaluation.results import same_evaluation

    run, procs = killed_run
    _wait_killed(procs["evaluating"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["evaluation_id"] == procs["first_evaluation"]  # the old metrics beside new predictions
    with pytest.raises(UserError, match="different evaluations"):
        plot_run(run)
    again = imgclf.evaluate(str(run), plots=False, verbose=False)
    same_evaluation(json.loads((run / "metrics.json").read_text()), load_predictions(imgclf.Run(run)))
    assert again.metrics["evaluation_id"] != procs["first_evaluation"]


def test_export_killed_leaves_a_temporary_the_next_export_removes(killed_run):
    from imgclf.export.exporter import export

    run, procs = killed_run
    _wait_killed(procs["exporting"])
    exports = run / "exports"
    left = sorted(p.name for p in exports.iterdir())
    assert left and all(n.startswith(".model.tmp") for n in left)  # never renamed into place
    result = export(str(run), format="keras", parity_images=8)
    names = {p.name for p in exports.iterdir()}  # the run's confidence tables travel beside the export when it has them
    assert {"model.json", "model.keras"} <= names <= {"model.json", "model.keras", "model.confidence.npz"}
    assert result.path.name == "model.keras"


def _sha1s(*folders: Path) -> Counter:
    return Counter(hashlib.sha1(p.read_bytes()).hexdigest() for f in folders for p in f.rglob("*")
                   if p.is_file() and p.name not in (JOURNAL_NAME, LEGACY_NAME))


@pytest.mark.parametrize("point", ["quarantine.moved:4", "restore.moved:3"])
def test_check_quarantine_killed_loses_nothing(tmp_path, point):
    data = Path(make_image_folder(tmp_path / "data", per_class=4, size=16))
    for c in ("circle", "square"):
        for i in range(4):
            (data / c / f"bad_{i}.png").write_bytes(f"not an image {c} {i}".encode())
    before, qdir = _sha1s(data), tmp_path / "q"
    quarantine = ("from imgclf.cli import main; import sys; "
                  f"sys.exit(main(['check', {str(data)!r}, '--quarantine', {str(qdir)!r}, '--workers', '1']))")
    if point.startswith("restore"):
        subprocess.run([sys.executable, "-c", quarantine], check=False, env=ENV, capture_output=True, timeout=60)
        _killed(f"from imgclf.data.check.quarantine import restore; restore({str(qdir)!r})", point, timeout=60)
    else:
        _killed(quarantine, point, timeout=60)
    assert _sha1s(data, qdir) == before  # no file lost, none duplicated
    logged = {e["to"] for e in Journal.read(qdir).entries.values() if e["state"] != "restored"}
    in_quarantine = {p.relative_to(qdir).as_posix() for p in qdir.rglob("*.png")}
    assert in_quarantine and in_quarantine <= logged  # every file in quarantine is in the journal
    result = restore(qdir)
    assert not result["kept"] and _sha1s(data) == before and not list(qdir.rglob("*.png"))


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_check_leaves_no_worker_processes(tmp_path):
    code = ("import os, time, imgclf.data.parallel as p\n"
            "p.PROCESS_MIN_FILES = 1; p.CHUNK = 1\n"
            f"def f(x):\n    open(os.path.join({str(tmp_path)!r}, str(os.getpid())), 'w').close(); time.sleep(60); return x\n"
            "p.map_files(f, list(range(4)), workers=2, verbose=False)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], env=ENV)
    deadline = time.time() + 30
    while len(list(tmp_path.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.1)
    workers = [int(p.name) for p in tmp_path.iterdir()]
    assert len(workers) == 2
    parent.kill()
    parent.wait()
    deadline = time.time() + 5
    while any(_running(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if _running(w)]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, "worker processes outlived the killed parent"
