"""Which image formats imgclf opens, and how a file that is none of them is recognised for its message.

Only the formats of the documented extensions (jpg, jpeg, png, bmp, gif,
webp, tif, tiff) are opened: JPEG, PNG, BMP, GIF, WebP and TIFF, by content,
whatever the extension says. Pillow's readers of other formats (DDS, BLP,
SPIDER, IM, ...) are never run on a user's file: they raise exceptions no
one expects on crafted input, and no one trains on them.
"""

from __future__ import annotations

from PIL import Image

# Pillow's names. Pillow opens a phone's JPEG with a second picture as MPO, through its JPEG reader.
SUPPORTED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def supported_formats() -> tuple[str, ...]:
    """The Pillow formats imgclf opens: `SUPPORTED_FORMATS` that this Pillow can read (WebP needs libwebp).

    Pass it as ``Image.open(fp, formats=supported_formats())``.

    Example:
        >>> "PNG" in supported_formats(), "DDS" in supported_formats()
        (True, False)
    """
    Image.init()  # registers every plugin once; later calls return at once
    return tuple(f for f in SUPPORTED_FORMATS if f in Image.OPEN)


def looks_like_image(fp) -> bool:
    """Whether a file object starts like one of the supported formats (then a failure to open it means corrupt).

    Example:
        >>> import io
        >>> looks_like_image(io.BytesIO(b"\\x89PNG\\r\\n\\x1a\\n but cut")), looks_like_image(io.BytesIO(b"text"))
        (True, False)
    """
    try:
        fp.seek(0)
        head = fp.read(12)
    except (AttributeError, OSError, ValueError):
        return False
    return head.startswith(SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def other_format(fp) -> str:
    """The name of a format Pillow knows but imgclf does not open, by its signature alone ('' if none).

    Only the readers' signature checks run (on the first 16 bytes), never a
    reader. Formats without a signature (SPIDER, IM) are not named.

    Example:
        >>> import io
        >>> other_format(io.BytesIO(b"DDS " + bytes(124))), other_format(io.BytesIO(b"text"))
        ('DDS', '')
    """
    try:
        fp.seek(0)
        prefix = fp.read(16)
    except (AttributeError, OSError, ValueError):
        return ""
    Image.init()
    for name in Image.ID:
        accept = Image.OPEN.get(name, (None, None))[1]
        if name in SUPPORTED_FORMATS or accept is None:
            continue  # no signature: it would claim anything
        try:
            if accept(prefix) is True:
                return name
        except Exception:  # noqa: BLE001, S112 - a signature check that fails is simply no match
            continue
    return ""
