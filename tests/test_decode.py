import io

import numpy as np
import pytest
from PIL import Image

from imgclf.data.decode import DecodeError, decode_image, probe_images


def _png_bytes(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_rgb_and_grayscale_outputs(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[..., 0] = 200
    path = tmp_path / "a.png"
    Image.fromarray(arr).save(path)
    out = decode_image(path, size=8, color_mode="rgb")
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert out[..., 0].min() == 200 and out[..., 1].max() == 0
    gray = decode_image(path, size=8, color_mode="grayscale")
    assert gray.shape == (8, 8, 1)
    assert abs(int(gray.mean()) - round(0.299 * 200)) <= 1


def test_rgba_is_composited_on_white_not_dropped():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # fully transparent black
    out = decode_image(_png_bytes(rgba))
    assert (out == 255).all()


def test_palette_with_transparency_and_la():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([10, 20, 30] + [0] * 765)
    assert (decode_image(_png_bytes(p)) == [10, 20, 30]).all()
    la = Image.new("LA", (4, 4), (0, 0))
    assert (decode_image(_png_bytes(la), color_mode="grayscale") == 255).all()


def test_16bit_scaled_to_8bit():
    arr = np.full((4, 4), 65535, np.uint16)
    arr[0, 0] = 0
    img = Image.fromarray(arr)
    out = decode_image(_png_bytes(img), color_mode="grayscale")
    assert out[1, 1, 0] == 255 and out[0, 0, 0] == 0


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (20, 10), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = decode_image(_png_bytes(img, "JPEG", exif=exif.tobytes()))
    assert out.shape[:2] == (20, 10)


def test_extension_does_not_matter(tmp_path):
    path = tmp_path / "really_png.jpg"
    Image.new("RGB", (5, 5), (0, 255, 0)).save(path, "PNG")
    assert decode_image(path)[0, 0, 1] == 255


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"),
    (b"this is text, not pixels", "not an image"),
])
def test_bad_bytes_raise_decode_error(content, reason):
    with pytest.raises(DecodeError, match=reason):
        decode_image(content)


def test_truncated_jpeg_raises_decode_error():
    data = _png_bytes(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    with pytest.raises(DecodeError):
        decode_image(data[: len(data) // 3])


def test_pixel_limit():
    data = _png_bytes(Image.new("L", (100, 100)))
    with pytest.raises(DecodeError, match="too large"):
        decode_image(data, max_pixels=5000)


def test_resize_modes_keep_requested_shape():
    data = _png_bytes(Image.new("RGB", (40, 10), (9, 9, 9)))
    for mode in ("squash", "crop", "pad"):
        assert decode_image(data, size=16, resize=mode).shape == (16, 16, 3)


def test_probe_reports_grayscale_and_median(tmp_path):
    for i, side in enumerate((10, 20, 30)):
        Image.new("L", (side, side)).save(tmp_path / f"{i}.png")
    info = probe_images(sorted(str(p) for p in tmp_path.iterdir()))
    assert info == {"median_side": 20, "grayscale": True, "probed": 3}
