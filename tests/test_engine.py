"""`imgclf predict --engine ray` (issue 8) on Ray's local runner: the same answers as `imgclf predict`.

One local Ray instance serves the whole module (starting one costs seconds);
the engine joins it instead of starting its own, as it joins a cluster.
"""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from imgclf.cli import main
from imgclf.core.errors import UserError
from imgclf.inference.engines import parse_options, predict_with_engine, require_engine
from imgclf.inference.files import predict_files
from tests.conftest import make_image_folder

ray = pytest.importorskip("ray", reason="the engine extra is not installed: pip install 'imgclf[ray]'")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def local_ray():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """300 tiny images (24 px, PNG and JPEG, gray and RGBA among them) and one file that is not an image."""
    root = tmp_path_factory.mktemp("engine") / "in"
    make_image_folder(root, per_class=100, size=24, seed=3)
    (root / "circle" / "broken.png").write_bytes(b"not a png at all")
    return str(root)


@pytest.fixture(scope="module")
def tflite(trained_run, tmp_path_factory):
    """The session's run as .tflite: actors load it in a fraction of a second (no TensorFlow import)."""
    from imgclf.export.exporter import export

    return str(export(trained_run, "tflite", out=tmp_path_factory.mktemp("engine_model") / "m.tflite").path)


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory):
    """A blank and a noise image: far from every class, so the run answers 'unknown' for them."""
    root = tmp_path_factory.mktemp("engine_odd")
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(root / "blank.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3)).astype(np.uint8)).save(root / "noise.png")
    return str(root)


def _local_rows(model, inputs, tmp_path, top_k=2, **confidence):
    out = tmp_path / "local.jsonl"
    predict_files(model, inputs, top_k=top_k, fmt="jsonl", output=str(out), progress=False, **confidence)
    return [json.loads(line) for line in out.read_text().splitlines()]


def _assert_same(engine_rows, local_rows):
    assert [r["path"] for r in engine_rows] == [r["path"] for r in local_rows]  # same files, same order
    for e, loc in zip(engine_rows, local_rows):
        assert e["class"] == loc["class"] and e["error"] == loc["error"], e["path"]
        if not loc["error"]:
            assert e["probability"] == pytest.approx(loc["probability"], abs=1e-5)
            assert [c for c, _ in e["top_k"]] == [c for c, _ in loc["top_k"]]
            assert np.allclose([p for _, p in e["top_k"]], [p for _, p in loc["top_k"]], atol=1e-5)
            # the run's confidence (on by default): the same unknown score, and the same set where --coverage asks
            assert ("unknown_score" in e) == ("unknown_score" in loc), e["path"]
            if "unknown_score" in loc:
                assert e["unknown_score"] == pytest.approx(loc["unknown_score"], rel=1e-4, abs=1e-4), e["path"]
            assert e.get("prediction_set") == loc.get("prediction_set"), e["path"]


@pytest.mark.slow
def test_keras_run_on_two_actors_matches_imgclf_predict(local_ray, trained_run, images, tmp_path):
    out = tmp_path / "preds.jsonl"
    counts = predict_with_engine(str(trained_run.path), [images], str(out), top_k=2, batch_size=32,
                                 options={"actors": 2}, progress=False)
    assert counts == {"images": 301, "errors": 1}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    local = _local_rows(str(trained_run.path), [images], tmp_path)
    _assert_same(rows, local)
    broken = [r for r in rows if r["path"].endswith("broken.png")]
    assert broken[0]["error"].startswith("not an image") and broken[0]["probability"] is None
    # The model learned the shapes: most answers are right, so the comparison is not between two blind guesses.
    # Images the run rejects as unknown (on by default, threshold from a tiny validation split) are left out.
    answered = [r for r in rows if not r["error"] and r["class"] != "unknown"]
    right = sum(r["class"] in r["path"].split("/")[-2] for r in answered)
    assert len(answered) >= 150 and right >= 0.8 * len(answered)


@pytest.mark.slow
def test_every_output_format_parses_with_the_same_rows(local_ray, tflite, images, tmp_path):
    local = _local_rows(tflite, [images], tmp_path)
    predict_with_engine(tflite, [images], str(tmp_path / "p.parquet"), top_k=2, options={"actors": 1}, progress=False)
    table = pq.read_table(tmp_path / "p.parquet")
    # the run rejects unknowns by default: its score is a column, as in `imgclf predict`'s CSV
    assert table.column_names == ["path", "class", "probability", "class_2", "probability_2", "unknown_score", "error"]
    assert str(table.schema.field("probability").type) == "double"
    rows = table.to_pylist()
    assert [r["path"] for r in rows] == [r["path"] for r in local]
    for r, loc in zip(rows, local):
        assert r["class"] == loc["class"] and r["error"] == loc["error"]
        if not loc["error"]:
            assert r["probability"] == pytest.approx(loc["probability"], abs=1e-5)
            assert (r["class_2"], r["probability_2"]) == (loc["top_k"][1][0], pytest.approx(loc["top_k"][1][1], abs=1e-5))
        else:
            assert r["probability"] is None
    predict_with_engine(tflite, [images], str(tmp_path / "p.csv"), top_k=2, options={"actors": 1}, progress=False)
    with open(tmp_path / "p.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert list(csv_rows[0]) == ["path", "class", "probability", "class_2", "probability_2", "unknown_score", "error"]
    assert [(r["path"], r["class"]) for r in csv_rows] == [(r["path"], r["class"]) for r in local]
    predict_with_engine(tflite, [images], str(tmp_path / "p.json"), options={"actors": 1}, progress=False)
    assert [r["class"] for r in json.loads((tmp_path / "p.json").read_text())] == [r["class"] for r in local]


@pytest.mark.slow
def test_list_file_with_missing_and_unreadable_entries(local_ray, tflite, images, tmp_path):
    listed = sorted(str(p) for p in __import__("pathlib").Path(images).rglob("*.png"))[:20]
    lst = tmp_path / "list.txt"
    lst.write_text("# my images\n" + "\n".join(listed + [str(tmp_path / "gone.jpg")]) + "\n")
    out = tmp_path / "p.jsonl"
    rc = main(["predict", tflite, str(lst), "--engine", "ray", "--output", str(out), "--engine-option", "actors=1",
               "--no-progress"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rc == 0 and len(rows) == 21
    assert rows[-1]["path"].endswith("gone.jpg") and rows[-1]["error"].startswith("file not found")
    _assert_same(rows[:-1], _local_rows(tflite, listed, tmp_path, top_k=1))


@pytest.mark.slow
def test_shards_from_datasets_pack_give_the_same_answers(local_ray, tflite, images, tmp_path):
    import os

    from imgclf.data.shards.pack import pack

    shards = tmp_path / "shards"
    pack(images, str(shards), min_shards=2, verbose=False)  # train/val/test shards; the broken file is left out
    assert len(list(shards.glob("*.tfrecord"))) >= 4
    out = tmp_path / "p.jsonl"
    counts = predict_with_engine(tflite, [str(shards)], str(out), top_k=2, options={"actors": 1}, progress=False)
    assert counts == {"images": 300, "errors": 0}
    by_name = {json.loads(line)["path"]: json.loads(line) for line in out.read_text().splitlines()}
    local = [r for r in _local_rows(tflite, [images], tmp_path) if not r["error"]]
    engine = [{**by_name[os.path.relpath(r["path"], images)], "path": r["path"]} for r in local]
    _assert_same(engine, local)


@pytest.mark.slow
def test_unknown_answers_scores_and_prediction_sets_match_imgclf_predict(local_ray, tflite, images, odd_images, tmp_path):
    """`--coverage` and `--reject-rate` reach the workers: the engine's rows and columns are `imgclf predict`'s."""
    inputs = [images + "/circle", odd_images]
    local = _local_rows(tflite, inputs, tmp_path, coverage=0.9)
    assert all("unknown_score" in r and r["prediction_set"] for r in local if not r["error"])
    assert [r["class"] for r in local[-2:]] == ["unknown", "unknown"]  # blank.png, noise.png
    out = tmp_path / "p.jsonl"
    predict_with_engine(tflite, inputs, str(out), top_k=2, coverage=0.9, options={"actors": 1}, progress=False)
    _assert_same([json.loads(line) for line in out.read_text().splitlines()], local)

    predict_with_engine(tflite, inputs, str(tmp_path / "p.parquet"), top_k=2, coverage=0.9, options={"actors": 1},
                        progress=False)
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.column_names[-3:] == ["unknown_score", "prediction_set", "error"]
    assert str(table.schema.field("unknown_score").type) == "double"
    for r, loc in zip(table.to_pylist(), local):
        assert r["prediction_set"] == ("|".join(loc["prediction_set"]) if not loc["error"] else None), r["path"]
        if not loc["error"]:
            assert r["unknown_score"] == pytest.approx(loc["unknown_score"], rel=1e-4, abs=1e-4)

    off = tmp_path / "off.csv"
    predict_with_engine(tflite, inputs, str(off), reject_rate=0, options={"actors": 1}, progress=False)
    with open(off, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "class", "probability", "error"]  # no score column when rejection is off
    assert "unknown" not in {r["class"] for r in rows}
    with pytest.raises(UserError, match="--coverage"):
        predict_with_engine(tflite, inputs, str(tmp_path / "x.csv"), coverage=1.5)


def test_user_errors_before_any_worker_starts(tmp_path, monkeypatch, capsys):
    make_image_folder(tmp_path / "in", per_class=1)
    with pytest.raises(UserError, match="pass --output"):
        predict_with_engine("m.tflite", [str(tmp_path / "in")], None)
    with pytest.raises(UserError, match="Expected one of .csv"):
        predict_with_engine("m.tflite", [str(tmp_path / "in")], str(tmp_path / "p.xlsx"))
    with pytest.raises(UserError, match="Model not found"):
        predict_with_engine(str(tmp_path / "nope.tflite"), [str(tmp_path / "in")], str(tmp_path / "p.csv"))
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_options(["actors"])
    assert parse_options(["actors=2", "address=auto", "num_gpus=0.5"]) == {"actors": 2, "address": "auto", "num_gpus": 0.5}
    assert main(["predict", "m.tflite", str(tmp_path / "in"), "--engine", "ray", "--sort-into", "x"]) == 2
    assert "--sort-into works with the local engine only" in capsys.readouterr().err
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install 'imgclf\[ray\]'"):
        require_engine("ray")


@pytest.mark.slow
def test_unknown_engine_option_is_one_clear_line(local_ray, tflite, images, tmp_path):
    with pytest.raises(UserError, match="Ray does not take that --engine-option: Invalid option keyword foo"):
        predict_with_engine(tflite, [images + "/circle"], str(tmp_path / "p.jsonl"), options={"foo": 1}, progress=False)
    assert not list(tmp_path.iterdir())  # no output, not even a partial one
