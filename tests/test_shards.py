"""`imgclf datasets pack` and training/evaluating from TFRecord shards (issue 8), on 3 classes x 12 tiny images."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder

from imgclf.core.errors import UserError

CORRUPT = "circle/broken.png"


def _data(root: Path) -> str:
    data = make_image_folder(root / "data", per_class=12, size=16)
    (Path(data) / CORRUPT).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)  # starts like a PNG, cannot be parsed
    return str(Path(data).resolve())  # scans record resolved paths


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    from imgclf.data.shards.pack import pack

    root = tmp_path_factory.mktemp("shards")
    data = _data(root)
    info = pack(data, str(root / "shards"), verbose=False)
    return data, str(root / "shards"), info


@pytest.fixture(scope="module")
def shard_run(packed):
    import imgclf

    data, shards, _ = packed
    return imgclf.train(shards, epochs=1, batch_size=8, verbose=0, out=str(Path(shards).parent / "runs" / "s"))


def _manifest(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_pack_writes_shards_index_and_manifest(packed):
    data, shards, info = packed
    names = sorted(os.listdir(shards))
    assert names == ["classes.json", "manifest.csv", "shards.json", "test-00000-of-00001.tfrecord",
                     "train-00000-of-00001.tfrecord", "val-00000-of-00001.tfrecord"]  # no temporary files left
    assert json.loads(Path(shards, "classes.json").read_text()) == ["circle", "square", "stripes"]
    index = json.loads(Path(shards, "shards.json").read_text())
    assert index == info and index["format"] == "imgclf-shards" and index["format_version"] == 1
    assert sum(index["images"].values()) == 36  # every good image once; the corrupt one left out
    assert index["images"] == {s: sum(index["counts"][s].values()) for s in ("train", "val", "test")}
    assert index["image_stats"]["shorter_side"] == {"min": 16, "median": 16, "max": 16}
    assert index["image_stats"]["formats"] == {"jpeg": 18, "png": 18}
    rows = _manifest(Path(shards, "manifest.csv"))
    assert set(rows[0]) >= {"path", "label", "split", "shard", "sha1", "status"}
    assert len(rows) == 37
    for r in rows:
        if r["path"] == CORRUPT:
            assert r["status"].startswith("skipped: ") and "corrupt" in r["status"] and not r["shard"]
        else:
            assert r["status"] == "ok" and r["shard"] == f"{r['split']}-00000-of-00001.tfrecord"
            assert r["sha1"] == hashlib.sha1(Path(data, r["path"]).read_bytes()).hexdigest()


def test_shards_hold_the_original_bytes_and_labels(packed):
    from imgclf.data.shards.reader import iter_records

    data, shards, info = packed
    rows = {r["path"]: r for r in _manifest(Path(shards, "manifest.csv"))}
    seen = []
    for split in ("train", "val", "test"):
        for rec in iter_records(shards, split):
            original = Path(data, rec["filename"]).read_bytes()
            assert rec["encoded"] == original  # kept encoded, byte for byte
            assert rec["text"] == rows[rec["filename"]]["label"] == Path(rec["filename"]).parent.name
            assert info["classes"][rec["label"]] == rec["text"]
            assert rows[rec["filename"]]["split"] == split and rec["sha1"] == hashlib.sha1(original).hexdigest()
            seen.append(rec["filename"])
    assert sorted(seen) == sorted(p for p in rows if p != CORRUPT)


def test_split_is_the_one_training_from_the_folder_makes(packed, shard_run):
    from imgclf.core.config import TrainConfig
    from imgclf.data.split import training_rows

    data, shards, _ = packed
    cfg = TrainConfig()
    rows, _ = training_rows(data, "", cfg.val_fraction, cfg.test_fraction, cfg.seed, verbose=False)
    folder = {Path(r["path"]).relative_to(data).as_posix(): r["split"] for r in rows}
    packed_split = {r["path"]: r["split"] for r in _manifest(Path(shards, "manifest.csv"))}
    assert packed_split == folder
    run_split = {Path(r["path"]).relative_to(data).as_posix(): r["split"] for r in _manifest(shard_run.file("manifest.csv"))}
    assert run_split == folder  # the run trained from shards records the folder's split


def test_streamed_pixels_and_label_order_match_the_decoder(packed):
    from imgclf.data.decode import decode_image
    from imgclf.data.shards.reader import iter_records, make_split_dataset, shard_rows, streamed_sets

    data, shards, _ = packed
    rows, classes = shard_rows(shards)
    labels = streamed_sets(shards, classes)["val"].labels
    x, y = next(iter(make_split_dataset(shards, "val", batch_size=64, img_size=20, color_mode="rgb")))
    assert y.numpy().tolist() == labels.tolist()  # what ValidationMetrics relies on
    files = [rec["filename"] for rec in iter_records(shards, "val")]
    expected = np.stack([decode_image(Path(data, f).read_bytes(), size=20) for f in files]).astype(np.float32)
    np.testing.assert_array_equal(x.numpy(), expected)  # the one decoder: same pixels as `imgclf predict`
    train = make_split_dataset(shards, "train", batch_size=5, img_size=20, shuffle=True, seed=1)
    assert sum(int(b[1].shape[0]) for b in train) == len(streamed_sets(shards, classes)["train"])


def test_pack_never_overwrites_unasked(packed, tmp_path):
    from imgclf.cli import main
    from imgclf.data.shards.pack import pack

    data, _, _ = packed
    out = tmp_path / "shards"
    pack(data, str(out), verbose=False, min_shards=2)
    assert (out / "train-00001-of-00002.tfrecord").exists()
    before = (out / "shards.json").read_bytes()
    with pytest.raises(UserError, match="not empty.*--overwrite"):
        pack(data, str(out), verbose=False)
    assert (out / "shards.json").read_bytes() == before
    pack(data, str(out), verbose=False, overwrite=True)  # an earlier pack may be replaced; no stale shards stay
    assert sorted(p.name for p in out.glob("train-*")) == ["train-00000-of-00001.tfrecord"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["datasets", "pack", data, "--out", str(other), "--overwrite"]) == 2  # not a pack: never deleted
    assert (other / "notes.txt").read_text() == "keep me" and sorted(os.listdir(other)) == ["notes.txt"]
    with pytest.raises(UserError, match="inside the data folder"):
        pack(data, str(Path(data) / "shards"), verbose=False)


def test_pack_to_a_url(packed):
    """Any tf.io.gfile URL works: TensorFlow's in-memory ram:// file system stands in for gs:// here."""
    from imgclf.data.shards.pack import pack
    from imgclf.data.shards.reader import iter_records, read_index, shards_root

    data, _, info = packed
    url = "ram://imgclf-test/shards"
    pack(data, url, verbose=False)
    assert shards_root(url + "/") == url
    assert read_index(url)["images"] == info["images"]
    assert len(list(iter_records(url, "train"))) == info["images"]["train"]
    with pytest.raises(UserError, match="not empty"):
        pack(data, url, verbose=False)


