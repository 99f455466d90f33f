"""Distributed training: strategy choice (fake device lists), and real two-worker jobs on loopback.

The multi-worker tests start two `imgclf` processes with TF_CONFIG pointing at
free 127.0.0.1 ports, exactly as a cluster launcher would, and check what a
user of a cluster would: both workers end with the same weights, the result
is that of one process with the same global batch, only the chief writes the
run, and a job that lost a worker continues from its backup when restarted.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import imgclf
from imgclf.core.config import make_config
from imgclf.core.errors import UserError
from imgclf.core.hardware import parse_devices
from imgclf.training.distributed.planning import Plan, loopback_tf_configs, parse_tf_config, plan_strategy, role
from imgclf.training.distributed.strategy import Distribution
from tests.conftest import make_image_folder

ROOT = Path(__file__).resolve().parent.parent
TWO_GPUS = ["/gpu:0", "/gpu:1"]


def tf_config(n: int, index: int, ports: list[int]) -> dict:
    return {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports[:n]]}, "task": {"type": "worker", "index": index}}


# ---------------------------------------------------------------- choosing the strategy


def test_several_gpus_give_mirrored_strategy_with_scaled_batch_and_lr():
    plan = plan_strategy("auto", "none", gpus=TWO_GPUS)
    assert plan.kind == "mirrored" and plan.devices == TWO_GPUS and plan.replicas == 2
    assert plan.scaling(64, 0.002) == (128, 2.0)
    assert plan.scaling(64, 0.002, scale_lr=False) == (128, 1.0)
    line = plan.describe(64, 0.002)
    assert "MirroredStrategy" in line and "global batch 128" in line and "lr 0.002 x 2 = 0.004" in line


def test_devices_flag_picks_gpus_or_the_cpu():
    assert plan_strategy("0,1", "none", gpus=TWO_GPUS + ["/gpu:2"]).devices == TWO_GPUS
    one = plan_strategy("1", "none", gpus=TWO_GPUS)
    assert one.kind == "single" and one.devices == ["/gpu:1"] and not one.on_cpu and one.replicas == 1
    cpu = plan_strategy("cpu", "none", gpus=TWO_GPUS)
    assert cpu.kind == "single" and cpu.on_cpu and cpu.devices == [] and cpu.scaling(64, 0.002) == (64, 1.0)
    assert plan_strategy("auto", "none", gpus=["/gpu:0"]).kind == "single"
    nothing = plan_strategy("auto", "none", gpus=[])
    assert nothing.kind == "single" and nothing.on_cpu and "no GPU" in nothing.describe(64, 0.002)
    with pytest.raises(UserError, match="GPU 2.*2 GPU"):
        plan_strategy("0,2", "none", gpus=TWO_GPUS)
    for bad in ("gpu0", "0,0", "-1", ""):
        if bad:
            with pytest.raises(UserError, match="Invalid devices"):
                parse_devices(bad)
    assert parse_devices("") == "auto"


def test_loopback_tf_configs_give_each_worker_its_role_on_distinct_free_ports():
    configs = loopback_tf_configs(3)
    hosts = configs[0]["cluster"]["worker"]
    assert len(set(hosts)) == 3 and all(h.startswith("127.0.0.1:") for h in hosts)
    assert [role(parse_tf_config(json.dumps(c)))[:2] for c in configs] == [(3, "worker 0"), (3, "worker 1"), (3, "worker 2")]


def test_multi_worker_plan_reads_roles_from_tf_config():
    cfg = parse_tf_config(json.dumps(tf_config(3, 2, [1, 2, 3])))
    plan = plan_strategy("auto", "multi-worker", gpus=TWO_GPUS, tf_config=cfg)
    assert plan.kind == "multi-worker" and plan.workers == 3 and plan.replicas == 6 and not plan.is_chief
    assert plan.scaling(32, 0.001) == (192, 6.0)
    assert "worker 2" in plan.describe(32, 0.001) and "chief" not in plan.describe(32, 0.001)
    chief = {"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief", "index": 0}}
    assert role(parse_tf_config(json.dumps(chief))) == (2, "chief 0", True)
    worker0 = {**chief, "task": {"type": "worker", "index": 0}}
    assert role(worker0) == (2, "worker 0", False)  # with a chief task, worker 0 is an ordinary worker
    assert plan_strategy("cpu", "multi-worker", gpus=TWO_GPUS, tf_config=cfg).replicas == 3


def test_bad_tf_config_is_a_clear_error():
    with pytest.raises(UserError, match="needs the TF_CONFIG"):
        plan_strategy("auto", "multi-worker", gpus=[], tf_config=None)
    with pytest.raises(UserError, match="not valid JSON"):
        parse_tf_config("{cluster: ")
    with pytest.raises(UserError, match="ps tasks"):
        parse_tf_config(json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "worker", "index": 0}}))
    with pytest.raises(UserError, match="not in its cluster"):
        parse_tf_config(json.dumps(tf_config(2, 5, [1, 2])))
    assert parse_tf_config("") is None


def test_settings_that_would_split_workers_are_refused():
    plan = Plan("multi-worker", workers=2)
    for settings, match in (({"lr": "auto"}, "lr auto"), ({"time_budget": 1.0}, "time-budget"),
                            ({"monitor": "val_macro_f1"}, "monitor"), ({"resume": True}, "resume")):
        with pytest.raises(UserError, match=match):
            Distribution(plan, make_config({"distributed": "multi-worker", **settings})).check_settings()
    with pytest.raises(UserError, match="Invalid distributed.*multi-worker"):
        make_config({"distributed": "multiworker"})
    with pytest.raises(UserError, match="Invalid devices"):
        make_config({"devices": "gpu0"})


def test_cli_flags_land_in_the_config():
    from imgclf.cli.parser import build_parser as _parser

    args = _parser().parse_args(["train", "data/", "--devices", "cpu", "--distributed", "multi-worker",
                                 "--backup-dir", "/shared/b", "--no-scale-lr"])
    assert (args.devices, args.distributed, args.backup_dir, args.scale_lr) == ("cpu", "multi-worker", "/shared/b", False)


def test_cpu_or_one_device_trains_under_the_default_strategy(image_folder, tmp_path, monkeypatch):
    import tensorflow as tf

    for devices in ("cpu", "auto"):  # no GPU here: auto means one device too
        dist = Distribution.from_config(make_config({"devices": devices}))
        assert dist.start() is tf.distribute.get_strategy() and dist.plan.replicas == 1
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="TF_CONFIG"):
        imgclf.train(image_folder, out=str(tmp_path / "r"), distributed="multi-worker", epochs=1, verbose=0)
    assert not (tmp_path / "r").exists()
    run = imgclf.train(image_folder, out=str(tmp_path / "one"), devices="cpu", epochs=1, verbose=0, img_size=16)
    summary = json.loads(run.file("summary.json").read_text())
    assert summary["distribution"] == {"strategy": "single", "devices": ["CPU"], "workers": 1, "replicas": 1,
                                       "batch_per_replica": 64, "global_batch": 64, "lr_scale": 1.0}


# ---------------------------------------------------------------- two workers on loopback

EPOCHS = 5
PER_CLASS = 20  # 48 training images: three global batches of 16, so both runs see the same batches
SETTINGS = {"model": "small_cnn", "epochs": EPOCHS, "batch_size": 8, "lr": 0.004, "img_size": 16, "seed": 0,
            "val_fraction": 0.2, "test_fraction": 0.0, "precision": "float32", "verbose": 1}
JOB_TIMEOUT = 420  # seconds (a job takes ~30 s on two idle cores): a hung collective fails the test, not CI


def start_job(tmp: Path, name: str, argv_for, n: int = 2) -> list[tuple[subprocess.Popen, Path, Path]]:
    """Start n workers of one job; each gets its own TMPDIR (to see what it leaves behind) and log file."""
    tf_configs = loopback_tf_configs(n)
    procs = []
    for i in range(n):
        tmpdir = tmp / f"{name}-tmp{i}"
        tmpdir.mkdir()
        log = tmp / f"{name}-worker{i}.log"
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_configs[i]), "TMPDIR": str(tmpdir),
               "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        with open(log, "w") as out:
            procs.append((subprocess.Popen(argv_for(i), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT), log, tmpdir))
    return procs


def wait_all(procs, deadline: float) -> list[int]:
    codes = []
    for proc, log, _ in procs:
        try:
            codes.append(proc.wait(timeout=max(deadline - time.monotonic(), 1)))
        except subprocess.TimeoutExpired:
            kill_all(procs)
            pytest.fail(f"worker timed out; its log:\n{log.read_text()[-3000:]}")
    return codes


def finish_ok(procs) -> list[str]:
    """Wait for every worker of a job, assert that all exited 0, and return their logs."""
    try:
        codes = wait_all(procs, time.monotonic() + JOB_TIMEOUT)
    finally:
        kill_all(procs)
    logs = [log.read_text() for _, log, _ in procs]
    assert codes == [0] * len(procs), "\n\n".join(log[-3000:] for log in logs)
    return logs


def kill_all(procs) -> None:
    for proc, _, _ in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def worker_argv(settings_path: Path, weights: Path, kill_after: int | None = None):
    def argv(i):
        extra = [str(kill_after)] if kill_after else []
        return [sys.executable, str(ROOT / "tests" / "dist_worker.py"), str(settings_path), str(weights / f"w{i}.npz"), *extra]
    return argv


def history(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """One clean two-worker job, run once for the module's checks."""
    tmp = tmp_path_factory.mktemp("mw")
    data = make_image_folder(tmp / "data", per_class=PER_CLASS, size=16)
    settings = {**SETTINGS, "data": data, "out": str(tmp / "runs" / "mw"), "distributed": "multi-worker"}
    (tmp / "settings.json").write_text(json.dumps(settings))
    procs = start_job(tmp, "clean", worker_argv(tmp / "settings.json", tmp))
    logs = finish_ok(procs)
    return {"tmp": tmp, "data": data, "run": Path(settings["out"]), "logs": logs, "tmpdirs": [t for _, _, t in procs]}


