"""The one image decoder: training, evaluation, prediction, export checks and serving all call it.

It never imports TensorFlow, so prediction from an exported model stays light.
What it does, in order: open by content (the extension is not trusted), guard
against decompression bombs, take the first frame of animations, apply the
EXIF orientation, convert any mode (palette, LA/RGBA composited on white,
CMYK, 16-bit, float) to 8-bit RGB or grayscale, and resize.
"""

from __future__ import annotations

import errno
import io
import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 100_000_000  # about 10,000 x 10,000; larger files are refused as likely bombs
RESIZE_MODES = ("squash", "crop", "pad")


class DecodeError(Exception):
    """A file could not be turned into an image; ``reason`` says why in a few words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def read_bytes(path: str | os.PathLike) -> bytes:
    """A file's bytes, or `DecodeError` with a short reason (permissions, link loops, ...).

    Example:
        >>> read_bytes("cat.jpg")[:2]  # doctest: +SKIP
        b'\\xff\\xd8'
    """
    try:
        return Path(path).read_bytes()
    except PermissionError:
        raise DecodeError("unreadable: permission denied") from None
    except IsADirectoryError:
        raise DecodeError("is a folder, not a file") from None
    except FileNotFoundError:
        raise DecodeError("file not found (or a broken symbolic link)") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DecodeError("symbolic-link loop") from None
        raise DecodeError(f"unreadable: {e.strerror or e}") from None


def open_image(source, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open a path, bytes, file object, PIL image or array as a loaded PIL image.

    Raises `DecodeError` with a short reason for anything that is not a
    readable image.

    Example:
        >>> open_image("cat.jpg").size  # doctest: +SKIP
        (640, 480)
    """
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise DecodeError("empty file (0 bytes)")
        fp = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        data = read_bytes(source)  # read whole: no open handle outlives the call
        if not data:
            raise DecodeError("empty file (0 bytes)")
        fp = io.BytesIO(data)
    else:
        fp = source
    try:
        img = _open_within_limit(fp, max_pixels)
        w, h = img.size
        if w * h > max_pixels:
            raise DecodeError(f"too large: {w}x{h} pixels is over the limit of {max_pixels:,} (decompression-bomb guard)")
        img.seek(0)  # animated GIF/WebP/TIFF: the first frame
        return img
    except DecodeError:
        raise
    except Image.DecompressionBombError:
        raise DecodeError(f"too large: over {2 * Image.MAX_IMAGE_PIXELS:,} pixels, above the limit of {max_pixels:,} "
                          "(decompression-bomb guard)") from None
    except UnidentifiedImageError:
        if _looks_like_image(fp):
            raise DecodeError("corrupt image: it starts like an image file but cannot be parsed") from None
        raise DecodeError("not an image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DecodeError(f"corrupt image: {e}") from None


_LIMIT_LOCK = threading.Lock()
SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def _looks_like_image(fp) -> bool:
    try:
        fp.seek(0)
        head = fp.read(12)
    except (AttributeError, OSError, ValueError):
        return False
    return head.startswith(SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _open_within_limit(fp, max_pixels: int) -> Image.Image:
    """Image.open with our pixel limit in charge, not Pillow's global one.

    Pillow warns above MAX_IMAGE_PIXELS (about 89 million) and refuses above
    twice that, before we can see the size. Its warning is silenced (our own
    check follows); a limit the user raised beyond Pillow's refusal is
    honoured by raising Pillow's for this one open.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if max_pixels <= 2 * (Image.MAX_IMAGE_PIXELS or max_pixels):
            return Image.open(fp)
        with _LIMIT_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                return Image.open(fp)
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
        if arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return Image.fromarray(arr, "L")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return Image.fromarray(arr, "RGB" if arr.shape[-1] == 3 else "RGBA")
    raise DecodeError(f"array of shape {arr.shape} is not an image (expected HxW, HxWx1, HxWx3 or HxWx4)")


def _high_depth_to_8bit(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float images to 8-bit grayscale, keeping their meaning."""
    arr = np.asarray(img, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    top = float(finite.max()) if finite.size else 0.0
    if img.mode == "F" and top <= 1.0:
        arr = arr * 255.0  # float images in [0, 1]
    elif top > 65535:
        lo = float(finite.min())
        arr = (arr - lo) * (255.0 / max(top - lo, 1e-12))
    elif top > 255:
        arr = arr / 257.0  # 16-bit range onto 8-bit
    arr = np.nan_to_num(arr, nan=0.0)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")


def to_color_mode(img: Image.Image, color_mode: str = "rgb", background=(255, 255, 255)) -> Image.Image:
    """Convert any PIL mode to 'RGB' (color_mode='rgb') or 'L' ('grayscale').

    Transparent pixels are composited on `background` rather than dropped, so
    a transparent PNG of a black logo does not turn into a black square.

    Example:
        >>> to_color_mode(Image.new("RGBA", (4, 4)), "rgb").mode
        'RGB'
    """
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _high_depth_to_8bit(img)
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode == "1":
        img = img.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")  # Pillow inverts Adobe CMYK JPEGs on load, so this is a plain conversion
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        img = Image.alpha_composite(canvas, rgba).convert("RGB")
    target = "L" if color_mode == "grayscale" else "RGB"
    return img if img.mode == target else img.convert(target)


def _resize(img: Image.Image, size: int, resize: str) -> Image.Image:
    if img.size == (size, size):
        return img
    if resize == "crop":
        return ImageOps.fit(img, (size, size), Image.BILINEAR)
    if resize == "pad":
        return ImageOps.pad(img, (size, size), Image.BILINEAR, color=0)
    return img.resize((size, size), Image.BILINEAR)


def decode_image(
    source,
    size: int | None = None,
    color_mode: str = "rgb",
    resize: str = "squash",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    min_side: int = 0,
) -> np.ndarray:
    """Decode one image to a uint8 array of shape (size, size, 3) or (size, size, 1).

    `source` may be a path, bytes, a file object, a PIL image or an array.
    Raises `DecodeError` (with ``.reason``) when it is not a usable image,
    including one whose shorter side is under `min_side` pixels (0 = any).

    Example:
        >>> decode_image("cat.jpg", size=224).shape  # doctest: +SKIP
        (224, 224, 3)
    """
    img = open_image(source, max_pixels=max_pixels)
    if min_side and min(img.size) < min_side:
        raise DecodeError(f"too small: {img.size[0]}x{img.size[1]} pixels, under the minimum side of {min_side}")
    try:
        if size and img.format == "JPEG" and resize == "squash":
            # Let libjpeg decode at a reduced scale: much faster for big photos.
            img.draft("RGB" if color_mode == "rgb" else "L", (size, size))
        img = ImageOps.exif_transpose(img)
        img = to_color_mode(img, color_mode)
        if size:
            img = _resize(img, size, resize)
        arr = np.asarray(img, dtype=np.uint8)
    except DecodeError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise DecodeError(f"corrupt or truncated image: {e}") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr


GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def probe_images(paths: list[str], limit: int = 200, seed: int = 0) -> dict:
    """Read the headers of up to `limit` images (evenly spread) to choose automatic settings.

    Returns the median of the shorter side and whether every probed image is
    grayscale. Unreadable files are simply not counted here.

    Example:
        >>> probe_images(["a.png", "b.png"])  # doctest: +SKIP
        {'median_side': 28, 'grayscale': True, 'probed': 2}
    """
    if not paths:
        return {"median_side": 0, "grayscale": False, "probed": 0}
    step = max(1, len(paths) // limit)
    sides, gray = [], True
    for path in paths[::step][:limit]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # only the header is read here
                img = Image.open(path)
            with img:
                sides.append(min(img.size))
                if img.mode == "P":
                    gray = gray and _palette_is_gray(img)
                else:
                    gray = gray and img.mode in GRAYSCALE_MODES
        except Exception:  # noqa: BLE001 - a bad file is reported by the decoder later
            continue
    if not sides:
        return {"median_side": 0, "grayscale": False, "probed": 0}
    return {"median_side": int(np.median(sides)), "grayscale": gray, "probed": len(sides)}


def _palette_is_gray(img: Image.Image) -> bool:
    palette = img.getpalette() or []
    rgb = np.asarray(palette[: 3 * 256], dtype=np.int32).reshape(-1, 3)
    return bool((rgb[:, 0] == rgb[:, 1]).all() and (rgb[:, 1] == rgb[:, 2]).all())
