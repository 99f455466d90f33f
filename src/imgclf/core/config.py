"""Every training setting in one place: a dataclass field, a default, a comment.

CLI flags, a YAML file (``--config``) and Python keywords all land in
`TrainConfig`; unknown keys are errors that suggest the closest valid name.
The resolved config (with automatic choices filled in) is saved in each run as
``config.yaml`` together with the library versions, and can be passed back
with ``--config`` to repeat the run.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import numbers
import os
import platform
import sys
from dataclasses import dataclass, fields
from typing import Any

import yaml

from imgclf.core.errors import UserError, did_you_mean
from imgclf.core.hardware import parse_devices
from imgclf.core.version import __version__

CHOICES = {
    "color_mode": ("auto", "rgb", "grayscale"),
    "optimizer": ("adamw", "adam", "sgd"),
    "finetune": ("auto", "none", "top", "all"),
    "feature_cache": ("auto", "off"),
    "precision": ("auto", "float32", "bfloat16", "float16"),
    "cache": ("auto", "memory", "disk"),
    "monitor": ("auto", "val_accuracy", "val_loss", "val_macro_f1", "val_balanced_accuracy", "none"),
    "class_weight": ("auto", "none", "sqrt", "balanced"),
    "sampling": ("natural", "balanced"),
    "resize": ("squash", "crop", "pad"),
    "schedule": ("cosine", "onecycle", "constant"),
    "augment": ("auto", "none", "flip", "light", "standard", "strong"),
    "flip": ("auto", "none", "horizontal", "both"),
    "distributed": ("none", "multi-worker"),
}

SEED_MAX = 2**32 - 1  # NumPy's and TensorFlow's seeds are 32-bit; -1 or 2**32 fail deep inside them
# Largest square input side. The largest pretrained default is 600 px (EfficientNet-B7);
# at 2048 px one decoded RGB image is 12 MB in the in-memory cache (1,000 images: 12 GB) and a
# batch of 64 is 3 GB of float32 input before the first layer, so larger sides only run out of
# memory, and a crafted preprocess.json could ask a server to allocate terabytes.
MAX_IMG_SIZE = 2048
MIN_IMG_SIZE = 8
PREPROCESS_CHOICES = {"color_mode": ("rgb", "grayscale"), "resize": CHOICES["resize"]}
# Whole-number settings and their allowed range (inclusive; None = no upper bound).
INT_RANGES = {
    "epochs": (1, None), "batch_size": (1, None), "seed": (0, SEED_MAX), "workers": (0, None),
    "max_images": (0, None), "patience": (0, None), "head_epochs": (0, None), "verbose": (-1, 2),
    "max_pixels": (1, None), "img_size": (0, MAX_IMG_SIZE),
}
INT_MEANING = {"seed": "a seed", "workers": "a thread count (0 = one per core)", "max_images": "a number of images (0 = all)",
               "patience": "a number of epochs (0 = off)", "head_epochs": "a number of epochs", "verbose": "-1, 0, 1 or 2",
               "max_pixels": "a number of pixels", "img_size": "a side in pixels (0 = the model's default)"}


PREPROCESS_FIX = "Restore the file as `imgclf train` or `imgclf export` wrote it, or export the model again."


def _bad(name: str, expected: str, received, source: str = "",
         fix: str = "Pass a value in that range (see `imgclf train --help`).") -> UserError:
    where = f" in {source}" if source else ""
    return UserError(f"Invalid {name}{where}: expected {expected}, received {received!r}. {fix}")


def check_int(name: str, value, source: str = "") -> int:
    """`value` if it is a whole number in the range of setting `name` (`INT_RANGES`), else a `UserError`.

    Example:
        >>> check_int("seed", 7)
        7
        >>> check_int("seed", -1)
        Traceback (most recent call last):
        ...
        imgclf.core.errors.UserError: Invalid seed: expected a seed from 0 to 4294967295, received -1. ...
    """
    low, high = INT_RANGES[name]
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"
    what = f"{INT_MEANING.get(name, 'an integer')} {span}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (high is not None and value > high):
        raise _bad(name, what, value, source)
    if name == "img_size" and 0 < value < MIN_IMG_SIZE:
        raise _bad(name, f"0 (the model's default) or a side from {MIN_IMG_SIZE} to {MAX_IMG_SIZE} pixels", value, source)
    return value


def check_finite(name: str, value, source: str = "") -> float:
    """`value` if it is a finite number (not NaN, not infinite), else a `UserError`.

    Example:
        >>> check_finite("lr", 0.01)
        0.01
        >>> check_finite("lr", float("nan"))
        Traceback (most recent call last):
        ...
        imgclf.core.errors.UserError: Invalid lr: expected a finite number, received nan. ...
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise _bad(name, "a finite number", value, source)
    return value


