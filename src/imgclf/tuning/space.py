"""The search space of `imgclf tune`: which settings a trial draws, from the model registry and the data.

Models: small_cnn (trained from scratch, fits any data) and every model of
`--model auto`'s preference list whose ImageNet weights are on this machine
now; for tiny images, where no pretrained backbone applies, every model the
registry shapes for small images from scratch (small_cnn and small_resnet:
no ImageNet weights, no fixed input size); or those given with ``--models``
(one whose weights are not here trains from scratch). Per trial: image size (among sizes the model accepts),
learning rate, weight decay, label smoothing, augmentation preset, MixUp,
CutMix, dropout, epochs (unless every trial trains for a time budget, as the
final run will: then the budget decides the epochs), and for pretrained
backbones whether to fine-tune.
No TensorFlow and no Optuna here: `suggest` takes any object with Optuna's
``suggest_*`` methods.
"""

from __future__ import annotations

import os
import statistics

from imgclf.core.config import TrainConfig
from imgclf.core.errors import UserError, did_you_mean
from imgclf.data.decode import probe_images
from imgclf.data.scan import scan_folder
from imgclf.models.registry import default_label_smoothing, default_lr, get_spec, list_models
from imgclf.models.weights import pretrained_location
from imgclf.training.auto_model import FEW_SHOT, PREFERENCE, TINY_SIDE, choose_model
from imgclf.training.plan import auto_augment

AUGMENT = ("none", "flip", "light", "standard", "strong")
MIXUP = (0.0, 0.2)  # MixUp alphas: off, or the usual 0.2
CUTMIX = (0.0, 1.0)  # CutMix alphas: off, or the usual 1.0
SCRATCH = "small_cnn"


def data_facts(data: str | os.PathLike) -> dict:
    """What the search space depends on: median image side, grayscale, images per class (median), classes.

    Example:
        >>> data_facts("data/")["classes"]
        3
    """
    scan = scan_folder(os.fspath(data))
    counts: dict[str, int] = {}
    for row in scan.rows:
        counts[row["label"]] = counts.get(row["label"], 0) + 1
    probe = probe_images([r["path"] for r in scan.rows])
    return {"median_side": probe["median_side"], "grayscale": probe["grayscale"], "classes": len(counts),
            "per_class": int(statistics.median(counts.values())) if counts else 0}


def candidate_models(asked: str = "", median_side: int = 0) -> list[str]:
    """The models to search: those in `asked` (comma-separated), else small_cnn and the installed pretrained ones;
    for tiny images (median side under 32 px) the registry's from-scratch models for small images.

    The deeper small_resnet is the better model for Fashion-MNIST when the
    budget buys it enough epochs (bench/RESULTS.md, issue 5), which only the
    search at the final run's budget can weigh.

    Example:
        >>> candidate_models("small_cnn")
        ['small_cnn']
        >>> candidate_models("", median_side=28)
        ['small_cnn', 'small_resnet']
    """
    if asked:
        names = [n.strip() for n in asked.split(",") if n.strip()]
        known = list_models()
        for name in names:
            if name not in known:
                raise UserError(f"Unknown model {name!r} in --models: expected names from `imgclf models`."
                                + did_you_mean(name, known))
        return names
    if median_side and median_side < TINY_SIDE:
        return [SCRATCH] + sorted(n for n in list_models() if n != SCRATCH and _for_small_images_from_scratch(n))
    return [SCRATCH] + [n for n in PREFERENCE if n in list_models() and pretrained_location(n) is not None]


def _for_small_images_from_scratch(model: str) -> bool:
    spec = get_spec(model)
    return not spec.pretrained and not spec.default_size  # no weights to load, any input side (small_cnn's kind)


def image_sizes(model: str) -> list[int]:
    """Input sides a trial of `model` may use: 0 (from the data) for small_cnn, else its default and 3/4 of it.

    Example:
        >>> image_sizes("small_cnn")
        [0]
    """
    spec = get_spec(model)
    if not spec.default_size:
        return [0]
    smaller = max(spec.min_size, int(round(spec.default_size * 0.75 / 32)) * 32)
    return sorted({smaller, spec.default_size})