@pytest.mark.slow
def test_two_workers_end_with_identical_weights(job):
    a, b = np.load(job["tmp"] / "w0.npz"), np.load(job["tmp"] / "w1.npz")
    assert len(a.files) == len(b.files) > 4
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert "MultiWorkerMirroredStrategy" in job["logs"][0] and "2 workers, this is worker 0 (chief" in job["logs"][0]
    assert "global batch 16, lr 0.004 x 2 = 0.008" in job["logs"][1]


@pytest.mark.slow
def test_only_the_chief_writes_the_run(job):
    run = job["run"]
    assert sorted(p.name for p in run.parent.iterdir()) == ["mw"]  # no -2 folder from a second writer
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "classes.json", "preprocess.json", "manifest.csv", "model.keras", "history.csv",
            "summary.json", "checkpoints", "logs"} <= names
    assert "backup" not in names, "the backup is removed once the job completes"
    assert not [p for p in run.rglob("*") if ".tmp" in p.name], "no half-written files"
    assert [int(h["epoch"]) for h in history(run)] == list(range(1, EPOCHS + 1))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["distribution"]["workers"] == 2 and summary["distribution"]["global_batch"] == 16
    for tmpdir in job["tmpdirs"]:  # the worker's scratch run folder is gone
        assert not [p for p in tmpdir.iterdir() if p.name.startswith("imgclf-")], list(tmpdir.iterdir())
    assert "Run bundle: " + str(run) in job["logs"][1]  # the worker points at the chief's run


