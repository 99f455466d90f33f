"""The one image decoder: training, evaluation, prediction, export checks and serving all call it.

It never imports TensorFlow, so prediction from an exported model stays light.
What it does, in order: open by content (the extension is not trusted), in the
documented formats only (`imgclf.data.formats`), guard against decompression
bombs, take the first frame of animations, apply the EXIF orientation, convert
any mode (palette, LA/RGBA composited on white, CMYK, 16-bit, float) to 8-bit
RGB or grayscale, and resize. Any exception from one file (Pillow raises far
more than OSError on crafted input; MemoryError too: an allocation its header
sized failed) becomes that file's `DecodeError`; only interrupts go through.
"""

from __future__ import annotations

import errno
import io
import os
import threading
import warnings
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgclf.data.formats import looks_like_image, other_format, supported_formats

DEFAULT_MAX_PIXELS = 100_000_000  # about 10,000 x 10,000; larger files are refused as likely bombs
RESIZE_MODES = ("squash", "crop", "pad")


class DecodeErrorKind(str, Enum):
    """Why a file could not be decoded, as a value code can branch on (the message is for people).

    Callers map kinds to their own answers (the server to HTTP statuses,
    `imgclf check` to problem kinds) through one table each, so rewording a
    message never changes a status code. The values are stable strings.

    Example:
        >>> DecodeErrorKind.TOO_LARGE.value
        'too_large'
        >>> DecodeErrorKind("empty") is DecodeErrorKind.EMPTY
        True
    """

    # Reading the file (read_bytes, or a URL read by an engine worker)
    NOT_FOUND = "not_found"  # missing, or a broken symbolic link
    IS_FOLDER = "is_folder"
    PERMISSION_DENIED = "permission_denied"
    SYMLINK_LOOP = "symlink_loop"
    UNREADABLE = "unreadable"  # any other error of the operating system or the remote store
    # Its content
    EMPTY = "empty"  # zero bytes, or no image bytes at all in a record
    TOO_LARGE = "too_large"  # over the pixel limit (decompression-bomb guard)
    TOO_SMALL = "too_small"  # shorter side under decode_image's min_side
    NOT_AN_IMAGE = "not_an_image"  # no image format recognised
    CORRUPT = "corrupt"  # looks like an image format but its header cannot be parsed
    TRUNCATED = "truncated"  # the header parsed but the pixels could not be decoded (cut short or damaged)
    BAD_ARRAY = "bad_array"  # an in-memory array whose shape is not an image


class DecodeError(Exception):
    """A file could not be turned into an image: ``reason`` says why in a few words, ``kind`` as a `DecodeErrorKind`.

    Example:
        >>> try:
        ...     decode_image(b"")
        ... except DecodeError as e:
        ...     print(e.kind.name, "|", e.reason)
        EMPTY | empty file (0 bytes)
    """

    def __init__(self, reason: str, kind: DecodeErrorKind):
        if not isinstance(kind, DecodeErrorKind):
            raise TypeError(f"DecodeError needs a DecodeErrorKind as its kind, received {kind!r} "
                            f"({type(kind).__name__}). Pass one of {', '.join(k.name for k in DecodeErrorKind)}.")
        super().__init__(reason)
        self.reason = reason
        self.kind = kind

    def __reduce__(self):
        # Exceptions pickle as cls(*args) and args holds only the message: keep the kind across processes.
        return (type(self), (self.reason, self.kind))


def read_bytes(path: str | os.PathLike) -> bytes:
    """A file's bytes, or `DecodeError` with a short reason and its kind (permissions, link loops, ...).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> Image.new("RGB", (8, 8)).save(os.path.join(folder, "cat.jpg"))
        >>> read_bytes(os.path.join(folder, "cat.jpg"))[:2]
        b'\\xff\\xd8'
        >>> read_bytes(folder)
        Traceback (most recent call last):
        imgclf.data.decode.DecodeError: is a folder, not a file
    """
    try:
        return Path(path).read_bytes()
    except PermissionError:
        raise DecodeError("unreadable: permission denied", DecodeErrorKind.PERMISSION_DENIED) from None
    except IsADirectoryError:
        raise DecodeError("is a folder, not a file", DecodeErrorKind.IS_FOLDER) from None
    except FileNotFoundError:
        raise DecodeError("file not found (or a broken symbolic link)", DecodeErrorKind.NOT_FOUND) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DecodeError("symbolic-link loop", DecodeErrorKind.SYMLINK_LOOP) from None
        raise DecodeError(f"unreadable: {e.strerror or e}", DecodeErrorKind.UNREADABLE) from None


