"""Issue 17 benchmark: does a time-budgeted `imgclf tune` beat the default recipe on Fashion-MNIST, and is it real?

    .venv/bin/python bench/tune.py                                   # the issue's benchmark: a 60-minute tune
    .venv/bin/python bench/tune.py --time-budget 10 --final-budget 3 --max-images 6000   # a short version
    .venv/bin/python bench/tune.py --trial-budget 0 --trial-epochs 6   # trials of drawn epochs (the earlier benchmark)

Steps (everything through the `imgclf` command, as a user runs it):

1. WORK/data: `imgclf datasets export fashion-mnist WORK/data` (train/ and test/,
   from Debian's dataset-fashion-mnist; reused when present).
2. The search, on WORK/data/train only (the official test set is never seen by it):
   `imgclf tune WORK/data/train --time-budget T --out WORK/tune --test-fraction 0
   --track mlflow --trial-budget F [--max-images M]`: every trial trains for the final
   runs' budget F, as they will (with --trial-budget 0: --trial-epochs E instead). The process is killed
   (SIGKILL) --kill-after minutes in, then the same command is run again: it must
   resume the study (the interrupted trial runs again) and spend only what is left
   of the budget. The study's first trial is the default recipe at the trials'
   epochs (the baseline its validation gain is measured against).
3. The final runs, at the same budget (--final-budget minutes each, on all of
   WORK/data/train): the default recipe, `imgclf train WORK/data/train --time-budget F`,
   and the tuned one, `imgclf train --config WORK/tune/best.yaml --time-budget F`.
4. `imgclf evaluate` of both on WORK/data/test and `imgclf compare default tuned
   --data WORK/data/test`: the accuracies, McNemar's p-value and the verdict.

Printed at the end (and written to WORK/results.json): trials per hour (finished
trials over the time the budget counted, every session), the overhead of the tuner and
the tracker as a share of the training time (tune.json: wall time outside `train`
plus the time in MLflow calls, over the time inside `train`; target <= 2 %), the
trial states before and after the kill, the two test accuracies, the p-value and
the verdict, the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
IMGCLF = [sys.executable, "-m", "imgclf"]


def sh(cmd: list[str], **kwargs) -> float:
    """Run a command, echoing it; return its wall seconds (raise on failure)."""
    print("$", " ".join(str(c) for c in cmd), flush=True)
    start = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)
    return time.perf_counter() - start


def states(tune_dir: Path) -> dict:
    import optuna

    study = optuna.load_study(study_name="imgclf-tune", storage=f"sqlite:///{tune_dir / 'study.db'}")
    from imgclf.tuning.study import spent_seconds

    out: dict = {}
    for t in study.trials:
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    out["seconds"] = round(spent_seconds(study), 1)  # what the budget counted, every session
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="bench-work/tune", help="working folder (default: bench-work/tune)")
    ap.add_argument("--time-budget", type=float, default=60.0, help="minutes of search (default: 60)")
    ap.add_argument("--kill-after", type=float, default=None, help="minutes before the SIGKILL (default: a fifth of the budget)")
    ap.add_argument("--final-budget", type=float, default=10.0, help="minutes of each final training run (default: 10)")
    ap.add_argument("--max-images", type=int, default=0, help="images per trial (default: all)")
    ap.add_argument("--trial-budget", type=float, default=None,
                    help="minutes per trial (default: the --final-budget; 0: trials of --trial-epochs)")
    ap.add_argument("--trial-epochs", type=int, default=10, help="largest epochs per trial with --trial-budget 0 (default: 10)")
    ap.add_argument("--track", default="mlflow", choices=("none", "mlflow"), help="tracker during the search (default: mlflow)")
    args = ap.parse_args()
    from imgclf.core.hardware import machine_summary

    work = Path(args.work)
    data = work / "data"
    results: dict = {"machine": machine_summary(), "load_start": os.getloadavg(), "args": vars(args)}
    print(f"Machine: {results['machine']}; load average at start {results['load_start']}", flush=True)
    if not (data / "test").exists():
        sh(IMGCLF + ["datasets", "export", "fashion-mnist", data])

    tune_dir = work / "tune"
    trial_budget = args.final_budget if args.trial_budget is None else args.trial_budget
    cmd = IMGCLF + ["tune", data / "train", "--time-budget", args.time_budget, "--out", tune_dir,
                    "--test-fraction", "0", "--track", args.track]
    cmd += ["--trial-budget", trial_budget] if trial_budget else ["--trial-epochs", args.trial_epochs]
    if args.max_images:
        cmd += ["--max-images", args.max_images]
    kill_after = 60 * (args.kill_after if args.kill_after is not None else args.time_budget / 5)
    start = time.perf_counter()
    if (tune_dir / "study.db").exists():  # a rerun of the bench: the kill was measured; resume (or extend the budget)
        sh(cmd)
    else:
        print("$", " ".join(map(str, cmd)), f"  (SIGKILL after {kill_after / 60:.1f} min)", flush=True)
        proc = subprocess.Popen([str(c) for c in cmd], start_new_session=True)
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        results["killed_after_s"] = round(time.perf_counter() - start, 1)
        results["states_at_kill"] = states(tune_dir)
        print("Trial states at the kill:", results["states_at_kill"], flush=True)
        sh(cmd)  # the same command again: resumes
    results["search_wall_s"] = round(time.perf_counter() - start, 1)
    summary = json.loads((tune_dir / "tune.json").read_text())
    results["states_final"] = states(tune_dir)
    finished = results["states_final"].get("complete", 0) + results["states_final"].get("pruned", 0)
    results["trials_per_hour"] = round(finished / (results["states_final"]["seconds"] / 3600), 2)
    sessions = summary["sessions"]  # every session that ran trials (a killed one writes none)
    overhead, trained = sum(s["overhead_s"] for s in sessions), sum(s["train_s"] for s in sessions)
    results["overhead_share"] = round(overhead / max(trained, 1e-9), 4)
    results["sessions"] = sessions
    results["best"] = summary.get("best")
    results["default_trial"] = summary.get("default")  # the study's first trial, the default recipe: the search's gain over it
    if not results["best"]:
        print("No trial finished within the budget: nothing to compare. Run again with a larger --time-budget "
              "(the study resumes).", flush=True)
        return 1

    for name, extra in (("default", [data / "train"]), ("tuned", ["--config", tune_dir / "best.yaml"])):
        run = work / name
        if not (run / "model.keras").exists():
            sh(IMGCLF + ["train", *extra, "--time-budget", args.final_budget, "--out", run, "--verbose", "0",
                         "--test-fraction", "0"])
        sh(IMGCLF + ["evaluate", run, "--data", data / "test", "--no-explain"], stdout=subprocess.DEVNULL)
        results[f"{name}_test_accuracy"] = json.loads((run / "metrics.json").read_text())["accuracy"]
    cmp = work / "compare"
    sh(IMGCLF + ["compare", work / "default", work / "tuned", "--data", data / "test", "--out", cmp])
    compared = json.loads(next(cmp.parent.glob("compare*/compare.json")).read_text()) if not (cmp / "compare.json").exists() \
        else json.loads((cmp / "compare.json").read_text())
    results["mcnemar_p"] = compared["mcnemar"]["p_value"]
    results["verdict"] = compared["verdict"]
    results["load_end"] = os.getloadavg()
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(f"\ntrials/hour {results['trials_per_hour']}; tuner + tracker overhead {results['overhead_share'] * 100:.2f} % "
          f"of training time (target <= 2 %); default {results['default_test_accuracy']:.4f} vs tuned "
          f"{results['tuned_test_accuracy']:.4f}; {results['verdict']}")
    for s in sessions:  # where the overhead went (sessions before this breakdown existed lack its keys)
        print(f"session: {s['overhead_s']} s outside train of {s['wall_s']} s: objective {s.get('objective_s', '?')} s, "
              f"Optuna {s.get('optuna_s', '?')} s (longest wait between trials {s.get('longest_between_trials_s', '?')} s), "
              f"of it collecting garbage {s.get('release_s', '?')} s and stopping pruned trials {s.get('stop_s', '?')} s; "
              f"callback {s['callback_s']} s, tracker {s['tracker_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
