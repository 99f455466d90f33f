"""Training goes through a folder with every problem, and trains on a manifest from `imgclf split`."""

import csv
import json
import os

import pytest
from problem_data import make_problem_folder

import imgclf
from imgclf.core.manifest import read_manifest
from imgclf.data.split import split_folder

UNUSABLE = ("empty", "corrupt", "not_image", "too_large", "symlink_loop", "unreadable")


def _manifest(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_problem_folder_trains_to_completion(tmp_path):
    data = tmp_path / "data"
    expected = make_problem_folder(data)
    run = imgclf.train(str(data), out=str(tmp_path / "run"), epochs=1, batch_size=16, verbose=0,
                       val_fraction=0.2, test_fraction=0.2, monitor="val_macro_f1")
    assert (run.path / "model.keras").exists()
    rows = {os.path.relpath(r["path"], data): r for r in _manifest(run.path / "manifest.csv")}
    bad = {p for kind in UNUSABLE for p in expected.get(kind, ()) if p != "square/again"}  # a folder link is not a file row
    for path in bad:
        assert rows[path]["status"].startswith("skipped: "), (path, rows[path])
    ok = [r for p, r in rows.items() if p not in bad]
    assert all(r["status"] in ("ok", "") for r in ok)
    assert "stripes/anim.gif" in rows and "square/really_png.jpg" in rows and "circle/cmyk.jpg" in rows
    summary = json.loads((run.path / "summary.json").read_text())
    skipped = {os.path.relpath(s["path"], data) for s in summary["skipped"]}
    assert skipped == {p for p in bad if rows[p]["split"] in ("train", "val")}
    assert summary["class_weight"] is not None  # 16 / 10 usable images: imbalanced past 1.5
    # Duplicates (exact and near) sit in one split, even across classes.
    for group in expected["_exact_groups"] | expected["_near_groups"]:
        assert len({rows[p]["split"] for p in group.split("|")}) == 1, group


@pytest.mark.slow
def test_train_uses_the_manifest_from_split(tmp_path):
    from conftest import make_image_folder

    data = make_image_folder(tmp_path / "data", per_class=10)
    split_folder(data, tmp_path / "split.csv", val_fraction=0.2, test_fraction=0.2, seed=5, verbose=False)
    given = {os.path.realpath(r["path"]): r["split"] for r in read_manifest(tmp_path / "split.csv")}
    run = imgclf.train(manifest=str(tmp_path / "split.csv"), out=str(tmp_path / "run"), epochs=1, batch_size=8, verbose=0)
    used = {os.path.realpath(r["path"]): r["split"] for r in _manifest(run.path / "manifest.csv")}
    assert used == given
    assert "manifest: " in (run.path / "config.yaml").read_text()


def test_pixel_limit_is_a_setting(tmp_path):
    from PIL import Image

    from imgclf.core.config import make_config
    from imgclf.core.errors import UserError
    from imgclf.data.pipeline import decode_all

    Image.new("RGB", (40, 40)).save(tmp_path / "big.png")
    Image.new("RGB", (20, 20)).save(tmp_path / "small.png")
    paths = [str(tmp_path / "big.png"), str(tmp_path / "small.png")]
    decoded = decode_all(paths, [0, 1], 8, "rgb", max_pixels=1000, verbose=False)
    assert len(decoded) == 1 and decoded.skipped[0][0] == paths[0]
    assert "40x40 pixels is over the limit of 1,000" in decoded.skipped[0][1]
    assert make_config({"max_pixels": 5000}).max_pixels == 5000
    with pytest.raises(UserError, match="max_pixels"):
        make_config({"max_pixels": 0})
