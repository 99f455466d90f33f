"""The near duplicates `imgclf check` found, side by side in one PNG, so that a person can judge them.

Perceptual hashes and thumbnails call two pictures "near duplicates" when
they look alike at 8x8 or 32x32; on a set of microscope cells that flagged
different cells with a visible difference (issue 20). A list of paths cannot
settle that; a sheet of the pairs can. Pillow only: no Matplotlib.

Example:
    >>> from PIL import Image
    >>> from imgclf.data.check.health import check_folder
    >>> Image.open("data/cat/00.png").resize((48, 48)).save("data/dog/big_cat.png")  # a near duplicate, in another class
    >>> report = check_folder("data/", verbose=False)
    >>> write_pairs_sheet(report, "data/", "pairs.png")
    PosixPath('pairs.png')
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image, ImageDraw

from imgclf.core.fs import atomic_write_bytes
from imgclf.data.decode import decode_image

THUMB = 160  # pixels per image on the sheet
MAX_PER_GROUP = 4


def write_pairs_sheet(report: dict, data: str | os.PathLike, out: str | os.PathLike, limit: int = 20) -> Path | None:
    """One row per near-duplicate group (up to `limit`, at most 4 images each), captioned with path and class.

    Returns the PNG's path, or None when the report has no near duplicates.

    Example:
        >>> write_pairs_sheet({"duplicates": {"groups": []}}, "data/", "pairs.png") is None
        True
    """
    groups = [g for g in report["duplicates"]["groups"] if g["kind"] == "near"][:limit]
    if not groups:
        return None
    cols = max(min(len(g["files"]), MAX_PER_GROUP) for g in groups)
    cell_h = THUMB + 30
    sheet = Image.new("RGB", (cols * (THUMB + 10) + 10, len(groups) * (cell_h + 10) + 10), "white")
    draw = ImageDraw.Draw(sheet)
    for row, group in enumerate(groups):
        y = 10 + row * (cell_h + 10)
        for col, member in enumerate(group["files"][:MAX_PER_GROUP]):
            x = 10 + col * (THUMB + 10)
            try:
                pixels = decode_image(os.path.join(data, member["path"]), size=THUMB, color_mode="rgb", resize="pad")
                sheet.paste(Image.fromarray(pixels.astype("uint8")), (x, y))
            except Exception:  # noqa: BLE001 - a file that cannot be shown still gets its caption
                draw.rectangle((x, y, x + THUMB, y + THUMB), outline="red")
            draw.text((x, y + THUMB + 2), _short(member["path"]), fill="black")
            draw.text((x, y + THUMB + 15), f"{member['label']}" + (f" [{member['split']}]" if member["split"] else ""),
                      fill="red" if group["label_conflict"] else "grey")
    out = Path(out)
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    atomic_write_bytes(out, buf.getvalue())
    return out


def _short(path: str, width: int = 26) -> str:
    return path if len(path) <= width else "..." + path[-(width - 3):]
