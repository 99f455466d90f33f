"""Make the documentation's pictures from a real run: `python scripts/docs_images.py OUT_DIR`.

Offline, on scikit-learn's digits (the `imgclf demo` data): the grids of
`imgclf augment-preview` for three presets, a small model trained and evaluated,
a few of its plots, and screenshots of its report.html in headless Chromium.
scripts/docs_hooks.py runs it at build time (`make docs`) and caches the result;
nothing it writes is committed. About a minute on two cores.

Set IMGCLF_DOCS_EPOCHS to train longer (default 3: enough for a readable report).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from PIL import Image, ImageDraw  # noqa: E402

import imgclf  # noqa: E402
from imgclf.evaluation.figures.augment_preview import preview  # noqa: E402

PRESETS = ("light", "standard", "strong")
PLOTS = ("confusion_matrix", "training_curves", "reliability", "gradcam")
WIDTH = 900  # pixels: pictures are shrunk to this width, so the site stays small


def shrink(src: Path, dst: Path, width: int = WIDTH, crop_height: int | None = None) -> None:
    """Save `src` as a PNG at most `width` wide (and, with crop_height, cut to that many pixels of height)."""
    img = Image.open(src).convert("RGB")
    if crop_height and img.height > crop_height:
        img = img.crop((0, 0, img.width, crop_height))
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    img.quantize(colors=128).save(dst, optimize=True)


def screenshot(html: Path, png: Path, work: Path, height: int = 1400) -> bool:
    """A 1200-pixel-wide headless Chromium screenshot of `html`; False when no Chromium is installed."""
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if not chromium:
        return False
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--hide-scrollbars", f"--user-data-dir={work / 'profile'}",
             f"--window-size=1200,{height}", f"--screenshot={png}"]
    subprocess.run([chromium, *flags, html.as_uri()], capture_output=True, timeout=120, check=False)
    return png.exists()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imgclf-docs-") as tmp:
        work = Path(tmp)
        data = imgclf.export_dataset("digits", work / "digits")
        for preset in PRESETS:
            grid = preview(str(data / "train"), preset, str(work / f"aug-{preset}.png"), samples=4, variants=5)
            shrink(Path(grid), out / f"augment-{preset}.png", width=600)
        epochs = int(os.environ.get("IMGCLF_DOCS_EPOCHS", "3"))
        run = imgclf.train(str(data / "train"), out=str(work / "runs" / "digits"), model="small_cnn", epochs=epochs,
                           batch_size=32, img_size=16, verbose=0)
        test = work / "test"  # 12 test images per class: the report looks the same, evaluation takes a third
        for class_dir in sorted((data / "test").iterdir()):
            (test / class_dir.name).mkdir(parents=True)
            for f in sorted(class_dir.iterdir())[:12]:
                shutil.copy(f, test / class_dir.name / f.name)
        imgclf.evaluate(run, data=str(test), verbose=False)
        for name in PLOTS:
            src = Path(run.path) / "plots" / f"{name}.png"
            if src.exists():
                shrink(src, out / f"plot-{name}.png", width=700)
        shot = work / "report.png"
        if screenshot(Path(run.file("report.html")), shot, work):
            shrink(shot, out / "report.png", crop_height=1400)
        else:  # the site still builds; the page shows why the picture is missing
            print("docs_images: no Chromium, so no report screenshot (scripts/ensure-system-deps.sh installs it)",
                  file=sys.stderr)
            note = Image.new("RGB", (WIDTH, 120), "white")
            ImageDraw.Draw(note).text((20, 50), "No screenshot: Chromium was not installed when this site was built.",
                                      fill="black")
            note.save(out / "report.png")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/docs_images.py OUT_DIR")
    main(Path(sys.argv[1]))