def test_train_and_evaluate_from_shards(packed, shard_run):
    import imgclf

    data, shards, info = packed
    run = shard_run
    for name in ("model.keras", "classes.json", "manifest.csv", "summary.json", "config.yaml", "history.csv"):
        assert run.file(name).exists(), name
    summary = run.read_json("summary.json")
    assert summary["images"] == {"train": info["images"]["train"], "val": info["images"]["val"]}
    assert summary["class_counts"]["train"] == info["counts"]["train"]
    assert [s["path"] for s in summary["skipped"]] == [str(Path(data) / CORRUPT)]
    assert run.config["data"] == str(Path(shards).resolve())
    clf = imgclf.load(run.path)
    files = sorted(Path(data).glob("square/*.png"))[:2]
    preds = clf.predict([str(f) for f in files])
    assert [p["error"] for p in preds] == ["", ""] and all(p["class"] in info["classes"] for p in preds)
    ev = imgclf.evaluate(run, plots=False, verbose=False)  # the shards' test split, found from the run's config
    assert ev.metrics["num_samples"] == info["images"]["test"]
    assert "shards" in ev.source
    assert sorted(Path(p).relative_to(data).as_posix() for p in ev.paths) == sorted(
        r["path"] for r in _manifest(Path(shards, "manifest.csv")) if r["split"] == "test" and r["status"] == "ok")


def test_training_settings_that_cannot_stream_are_refused(packed, tmp_path):
    import imgclf

    _, shards, _ = packed
    with pytest.raises(UserError, match="balanced"):
        imgclf.train(shards, epochs=1, sampling="balanced", verbose=0, out=str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_two_workers_train_from_shards_with_their_own_files(tmp_path):
    """Two local workers (TF_CONFIG on loopback ports) train from a pack of two train shards, one per worker."""
    import time

    from imgclf.data.shards.pack import pack
    from tests.test_distributed import SETTINGS, kill_all, start_job, wait_all, worker_argv

    data = make_image_folder(tmp_path / "data", per_class=20, size=16)
    info = pack(data, str(tmp_path / "shards"), min_shards=2, val_fraction=0.2, test_fraction=0.0, verbose=False)
    assert len(info["files"]["train"]) == 2
    settings = {**SETTINGS, "data": str(tmp_path / "shards"), "out": str(tmp_path / "runs" / "mw"),
                "distributed": "multi-worker", "epochs": 2}
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    procs = start_job(tmp_path, "shards", worker_argv(tmp_path / "settings.json", tmp_path))
    try:
        codes = wait_all(procs, time.monotonic() + 240)
    finally:
        kill_all(procs)
    logs = [log.read_text() for _, log, _ in procs]
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    assert not any("ran out of data" in log or "reads all of them" in log for log in logs)  # own files, equal steps
    a, b = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)  # the workers stayed in step
    run = tmp_path / "runs" / "mw"
    assert json.loads((run / "summary.json").read_text())["images"]["train"] == info["images"]["train"]
    assert (run / "model.keras").exists() and (run / "manifest.csv").exists()
