"""The training plan: every automatic setting of a run, resolved once, without TensorFlow.

`TrainConfig` holds what the user asked for ('model', 'auto', 0 = choose);
`make_plan` turns it into the values the run uses, from the model's registry
entry, a probe of the data and the number of replicas. The plan is frozen: the
trainer reads it and never writes back into the config. Two values are only
known later and enter through explicit, visible steps that return a new plan:
the learning rate of the range test (`with_lr`, for ``lr='auto'``) and the
precision chosen for the machine (`with_precision`, once TensorFlow runs).
`apply` gives the config with the resolved values, which config.yaml records
and the recipe reads.

Example:
    >>> from imgclf.core.config import TrainConfig
    >>> from imgclf.models.registry import get_spec
    >>> plan = make_plan(TrainConfig(model="small_cnn", epochs=20), get_spec("small_cnn"), {"grayscale": True, "median_side": 28})
    >>> plan.lr, plan.label_smoothing, plan.color_mode, plan.img_size, plan.augment, plan.one_hot
    (0.002, 0.1, 'grayscale', 28, 'light', True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from imgclf.core.errors import UserError
from imgclf.models.registry import default_label_smoothing, default_lr

HEAD_STEPS = 150  # optimizer steps a linear head needs by gradient steps (shards, replicas; measured in bench/)
FINETUNE_STEPS = 50  # fewest optimizer steps of a fine-tuning phase planned in epochs


def model_defaults(cfg) -> tuple[float | str, float]:
    """(lr, label_smoothing) with 'model' replaced by the values the model was tuned with; lr 'auto' stays.

    Example:
        >>> from imgclf.core.config import TrainConfig
        >>> model_defaults(TrainConfig(model="small_resnet"))
        (0.004, 0.15)
        >>> model_defaults(TrainConfig(model="small_cnn", lr="auto", label_smoothing=0.0))
        ('auto', 0.0)
    """
    weights = weights_of(cfg)
    lr = default_lr(cfg.model, weights) if cfg.lr == "model" else cfg.lr
    smoothing = default_label_smoothing(cfg.model, weights) if cfg.label_smoothing == "model" else cfg.label_smoothing
    return lr, smoothing


def auto_augment(epochs: int, time_budget: float, fine_tunes: bool) -> str:
    """What ``--augment auto`` resolves to: 'light' for long runs (15 epochs, or a budget of 10 minutes) and when
    fine-tuning a pretrained backbone, else 'none'.

    Augmentation pays off only once the model has seen the data a few times;
    in short runs from scratch it costs accuracy (measured in bench/).
    Fine-tuning a pretrained backbone overfits a small set within epochs, and
    flips/shifts of cached maps cost nothing: 'light' there.

    Example:
        >>> auto_augment(epochs=10, time_budget=0, fine_tunes=False), auto_augment(epochs=10, time_budget=10, fine_tunes=False)
        ('none', 'light')
    """
    return "light" if (epochs >= 15 or time_budget >= 10 or fine_tunes) else "none"


def weights_of(cfg) -> str:
    """The weights setting with 'auto' read as 'none': `--model auto` replaces it before planning, a named model keeps it.

    Example:
        >>> from imgclf.core.config import TrainConfig
        >>> weights_of(TrainConfig()), weights_of(TrainConfig(weights="imagenet"))
        ('none', 'imagenet')
    """
    return "none" if cfg.weights == "auto" else cfg.weights


@dataclass(frozen=True)
class TrainingPlan:
    """The resolved settings of one run (see `make_plan`); change it only with `with_lr` / `with_precision`."""

    lr: float | str  # peak rate per replica; 'auto' until the range test has run (`with_lr`)
    label_smoothing: float
    color_mode: str  # rgb | grayscale
    img_size: int
    augment: str
    one_hot: bool  # labels are one-hot (needed by label smoothing, MixUp and CutMix)
    feature_cache: str  # auto | off; off under several replicas (the head model would run outside the strategy)
    precision: str  # as asked until `with_precision` resolves 'auto'
    # What the phases depend on:
    weights: str = "none"
    epochs: int = 10
    time_budget: float = 0.0
    finetune: str = "top"
    head_epochs: int = 0
    batch_size: int = 64
    head_solver: bool = False  # the head phase is solved on cached features (`training.head_solver`)
    monitor: str = "val_accuracy"  # the metric that picks the best epoch ('auto' resolved); 'none' = the last epoch
    validation: bool = True  # False: no validation split (val_fraction 0), every epoch trains and the last is kept
    split: dict = field(default_factory=dict)  # split settings the data fixed (packed shards): recorded, not chosen

    def phases(self, n_train: int | None = None) -> list[tuple[str, int, float]]:
        """(name, last epoch, share of the time budget) of each phase: 'train', or 'head' then 'finetune'.

        With the head solver (images in memory, one replica) the head phase is
        one step: the softmax regression solved on cached features, counted as
        epoch 1; fine-tuning then runs epochs 2 to `epochs` and gets the whole
        budget left. Otherwise (shards, several replicas, ``head_epochs``) the
        head trains by gradient steps for `head_epochs` or about 150 optimizer
        steps over `n_train` images (at least one epoch, at most half of them).

        Example:
            >>> from imgclf.core.config import TrainConfig
            >>> from imgclf.models.registry import get_spec
            >>> plan = make_plan(TrainConfig(model="small_cnn", weights="imagenet", epochs=10, img_size=32, color_mode="rgb"), get_spec("small_cnn"), None)
            >>> plan.phases(n_train=1000)  # the head solved as epoch 1, then fine-tuning with the whole budget left
            [('head', 1, 0.0), ('finetune', 10, 1.0)]
            >>> plan = make_plan(TrainConfig(model="small_cnn", weights="imagenet", epochs=10, img_size=32, color_mode="rgb"), get_spec("small_cnn"), None, in_memory=False)
            >>> plan.phases(n_train=1000)  # streamed shards: 16 steps per epoch, 150 steps would be 10 epochs, capped at half
            [('head', 5, 0.3), ('finetune', 10, 0.7)]
        """
        if self.weights in ("none", ""):
            return [("train", self.epochs, 1.0)]
        if self.head_solver:
            if self.finetune == "none" or (self.epochs < 2 and not self.time_budget):
                return [("head", 1, 1.0)]
            return [("head", 1, 0.0), ("finetune", max(self.epochs, 2), 1.0)]
        if self.finetune == "none" or (self.epochs < 2 and not self.time_budget):
            return [("head", self.epochs, 1.0)]
        head = self.head_epochs or self._auto_head_epochs(n_train)
        head = min(head, self.epochs - 1)
        return [("head", head, 0.3), ("finetune", self.epochs, 0.7)]

    def _auto_head_epochs(self, n_train: int | None) -> int:
        if not n_train:
            return max(1, self.epochs // 3)
        steps = max(1, -(-n_train // self.batch_size))
        return max(1, min(-(-HEAD_STEPS // steps), self.epochs // 2))

    def steps_per_epoch(self, phase: str, steps: int, epochs: int) -> int:
        """Optimizer steps per epoch of a phase of `epochs` epochs whose data fills `steps` batches.

        Fine-tuning gets at least FINETUNE_STEPS steps in all (an epoch then
        passes over the data more than once): on 48 images 9 epochs would be 9
        steps, too few for any schedule. A time budget decides by itself.

        Example:
            >>> from imgclf.core.config import TrainConfig
            >>> from imgclf.models.registry import get_spec
            >>> plan = make_plan(TrainConfig(model="small_cnn", weights="imagenet", img_size=32, color_mode="rgb"), get_spec("small_cnn"), None)
            >>> plan.steps_per_epoch("finetune", 1, 9), plan.steps_per_epoch("finetune", 30, 9), plan.steps_per_epoch("train", 1, 9)
            (6, 30, 1)
        """
        if phase != "finetune" or self.time_budget or not epochs:
            return steps
        return max(steps, -(-FINETUNE_STEPS // epochs))

    def describe(self, n_train: int, steps: int) -> str:
        """One line per phase: what runs, how many steps and images. Printed at the start of training.

        Example:
            >>> from imgclf.core.config import TrainConfig
            >>> from imgclf.models.registry import get_spec
            >>> plan = make_plan(TrainConfig(model="small_cnn", weights="imagenet", epochs=4, img_size=32, color_mode="rgb"), get_spec("small_cnn"), None)
            >>> print(plan.describe(n_train=48, steps=1))
            Plan: head: solved on backbone features of 48 images (epoch 1)
                  finetune: epochs 2-4, 17 steps each of up to 64 images (51 steps)
        """
        lines, first = [], 0
        for name, end, share in self.phases(n_train):
            if name == "head" and self.head_solver:
                lines.append(f"head: solved on backbone features of {n_train} images (epoch 1)")
            elif self.time_budget:
                lines.append(f"{name}: {self.time_budget * share:.1f} minutes" if share else f"{name}: the budget left")
            else:
                per = self.steps_per_epoch(name, steps, end - first)
                lines.append(f"{name}: epochs {first + 1}-{end}, {per} steps each of up to {self.batch_size} images "
                             f"({per * (end - first)} steps)")
            first = end
        return "Plan: " + "\n      ".join(lines)

    def with_lr(self, lr: float) -> "TrainingPlan":
        """The plan with the learning rate the range test found (``lr='auto'``).

        Example:
            >>> from imgclf.core.config import TrainConfig
            >>> from imgclf.models.registry import get_spec
            >>> make_plan(TrainConfig(model="small_cnn", lr="auto", img_size=32, color_mode="rgb"), get_spec("small_cnn"), None).with_lr(0.003).lr
            0.003
        """
        return dataclasses.replace(self, lr=lr)

    def with_precision(self, policy: str) -> "TrainingPlan":
        """The plan with the Keras dtype policy chosen for this machine; config.yaml records what was used.

        Example:
            >>> from imgclf.core.config import TrainConfig
            >>> from imgclf.models.registry import get_spec
            >>> plan = make_plan(TrainConfig(model="small_cnn", img_size=32, color_mode="rgb"), get_spec("small_cnn"), None)
            >>> plan.with_precision("mixed_bfloat16").precision, plan.with_precision("float32").precision
            ('bfloat16', 'float32')
        """
        return dataclasses.replace(self, precision=policy.replace("mixed_", "")) if self.precision == "auto" else self

    def apply(self, cfg):
        """A copy of `cfg` holding the resolved values: what config.yaml records and the recipe reads.

        Example:
            >>> from imgclf.core.config import TrainConfig
            >>> from imgclf.models.registry import get_spec
            >>> cfg = TrainConfig(model="small_cnn", img_size=4)
            >>> make_plan(cfg, get_spec("small_cnn"), {"grayscale": False, "median_side": 50}).apply(cfg).img_size, cfg.img_size
            (8, 4)
        """
        return dataclasses.replace(cfg, lr=self.lr, label_smoothing=self.label_smoothing, color_mode=self.color_mode,
                                   img_size=self.img_size, augment=self.augment, feature_cache=self.feature_cache,
                                   precision=self.precision, weights=self.weights, finetune=self.finetune,
                                   monitor=self.monitor, **self.split)


def check_without_validation(cfg) -> None:
    """Raise `UserError` when `cfg` asks for something a run without validation images cannot do.

    Early stopping and a monitored metric pick epochs by validation figures;
    without a validation split there are none, so asking for them explicitly
    is a contradiction, not something to drop silently. 'auto' and 'none' pass.

    Example:
        >>> from imgclf.core.config import TrainConfig
        >>> check_without_validation(TrainConfig(val_fraction=0.0))
        >>> check_without_validation(TrainConfig(val_fraction=0.0, monitor="val_loss"))
        Traceback (most recent call last):
        ...
        imgclf.core.errors.UserError: --monitor val_loss needs validation images, and this run has none (--val-fraction 0 and no val/ folder). ...
    """
    why = "this run has none (--val-fraction 0 and no val/ folder)"
    if cfg.patience:
        raise UserError(f"Early stopping (--patience {cfg.patience}) needs validation images, and {why}. Expected "
                        "--patience 0 with a fixed --epochs (or --time-budget); or keep a validation split "
                        "(--val-fraction 0.1) to stop early.")
    if cfg.monitor not in ("auto", "none"):
        raise UserError(f"--monitor {cfg.monitor} needs validation images, and {why}. Without validation the last "
                        "epoch is kept (--monitor none); keep a validation split (--val-fraction 0.1) to pick the best epoch.")


def make_plan(cfg, spec, probe: dict | None, replicas: int = 1, split: dict | None = None,
              in_memory: bool = True, validation: bool = True) -> TrainingPlan:
    """Resolve the automatic settings of `cfg` for the model `spec`, the data `probe` and the replicas.

    `probe` is `data.decode.probe_images`' answer ({"grayscale", "median_side"});
    it may be None when neither color_mode nor img_size is automatic (a resumed
    run, whose config.yaml holds resolved values). `split` holds split settings
    the data source fixed (`DataSource.split_settings`: packed shards keep their split).
    `validation` False (no validation images: ``val_fraction=0``) checks that
    nothing asked needs them (`check_without_validation`) and keeps the last epoch (monitor 'none').

    Example:
        >>> from imgclf.core.config import TrainConfig
        >>> from imgclf.models.registry import get_spec
        >>> make_plan(TrainConfig(model="small_cnn"), get_spec("small_cnn"), {"grayscale": False, "median_side": 500}).img_size
        96
        >>> make_plan(TrainConfig(model="small_cnn", img_size=32, color_mode="rgb"), get_spec("small_cnn"), None, replicas=2).feature_cache
        'off'
        >>> make_plan(TrainConfig(model="small_cnn", img_size=32, color_mode="rgb", val_fraction=0.0), get_spec("small_cnn"), None, validation=False).monitor
        'none'
    """
    if not validation:
        check_without_validation(cfg)
    lr, smoothing = model_defaults(dataclasses.replace(cfg, model=spec.name))  # the spec's model, also for 'auto'
    needs_probe = cfg.color_mode == "auto" or not cfg.img_size
    if needs_probe and probe is None:
        raise ValueError("make_plan needs a probe of the data when color_mode is 'auto' or img_size is 0.")
    if cfg.color_mode == "auto":
        color_mode = "grayscale" if probe["grayscale"] and "grayscale" in spec.color_modes else "rgb"
    elif cfg.color_mode not in spec.color_modes:
        raise UserError(
            f"{cfg.model!r} takes {' or '.join(spec.color_modes)} images, received color_mode={cfg.color_mode!r}. "
            "Use --color-mode rgb (grayscale images are converted)."
        )
    else:
        color_mode = cfg.color_mode
    img_size = cfg.img_size
    if not img_size:
        # Small images keep their size (cheap and sharp); tiny ones are upsampled so three conv
        # stages still have room; large ones are shrunk to keep a CPU epoch short.
        img_size = spec.default_size or int(min(max(probe["median_side"], 28), 96))
    img_size = max(img_size, spec.min_size)
    weights = weights_of(cfg)
    finetune = "top" if cfg.finetune == "auto" else cfg.finetune
    fine_tunes = weights != "none" and finetune != "none"
    augment = auto_augment(cfg.epochs, cfg.time_budget, fine_tunes) if cfg.augment == "auto" else cfg.augment
    # The best epoch by validation loss when fine-tuning: on a few hundred validation images accuracy
    # moves by whole images from epoch to epoch, and picked early lucky epochs (bench/RESULTS.md).
    monitor = cfg.monitor if cfg.monitor != "auto" else ("val_loss" if fine_tunes else "val_accuracy")
    if not validation:
        monitor = "none"  # nothing to pick an epoch by: the last one is kept
    # The head-on-features shortcut trains a separate small model outside the strategy.
    feature_cache = "off" if replicas > 1 and cfg.feature_cache == "auto" else cfg.feature_cache
    one_hot = smoothing > 0 or cfg.mixup > 0 or cfg.cutmix > 0
    head_solver = weights != "none" and in_memory and feature_cache == "auto" and not cfg.head_epochs
    return TrainingPlan(lr=lr, label_smoothing=smoothing, color_mode=color_mode, img_size=img_size, augment=augment,
                        one_hot=one_hot, feature_cache=feature_cache, precision=cfg.precision, weights=weights,
                        epochs=cfg.epochs, time_budget=cfg.time_budget, finetune=finetune, head_epochs=cfg.head_epochs,
                        batch_size=cfg.batch_size, head_solver=head_solver, monitor=monitor, validation=validation,
                        split=dict(split or {}))
