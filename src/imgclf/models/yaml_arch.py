"""CNN architectures written as YAML files, usable wherever a model name is.

A file lists Keras layers in order; imgclf adds its usual input preprocessing
in front and its head (global pooling, dropout, classifier) behind::
    # my_cnn.yaml            use with: imgclf train data/ --model my_cnn.yaml
    name: my_cnn             # optional (default: the file name)
    input_size: 64           # default input side (optional; 0 = chosen from the data)
    min_size: 16             # optional
    preprocessing: unit      # none | unit | tf | torch | caffe (default: unit)
    color_modes: [rgb, grayscale]
    layers:
      - Conv2D: {filters: 32, kernel_size: 3, padding: same, use_bias: false}
      - BatchNormalization
      - ReLU
      - MaxPooling2D: {pool_size: 2}
      - SeparableConv2D: {filters: 64, kernel_size: 3, padding: same, activation: relu}
      - Dropout: {rate: 0.1}

Each layer is a class name from `LAYERS`, alone or mapped to its keyword
arguments. Mistakes are reported with the file, line and key, and checked
before anything trains.

Example:
    >>> spec_from_yaml("my_cnn.yaml").min_size
    16
"""

from __future__ import annotations

import inspect
import os
from functools import lru_cache
from pathlib import Path

import yaml

from imgclf.core.config import MAX_IMG_SIZE
from imgclf.core.errors import UserError, did_you_mean
from imgclf.models.registry import ModelSpec, register_file_resolver

# The modes of layers.Preprocess (not imported from there: that imports Keras;
# tests/test_yaml_arch.py checks the two agree).
PREPROCESS_MODES = ("none", "unit", "tf", "torch", "caffe")

# Layers a backbone may use: spatial layers that keep a (H, W, C) feature map.
LAYERS = (
    "Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose",
    "BatchNormalization", "LayerNormalization", "GroupNormalization",
    "ReLU", "LeakyReLU", "PReLU", "ELU", "Activation", "Softmax",
    "MaxPooling2D", "AveragePooling2D", "ZeroPadding2D", "Cropping2D", "UpSampling2D",
    "Dropout", "SpatialDropout2D", "GaussianNoise",
)
TOP_KEYS = ("name", "input_size", "min_size", "preprocessing", "color_modes", "layers", "description")


def _where(path: str, node) -> str:
    return f"{path} line {node.start_mark.line + 1}"


def _scalar(node, where: str):
    """The plain value of a node; a tag such as !!python/object is refused (safe_load never runs it)."""
    try:
        return yaml.safe_load(yaml.serialize(node))
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(
            f"{where}: {problem}. Expected plain YAML values (numbers, strings, lists, mappings); "
            "tags such as !!python/object are not allowed in an architecture file. Remove the tag."
        ) from None


def parse_layers(path: str, node) -> list[tuple[str, dict, str]]:
    """(class name, keyword arguments, 'file line N') per layer of a `layers:` sequence node.

    Example:
        >>> parse_layers("a.yaml", yaml.compose("- ReLU"))
        [('ReLU', {}, 'a.yaml line 1')]
    """

    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise UserError(f"{_where(path, node)}: 'layers' must be a non-empty list of layers, e.g. '- Conv2D: {{filters: 32, kernel_size: 3}}'.")
    out = []
    for item in node.value:
        if isinstance(item, yaml.ScalarNode):
            cls, args_node = item.value, None
            key_node = item
        elif isinstance(item, yaml.MappingNode) and len(item.value) == 1:
            key_node, args_node = item.value[0]
            cls = key_node.value
        else:
            raise UserError(
                f"{_where(path, item)}: each layer must be a class name or 'ClassName: {{arg: value}}' "
                "(one key per list item)."
            )
        if cls not in LAYERS:
            raise UserError(
                f"{_where(path, key_node)}: unknown layer {cls!r}: expected one of {', '.join(LAYERS)}."
                + did_you_mean(cls, LAYERS)
            )
        args = {}
        if args_node is not None and not (isinstance(args_node, yaml.ScalarNode) and args_node.value in ("", "null", "~")):
            if not isinstance(args_node, yaml.MappingNode):
                raise UserError(f"{_where(path, args_node)}: arguments of {cls} must be a mapping like {{filters: 32}}.")
            for k_node, v_node in args_node.value:
                args[k_node.value] = (_scalar(v_node, _where(path, v_node)), _where(path, k_node))
        out.append((cls, args, _where(path, key_node)))
    return out