def check_preprocess(pre, source: str = "preprocess.json") -> dict:
    """Check a model's preprocessing (a run's preprocess.json or an export's metadata) before it is used.

    img_size must be a whole number from 8 to `MAX_IMG_SIZE`, color_mode rgb or
    grayscale, resize (if given) squash, crop or pad, and channels (if given)
    match color_mode. Returns a copy; raises `UserError` naming `source`.

    Example:
        >>> check_preprocess({"img_size": 28, "color_mode": "rgb"})["img_size"]
        28
        >>> check_preprocess({"img_size": 28, "color_mode": "cmyk"}, "runs/x/preprocess.json")
        Traceback (most recent call last):
        ...
        imgclf.core.errors.UserError: Invalid color_mode in runs/x/preprocess.json: expected one of rgb, grayscale, received 'cmyk'. Restore ...
    """
    source = str(source)
    if not isinstance(pre, dict):
        raise UserError(f"{source} must hold a mapping such as {{\"img_size\": 224, \"color_mode\": \"rgb\"}}, "
                        f"received {type(pre).__name__}. Export the model again with `imgclf export`.")
    for key in ("img_size", "color_mode"):
        if key not in pre:
            raise UserError(f"{source} has no {key!r}: the model's input cannot be prepared without it. "
                            "Export the model again with `imgclf export`, or restore the run's preprocess.json.")
    size = pre["img_size"]
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not MIN_IMG_SIZE <= size <= MAX_IMG_SIZE:
        raise _bad("img_size", f"a whole number of pixels from {MIN_IMG_SIZE} to {MAX_IMG_SIZE}", size, source, PREPROCESS_FIX)
    for key, choices in PREPROCESS_CHOICES.items():
        if key in pre and pre[key] not in choices:
            raise _bad(key, f"one of {', '.join(choices)}", pre[key], source, PREPROCESS_FIX)
    channels = {"rgb": 3, "grayscale": 1}[pre["color_mode"]]
    if "channels" in pre and pre["channels"] != channels:
        raise _bad("channels", f"{channels} for color_mode {pre['color_mode']}", pre["channels"], source, PREPROCESS_FIX)
    return dict(pre)


