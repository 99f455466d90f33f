"""A dataset folder with one example of every problem real folders have, written at run time.

`make_problem_folder(root)` writes three learnable classes (from conftest's
drawings) and, beside them, each problem `imgclf check` knows about, and
returns what a correct check must report: {kind: set of relative paths}.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
from conftest import draw
from PIL import Image

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root reads files whatever their permissions


def _jpeg_bytes(arr, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=92, **kw)
    return buf.getvalue()


def make_problem_folder(root: Path, per_class=(12, 12, 6), empty_class: bool = False) -> dict[str, set[str]]:
    """Write the folder under `root` and return the problems a check must find, by kind."""
    rng = np.random.default_rng(7)
    root.mkdir(parents=True, exist_ok=True)
    classes = ("circle", "square", "stripes")
    for kind, n in zip(classes, per_class):
        (root / kind).mkdir()
        for i in range(n):
            Image.fromarray(draw(kind, rng, 24)).save(root / kind / f"img_{i}.png")
    c, s, t = (root / k for k in classes)
    expected: dict[str, set[str]] = {}

    def expect(kind, *paths):
        expected.setdefault(kind, set()).update(paths)

    # Files that cannot be used.
    (c / "empty.jpg").write_bytes(b"")
    expect("empty", "circle/empty.jpg")
    whole = _jpeg_bytes(draw("circle", rng, 64))
    (c / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (s / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 200, dtype=np.uint8)))
    expect("corrupt", "circle/truncated.jpg", "square/broken.png")
    (s / "notes.jpg").write_text("shopping list, not a photo\n")
    expect("not_image", "square/notes.jpg")
    # A decompression bomb: 108 million pixels in a few kilobytes of PNG.
    Image.new("1", (12000, 9000)).save(t / "bomb.png", optimize=False)
    expect("too_large", "stripes/bomb.png")
    os.symlink("loop.jpg", c / "loop.jpg")
    os.symlink("..", s / "again")
    expect("symlink_loop", "circle/loop.jpg", "square/again")
    locked = c / "locked.png"
    Image.fromarray(draw("circle", rng, 24)).save(locked)
    os.chmod(locked, 0)
    if not IS_ROOT:
        expect("unreadable", "circle/locked.png")

    # Files that decode, with a warning.
    buf = io.BytesIO()
    Image.fromarray(draw("square", rng, 24)).save(buf, "PNG")
    (s / "really_png.jpg").write_bytes(buf.getvalue())
    expect("extension_mismatch", "square/really_png.jpg")
    frames = [Image.fromarray(draw("stripes", rng, 24)) for _ in range(3)]
    frames[0].save(t / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    expect("animated", "stripes/anim.gif")
    Image.fromarray(draw("circle", rng, 24)).resize((10, 10)).save(c / "tiny.png")
    expect("too_small", "circle/tiny.png")

    # Modes the decoder converts (no problem): EXIF rotation, CMYK, 16-bit, RGBA, palette, float.
    exif = Image.Exif()
    exif[0x0112] = 6
    (s / "rotated.jpg").write_bytes(_jpeg_bytes(draw("square", rng, 24), exif=exif.tobytes()))
    Image.fromarray(draw("circle", rng, 24)).convert("CMYK").save(c / "cmyk.jpg", quality=95)
    sixteen = (draw("stripes", rng, 24)[..., 0].astype(np.uint16) * 257)
    Image.fromarray(sixteen).save(t / "sixteen.png")
    rgba = Image.fromarray(draw("square", rng, 24)).convert("RGBA")
    rgba.putalpha(200)
    rgba.save(s / "rgba.png")
    Image.fromarray(draw("circle", rng, 24)).convert("P", palette=Image.ADAPTIVE).save(c / "palette.gif")
    Image.fromarray(draw("stripes", rng, 24)[..., 1].astype(np.float32) / 255.0, "F").save(t / "float.tif")

    # Duplicates: an exact copy in its class, one in another class, a re-encoded near copy.
    shutil.copy(c / "img_3.png", c / "img_3_copy.png")
    shutil.copy(c / "img_5.png", s / "conflict.png")
    expect("label_conflict", "circle/img_5.png", "square/conflict.png")
    near = np.asarray(Image.open(t / "img_4.png"))
    (t / "img_4_near.jpg").write_bytes(_jpeg_bytes(near))
    expected["_exact_groups"] = {"circle/img_3.png|circle/img_3_copy.png", "circle/img_5.png|square/conflict.png"}
    expected["_near_groups"] = {"stripes/img_4.png|stripes/img_4_near.jpg"}

    # Ignored: hidden and system files, other extensions; files outside class folders.
    (c / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (s / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (t / "._img_0.png").write_bytes(b"\0\5\26\7")
    expected["_hidden"] = {"circle/.DS_Store", "square/Thumbs.db", "stripes/._img_0.png"}
    (t / "labels.csv").write_text("a,b\n")
    (root / "README.txt").write_text("my photos\n")
    Image.fromarray(draw("circle", rng, 24)).save(root / "stray.png")
    expect("outside_class", "README.txt", "stray.png")
    if empty_class:
        (root / "unused").mkdir()
        expect("empty_class", "unused")
    return expected