def open_image(source, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open a path, bytes, file object, PIL image or array as a loaded PIL image.

    Raises `DecodeError` with a short reason for anything that is not a
    readable image.

    Example:
        >>> buffer = io.BytesIO()
        >>> Image.new("RGB", (64, 48)).save(buffer, "PNG")
        >>> open_image(buffer.getvalue()).size
        (64, 48)
        >>> open_image(buffer.getvalue(), max_pixels=1000).size
        Traceback (most recent call last):
        imgclf.data.decode.DecodeError: too large: 64x48 pixels is over the limit of 1,000 (decompression-bomb guard)
    """
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise DecodeError("empty file (0 bytes)", DecodeErrorKind.EMPTY)
        fp = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        data = read_bytes(source)  # read whole: no open handle outlives the call
        if not data:
            raise DecodeError("empty file (0 bytes)", DecodeErrorKind.EMPTY)
        fp = io.BytesIO(data)
    else:
        fp = source
    try:
        img = _open_within_limit(fp, max_pixels)
        w, h = img.size
        if w * h > max_pixels:
            raise DecodeError(f"too large: {w}x{h} pixels is over the limit of {max_pixels:,} (decompression-bomb guard)",
                              DecodeErrorKind.TOO_LARGE)
        img.seek(0)  # animated GIF/WebP/TIFF: the first frame
        return img
    except DecodeError:
        raise
    except Image.DecompressionBombError:
        raise DecodeError(f"too large: over {2 * Image.MAX_IMAGE_PIXELS:,} pixels, above the limit of {max_pixels:,} "
                          "(decompression-bomb guard)", DecodeErrorKind.TOO_LARGE) from None
    except UnidentifiedImageError:
        if looks_like_image(fp):
            raise DecodeError("corrupt image: it starts like an image file but cannot be parsed",
                              DecodeErrorKind.CORRUPT) from None
        other = other_format(fp)
        if other:
            raise DecodeError(f"not an image imgclf reads: {other} is not supported (only JPEG, PNG, BMP, GIF, WebP "
                              "and TIFF; convert it to PNG)", DecodeErrorKind.NOT_AN_IMAGE) from None
        raise DecodeError("not an image (unknown or corrupt format)", DecodeErrorKind.NOT_AN_IMAGE) from None
    except MemoryError:
        raise DecodeError("too large: out of memory while reading its header", DecodeErrorKind.TOO_LARGE) from None
    except Exception as e:  # noqa: BLE001 - whatever a crafted file makes Pillow raise is that file's reason
        raise DecodeError(f"corrupt image: {describe_failure(e)}", DecodeErrorKind.CORRUPT) from None


def describe_failure(error: BaseException) -> str:
    """A short reason from any exception a decoder raised: its message, or its type when the message is empty.

    Example:
        >>> describe_failure(ValueError("bad tile"))
        'bad tile'
        >>> describe_failure(IndexError())
        'IndexError'
    """
    text = str(error).strip()
    if isinstance(error, (OSError, ValueError, EOFError)) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextmanager
def decode_failures():
    """Turn any exception raised inside into a `DecodeError` (TRUNCATED; TOO_LARGE for memory), interrupts excepted.

    For code that reads pixels of an image `open_image` returned (Pillow
    decodes lazily, so a damaged file may fail only then).

    Example:
        >>> with decode_failures():
        ...     raise NotImplementedError("unknown compression")
        Traceback (most recent call last):
        imgclf.data.decode.DecodeError: corrupt or truncated image: NotImplementedError: unknown compression
    """
    try:
        yield
    except DecodeError:
        raise
    except (MemoryError, Image.DecompressionBombError) as e:
        reason = "out of memory while decoding it" if isinstance(e, MemoryError) else str(e)
        raise DecodeError(f"too large: {reason}", DecodeErrorKind.TOO_LARGE) from None
    except Exception as e:  # noqa: BLE001 - whatever a crafted file makes Pillow raise is that file's reason
        raise DecodeError(f"corrupt or truncated image: {describe_failure(e)}", DecodeErrorKind.TRUNCATED) from None


_LIMIT_LOCK = threading.Lock()


def _open_within_limit(fp, max_pixels: int) -> Image.Image:
    """Image.open with our pixel limit in charge, not Pillow's global one, in the documented formats only.

    Pillow warns above MAX_IMAGE_PIXELS (about 89 million) and refuses above
    twice that, before we can see the size. Its warning is silenced (our own
    check follows); a limit the user raised beyond Pillow's refusal is
    honoured by raising Pillow's for this one open.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if max_pixels <= 2 * (Image.MAX_IMAGE_PIXELS or max_pixels):
            return Image.open(fp, formats=supported_formats())
        with _LIMIT_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                return Image.open(fp, formats=supported_formats())
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
    raise DecodeError(f"array of shape {arr.shape} is not an image (expected HxW, HxWx1, HxWx3 or HxWx4)",
                      DecodeErrorKind.BAD_ARRAY)


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
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "cat.jpg")
        >>> Image.new("RGB", (320, 240), (200, 120, 40)).save(path)
        >>> decode_image(path, size=224).shape
        (224, 224, 3)
        >>> decode_image(path, size=28, color_mode="grayscale").shape
        (28, 28, 1)
    """
    img = open_image(source, max_pixels=max_pixels)
    if min_side and min(img.size) < min_side:
        raise DecodeError(f"too small: {img.size[0]}x{img.size[1]} pixels, under the minimum side of {min_side}",
                          DecodeErrorKind.TOO_SMALL)
    with decode_failures():
        if size and img.format == "JPEG" and resize == "squash":
            # Let libjpeg decode at a reduced scale: much faster for big photos.
            img.draft("RGB" if color_mode == "rgb" else "L", (size, size))
        img = ImageOps.exif_transpose(img)
        img = to_color_mode(img, color_mode)
        if size:
            img = _resize(img, size, resize)
        arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr


GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def probe_images(paths: list[str], limit: int = 200, seed: int = 0) -> dict:
    """Read the headers of up to `limit` images (evenly spread) to choose automatic settings.

    Returns the median of the shorter side and whether every probed image is
    grayscale. Unreadable files are simply not counted here.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> for name in ("a.png", "b.png"):
        ...     Image.new("L", (28, 28)).save(os.path.join(folder, name))
        >>> probe_images([os.path.join(folder, n) for n in ("a.png", "b.png")])
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
                img = Image.open(path, formats=supported_formats())
            with img:
                sides.append(min(img.size))
                if img.mode == "P":
                    gray = gray and palette_is_gray(img)
                else:
                    gray = gray and img.mode in GRAYSCALE_MODES
        except Exception:  # noqa: BLE001 - a bad file is reported by the decoder later
            continue
    if not sides:
        return {"median_side": 0, "grayscale": False, "probed": 0}
    return {"median_side": int(np.median(sides)), "grayscale": gray, "probed": len(sides)}


def palette_is_gray(img: Image.Image) -> bool:
    """True when every colour of a palette ('P') image is a shade of grey.

    Example:
        >>> palette_is_gray(Image.new("L", (2, 2)).convert("P"))
        True
        >>> palette_is_gray(Image.new("RGB", (2, 2), (255, 0, 0)).convert("P"))
        False
    """
    palette = img.getpalette() or []
    rgb = np.asarray(palette[: 3 * 256], dtype=np.int32).reshape(-1, 3)
    return bool((rgb[:, 0] == rgb[:, 1]).all() and (rgb[:, 1] == rgb[:, 2]).all())
