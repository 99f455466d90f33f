"""The model registry, a leaf (after timm's ``_registry``): names to `ModelSpec`s, nothing else.

A model is a backbone (a Keras model from images to a feature map) plus
imgclf's head (global pooling, dropout, a softmax classifier). The registry
holds `ModelSpec`s; the CLI's choices, `imgclf models`, the docs and the tests
all read it, so no model name is written down twice. This module imports no
builder and no TensorFlow: the builder modules register themselves when
`imgclf.models` is imported, and `imgclf.models.factory.create_model` builds.
Listing models is instant; builders import Keras when called.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Callable

from imgclf.core.errors import UserError, did_you_mean


@dataclass(frozen=True)
class ModelSpec:
    """What imgclf knows about one registered architecture.

    ``build(input_shape, weights, bn_momentum)`` returns the backbone: a Keras
    model from (H, W, C) inputs, already preprocessed, to a feature map.
    """

    name: str
    build: Callable = field(repr=False)
    default_size: int  # input side used when img_size is not set (0 = chosen from the data)
    min_size: int  # smallest input side the architecture accepts
    preprocessing: str  # Preprocess mode applied inside the graph before the backbone
    color_modes: tuple = ("rgb",)  # colour modes the backbone accepts
    params_m: float | None = None  # parameters in millions (published ImageNet model, with its top)
    imagenet_top1: float | None = None  # published ImageNet top-1 accuracy
    pretrained: bool = False  # ImageNet weights exist for it
    family: str = ""
    description: str = ""
    scratch_lr: float = 0.002  # peak AdamW rate when trained from scratch (`--lr model`, the default); tuned in bench/
    scratch_label_smoothing: float = 0.1  # label smoothing from scratch (`--label-smoothing model`, the default); tuned in bench/
    # () -> path of ImageNet weights already on this machine (Keras cache file or
    # an installed weights package), or None; see `weights.pretrained_location`.
    weights_locator: Callable | None = field(default=None, repr=False, compare=False)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str | None = None, **spec_fields):
    """Decorator that registers a backbone builder under `name`.

    Example:
        >>> @register_model("my_net", default_size=64, min_size=32, preprocessing="unit",
        ...                 color_modes=("rgb", "grayscale"))
        ... def my_net(input_shape, weights=None, bn_momentum=0.9):
        ...     import keras
        ...     inputs = keras.Input(input_shape)
        ...     return keras.Model(inputs, keras.layers.Conv2D(8, 3)(inputs))
    """

    def wrap(fn):
        key = name or fn.__name__
        _REGISTRY[key] = ModelSpec(name=key, build=fn, **spec_fields)
        return fn

    return wrap


DEFAULT_LR = 0.002  # peak AdamW rate for pretrained backbones and for models whose entry names none


def default_lr(model: str, weights: str = "none") -> float:
    """The peak learning rate `--lr model` (the default) resolves to.

    A model trained from scratch gets the rate its registry entry was tuned with
    (`scratch_lr`, chosen on a validation split in bench/); pretrained weights
    get the common 0.002 (fine-tuning then runs at a tenth of it).

    Example:
        >>> default_lr("small_resnet"), default_lr("small_cnn")
        (0.004, 0.002)
    """
    return get_spec(model).scratch_lr if weights in (None, "", "none") else DEFAULT_LR


DEFAULT_LABEL_SMOOTHING = 0.1  # for pretrained backbones and for models whose entry names none


def default_label_smoothing(model: str, weights: str = "none") -> float:
    """The label smoothing `--label-smoothing model` (the default) resolves to.

    Like `default_lr`: a model trained from scratch gets the value its registry
    entry was tuned with (`scratch_label_smoothing`, chosen on a validation
    split in bench/), pretrained weights the common 0.1.

    Example:
        >>> default_label_smoothing("small_resnet"), default_label_smoothing("small_cnn")
        (0.15, 0.1)
    """
    return get_spec(model).scratch_label_smoothing if weights in (None, "", "none") else DEFAULT_LABEL_SMOOTHING


# name suffix -> function(name) -> ModelSpec, for models named by a file (a YAML architecture)
_FILE_RESOLVERS: dict[tuple[str, ...], Callable] = {}


def register_file_resolver(suffixes: tuple[str, ...], resolve: Callable) -> None:
    """Let `get_spec` accept file names ending in `suffixes` (as ``my_cnn.yaml``) by calling `resolve(name)`.

    Example:
        >>> register_file_resolver((".toy",), lambda name: get_spec("small_cnn"))
        >>> get_spec("net.toy").name
        'small_cnn'
        >>> del _FILE_RESOLVERS[(".toy",)]
    """
    _FILE_RESOLVERS[tuple(suffixes)] = resolve


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered model names matching a shell-style pattern.

    Example:
        >>> "small_cnn" in list_models()
        True
        >>> list_models("mobilenet*")
        ['mobilenet_v2', 'mobilenet_v3_large', 'mobilenet_v3_small']
    """
    names = sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))
    return [n for n in names if _REGISTRY[n].pretrained] if pretrained else names


def get_spec(name: str) -> ModelSpec:
    """The `ModelSpec` of a registered model, or of a YAML architecture file; unknown names suggest close ones.

    Example:
        >>> get_spec("small_cnn").min_size
        8
        >>> get_spec("my_cnn.yaml").family
        'yaml'
    """
    for suffixes, resolve in _FILE_RESOLVERS.items():
        if str(name).lower().endswith(suffixes):
            return resolve(name)
    if name not in _REGISTRY:
        raise UserError(
            f"Unknown model {name!r}: expected a name from `imgclf models`." + did_you_mean(name, _REGISTRY)
        )
    return _REGISTRY[name]
