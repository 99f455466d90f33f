import io
import json

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

import imgclf
from imgclf.core.errors import UserError
from imgclf.inference.predictor import iter_image_paths
from tests.conftest import draw, make_image_folder


def test_evaluate_writes_metrics_plots_and_report(trained_run, tmp_path_factory):
    test_dir = make_image_folder(tmp_path_factory.mktemp("heldout") / "test", per_class=8, seed=7)
    ev = imgclf.evaluate(trained_run, data=test_dir, verbose=False)
    m = json.loads(trained_run.file("metrics.json").read_text())
    assert m["num_samples"] == 24 and m["accuracy"] == pytest.approx(ev.accuracy)
    assert ev.accuracy >= 0.8
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(ev.y_true, ev.y_pred))
    assert set(m["per_class"]) == {"circle", "square", "stripes"}
    for name in ("confusion_matrix.png", "training_curves.png"):
        png = trained_run.file("plots") / name
        assert png.stat().st_size > 5000 and Image.open(png).format == "PNG"
    html = trained_run.file("report.html").read_text()
    assert "data:image/png;base64," in html and "Per class" in html and "<script" not in html


def test_evaluate_defaults_to_the_test_split(trained_run):
    ev = imgclf.evaluate(trained_run, plots=False, verbose=False)
    test_rows = [r for r in trained_run.manifest() if r["split"] == "test"]
    assert ev.metrics["num_samples"] == len(test_rows) == 12
    assert "test split" in ev.source


def test_evaluate_rejects_unknown_classes(trained_run, tmp_path):
    make_image_folder(tmp_path / "other", per_class=2, classes=("circle", "triangle"))
    with pytest.raises(UserError, match="not trained on: triangle"):
        imgclf.evaluate(trained_run, data=tmp_path / "other")


def test_predictor_accepts_paths_pil_arrays_and_bytes(trained_run, tmp_path):
    clf = imgclf.load(trained_run.path)
    arr = draw("stripes", np.random.default_rng(5))
    pil = Image.fromarray(arr)
    buf = io.BytesIO()
    pil.save(buf, "PNG")
    path = tmp_path / "s.png"
    pil.save(path)
    rows = clf.predict([str(path), pil, arr, buf.getvalue()], top_k=2)
    assert len({r["class"] for r in rows}) == 1  # the same image, whatever its form
    assert all(len(r["top_k"]) == 2 for r in rows)
    probs = clf.predict_proba([str(path), arr])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1, atol=1e-3)
    assert np.allclose(probs[0], probs[1], atol=1e-5)


def test_predict_paths_turns_bad_files_into_error_rows(trained_run, tmp_path):
    make_image_folder(tmp_path / "in", per_class=2)
    (tmp_path / "in" / "circle" / "bad.png").write_bytes(b"not a png")
    rows = list(imgclf.load(trained_run.path).predict_paths(iter_image_paths([str(tmp_path / "in")]), batch_size=4))
    assert len(rows) == 7
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and bad[0]["path"].endswith("bad.png")


def test_iter_image_paths_globs_and_errors(tmp_path):
    make_image_folder(tmp_path / "d", per_class=2)
    assert len(list(iter_image_paths([str(tmp_path / "d" / "*" / "*.png")]))) >= 3
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="Not an image file"):
        list(iter_image_paths([str(tmp_path / "notes.txt")]))
    with pytest.raises(UserError, match="not found"):
        list(iter_image_paths([str(tmp_path / "missing.jpg")]))
