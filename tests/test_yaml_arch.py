"""CNN architectures from YAML files: they build, train through the normal path, and mistakes name the line."""

import textwrap

import numpy as np
import pytest

from imgclf.core.errors import UserError
from imgclf.models.factory import create_model
from imgclf.models.registry import get_spec

GOOD = """\
name: my_cnn
input_size: 24
min_size: 16
color_modes: [rgb, grayscale]
layers:
  - Conv2D: {filters: 8, kernel_size: 3, padding: same, use_bias: false}
  - BatchNormalization
  - ReLU
  - MaxPooling2D: {pool_size: 2}
  - SeparableConv2D: {filters: 16, kernel_size: 3, padding: same, activation: relu}
"""


def write(tmp_path, text, name="arch.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_yaml_architecture_builds_and_predicts(tmp_path):
    path = write(tmp_path, GOOD)
    spec = get_spec(path)
    assert (spec.default_size, spec.min_size, spec.preprocessing, spec.color_modes) == (24, 16, "unit", ("rgb", "grayscale"))
    model = create_model(path, num_classes=3, channels=1)
    assert model.input_shape == (None, 24, 24, 1) and model.output_shape == (None, 3)
    backbone = model.get_layer("backbone")
    assert [l.__class__.__name__ for l in backbone.layers[1:]] == [
        "Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D", "SeparableConv2D"]
    assert backbone.layers[2].momentum == 0.9  # imgclf's BatchNorm momentum for short runs
    probs = np.asarray(model(np.zeros((2, 24, 24, 1), "float32")))
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)


@pytest.mark.parametrize("text,line,match", [
    ("layers:\n  - Conv2D: {filters: 8, kernel_size: 3}\n  - Conv2d: {filters: 8, kernel_size: 3}\n", 3,
     "unknown layer 'Conv2d'.*Did you mean 'Conv2D'"),
    ("layers:\n  - Conv2D:\n      filter: 8\n      kernel_size: 3\n", 3, "Conv2D has no argument 'filter'. Did you mean 'filters'"),
    ("name: x\nlayer:\n  - ReLU\n", 2, "unknown key 'layer'.*Did you mean 'layers'"),
    ("preprocessing: torchh\nlayers: [ReLU]\n", 1, "preprocessing must be one of.*Did you mean 'torch'"),
    ("input_size: big\nlayers: [ReLU]\n", 1, "input_size must be a whole number"),
    ("layers:\n  - ReLU\n  - {Conv2D: {filters: 4}, ReLU: {}}\n", 3, "one key per list item"),
    ("layers:\n  - Conv2D: {filters: 8}\n", 2, r"Conv2D\(filters=8.*failed"),
])
def test_mistakes_point_to_the_line_and_key(tmp_path, text, line, match):
    path = write(tmp_path, text)
    with pytest.raises(UserError, match=match) as err:
        create_model(path, num_classes=2, img_size=16)
    assert f"{path} line {line}:" in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="Architecture file not found"):
        get_spec(str(tmp_path / "none.yaml"))
    with pytest.raises(UserError, match="not valid YAML"):
        get_spec(write(tmp_path, "layers: [ReLU\n"))
    with pytest.raises(UserError, match="no 'layers:' list"):
        get_spec(write(tmp_path, "name: x\n", "b.yaml"))


def test_modes_agree_with_the_preprocess_layer():
    from imgclf.models import layers, yaml_arch

    assert yaml_arch.PREPROCESS_MODES == layers.PREPROCESS_MODES


@pytest.mark.slow
def test_train_with_a_yaml_model(tmp_path, image_folder):
    import imgclf
    from imgclf.training.api import train

    path = write(tmp_path, GOOD)
    run = train(image_folder, model=path, epochs=1, batch_size=16, verbose=0, out=str(tmp_path / "run"))
    clf = imgclf.load(run.path)
    assert clf is not None
    assert (run.path / "model.keras").exists()