@pytest.mark.slow
def test_two_workers_match_one_process_with_the_same_global_batch(job, tmp_path):
    """Two replicas of batch 8 at lr 0.004 x 2 compute what one process does at batch 16, lr 0.008: the same
    starting weights, the same global batches, averaged gradients. Only BatchNorm differs (statistics of 8
    images per replica instead of 16), so the runs agree closely at first and stay in the same range."""
    single = imgclf.train(job["data"], out=str(tmp_path / "single"),
                          **{**SETTINGS, "batch_size": 16, "lr": 0.008, "verbose": 0})
    one, two = history(single.path), history(job["run"])
    assert [h["lr"] for h in one] == [h["lr"] for h in two]  # the same schedule over the same number of steps
    assert abs(float(one[0]["loss"]) - float(two[0]["loss"])) < 0.05, (one[0], two[0])
    for run in (one, two):
        assert float(run[-1]["loss"]) < 0.5 and float(run[-1]["val_accuracy"]) >= 0.66, run[-1]
    assert abs(float(one[-1]["val_accuracy"]) - float(two[-1]["val_accuracy"])) <= 0.34, (one[-1], two[-1])


@pytest.mark.slow
def test_a_job_that_lost_a_worker_resumes_from_its_backup(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=PER_CLASS, size=16)
    out = tmp_path / "runs" / "mw"
    settings = {**SETTINGS, "epochs": 3, "data": data, "out": str(out), "distributed": "multi-worker"}
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    procs = start_job(tmp_path, "first", worker_argv(tmp_path / "settings.json", tmp_path, kill_after=1))
    try:
        deadline = time.monotonic() + JOB_TIMEOUT
        worker = procs[1][0]
        assert worker.wait(timeout=JOB_TIMEOUT) == 17, procs[1][1].read_text()[-3000:]
        state = out / "backup" / "imgclf_state.json"
        while time.monotonic() < deadline and not (state.exists() and json.loads(state.read_text())["epoch"] >= 1):
            time.sleep(0.2)
        # The chief cannot finish the next all-reduce without its peer: a launcher ends the job here
        # (srun --kill-on-bad-exit, a TFJob's restart), and so does the test.
    finally:
        kill_all(procs)
    assert json.loads(state.read_text())["epoch"] == 1
    assert [int(h["epoch"]) for h in history(out)] == [1]

    # The launcher restarts the job: the same command on every worker (here the real CLI).
    cli = [sys.executable, "-m", "imgclf", "train", data, "--out", str(out), "--distributed", "multi-worker",
           "--epochs", "3", "--batch-size", "8", "--lr", "0.004", "--img-size", "16", "--val-fraction", "0.2",
           "--test-fraction", "0", "--precision", "float32"]
    procs = start_job(tmp_path, "again", lambda i: cli)
    logs = finish_ok(procs)
    for log in logs:
        assert "Continuing the multi-worker job from its backup" in log and "epoch 1 of 3 finished" in log
        assert "epochs 2-3" in log and "Epoch 1/" not in log  # epoch 1 was not trained again
    assert [int(h["epoch"]) for h in history(out)] == [1, 2, 3]
    assert not (out / "backup").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["mw"]


