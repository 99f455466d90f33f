"""Exports (issue 7): every format loads through imgclf.load, carries its classes, and answers like the run."""

import json
import subprocess
import sys

import numpy as np
import pytest

import imgclf
from imgclf.core.errors import UserError
from imgclf.export.exporter import ExportCheckError, _judge, _target, export
from tests.conftest import make_image_folder

pytestmark = pytest.mark.slow


def test_every_format_passes_parity_and_predicts_like_the_run(trained_run, exported_models, tmp_path):
    make_image_folder(tmp_path / "new", per_class=4, seed=11)
    paths = sorted(str(p) for p in (tmp_path / "new").rglob("*.*"))
    run_probs = imgclf.load(trained_run.path).predict_proba(paths)  # as trained: maybe bfloat16 on this CPU
    f32 = imgclf.load(exported_models["keras"].path)  # the same model in float32, as every export computes
    ref, ref_emb = f32.predict_proba(paths), f32.embed(paths)
    assert np.abs(ref - run_probs).max() < 0.05
    val = [r for r in trained_run.manifest() if r["split"] == "val"]
    for fmt, result in exported_models.items():
        p = result.parity
        assert result.path.exists()
        assert p["images"] == len(val) > 0 and p["split"] == "val"  # the run's validation images
        clf = imgclf.load(result.path)
        assert clf.format == fmt.split("-")[0]
        assert clf.classes == trained_run.classes and clf.preprocess == trained_run.preprocess
        probs, emb = clf.predict_proba(paths), clf.embed(paths)
        assert emb.shape == ref_emb.shape and emb.shape[1] > len(clf.classes)  # penultimate features, a second output
        if fmt == "tflite-int8":
            assert p["accuracy_drop"] is not None and np.mean(probs.argmax(1) == ref.argmax(1)) >= 0.75
            assert result.path.stat().st_size < 0.5 * exported_models["tflite"].path.stat().st_size
        else:
            tol = 2e-2 if fmt == "tflite-fp16" else 1e-3  # half-precision weights round at about 1e-3
            assert p["agreement"] >= 0.995 and p["max_prob_diff"] < tol, fmt
            assert np.abs(probs - ref).max() < tol, fmt
            assert np.abs(emb - ref_emb).max() < tol * max(1.0, float(np.abs(ref_emb).max())), fmt


def test_metadata_travels_inside_tflite_and_onnx(exported_models):
    import onnx

    from imgclf.inference.backends.metadata import tflite_metadata

    meta = tflite_metadata(exported_models["tflite"].path.read_bytes())
    assert meta["classes"] == ["circle", "square", "stripes"] and meta["preprocess"]["img_size"] > 0
    props = {p.key: p.value for p in onnx.load(str(exported_models["onnx"].path)).metadata_props}
    assert json.loads(props["imgclf"])["classes"] == meta["classes"]
    assert json.loads(exported_models["keras"].path.with_suffix(".json").read_text())["classes"] == meta["classes"]
    assert (exported_models["savedmodel"].path / "imgclf.json").exists()


def test_export_never_overwrites_and_validates(trained_run, exported_models, tmp_path):
    taken = exported_models["tflite"].path
    with pytest.raises(UserError, match="already exists"):
        export(trained_run, "tflite", out=taken)
    assert _target(trained_run, "tflite-int8", None, False) == trained_run.file("exports") / "model_int8.tflite"
    with pytest.raises(UserError, match="Unknown export format 'tflit'"):
        export(trained_run, "tflit")
    with pytest.raises(UserError, match="must end in .onnx"):
        export(trained_run, "onnx", out=tmp_path / "model.tflite")


def test_failed_parity_is_an_error():
    bad = {"images": 200, "split": "val", "agreement": 0.97, "max_prob_diff": 0.6, "accuracy_drop": 0.2}
    with pytest.raises(ExportCheckError, match="97.00%"):
        _judge("onnx", bad, 0.05)
    with pytest.raises(ExportCheckError, match="loses 20.0% accuracy"):
        _judge("tflite-int8", bad, 0.05)
    _judge("tflite-int8", {**bad, "accuracy_drop": 0.01}, 0.05)


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_prediction_from_an_export_never_imports_tensorflow(exported_models, tmp_path, fmt):
    make_image_folder(tmp_path / "imgs", per_class=1)
    code = (
        "import sys, imgclf.cli\n"
        f"rc = imgclf.cli.main(['predict', {str(exported_models[fmt].path)!r}, {str(tmp_path / 'imgs')!r}, '--format', 'json'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "print('HEAVY', heavy[:5], 'RC', rc, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY [] RC 0" in out.stderr, out.stderr[-2000:]
    rows = json.loads(out.stdout)
    assert len(rows) == 3 and {r["class"] for r in rows} <= {"circle", "square", "stripes", "unknown"}  # rejection is on


def test_export_command_prints_parity(trained_run, tmp_path, capsys):
    from imgclf.cli import main

    assert main(["export", str(trained_run.path), "--format", "tflite-fp16", "--out", str(tmp_path / "m.tflite")]) == 0
    out = capsys.readouterr().out
    assert "Exported tflite-fp16" in out and "top-1 agreement 100.00%" in out
    assert imgclf.load(tmp_path / "m.tflite").classes == trained_run.classes
    assert main(["export", str(trained_run.path), "--format", "tflite-fp16", "--out", str(tmp_path / "m.tflite")]) == 2