def check_layer_args(layers: list[tuple[str, dict, str]]) -> None:
    """Check every argument name against the Keras layer's signature (imports Keras).

    Example:
        >>> check_layer_args([("Conv2D", {"filter": (8, "a.yaml line 3")}, "a.yaml line 3")])
        Traceback (most recent call last):
        ...
        imgclf.core.errors.UserError: a.yaml line 3: Conv2D has no argument 'filter'. Did you mean 'filters'?
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    for cls, args, where in layers:
        params = inspect.signature(getattr(keras.layers, cls).__init__).parameters
        accepts_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
        named = [n for n in params if n not in ("self", "kwargs")]
        base = ("name", "dtype", "trainable")  # accepted through **kwargs by every layer
        for key, (_, key_where) in args.items():
            if key not in named and not (accepts_any and key in base):
                raise UserError(f"{key_where}: {cls} has no argument {key!r}." + did_you_mean(key, named))


@lru_cache(maxsize=32)
def _load(path: str, mtime: float):
    try:
        text = Path(path).read_text(encoding="utf-8")
        root = yaml.compose(text)
    except FileNotFoundError:
        raise UserError(f"Architecture file not found: {path!r}. Pass a YAML file describing the layers.") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {e}".replace("\n", " ")) from None
    if not isinstance(root, yaml.MappingNode):
        raise UserError(f"{path}: expected a mapping with a 'layers:' list at the top level.")
    fields = {}
    nodes = {}
    for k_node, v_node in root.value:
        if k_node.value not in TOP_KEYS:
            raise UserError(
                f"{_where(path, k_node)}: unknown key {k_node.value!r}: expected {', '.join(TOP_KEYS)}."
                + did_you_mean(k_node.value, TOP_KEYS)
            )
        nodes[k_node.value] = v_node
        if k_node.value != "layers":
            fields[k_node.value] = (_scalar(v_node, _where(path, v_node)), _where(path, v_node))
    if "layers" not in nodes:
        raise UserError(f"{path}: no 'layers:' list: say which layers the network has.")
    layers = parse_layers(path, nodes["layers"])

    def get(key, default, kind):
        value, where = fields.get(key, (default, path))
        if kind is int and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_IMG_SIZE):
            raise UserError(f"{where}: {key} must be a whole number of pixels from 0 to {MAX_IMG_SIZE}, "
                            f"received {value!r}.")
        return value

    preprocessing = get("preprocessing", "unit", str)
    if preprocessing not in PREPROCESS_MODES:
        raise UserError(
            f"{fields['preprocessing'][1]}: preprocessing must be one of {', '.join(PREPROCESS_MODES)}, "
            f"received {preprocessing!r}." + did_you_mean(preprocessing, PREPROCESS_MODES)
        )
    color_modes = get("color_modes", ["rgb", "grayscale"], list)
    if isinstance(color_modes, str):
        color_modes = [color_modes]
    if not isinstance(color_modes, list) or not color_modes or any(c not in ("rgb", "grayscale") for c in color_modes):
        raise UserError(f"{fields['color_modes'][1]}: color_modes must list rgb and/or grayscale, received {color_modes!r}.")
    name = str(get("name", Path(path).stem, str))

    def build(input_shape, weights=None, bn_momentum=0.9):
        # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
        import keras

        check_layer_args(layers)
        inputs = keras.Input(input_shape)
        x = inputs
        for i, (cls, args, where) in enumerate(layers):
            kwargs = {k: v for k, (v, _) in args.items()}
            kwargs.setdefault("name", f"{cls.lower()}_{i}")
            if cls == "BatchNormalization":
                kwargs.setdefault("momentum", bn_momentum)
            try:
                x = getattr(keras.layers, cls)(**kwargs)(x)
            except (TypeError, ValueError) as e:
                raise UserError(f"{where}: {cls}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: "
                                f"{str(e).splitlines()[0][:300]}") from None
        return keras.Model(inputs, x, name=name)

    return ModelSpec(
        name=path, build=build, default_size=get("input_size", 0, int), min_size=get("min_size", 8, int) or 8,
        preprocessing=preprocessing, color_modes=tuple(color_modes), family="yaml",
        description=str(get("description", f"{name}: {len(layers)} layers from {Path(path).name}", str)),
    )


def spec_from_yaml(path: str | os.PathLike):
    """A `ModelSpec` for the YAML architecture at `path` (re-read when the file changes).

    Example:
        >>> from imgclf.models.factory import create_model
        >>> create_model("my_cnn.yaml", num_classes=3, img_size=64).output_shape
        (None, 3)
    """
    path = os.fspath(path)
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        raise UserError(f"Architecture file not found: {path!r}. Pass a YAML file describing the layers.") from None
    return _load(path, mtime)


register_file_resolver((".yaml", ".yml"), spec_from_yaml)