@dataclass
class TrainConfig:
    """All settings of `imgclf.train`. Example: ``TrainConfig(data="data/", epochs=5)``."""

    data: str = ""  # folder with one subfolder per class, or with train/ val/ [test/] inside; or shards from `imgclf datasets pack` (folder or URL)
    manifest: str = ""  # CSV from `imgclf split` (path, label, split): use its split instead of making one
    out: str = ""  # run folder; empty means runs/<model>, with a suffix if taken
    model: str = "auto"  # auto (chosen from the data and the installed weights: a pretrained EfficientNet-Lite for photos, small_cnn for tiny images or without weights) | a name from `imgclf models` | a YAML architecture file
    weights: str = "auto"  # auto (imagenet when --model auto picks a pretrained backbone, else none) | none | imagenet | path to a .weights.h5 file or a .keras model
    img_size: int = 0  # square input side in pixels, 8 to 2048 (larger only runs out of memory); 0 = the model's default (pretrained models: their own, e.g. 224; small_cnn: the data's median side within 28-96 px, so 300 px photos are shrunk to 96; printed at the start)
    color_mode: str = "auto"  # auto (grayscale if every image is) | rgb | grayscale
    resize: str = "squash"  # squash (ignore aspect) | crop (centre crop) | pad (letterbox)
    max_pixels: int = 100_000_000  # images with more pixels are skipped (decompression-bomb guard)
    epochs: int = 10  # total epochs, both transfer-learning phases included
    batch_size: int = 64  # images per step (per replica when training on several devices or workers)
    time_budget: float = 0.0  # minutes of training; the schedule fits the budget (0 = use epochs)
    lr: float | str = "model"  # peak learning rate; model = the rate the model was tuned with from scratch (0.002 unless its registry entry says otherwise, and 0.002 for pretrained weights); auto = a learning-rate range test picks it
    schedule: str = "cosine"  # cosine (short warmup, then cosine decay) | onecycle | constant
    optimizer: str = "adamw"  # adamw | adam | sgd (Nesterov momentum 0.9)
    ema: bool = False  # evaluate and save an exponential moving average of the weights
    weight_decay: float = 0.0001  # decoupled weight decay (adamw, sgd)
    label_smoothing: float | str = "model"  # share of each label spread over the other classes (raised validation accuracy in bench/; probabilities a little less confident); model = the value the model was tuned with (0.1 unless its registry entry says otherwise); 0 = plain cross-entropy
    class_weight: str = "auto"  # auto (above an imbalance ratio of 1.5: none, sqrt or balanced compared on validation when the head is solved, else sqrt; printed) | none | sqrt (inverse square root of class size) | balanced (inverse class size)
    sampling: str = "natural"  # natural | balanced (each class drawn equally often per epoch)
    augment: str = "auto"  # auto (none for short runs, light otherwise) | none | flip | light | standard | strong
    flip: str = "auto"  # auto (none for digit/letter classes, else horizontal) | none | horizontal | both
    mixup: float = 0.0  # MixUp alpha (0.2 is typical); 0 = off
    cutmix: float = 0.0  # CutMix alpha (1.0 is typical); 0 = off
    dropout: float = 0.2  # dropout before the classifier
    bn_momentum: float = 0.9  # BatchNorm momentum of trainable models; 0.99 is too slow for short runs
    seed: int = 0  # seeds the split, the shuffling and the weights
    val_fraction: float = 0.1  # share of each class held out for validation when DATA has no val/; 0 (and no val/) = no validation split: every epoch trains, the last is kept, and what needs validation (early stopping, best epoch, TTA choice, calibration) is skipped
    test_fraction: float = 0.1  # share held out for testing when DATA has no test/ (0 = none)
    group_by: str = ""  # regex on paths: files with the same match (e.g. a patient id) stay in one split
    patience: int = 0  # early stopping after this many epochs without improvement; 0 = off
    monitor: str = "auto"  # metric that picks the best checkpoint: auto = val_loss when a pretrained backbone is fine-tuned (steadier on small validation sets), else val_accuracy (none without a validation split); none = keep the last epoch
    finetune: str = "auto"  # pretrained backbones: auto (none for few images per class under --model auto, else top) | none (head only) | top | all layers
    finetune_fraction: float = 0.3  # share of backbone layers unfrozen by finetune=top
    head_epochs: int = 0  # epochs of head-only training by gradient steps first; 0 = solve the head on cached features in one step (shards or several replicas: about 150 steps)
    freeze_bn: bool = True  # pretrained backbones: BatchNorm stays in inference mode with its ImageNet statistics, also when fine-tuning
    feature_cache: str = "auto"  # auto (solve the head on backbone features computed once; fine-tune the top on cached activations of the frozen blocks where the inputs allow) | off (plain loops: the head by gradient steps)
    finetune_lr_scale: float = 0.5  # learning-rate multiplier for the fine-tuning phase (its top layers and head)
    finetune_lr_spread: float = 0.1  # fine-tuning: the first unfrozen backbone layer's rate relative to the last's (geometric between; 1 = one rate)
    precision: str = "auto"  # auto (bfloat16 where the CPU has AVX512_BF16/AMX) | float32 | bfloat16 | float16
    cache: str = "auto"  # decoded-image cache: memory | disk (under the run) | auto
    workers: int = 0  # decoding threads; 0 = one per core
    max_images: int = 0  # use at most this many training images (quick experiments); 0 = all
    verbose: int = -1  # -1 = progress bar on a terminal, one line per epoch otherwise; 0 = quiet
    resume: bool = False  # continue the run in `out` from its last checkpoint
    keep_epochs: bool = False  # also keep every epoch's model as checkpoints/epoch-NNN.keras
    devices: str = "auto"  # auto (every visible GPU; MirroredStrategy when more than one) | cpu | GPU indices such as 0,1
    distributed: str = "none"  # none (this machine) | multi-worker (MultiWorkerMirroredStrategy; cluster and role from TF_CONFIG)
    scale_lr: bool = True  # with several replicas: lr x replicas (batch_size is per replica; global batch = batch_size x replicas)
    reject_rate: float = 0.05  # share of known (validation) images allowed to be answered 'unknown': sets the threshold of the unknown score fitted at the end of training; 0 = never answer 'unknown'
    auto_choice: str = ""  # recorded, not set: what --model auto chose and why
    backup_dir: str = ""  # multi-worker: per-epoch backup for restarts, on storage every worker sees (same path); empty = RUN/backup

    def validate(self) -> "TrainConfig":
        """Check ranges and choices; raise `UserError` naming the bad setting.

        Example:
            >>> TrainConfig(epochs=3).validate().epochs
            3
        """
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise UserError(
                    f"Invalid {name}: expected one of {', '.join(choices)}, received {value!r}."
                    + did_you_mean(value, choices)
                )
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in INT_RANGES:
                check_int(f.name, value)
            elif f.type == "float" or (f.type == "float | str" and not isinstance(value, str)):
                check_finite(f.name, value)
        if self.time_budget < 0:
            raise UserError(f"Invalid time_budget: expected minutes >= 0, received {self.time_budget!r}.")
        if isinstance(self.lr, str) and self.lr not in ("auto", "model"):
            raise UserError(f"Invalid lr: expected a positive number, 'auto' or 'model', received {self.lr!r}.")
        if not isinstance(self.lr, str) and self.lr <= 0:
            raise UserError(f"Invalid lr: expected a positive number, received {self.lr!r}.")
        if self.finetune_lr_scale <= 0:
            raise UserError(f"Invalid finetune_lr_scale: expected a positive multiplier, received {self.finetune_lr_scale!r}.")
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            if not 0 <= v < 0.9:
                raise UserError(f"Invalid {name}: expected a share between 0 and 0.9, received {v!r}.")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise UserError("val_fraction + test_fraction leaves almost nothing to train on; keep their sum under 0.9.")
        for name in ("mixup", "cutmix"):
            if getattr(self, name) < 0:
                raise UserError(f"Invalid {name}: expected an alpha >= 0 (0 = off), received {getattr(self, name)!r}.")
        for name in ("label_smoothing", "dropout", "weight_decay", "finetune_fraction"):
            v = getattr(self, name)
            if name == "label_smoothing" and isinstance(v, str):
                if v == "model":
                    continue
                raise UserError(f"Invalid label_smoothing: expected a number in [0, 1) or 'model', received {v!r}.")
            if not 0 <= v < 1:
                raise UserError(f"Invalid {name}: expected a number in [0, 1), received {v!r}.")
        if not 0 < self.finetune_lr_spread <= 1:
            raise UserError(f"Invalid finetune_lr_spread: expected a number in (0, 1] (the first unfrozen layer's "
                            f"rate relative to the last's; 1 = one rate), received {self.finetune_lr_spread!r}.")
        if self.patience and self.monitor == "none":
            raise UserError(f"Invalid patience: early stopping watches a validation metric, and monitor is 'none' (the last "
                            f"epoch is kept), received patience={self.patience!r}. Pass --patience 0, or --monitor val_accuracy "
                            "with a validation split.")
        if not 0 <= self.reject_rate < 1:
            raise UserError(f"Invalid reject_rate: expected a share in [0, 1) (0 = off), received {self.reject_rate!r}.")
        if not 0 < self.bn_momentum < 1:
            raise UserError(f"Invalid bn_momentum: expected a number in (0, 1), received {self.bn_momentum!r}.")
        parse_devices(self.devices)  # a clear error now, not after the data is decoded
        return self


