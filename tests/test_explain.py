"""Grad-CAM looks where the evidence is; it works for every family in the registry; embeddings are the classifier's input."""

import numpy as np
import pytest
from PIL import Image

COLOURS = {"red": 0, "green": 1, "blue": 2}
SIZE, OBJ = 32, 8


def _scene(colour: str, rng):
    """Grey noise with one coloured square at a random place; returns the image and the square's box."""
    img = np.repeat(rng.integers(40, 90, (SIZE, SIZE, 1)), 3, axis=2).astype(np.uint8)
    y, x = rng.integers(0, SIZE - OBJ, 2)
    patch = rng.integers(0, 50, (OBJ, OBJ, 3))
    patch[..., COLOURS[colour]] = rng.integers(200, 256)
    img[y:y + OBJ, x:x + OBJ] = patch
    return img, (y, x)


@pytest.fixture(scope="module")
def object_run(tmp_path_factory):
    import imgclf

    root = tmp_path_factory.mktemp("objects")
    rng = np.random.default_rng(0)
    for colour in COLOURS:
        (root / "data" / colour).mkdir(parents=True)
        for i in range(24):
            Image.fromarray(_scene(colour, rng)[0]).save(root / "data" / colour / f"{i}.png")
    return imgclf.train(str(root / "data"), out=str(root / "run"), model="small_cnn", epochs=8, batch_size=16, lr=0.005, verbose=0,
                        val_fraction=0.15, test_fraction=0.0)


@pytest.mark.slow
def test_gradcam_peaks_on_the_object(object_run):
    import imgclf
    from imgclf.evaluation.explain import find_feature_map, gradcam

    clf = imgclf.load(object_run.path)
    rng = np.random.default_rng(42)
    scenes = [_scene(c, rng) for c in list(COLOURS) * 4]
    images = np.stack([s[0] for s in scenes])
    labels = np.array([clf.classes.index(c) for c in list(COLOURS) * 4])
    assert (clf.predict_arrays(images).argmax(1) == labels).mean() >= 0.9
    assert find_feature_map(clf.model)[1] == "backbone"
    maps = gradcam(clf.model, images)
    assert maps.shape == (12, SIZE, SIZE) and maps.max() <= 1.0 + 1e-6
    hits = 0
    for m, (_, (y, x)) in zip(maps, scenes):
        py, px = np.unravel_index(np.argmax(m), m.shape)
        # The peak may sit on the square's edge at the feature map's 4-pixel resolution.
        hits += (y - 4 <= py < y + OBJ + 4) and (x - 4 <= px < x + OBJ + 4)
    assert hits >= 10, f"Grad-CAM peaked on the object in only {hits} of 12 images"
    # The map for the true class beats the map for another class on the object.
    other = gradcam(clf.model, images, class_index=(labels + 1) % 3)
    inside = np.zeros_like(maps, dtype=bool)
    for k, (_, (y, x)) in enumerate(scenes):
        inside[k, y:y + OBJ, x:x + OBJ] = True
    assert maps[inside].mean() > other[inside].mean()


@pytest.mark.slow
def test_embeddings_are_the_classifier_input(object_run):
    import imgclf
    from imgclf.evaluation.explain import embeddings, project

    clf = imgclf.load(object_run.path)
    rng = np.random.default_rng(1)
    images = np.stack([_scene(c, rng)[0] for c in list(COLOURS) * 5])
    feats = embeddings(clf.model, images)
    dense = clf.model.get_layer("classifier")
    logits = feats @ np.asarray(dense.kernel, dtype=np.float32) + np.asarray(dense.bias, dtype=np.float32)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert np.allclose(probs, clf.predict_arrays(images), atol=0.03)  # bf16 inference leaves small differences
    proj = project(feats)
    assert proj["pca"].shape == (15, 2) and proj["tsne"].shape == (15, 2)


# One model per kind of builder: imgclf's own CNN, its EfficientNet-Lite, and keras.applications
# backbones with and without in-graph preprocessing. Every registered model (39 when written) is
# checked by bench/gradcam_all_models.py, which takes minutes; see bench/RESULTS.md.
REPRESENTATIVES = ["small_cnn", "efficientnet_lite0", "mobilenet_v3_small", "resnet50", "efficientnet_b0"]


@pytest.mark.slow
@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_gradcam_works_for_every_model_family(name):
    from imgclf.evaluation.explain import find_feature_map, gradcam
    from imgclf.models.factory import create_model
    from imgclf.models.registry import get_spec

    size = max(64, get_spec(name).min_size)
    model = create_model(name, num_classes=3, img_size=size)
    tensor, layer = find_feature_map(model)
    assert len(tensor.shape) == 4 and layer == "backbone"
    maps = gradcam(model, np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8))
    assert maps.shape == (2, size, size) and np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
