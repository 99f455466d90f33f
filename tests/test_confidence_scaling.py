"""Issue 16, the calibration map chosen on validation: one temperature, or one per predicted class (never vector scaling).

Synthetic data (no model) for the math; the session's tiny run for the files, the runtimes and the export check.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from imgclf.core.errors import UserError
from imgclf.inference.confidence.calibration import apply_temperature, fit_temperature, nll
from imgclf.inference.confidence.fit import fit_confidence
from imgclf.inference.confidence.scaling import (
    MIN_IMAGES,
    apply_class_temperatures,
    choose_scaling,
    explain,
    explain_fit,
    undo_class_temperatures,
)
from imgclf.inference.confidence.store import Confidence


def per_class_overconfident(n: int, sharpen=(4.0, 1.0, 1.0, 1.0), seed: int = 0):
    """Labels and probabilities of a model that is `sharpen[c]` times too sure when it predicts class c."""
    rng = np.random.default_rng(seed)
    k = len(sharpen)
    y = rng.integers(0, k, n)
    x = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y]  # the true posterior is softmax(2 x)
    z = 2.0 * x * np.asarray(sharpen)[x.argmax(1)][:, None]
    p = np.exp(z - z.max(1, keepdims=True))
    return y, p / p.sum(1, keepdims=True)


def test_a_temperature_per_predicted_class_is_chosen_when_classes_differ_and_helps_on_fresh_data():
    y, p = per_class_overconfident(4000)
    yt, pt = per_class_overconfident(20000, seed=1)
    record = choose_scaling(p, y)
    assert record["method"] == "class_temperature", record
    assert record["cv"]["gain"] > record["cv"]["margin"] >= 0.002
    ct = record["class_temperatures"]
    assert 3.0 < ct[0] < 5.0 and all(0.8 < t < 1.25 for t in ct[1:])
    per_class = apply_class_temperatures(pt, ct)
    shared = apply_temperature(pt, record["temperature"])
    assert nll(per_class, yt) < nll(shared, yt) - 0.01
    assert (per_class.argmax(1) == pt.argmax(1)).all()
    assert "per predicted class" in explain(record)


def test_one_temperature_stays_when_every_class_is_alike_or_validation_is_tiny():
    y, p = per_class_overconfident(3000, sharpen=(3.0, 3.0, 3.0, 3.0))
    record = choose_scaling(p, y)
    assert record["method"] == "temperature" and "class_temperatures" not in record
    assert record["cv"]["gain"] <= record["cv"]["margin"]
    assert record["temperature"] == pytest.approx(fit_temperature(p, y), abs=1e-5)
    few = choose_scaling(p[:MIN_IMAGES - 1], y[:MIN_IMAGES - 1])
    assert few["method"] == "temperature" and "skipped" in few["cv"] and explain(few).startswith("one temperature")


def test_no_map_ever_changes_the_order_of_the_classes():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.full(6, 0.3), size=5000).astype(np.float32)
    temps = np.exp(rng.uniform(np.log(0.1), np.log(20), size=6))
    q = apply_class_temperatures(p, temps)
    assert (q.argmax(1) == p.argmax(1)).all()
    # the whole ranking, not only the top class (ties aside: float32 rounding can merge two close probabilities)
    distinct = np.all(np.diff(np.sort(p, axis=1), axis=1) > 1e-4, axis=1)
    assert (np.argsort(-q[distinct], axis=1) == np.argsort(-p[distinct], axis=1)).all()
    np.testing.assert_allclose(q.sum(1), 1, atol=1e-5)
    back = undo_class_temperatures(q, temps)
    confident = p.max(1) < 0.999  # far in the tail float32 cannot give the probabilities back
    np.testing.assert_allclose(back[confident], p[confident], atol=2e-4)


def test_fitted_class_temperatures_round_trip_and_are_checked(tmp_path):
    y, p = per_class_overconfident(3000)
    conf = fit_confidence(p, y, method="msp")
    assert conf.info["scaling"]["method"] == "class_temperature" and len(conf.class_temperatures) == 4
    assert conf.describe().startswith("temperature per predicted class")
    # The line training and `imgclf calibrate` print (a KeyError at the end of training once: the temperatures
    # are kept beside the "scaling" record).
    assert explain_fit(json.loads(json.dumps(conf.info))).startswith("a temperature per predicted class, 1.0")
    assert conf.info["ece_after"] < conf.info["ece_before"]
    conf.save(tmp_path)
    back = Confidence.load(tmp_path)
    assert back.class_temperatures == conf.class_temperatures and back.scaling == conf.scaling
    from_meta = Confidence.from_metadata(json.loads(json.dumps({"confidence": conf.info})), tmp_path / "m.onnx")
    np.testing.assert_array_equal(from_meta.calibrate(p[:50]), conf.calibrate(p[:50]))
    np.testing.assert_allclose(conf.uncalibrate(conf.calibrate(p[:50])), p[:50], atol=1e-4)
    with pytest.raises(UserError, match="holds 4 class temperatures for a model of 3 classes"):
        conf.calibrate(np.full((1, 3), 1 / 3))
    for bad in ([], [1.0, -2.0], "2.0", [True, 1.0]):
        with pytest.raises(UserError, match="class_temperatures"):
            Confidence({"temperature": 1.0, "class_temperatures": bad})


def test_export_check_refuses_an_export_whose_calibration_differs():
    from imgclf.export.exporter import ExportCheckError, _judge

    same = {"method": "temperature", "temperature": 0.8}
    other = {"method": "class_temperature", "temperature": 0.8, "class_temperatures": [0.7, 0.9]}
    ok = {"agreement": 1.0, "max_prob_diff": 0.0, "images": 4, "split": "val", "temperature": [0.8, 0.8]}
    _judge("onnx", {**ok, "scaling": [same, same]}, 0.05)
    with pytest.raises(ExportCheckError, match="class_temperature"):
        _judge("onnx", {**ok, "scaling": [other, same]}, 0.05)


@pytest.mark.slow
def test_class_temperatures_reach_every_runtime_and_the_export_check(trained_run, tmp_path):
    """A run whose validation chose class temperatures: the run, its .tflite export and the export check agree."""
    import imgclf
    from imgclf.export.exporter import export

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.path, run_dir, ignore=shutil.ignore_patterns("exports"))
    info = json.loads((run_dir / "confidence.json").read_text())
    k = len(trained_run.classes)
    info["class_temperatures"] = [0.5 + 1.5 * c for c in range(k)]  # far apart, so a lost map would show
    (run_dir / "confidence.json").write_text(json.dumps(info))
    result = export(run_dir, "tflite", out=tmp_path / "m.tflite")
    assert [s["method"] for s in result.parity["scaling"]] == ["class_temperature"] * 2
    assert result.parity["max_prob_diff"] < 1e-4
    run_clf, lite = imgclf.load(run_dir), imgclf.load(tmp_path / "m.tflite")
    assert lite.confidence.class_temperatures == info["class_temperatures"]
    paths = [r["path"] for r in trained_run.manifest() if r["split"] == "test"][:6]
    x = np.stack([run_clf.decode(p) for p in paths]).astype(np.float32)
    raw = run_clf.backend.predict(x)
    want = apply_class_temperatures(raw, info["class_temperatures"])
    np.testing.assert_allclose(run_clf.predict_arrays(x), want, atol=1e-5)
    np.testing.assert_allclose(lite.predict_arrays(x), want, atol=1e-4)
    assert (want.argmax(1) == raw.argmax(1)).all()