def field_names() -> list[str]:
    """Names of all settings, in declaration order. Example: ``"lr" in field_names()``."""
    return [f.name for f in fields(TrainConfig)]


def _coerce(name: str, value: Any, type_name: str, source: str = "") -> Any:
    """Convert a YAML or CLI value to the field's type, with a clear error (naming `source`, a file, if given)."""
    if value is None:
        return value
    if type_name == "float | str" and value in ("auto", "model"):
        return value
    try:
        if type_name in ("float", "float | str"):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if type_name == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if type_name == "bool":
            if isinstance(value, str):
                if value.lower() in ("true", "yes", "1"):
                    return True
                if value.lower() in ("false", "no", "0"):
                    return False
                raise ValueError
            return bool(value)
        return str(value)
    except (TypeError, ValueError, OverflowError):
        where = f" in {source}" if source else ""
        kind = {"int": "int (a whole number)", "float": "float (a number)", "float | str": "a number", "bool": "true or false"}
        raise UserError(f"Invalid {name}{where}: expected {kind.get(type_name, type_name)}, received {value!r}. "
                        "Correct the value (see `imgclf train --help`).") from None


def _check_one(name: str, value, source: str) -> None:
    """The checks of `TrainConfig.validate` that concern one setting, naming the file it came from."""
    if name in CHOICES and value not in CHOICES[name]:
        raise _bad(name, f"one of {', '.join(CHOICES[name])}", value, source)
    if name in INT_RANGES:
        check_int(name, value, source)
    elif isinstance(value, float):
        check_finite(name, value, source)