@pytest.mark.slow
def test_mirrored_strategy_trains_through_imgclf_on_two_logical_cpus(tmp_path):
    """The several-GPU path (MirroredStrategy, scaling, BatchNorm averaging, the bundle) with two logical CPUs as the devices."""
    data = make_image_folder(tmp_path / "data", per_class=PER_CLASS, size=16)
    settings = {**SETTINGS, "epochs": 3, "data": data, "out": str(tmp_path / "runs" / "m")}
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "mirrored_cpu_run.py"), str(tmp_path / "settings.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=JOB_TIMEOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    result = json.loads(proc.stdout.split("RESULT ")[-1])
    assert result["replicas"] == 2 and result["bn_copies_equal"], result
    assert "MirroredStrategy on /cpu:0, /cpu:1: 2 replicas, batch 8 per replica = global batch 16, lr 0.004 x 2 = 0.008" in out
    run = Path(result["run"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["distribution"]["strategy"] == "mirrored" and summary["distribution"]["global_batch"] == 16
    assert [int(h["epoch"]) for h in history(run)] == [1, 2, 3] and float(history(run)[-1]["loss"]) < 0.6


@pytest.mark.parametrize("version, ok", [("3.15.0", True), ("3.14.1", False), ("3.16.0", False), ("3.9.2", False),
                                         ("4.0.0.dev0", False), ("nightly", False)])
def test_multi_worker_patches_refuse_an_unverified_keras(monkeypatch, version, ok):
    import keras

    from imgclf.training.distributed.multiworker import check_keras_version

    monkeypatch.setattr(keras, "__version__", version)
    if ok:
        check_keras_version()
        return
    with pytest.raises(UserError) as caught:
        check_keras_version()
    message = str(caught.value)
    # Keras style: what happened, what was expected, what was received, how to fix it.
    assert "patches Keras internals" in message and ">=3.15,<3.16" in message
    assert f"received Keras {version}" in message and "pip install" in message and "--distributed none" in message