def suggest(trial, models: list[str], facts: dict, trial_epochs: int = 10, trial_budget: float = 0.0) -> dict:
    """Draw one trial's training settings (keywords of `imgclf.train`) from `trial` (an Optuna trial).

    With `trial_budget` (minutes), the trial trains for that time budget
    (``time_budget``) instead of drawing its epochs.

    Example:
        >>> import optuna
        >>> fixed = optuna.trial.FixedTrial({"model": "small_cnn", "img_size_small_cnn": 0, "lr": 0.003,
        ...     "weight_decay": 1e-4, "label_smoothing": 0.1, "augment": "light", "mixup": 0.0, "cutmix": 0.0,
        ...     "dropout": 0.2, "epochs": 4})
        >>> suggest(fixed, ["small_cnn"], {"per_class": 100}, trial_epochs=4)["weights"]
        'none'
        >>> suggest(fixed, ["small_cnn"], {"per_class": 100}, trial_budget=10)["time_budget"]
        10
    """
    model = trial.suggest_categorical("model", models)
    spec = get_spec(model)
    pretrained = spec.pretrained and pretrained_location(model) is not None
    settings = {
        "model": model,
        "weights": "imagenet" if pretrained else "none",
        "img_size": trial.suggest_categorical(f"img_size_{model}", image_sizes(model)),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.2),
        "augment": trial.suggest_categorical("augment", AUGMENT),
        "mixup": trial.suggest_categorical("mixup", MIXUP),
        "cutmix": trial.suggest_categorical("cutmix", CUTMIX),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
    }
    if trial_budget:
        settings["time_budget"] = trial_budget
    else:
        settings["epochs"] = trial.suggest_int("epochs", max(1, trial_epochs // 2), trial_epochs)
    if pretrained:
        choices = ("none", "top") if facts.get("per_class", 0) > FEW_SHOT else ("none",)
        settings["finetune"] = trial.suggest_categorical("finetune", choices)
    return settings


def default_params(models: list[str], facts: dict, trial_epochs: int = 10, trial_budget: float = 0.0) -> dict:
    """The trial that `imgclf train DATA --epochs TRIAL_EPOCHS` is (with `trial_budget`, `imgclf train DATA
    --time-budget TRIAL_BUDGET`): the study's first, the baseline to beat.

    The model is the one `--model auto` picks for this data when it is among
    `models`, else the first of `models`; every other setting is what that
    model's default resolves to (its own learning rate and label smoothing,
    `--augment auto`'s rule, no MixUp or CutMix, dropout 0.2, weight decay
    1e-4), as the parameters `suggest` draws. Queued first, it makes the
    search's best trial at least the default on validation.

    Example:
        >>> p = default_params(["small_cnn"], {"median_side": 28, "grayscale": True, "per_class": 100}, 10)
        >>> p["model"], p["lr"], p["augment"], p["epochs"]
        ('small_cnn', 0.002, 'none', 10)
        >>> "epochs" in default_params(["small_cnn"], {"median_side": 28}, trial_budget=10)
        False
    """
    choice = choose_model({"median_side": facts.get("median_side", 0), "grayscale": facts.get("grayscale", False)},
                          {"class": facts.get("per_class", 0)})
    model = choice.model if choice.model in models else models[0]
    spec = get_spec(model)
    pretrained = spec.pretrained and pretrained_location(model) is not None
    weights = "imagenet" if pretrained else "none"
    params = {"model": model, f"img_size_{model}": image_sizes(model)[-1], "lr": default_lr(model, weights),
              "label_smoothing": default_label_smoothing(model, weights),
              **({} if trial_budget else {"epochs": trial_epochs}),
              **{k: getattr(TrainConfig(), k) for k in ("weight_decay", "mixup", "cutmix", "dropout")}}
    fine_tunes = False
    if pretrained:
        params["finetune"] = "top" if facts.get("per_class", 0) > FEW_SHOT else "none"
        fine_tunes = params["finetune"] != "none"
    # --augment auto, as `imgclf train` resolves it (a budgeted run keeps the default epochs in its config)
    params["augment"] = auto_augment(TrainConfig().epochs if trial_budget else trial_epochs, trial_budget, fine_tunes)
    return params