class FileSettings(dict):
    """Settings read from a file (`load_yaml`), which remember the file for error messages."""

    source = ""


def make_config(*sources: dict | None) -> TrainConfig:
    """Merge setting dictionaries (later ones win) into a validated `TrainConfig`.

    A bad value from a file (`load_yaml`) is reported with the file's path.

    Example:
        >>> make_config({"epochs": 2}, {"lr": 0.01}).lr
        0.01
    """
    types = {f.name: f.type for f in fields(TrainConfig)}
    merged: dict[str, Any] = {}
    for source in sources:
        where = getattr(source, "source", "")
        for key, value in (source or {}).items():
            key = str(key).replace("-", "_")
            if key not in types:
                raise UserError(
                    f"Unknown setting {key!r}{' in ' + where if where else ''}: expected one of the names "
                    "listed by `imgclf train --help`." + did_you_mean(key, types)
                )
            merged[key] = _coerce(key, value, types[key], where)
            if where and merged[key] is not None:
                _check_one(key, merged[key], where)
    return TrainConfig(**merged).validate()


def load_yaml(path: str | os.PathLike) -> dict:
    """Read settings from a YAML file; `versions` (written by imgclf) is ignored.

    Example:
        >>> load_yaml("runs/leaves/config.yaml")["model"]
        'small_cnn'
    """

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise UserError(f"Config file not found: {str(path)!r}. Pass the path of a YAML file.") from None
    except yaml.YAMLError as e:
        raise UserError(f"Config file {str(path)!r} is not valid YAML: {e}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise UserError(f"Config file {str(path)!r} must hold a mapping of setting: value, received {type(data).__name__}.")
    data.pop("versions", None)
    settings = FileSettings(data)
    settings.source = str(path)
    return settings


def to_dict(config: TrainConfig) -> dict:
    """The config as a plain dict. Example: ``to_dict(TrainConfig())["epochs"] == 10``."""
    return dataclasses.asdict(config)


def to_yaml(cfg: TrainConfig) -> str:
    """The resolved config plus library versions, as YAML. Example: ``to_yaml(TrainConfig())``."""

    versions = {"imgclf": __version__, "python": platform.python_version()}
    # Installed versions from package metadata: importing TensorFlow only to read its version costs seconds.
    for name, dists in (("tensorflow", ("tensorflow", "tensorflow-cpu", "tf-nightly")), ("keras", ("keras",)),
                        ("numpy", ("numpy",)), ("pillow", ("pillow", "Pillow"))):
        module = sys.modules.get("PIL" if name == "pillow" else name)
        if module is not None and getattr(module, "__version__", None):
            versions[name] = module.__version__
            continue
        for dist in dists:
            try:
                versions[name] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    body = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    return "# imgclf training settings; pass back with --config to repeat this run\n" + body + yaml.safe_dump({"versions": versions}, sort_keys=False)
