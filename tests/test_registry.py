import os

import numpy as np
import pytest

import imgclf
from imgclf.core.errors import UserError
from imgclf.models.factory import create_model
from imgclf.models.registry import get_spec, list_models, register_model

# Building the whole zoo takes ~3 minutes on 2 cores. The largest models
# (3.5-14 s each to build, even at 32 px) are skipped unless
# IMGCLF_TEST_FULL_ZOO=1; they share their builder code with a smaller
# sibling that is tested (e.g. efficientnet_b7 with efficientnet_b0..b4).
VERY_LARGE = {"efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_s", "efficientnet_v2_m",
              "efficientnet_v2_l", "convnext_small", "convnext_base", "resnet101", "resnet152", "resnet152_v2",
              "densenet169", "densenet201", "nasnet_mobile"}
FULL_ZOO = os.environ.get("IMGCLF_TEST_FULL_ZOO") == "1"
CHEAP = {"small_cnn", "mobilenet_v2", "efficientnet_lite0"}


def _zoo_params():
    for name in list_models():
        if name in VERY_LARGE and not FULL_ZOO:
            yield pytest.param(name, marks=pytest.mark.skip(reason="very large: set IMGCLF_TEST_FULL_ZOO=1"))
        elif name in CHEAP:
            yield name
        else:
            yield pytest.param(name, marks=pytest.mark.slow)


@pytest.mark.parametrize("name", list(_zoo_params()))
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


def test_register_model_adds_to_the_registry(monkeypatch):
    from imgclf.models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the test's model leaves with the test

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
    with pytest.raises(UserError, match=r"MobileNetV2.*--weights PATH.*--weights none") as err:
        create_model("mobilenet_v2", num_classes=2, img_size=32, weights="imagenet")
    message = str(err.value)
    assert "'mobilenet_v2'" in message  # the model, as the user named it
    assert str(tmp_path / "models") in message  # the cache folder
    assert "imgclf weights fetch mobilenet_v2" in message  # way out 1: fetch elsewhere and copy
    assert "no network" in message  # what went wrong


def test_zoo_specs_match_keras_applications():
    """Sizes and preprocessing follow each keras.applications module (its preprocess_input)."""
    from imgclf.models.applications import APPLICATIONS

    expected = {"mobilenet_v2": "tf", "resnet50": "caffe", "resnet50_v2": "tf", "densenet121": "torch",
                "xception": "tf", "inception_v3": "tf", "nasnet_mobile": "tf", "efficientnet_b0": "none",
                "efficientnet_v2_b0": "none", "convnext_tiny": "none", "mobilenet_v3_large": "none"}
    for name, mode in expected.items():
        assert get_spec(name).preprocessing == mode, name
    assert get_spec("xception").min_size == 71 and get_spec("inception_v3").min_size == 75
    assert get_spec("efficientnet_b7").default_size == 600 and get_spec("efficientnet_v2_s").default_size == 384
    families = {"mobilenet_v3_small", "efficientnet_b3", "efficientnet_v2_l", "resnet152_v2", "convnext_base",
                "densenet201", "efficientnet_lite4"}
    assert families <= set(list_models())
    assert len(APPLICATIONS) == 33
    for name in list_models():
        spec = get_spec(name)
        assert spec.min_size <= (spec.default_size or spec.min_size)
        if spec.pretrained:
            assert spec.imagenet_top1 and 0.6 < spec.imagenet_top1 < 0.9 and spec.params_m


def test_pretrained_location_reads_the_keras_cache(monkeypatch, tmp_path):
    from imgclf.models.weights import list_weights, pretrained_location

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert pretrained_location("resnet50") is None
    (tmp_path / "models").mkdir()
    cached = tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    cached.write_bytes(b"x" * 10)
    assert pretrained_location("resnet50") == cached
    assert {"model": "resnet50", "path": str(cached), "size_mb": 0.0, "source": "keras cache"} in list_weights()
