"""Issue 16 for a run trained from TFRecord shards: its confidence is fitted at the end of training, and
`imgclf calibrate` refits it from the shards even when the image files they were packed from are gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_image_folder

from imgclf.cli import main


@pytest.fixture(scope="module")
def shard_run(tmp_path_factory):
    import imgclf
    from imgclf.data.shards.pack import pack

    root = tmp_path_factory.mktemp("conf_shards")
    data = make_image_folder(root / "data", per_class=15, size=16)
    pack(str(data), str(root / "shards"), verbose=False)
    run = imgclf.train(str(root / "shards"), epochs=2, batch_size=8, verbose=0, out=str(root / "runs" / "s"))
    return root, run


@pytest.mark.slow
def test_training_from_shards_fits_the_confidence(shard_run):
    import imgclf

    root, run = shard_run
    info = json.loads(run.file("confidence.json").read_text())
    packed = json.loads((root / "shards" / "shards.json").read_text())["images"]
    assert info["fitted_on"]["images"] == packed["val"] and info["temperature"] > 0
    assert info["scaling"]["method"] in ("temperature", "class_temperature")
    assert run.file("confidence.npz").exists() and info["reject"]["method"] == "mahalanobis"
    clf = imgclf.load(run.path)
    assert clf.confidence.calibrated and clf.unknown_threshold is not None


@pytest.mark.slow
def test_calibrate_refits_from_the_shards_without_the_image_files(shard_run, tmp_path, capsys):
    root, run = shard_run
    run_dir = tmp_path / "run"
    shutil.copytree(run.path, run_dir)
    for name in ("confidence.json", "confidence.npz"):
        (run_dir / name).unlink()
    moved = tmp_path / "data-elsewhere"
    shutil.move(str(root / "data"), moved)  # the files the shards were packed from are gone: only the shards remain
    try:
        assert main(["calibrate", str(run_dir), "--reject-rate", "0.1"]) == 0
        assert "temperature" in capsys.readouterr().out
        info = json.loads((run_dir / "confidence.json").read_text())
        packed = json.loads((root / "shards" / "shards.json").read_text())["images"]
        assert info["fitted_on"]["images"] == packed["val"] and info["reject"]["reject_rate"] == 0.1
        assert (run_dir / "confidence.npz").exists()
        # a pack named with --data is read the same way
        assert main(["calibrate", str(run_dir), "--data", str(root / "shards")]) == 0
    finally:
        shutil.move(str(moved), root / "data")
    assert Path(root / "data").is_dir()
