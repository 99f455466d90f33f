"""`imgclf predict` on folders (issue 7): threshold, TTA, sorting into class folders, bounded memory."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

import imgclf
from imgclf.cli import main
from imgclf.core.errors import UserError
from imgclf.inference.files import predict_files
from imgclf.inference.sort_into import claim
from tests.conftest import draw, make_image_folder


@pytest.fixture(scope="module")
def tflite(exported_models):
    return str(exported_models["tflite"].path)


def test_sort_into_copies_safely_and_logs(tflite, tmp_path, capsys):
    src = tmp_path / "in"
    make_image_folder(src, per_class=3, seed=4)
    # Same file name in two folders: both must arrive under distinct names.
    Image.fromarray(draw("stripes", np.random.default_rng(1))).save(src / "circle" / "dup.png")
    Image.fromarray(draw("stripes", np.random.default_rng(2))).save(src / "square" / "dup.png")
    (src / "circle" / "broken.png").write_bytes(b"not a png")
    before = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
    out = tmp_path / "sorted"
    counts = predict_files(tflite, [str(src)], fmt="csv", output=str(tmp_path / "p.csv"), sort_into=str(out), progress=False)
    assert counts == {"images": 12, "errors": 1}
    assert sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file()) == before  # originals untouched
    log = list(csv.DictReader(open(out / "sorted.csv")))
    assert len(log) == 12 and sum(r["action"] == "copied" for r in log) == 11
    assert [r for r in log if r["action"] == "skipped"][0]["source"].endswith("broken.png")
    dests = [r["destination"] for r in log if r["destination"]]
    assert len(set(dests)) == 11 and all((tmp_path / d).exists() for d in dests)
    assert {d.split("/")[-1] for d in dests if "dup" in d} == {"dup.png", "dup-2.png"}
    for r in log:
        if r["destination"]:
            assert f"/sorted/{r['class']}/" in r["destination"]
    assert "Copied 11 file(s)" in capsys.readouterr().err
    # A second run next to the first: nothing overwritten, a new log.
    predict_files(tflite, [str(src)], fmt="csv", output=str(tmp_path / "p2.csv"), sort_into=str(out), progress=False)
    assert (out / "sorted-2.csv").exists()
    assert len([p for p in out.rglob("*") if p.is_file() and p.suffix != ".csv"]) == 22


def test_move_only_when_asked(tflite, tmp_path):
    src = tmp_path / "in"
    make_image_folder(src, per_class=1)
    with pytest.raises(UserError, match="--move only makes sense with --sort-into"):
        predict_files(tflite, [str(src)], move=True, output=str(tmp_path / "x.csv"))
    predict_files(tflite, [str(src)], fmt="jsonl", output=str(tmp_path / "p.jsonl"), sort_into=str(tmp_path / "out"),
                  move=True, progress=False)
    assert not [p for p in src.rglob("*") if p.is_file()]
    assert len([p for p in (tmp_path / "out").rglob("*") if p.is_file() and p.suffix != ".csv"]) == 3


def test_claim_never_overwrites(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"new")
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "a.jpg").write_bytes(b"old")
    placed = claim(dest, "a.jpg", tmp_path / "a.jpg", move=False)
    assert placed.name == "a-2.jpg" and (dest / "a.jpg").read_bytes() == b"old" and placed.read_bytes() == b"new"


def test_threshold_tta_and_cli_errors(tflite, tmp_path, capsys):
    make_image_folder(tmp_path / "in", per_class=2)
    main(["predict", tflite, str(tmp_path / "in"), "--format", "json"])
    probs = sorted(r["probability"] for r in json.loads(capsys.readouterr().out))
    cut = probs[len(probs) // 2]  # the median: about half the images fall below it
    rc = main(["predict", tflite, str(tmp_path / "in"), "--format", "json", "--threshold", str(cut), "--top-k", "2"])
    rows = json.loads(capsys.readouterr().out)
    assert rc == 0 and all((r["class"] == "unknown") == (r["probability"] < cut) for r in rows)
    assert any(r["class"] == "unknown" for r in rows) or probs[0] == probs[-1]
    assert all(len(r["top_k"]) == 2 and r["top_k"][0][0] != "unknown" for r in rows)
    plain = imgclf.load(tflite)
    flip = imgclf.load(tflite, tta="flip")
    x = plain.decode(str(next((tmp_path / "in" / "circle").glob("*.png"))))[None]
    expected = (plain.predict_arrays(x) + plain.predict_arrays(x[:, :, ::-1].copy())) / 2
    assert np.allclose(flip.predict_arrays(x), expected, atol=1e-6)
    assert main(["predict", tflite, str(tmp_path / "in"), "--threshold", "1.5"]) == 2
    assert main(["predict", tflite, str(tmp_path / "in"), "--sort-into", str(tmp_path / "in" / "out")]) == 2
    assert "inside the input folder" in capsys.readouterr().err


def test_streaming_holds_two_batches_at_most(tflite, tmp_path):
    """predict_paths pulls paths lazily: it never reads more than two batches ahead of what it yielded."""
    make_image_folder(tmp_path / "in", per_class=20)
    paths = sorted(str(p) for p in (tmp_path / "in").rglob("*.*"))
    pulled = []

    def lazy():
        for p in paths:
            pulled.append(p)
            yield p

    rows = imgclf.load(tflite).predict_paths(lazy(), batch_size=8)
    for n, _ in enumerate(rows, 1):
        assert len(pulled) <= n + 2 * 8
    assert n == 60
