"""The arguments of the experiment commands: `runs`, `compare`, `tune`, and `--track` (core only, for a fast --help).

Split from `imgclf.cli.parser` by idea: these commands look across runs
(list, compare, search) rather than make or use one.
"""

from __future__ import annotations

import argparse

# Mirror evaluation.runs_table.COLUMNS / FORMATS and core.tracking.TRACKERS (tests check they match); written
# out so that the parser imports nothing beyond core.
RUN_COLUMNS = ("run", "data", "model", "weights", "budget", "accuracy", "macro_f1", "balanced_accuracy", "ece",
               "train_time_s", "size_mb", "date")
RUN_FORMATS = ("table", "csv", "json", "markdown")
TRACK_CHOICES = ("none", "mlflow")
TRACK_HELP = ("log params, per-epoch metrics, the report and the model to MLflow (pip install 'imgclf[mlflow]'): "
              "to MLFLOW_TRACKING_URI if set, else to a local store, mlruns/mlflow.db beside the run folder "
              "(default: none, nothing is logged anywhere)")

EPILOG_TUNE = """examples:
  imgclf tune data/ --time-budget 60 --out tune/leaves
  imgclf tune data/ --time-budget 60 --out tune/leaves            # again after a kill: resumes the study
  imgclf tune data/ --time-budget 30 --trials 20 --models small_cnn,mobilenet_v2 --out tune/leaves
  imgclf tune data/ --time-budget 60 --out tune/leaves --storage postgresql://host/db   # several machines, one study
  imgclf train --config tune/leaves/best.yaml --out runs/best
  imgclf tune data/ --time-budget 60 --trial-budget 10 --out tune/ten   # every trial as `train --time-budget 10`
  imgclf tune data/ --time-budget 60 --out tune/leaves --refit     # best.yaml retrained on train+val: tune/leaves/refit

Every trial is an ordinary run under OUT/trials/; the study is OUT/study.db (Optuna, SQLite).
The first trial is the default recipe: the search reports its gain over it on validation.
"""


def add_track(p: argparse.ArgumentParser) -> None:
    """Add ``--track`` to a command's parser. Example: ``add_track(argparse.ArgumentParser())``."""
    p.add_argument("--track", choices=TRACK_CHOICES, default="none", help=TRACK_HELP)


def add_experiment_commands(sub, whole, finite, fmt) -> None:
    """Add `runs`, `compare` and `tune` to the subparsers `sub` (the argparse types come from `imgclf.cli.parser`).

    Example:
        >>> from imgclf.cli.parser import build_parser
        >>> build_parser().parse_args(["runs", "runs/", "--format", "csv"]).format
        'csv'
    """
    p = sub.add_parser("runs", help="a table of every run under a folder (settings, scores, time, size, date)",
                       formatter_class=fmt,
                       epilog="examples:\n  imgclf runs\n  imgclf runs runs/ --sort accuracy --descending\n"
                              "  imgclf runs tune/leaves --format markdown\n")
    p.add_argument("dir", nargs="?", default="runs", help="folder searched for runs, recursively (default: runs)")
    p.add_argument("--sort", choices=RUN_COLUMNS, default="date", help="column to sort by (default: date)")
    p.add_argument("--descending", action="store_true", help="largest first")
    p.add_argument("--format", choices=RUN_FORMATS, default="table", help="output format (default: table)")

    p = sub.add_parser("compare", help="is run B really better than run A? paired test on the same images, compare.html",
                       formatter_class=fmt,
                       epilog="examples:\n  imgclf compare runs/a runs/b\n  imgclf compare runs/a runs/b --data test/ --out cmp/\n\n"
                              "Both runs predict the same images (their saved predictions are reused when they cover\n"
                              "exactly those images); McNemar's exact test on the paired answers and bootstrap\n"
                              "intervals of the differences say whether B - A is more than noise. The runs are not modified.\n")
    p.add_argument("run_a", metavar="RUN_A", help="the reference run")
    p.add_argument("run_b", metavar="RUN_B", help="the run compared with it")
    p.add_argument("--data", help="folder of class subfolders both runs predict (default: their test split, which must be the same images)")
    p.add_argument("--out", help="folder for compare.html, compare.json and disagreements.png (default: compare-A-vs-B, suffixed if taken)")
    p.add_argument("--bootstrap", type=whole(100, None, "a number of resamples"), default=2000, help="bootstrap resamples (default: 2000)")
    p.add_argument("--alpha", type=finite(0, 0.5, "a significance level", low_open=True), default=0.05, help="significance level (default: 0.05)")
    p.add_argument("--batch-size", type=whole(1), default=128, help="images per model call when predicting (default: 128)")

    p = sub.add_parser("tune", help="search settings with Optuna in a time budget; best.yaml for `imgclf train --config`",
                       formatter_class=fmt, epilog=EPILOG_TUNE)
    p.add_argument("data", help="folder with one subfolder per class (the search sees only its train and validation images)")
    p.add_argument("--time-budget", type=finite(0, None, "minutes", low_open=True), required=True,
                   help="minutes for the whole search, summed over resumed sessions")
    p.add_argument("--trials", type=whole(1), default=None, help="stop after this many finished trials (default: when the time is spent)")
    p.add_argument("--out", required=True, help="tune folder: study.db, trials/, best.yaml, tune.html, tune.json; an existing one is resumed")
    p.add_argument("--storage", help="SQLAlchemy URL of the study (default: sqlite:///OUT/study.db); share one to tune on several machines")
    p.add_argument("--models", default="", help="comma-separated models to search (default: small_cnn and every model whose ImageNet weights are here)")
    p.add_argument("--trial-epochs", type=whole(1), default=10, help="largest epochs of one trial; each trial draws from half of it to all of it (default: 10)")
    p.add_argument("--trial-budget", type=finite(0, None, "minutes"), default=0.0,
                   help="minutes each trial trains, as `imgclf train --time-budget` (instead of --trial-epochs); "
                        "give the final run's budget to search for the best recipe at it (default: 0, epochs)")
    p.add_argument("--seed", type=whole(0), default=0, help="seed of the sampler and of every trial's split (default: 0)")
    p.add_argument("--batch-size", type=whole(1), default=None, help="images per step in every trial (default: train's)")
    p.add_argument("--max-images", type=whole(0), default=None, help="each trial trains on at most this many images (default: all)")
    p.add_argument("--test-fraction", type=finite(0, 0.9, "a share", high_open=True), default=None,
                   help="share held out from the search as a test split (default: train's 0.1)")
    p.add_argument("--refit", action="store_true",
                   help="then train best.yaml on the trials' training and validation images together, for the epochs the "
                        "best trial kept, into OUT/refit (no validation split; the test split stays held out)")
    add_track(p)
