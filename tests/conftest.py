"""Fixtures that write tiny, learnable image folders under tmp_path (nothing binary lives in git)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

CLASSES = ("circle", "square", "stripes")


def draw(kind: str, rng: np.random.Generator, size: int = 24) -> np.ndarray:
    """An RGB uint8 image of one class: a bright disc, a bright square or horizontal stripes, on noise."""
    img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    c = size // 2 + rng.integers(-2, 3)
    r = size // 4 + rng.integers(0, 2)
    colour = rng.integers(160, 256, 3)
    if kind == "circle":
        mask = (yy - c) ** 2 + (xx - c) ** 2 <= r * r
    elif kind == "square":
        mask = (abs(yy - c) <= r) & (abs(xx - c) <= r)
    else:
        mask = (yy // 3) % 2 == 0
    img[mask] = colour
    return img


def make_image_folder(root, per_class: int = 12, size: int = 24, seed: int = 0, classes=CLASSES) -> str:
    """Write per_class images per class: mostly PNG, some JPEG (upper-case .JPG too), one
    grayscale and one RGBA image, so the decoder's conversions are exercised."""
    rng = np.random.default_rng(seed)
    for ci, kind in enumerate(classes):
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = draw(kind, rng, size)
            img = Image.fromarray(arr, "RGB")
            if i == 0 and ci == 0:
                img.convert("L").save(folder / f"gray_{i}.png")
            elif i == 0 and ci == 1:
                rgba = img.convert("RGBA")
                rgba.putalpha(255)
                rgba.save(folder / f"rgba_{i}.png")
            elif i % 4 == 1:
                img.save(folder / f"img_{i}.JPG", quality=95)
            elif i % 4 == 2:
                img.save(folder / f"img_{i}.jpeg", quality=95)
            else:
                img.save(folder / f"img_{i}.png")
    return str(root)


@pytest.fixture(autouse=True, scope="session")
def _private_fingerprint_cache(tmp_path_factory):
    """Tests, and the commands they start, keep fingerprints in a cache of their own, not the user's ~/.cache."""
    os.environ["IMGCLF_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache") / "imgclf")


@pytest.fixture
def image_folder(tmp_path):
    """A fresh folder of 3 classes x 12 tiny images."""
    return make_image_folder(tmp_path / "data")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One small model trained once per test process (once under plain pytest, once per xdist worker); tests must not modify it."""
    import imgclf

    root = tmp_path_factory.mktemp("trained")
    data = make_image_folder(root / "data", per_class=20)
    run = imgclf.train(data, out=str(root / "runs" / "tiny"), epochs=10, batch_size=16, lr=0.005, verbose=0,
                       val_fraction=0.2, test_fraction=0.2)
    return run


@pytest.fixture(scope="session")
def exported_models(trained_run, tmp_path_factory):
    """The session's trained run exported once to every format (issue 7): {format: ExportResult}.

    Written outside the run folder, which other tests expect unchanged."""
    from imgclf.export.exporter import FORMATS, export

    out = tmp_path_factory.mktemp("exports")
    # int8 on ~10 validation images: one changed answer is a 10% drop, so the default 5% bound would be luck.
    return {fmt: export(trained_run, fmt, out=out / name, max_int8_drop=0.25) for fmt, name in FORMATS.items()}
