import numpy as np
import pytest

import imgclf
from imgclf.errors import UserError
from imgclf.models.registry import create_model, get_spec, list_models, register_model

HEAVY = {"resnet50", "efficientnet_b0"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in list_models()])
def test_every_model_builds_and_predicts_at_min_size(name):
    spec = get_spec(name)
    size = max(spec.min_size, 32)
    channels = 1 if "grayscale" in spec.color_modes else 3
    model = create_model(name, num_classes=4, img_size=size, channels=channels, weights=None)
    x = np.random.default_rng(0).integers(0, 255, (2, size, size, channels)).astype("float32")
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (2, 4)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    assert model.get_layer("backbone") is not None


def test_unknown_model_suggests_names():
    with pytest.raises(UserError, match="Did you mean 'mobilenet_v2'"):
        get_spec("mobilenetv2")


def test_too_small_input_is_user_error():
    with pytest.raises(UserError, match="too small"):
        create_model("mobilenet_v2", num_classes=2, img_size=16)


def test_register_model_adds_to_the_registry():
    @register_model("test_tiny_net", default_size=16, min_size=8, preprocessing="unit", color_modes=("rgb", "grayscale"))
    def tiny(input_shape, weights=None, bn_momentum=0.9):
        import keras

        inputs = keras.Input(input_shape)
        return keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))

    assert "test_tiny_net" in list_models("test_*")
    assert imgclf.create_model("test_tiny_net", num_classes=3).output_shape == (None, 3)


def test_imagenet_download_failure_says_what_to_do(monkeypatch, tmp_path):
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    import keras.src.applications.mobilenet_v2 as m

    monkeypatch.setattr(m.file_utils, "get_file", offline)
    with pytest.raises(UserError, match=r"MobileNetV2.*--weights PATH.*--weights none"):
        create_model("mobilenet_v2", num_classes=2, img_size=32, weights="imagenet")
