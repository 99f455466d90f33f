"""Issue 16 end to end on the session's tiny trained run: calibration file, Predictor, unknown, sets, calibrate, export, serve."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import imgclf
from imgclf.cli import main
from imgclf.inference.confidence.calibration import apply_temperature
from imgclf.inference.files import predict_files


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory):
    """A blank and a noise image: far from the circles, squares and stripes the run knows."""
    root = tmp_path_factory.mktemp("odd")
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(root / "blank.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3)).astype(np.uint8)).save(root / "noise.png")
    return [str(root / "blank.png"), str(root / "noise.png")]


def _known(run, n=4):
    return [r["path"] for r in run.manifest() if r["split"] == "test"][:n]


def test_training_fits_and_predictor_applies_the_temperature(trained_run, odd_images):
    info = json.loads(trained_run.file("confidence.json").read_text())
    assert info["temperature"] > 0 and info["reject"]["method"] == "mahalanobis" and info["reject"]["reject_rate"] == 0.05
    assert trained_run.file("confidence.npz").exists()
    clf = imgclf.load(trained_run.path, coverage=0.9)
    assert clf.confidence.temperature == info["temperature"] and clf.unknown_threshold is not None
    x = np.stack([clf.decode(p) for p in _known(trained_run)]).astype(np.float32)
    raw = clf.backend.predict(x)
    calibrated = clf.predict_arrays(x)
    np.testing.assert_allclose(calibrated, apply_temperature(raw, info["temperature"]), atol=1e-6)
    assert (calibrated.argmax(1) == raw.argmax(1)).all()
    rows = clf.predict(_known(trained_run) + odd_images, top_k=2)
    assert all("unknown_score" in r and r["prediction_set"] for r in rows)
    assert [r["class"] for r in rows[-2:]] == ["unknown", "unknown"]  # far from every class
    assert all(r["unknown_score"] > clf.unknown_threshold for r in rows[-2:])
    assert all(r["top_k"][0][0] != "unknown" for r in rows)  # the best guesses are still listed
    off = imgclf.load(trained_run.path, reject_rate=0).predict(odd_images)
    assert all(r["class"] != "unknown" and "unknown_score" not in r for r in off)


def test_predict_files_writes_score_and_set_columns(trained_run, odd_images, tmp_path):
    out = tmp_path / "p.csv"
    predict_files(str(trained_run.path), odd_images, fmt="csv", output=str(out), coverage=0.9, progress=False)
    rows = list(csv.DictReader(out.open()))
    assert {"unknown_score", "prediction_set"} <= set(rows[0]) and rows[0]["class"] == "unknown"


def test_old_run_without_calibration_then_calibrate_evaluate_export(trained_run, odd_images, tmp_path, capsys):
    run_dir = tmp_path / "old"
    shutil.copytree(trained_run.path, run_dir, ignore=shutil.ignore_patterns("exports"))
    for name in ("confidence.json", "confidence.npz"):
        (run_dir / name).unlink()
    old = imgclf.load(run_dir)
    assert old.confidence.temperature == 1.0 and old.unknown_threshold is None
    assert "uncalibrated" in old.confidence.describe()
    ev = imgclf.evaluate(run_dir, explain=False, verbose=False)
    assert ev.metrics["confidence"]["calibrated"] is False

    assert main(["calibrate", str(run_dir), "--reject-rate", "0.1"]) == 0
    assert "temperature" in capsys.readouterr().out
    conf = json.loads((run_dir / "confidence.json").read_text())
    assert conf["reject"]["reject_rate"] == 0.1
    ev = imgclf.evaluate(run_dir, explain=False, verbose=False)
    c = ev.metrics["confidence"]
    assert c["calibrated"] and c["temperature"] == conf["temperature"] and c["conformal"] and "rejection" in c
    assert 'id="confidence"' in (run_dir / "report.html").read_text() and (run_dir / "plots" / "confidence.png").exists()

    from imgclf.export.exporter import export

    result = export(run_dir, "onnx", out=tmp_path / "m.onnx")
    assert result.parity["temperature"] == [conf["temperature"]] * 2 and result.parity["max_prob_diff"] < 1e-4
    assert (tmp_path / "m.confidence.npz").exists()
    onnx_clf, run_clf = imgclf.load(tmp_path / "m.onnx"), imgclf.load(run_dir)
    x = np.stack([run_clf.decode(p) for p in _known(trained_run) + odd_images]).astype(np.float32)
    np.testing.assert_allclose(onnx_clf.predict_arrays(x), run_clf.predict_arrays(x), atol=1e-4)
    assert [r["class"] for r in onnx_clf.predict(odd_images)] == ["unknown", "unknown"]


def test_serve_answers_unknown_and_prediction_sets(trained_run, odd_images):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from imgclf.serve.app import create_app

    with TestClient(create_app(imgclf.load(trained_run.path)), base_url="http://localhost") as client:
        data = open(odd_images[0], "rb").read()
        r = client.post("/predict?coverage=0.9", content=data, headers={"content-type": "image/png"}).json()
        assert r["class"] == "unknown" and r["unknown_score"] > 0 and r["prediction_set"]
        r = client.post("/predict?coverage=1.5", content=data, headers={"content-type": "image/png"})
        assert r.status_code == 422
        info = client.get("/model").json()["confidence"]
        assert info["calibrated"] and info["unknown_score"] == "mahalanobis" and info["unknown_threshold"] > 0


def test_calibrate_takes_its_class_statistics_from_every_class(trained_run, tmp_path, monkeypatch):
    # A manifest lists its rows class by class: calibrate once took the first rows, so with more training images
    # than it keeps, the last classes had no statistics (zero means) and most of their images were called unknown.
    from imgclf.inference.confidence.store import Confidence
    from imgclf.training.confidence import calibrate

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.path, run_dir, ignore=shutil.ignore_patterns("exports"))
    monkeypatch.setattr("imgclf.training.confidence.MAX_TRAIN_IMAGES", len(trained_run.classes))
    calibrate(run_dir)
    means = Confidence.load(run_dir).stats["means"]
    assert len(means) == len(trained_run.classes) and (np.abs(means).sum(axis=1) > 0).all()


def test_every_runtime_returns_the_same_calibrated_answers(trained_run, exported_models, odd_images):
    """Keras, SavedModel, TFLite and ONNX exports carry the run's confidence and agree within 1e-4 (float32)."""
    temperature = json.loads(trained_run.file("confidence.json").read_text())["temperature"]
    ref = imgclf.load(exported_models["keras"].path)  # the run's model in float32, as every export computes
    paths = _known(trained_run) + odd_images
    x = np.stack([ref.decode(p) for p in paths]).astype(np.float32)
    want, want_rows = ref.predict_arrays(x), ref.predict(paths)
    for fmt in ("keras", "savedmodel", "tflite", "onnx"):
        clf = imgclf.load(exported_models[fmt].path)
        assert clf.confidence.temperature == temperature and clf.unknown_threshold is not None, fmt
        np.testing.assert_allclose(clf.predict_arrays(x), want, atol=1e-4, err_msg=fmt)
        rows = clf.predict(paths)
        assert [r["class"] for r in rows] == [r["class"] for r in want_rows], fmt
        assert rows[-1]["class"] == "unknown", fmt
