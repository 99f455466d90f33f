"""Decoding uploads with little memory: straight towards the model's input size, never to full size and back.

The ordinary decoder (`imgclf.data.decode.decode_image`) converts and resizes
the whole image: for a 6300x6300 RGBA PNG that is ~160 MB decoded plus three
full-size copies (composite on white, RGB, resize input). Here the file is
opened first (header only) so the server can weigh its cost before any pixel is
decoded (see gate.py), then:

- a JPEG is decoded by libjpeg at 1/2, 1/4 or 1/8 scale (``draft``), never
  below the model's size;
- any other image is decoded once and reduced in strips of rows: each strip is
  box-reduced by an integer factor that keeps the image at least `GAP` times
  the model's size (transparent images averaged premultiplied, as Pillow's
  resize does) and converted to RGB/grayscale (transparency composited on
  white, as the ordinary path does), so no full-size copy is ever made;
- the small image then goes through `decode_image` for the final resize, so the
  answer matches the ordinary decode within resize tolerance.

16-bit, 32-bit and float images are converted as a whole (their 8-bit scaling
depends on the whole image's range) and cost more, which `decode_cost` says.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math

import numpy as np
from PIL import Image

from imgclf.data.decode import DecodeError, DecodeErrorKind, decode_image, open_image, to_color_mode

GAP = 3  # reduce to at least 3x the model's size: Pillow's "indistinguishable from fair resampling" gap
STRIP_BYTES = 8 * 1024 * 1024  # a strip of decoded rows converted and reduced at a time
REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA")
WHOLE_IMAGE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # 8-bit scaling needs the whole image
ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
               5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}  # EXIF orientation -> the transpose that undoes it (as ImageOps.exif_transpose)


def open_upload(data: bytes, size: int, color_mode: str = "rgb", max_pixels: int = 40_000_000) -> Image.Image:
    """Open uploaded bytes (header only, pixel cap checked) and ask libjpeg to decode a JPEG at a reduced scale.

    Raises `DecodeError` like the ordinary decoder. Nothing is decoded yet.

    Example:
        >>> import io
        >>> buffer = io.BytesIO(); Image.new("RGB", (2000, 1600)).save(buffer, "JPEG")
        >>> open_upload(buffer.getvalue(), size=224).size  # libjpeg will decode at 1/4 scale, still >= 224
        (500, 400)
    """
    try:
        img = open_image(data, max_pixels=max_pixels)
    except DecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a crafted header makes Pillow raise is this upload's error
        raise DecodeError(f"corrupt image: {e}", DecodeErrorKind.CORRUPT) from None
    if img.format == "JPEG" and size:
        try:
            img.draft("L" if color_mode == "grayscale" else "RGB", (size, size))  # keeps both sides >= size
        except Exception:  # noqa: BLE001 - a damaged header: decode at full size and let the decoder say why
            pass
    return img


def decode_cost(img: Image.Image, size: int) -> int:
    """Bytes of memory that decoding an opened image with `decode_upload` may take at its peak (an upper estimate).

    Example:
        >>> decode_cost(Image.new("RGBA", (6300, 6300)), size=28) // 2**20  # decoded once, reduced in strips
        175
    """
    w, h = img.size
    if img.mode in WHOLE_IMAGE_MODES:
        return w * h * 40  # float64 copies while scaling to 8 bits
    if _factor(img.size, size) < 2:
        return w * h * 16 + 2**20  # the ordinary path: a few full-size copies, but the image is small
    per_pixel = 1 if img.mode in ("1", "L", "P") else 4  # Pillow keeps RGB and RGBA as 4 bytes a pixel
    return w * h * per_pixel + 3 * STRIP_BYTES


def decode_upload(img: Image.Image, size: int, color_mode: str = "rgb", resize: str = "squash") -> np.ndarray:
    """Decode an image from `open_upload` to the model's input array, reduced on the way (see the module docstring).

    Example:
        >>> import io
        >>> buffer = io.BytesIO(); Image.new("RGBA", (3000, 2000), (255, 0, 0, 128)).save(buffer, "PNG")
        >>> x = decode_upload(open_upload(buffer.getvalue(), size=28), size=28)
        >>> x.shape, x[0, 0].tolist()  # half-transparent red on white
        ((28, 28, 3), [255, 127, 127])
    """
    img = reduced(img, size, color_mode)
    try:
        return decode_image(img, size=size, color_mode=color_mode, resize=resize)
    except DecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a crafted file makes Pillow raise is this upload's error
        raise DecodeError(f"corrupt or truncated image: {e}", DecodeErrorKind.TRUNCATED) from None


def reduced(img: Image.Image, size: int, color_mode: str = "rgb") -> Image.Image:
    """Load `img` and return it reduced by an integer factor to at least `GAP` x `size` pixels on its shorter side.

    The result is in the model's colour mode with EXIF orientation applied, or
    `img` itself (loaded) when it is already small or must be converted whole.

    Example:
        >>> reduced(Image.new("RGBA", (6300, 4200)), size=28).size  # factor 50
        (126, 84)
    """
    try:
        img.load()
        factor = _factor(img.size, size)
        if factor < 2 or img.mode in WHOLE_IMAGE_MODES:
            return img
        orientation = img.getexif().get(0x0112, 1)
        w, h = img.size
        rows = factor * max(1, STRIP_BYTES // (w * 4 * factor))
        out = None
        for top in range(0, h, rows):
            strip = img.crop((0, top, w, min(h, top + rows)))
            if strip.mode in REDUCIBLE_MODES:  # reduce first (Pillow averages RGBA premultiplied), then composite: 2x faster
                part = to_color_mode(strip.reduce(factor), color_mode)
            else:  # palette, CMYK, 1-bit, ...: convert the strip first
                part = to_color_mode(to_color_mode(strip, color_mode).reduce(factor), color_mode)
            if out is None:
                out = Image.new(part.mode, (math.ceil(w / factor), math.ceil(h / factor)))
            out.paste(part, (0, top // factor))
        img.close()  # the full-size pixels go now, not when the caller lets go of `img`
        return out.transpose(ORIENTATION[orientation]) if orientation in ORIENTATION else out
    except DecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a crafted file makes Pillow raise is this upload's error
        raise DecodeError(f"corrupt or truncated image: {e}", DecodeErrorKind.TRUNCATED) from None


def _factor(image_size: tuple[int, int], size: int) -> int:
    return min(image_size) // (GAP * size) if size else 1


_LIBC = None


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc's malloc_trim; nothing elsewhere).

    A big decode frees its pixels, but glibc keeps freed blocks of 16 MB in
    each thread's arena: without this, 12 large uploads leave gigabytes held.

    Example:
        >>> release_memory()
    """
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
        except OSError:
            _LIBC = False
    if _LIBC and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)
