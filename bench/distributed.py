"""Issue 8 benchmark: training throughput of one process vs one and two MultiWorkerMirroredStrategy workers.

    nice -n 19 .venv/bin/python bench/distributed.py               # digits, 3 epochs, global batch 64, 3 repeats
    nice -n 19 .venv/bin/python bench/distributed.py --epochs 5 --batch 128 --repeats 5

Three jobs train small_cnn on the built-in digits (1,437 training PNGs before
the validation hold-out) with the same global batch, each through `imgclf train`:

* baseline: one process, default strategy (what every single-machine user runs);
* 1 worker:  `--distributed multi-worker` with a one-worker TF_CONFIG (the strategy's own cost);
* 2 workers: two processes on loopback ports, batch/2 per replica (the collective all-reduce's cost).

Throughput is images/s of whole epochs (validation included) from each run's
history.csv, median over the epochs after the first (which traces the graph).
On one machine the two workers share its cores, so no speed-up is expected:
the figure is the price of the gradient all-reduce between processes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from imgclf.core.hardware import machine_summary  # noqa: E402
from imgclf.training.distributed.planning import loopback_tf_configs  # noqa: E402

IMGCLF = [sys.executable, "-m", "imgclf"]


def run_job(name: str, workers: int, data: str, out: Path, epochs: int, batch: int, timeout: float) -> dict:
    """Run one training job (`workers` = 0 means plain single-process) and return its throughput."""
    per_replica = batch // max(workers, 1)
    # The same effective rate in every job: multi-worker multiplies --lr by the replicas (linear scaling).
    lr = 0.002 * batch / 64 / max(workers, 1)
    argv = IMGCLF + ["train", data, "--out", str(out / name), "--model", "small_cnn", "--epochs", str(epochs),
                     "--batch-size", str(per_replica), "--lr", f"{lr:g}", "--test-fraction", "0", "--verbose", "1", "--seed", "0"]
    if workers:
        argv += ["--distributed", "multi-worker"]
    tf_configs = loopback_tf_configs(workers)
    out.mkdir(parents=True, exist_ok=True)
    procs, start = [], time.perf_counter()
    for i in range(max(workers, 1)):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        if workers:
            env["TF_CONFIG"] = json.dumps(tf_configs[i])
        log = open(out / f"{name}-{i}.log", "w")
        procs.append((subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        for proc, _ in procs:
            if proc.wait(timeout=timeout) != 0:
                raise SystemExit(f"{name} failed; see {out}/{name}-*.log:\n" + (out / f"{name}-0.log").read_text()[-2000:])
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
            log.close()
    wall = time.perf_counter() - start
    with open(out / name / "history.csv") as f:
        rows = list(csv.DictReader(f))
    rates = [float(r["images_per_s"]) for r in rows[1:]] or [float(rows[0]["images_per_s"])]
    return {"job": name, "workers": workers, "batch_per_replica": per_replica, "global_batch": batch,
            "images_per_s": statistics.median(rates), "first_epoch_s": float(rows[0]["time_s"]),
            "val_accuracy": float(rows[-1]["val_accuracy"]), "wall_s": wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64, help="global batch in every job (default: 64)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per job before it counts as hung")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each job (default: 3)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-dist-") as tmp:
        out = Path(tmp)
        subprocess.run(IMGCLF + ["datasets", "export", "digits", str(out / "digits")], check=True, capture_output=True)
        data = str(out / "digits" / "train")
        jobs = [("baseline", 0), ("1-worker", 1), ("2-workers", 2)]
        runs: dict[str, list[dict]] = {name: [] for name, _ in jobs}
        for r in range(args.repeats):  # rotate the order so that a burst of load elsewhere hits every job alike
            for name, workers in jobs[r % 3:] + jobs[:r % 3]:
                runs[name].append(run_job(name, workers, data, out / f"r{r}", args.epochs, args.batch, args.timeout))
        results = [{**rs[0], **{k: statistics.median(x[k] for x in rs)
                                for k in ("images_per_s", "first_epoch_s", "val_accuracy", "wall_s")}}
                   for rs in runs.values()]
    print(f"machine: {machine_summary()}; load average at the end {os.getloadavg()[0]:.1f}; "
          f"medians over {args.repeats} runs of each job, order rotated")
    print(f"small_cnn on digits (28x28), {args.epochs} epochs, global batch {args.batch}, float32/bf16 as --precision auto picks")
    base = results[0]["images_per_s"]
    print(f"{'job':<10} {'workers':>7} {'batch/replica':>13} {'img/s (median)':>15} {'vs baseline':>11} "
          f"{'1st epoch s':>11} {'val_acc':>7} {'wall s':>7}")
    for r in results:
        print(f"{r['job']:<10} {r['workers']:>7} {r['batch_per_replica']:>13} {r['images_per_s']:>15,.0f} "
              f"{r['images_per_s'] / base:>10.2f}x {r['first_epoch_s']:>11.1f} {r['val_accuracy']:>7.3f} {r['wall_s']:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
