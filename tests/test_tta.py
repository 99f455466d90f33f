import numpy as np
import pytest

from imgclf.errors import UserError
from imgclf.tta import tta_predict


def _left_brightness_model(images):
    """A 'model' that says class 0 when the left half is brighter: flipping swaps its answer."""
    w = images.shape[2]
    left = images[:, :, : w // 2].mean(axis=(1, 2, 3))
    right = images[:, :, w // 2:].mean(axis=(1, 2, 3))
    p0 = 1 / (1 + np.exp(-(left - right) / 20))
    return np.stack([p0, 1 - p0], axis=1)


def test_flip_averages_image_and_mirror():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    x[:, :, :4] //= 4  # darker left half
    plain = _left_brightness_model(x)
    both = tta_predict(x, _left_brightness_model, "flip")
    # The mirror gives the opposite answer, so the average is exactly undecided.
    assert np.allclose(both, 0.5, atol=1e-6)
    assert not np.allclose(plain, 0.5, atol=0.05)
    assert np.allclose(tta_predict(x, _left_brightness_model, "none"), plain, atol=1e-6)


def test_symmetric_images_are_unchanged_and_bad_modes_rejected():
    x = np.zeros((2, 4, 4, 1), dtype=np.uint8)
    x[:, :, 1:3] = 200  # left-right symmetric
    assert np.allclose(tta_predict(x, _left_brightness_model, "flip"), _left_brightness_model(x), atol=1e-6)
    with pytest.raises(UserError, match="flip"):
        tta_predict(x, _left_brightness_model, "rotate")
    with pytest.raises(UserError, match="shaped"):
        tta_predict(x[0], _left_brightness_model)
