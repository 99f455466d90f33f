"""evaluate end to end: metrics.json, predictions.npz, every picture, `imgclf plot`, and report.html in a real browser."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from imgclf.cli import main
from tests.conftest import make_image_folder

PICTURES = ["confusion_matrix", "per_class", "roc_pr", "reliability", "top_losses", "gradcam", "embedding",
            "sample_predictions", "training_curves"]
SECTIONS = ["summary", "metrics", "pictures", "data", "settings"]


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium installed (scripts/ensure-system-deps.sh installs it)")


def _headless(args, tmp_path, timeout=90):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([_chromium(), *flags, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def evaluated(trained_run, tmp_path_factory):
    """A copy of the session's trained run (which tests must not modify), evaluated with TTA on a held-out folder."""
    import imgclf

    root = tmp_path_factory.mktemp("report")
    run_dir = shutil.copytree(trained_run.path, root / "run")
    test_dir = make_image_folder(root / "heldout", per_class=8, seed=11)
    ev = imgclf.evaluate(run_dir, data=test_dir, tta="flip", verbose=False)
    return imgclf.Run(run_dir), ev


@pytest.mark.slow
def test_evaluate_writes_every_metric_picture_and_predictions(evaluated):
    run, ev = evaluated
    m = json.loads(run.file("metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "cohen_kappa", "log_loss", "roc_auc_macro", "pr_auc_macro",
                "expected_calibration_error", "confusion_matrix", "confusion_matrix_normalized", "most_confused",
                "images_per_s", "top_losses", "per_class", "macro_avg", "weighted_avg"):
        assert key in m, key
    assert m["tta"] == "flip" and m["num_samples"] == 24 and m["images_per_s"] > 0
    assert all(t["path"].endswith((".png", ".JPG", ".jpeg")) for t in m["top_losses"])
    saved = np.load(run.file("predictions.npz"))
    assert np.allclose(saved["probs"], ev.probs, atol=1e-6) and list(saved["classes"]) == ev.classes
    for name in PICTURES:
        png = run.file("plots") / f"{name}.png"
        assert Image.open(png).format == "PNG" and png.stat().st_size > 5000, name


@pytest.mark.slow
def test_plot_command_redraws_the_pictures(evaluated, capsys):
    run, _ = evaluated
    for name in PICTURES:
        (run.file("plots") / f"{name}.png").unlink()
    run.file("report.html").unlink()
    assert main(["plot", str(run.path)]) == 0
    out = capsys.readouterr().out
    for name in PICTURES:
        assert (run.file("plots") / f"{name}.png").exists() and f"{name}.png" in out
    assert run.file("report.html").exists()


def test_plot_command_on_an_unevaluated_run_is_a_clear_error(trained_run, tmp_path, capsys):
    run_dir = tmp_path / "fresh"
    run_dir.mkdir()
    for name in ("classes.json", "preprocess.json", "config.yaml"):
        shutil.copy(trained_run.file(name), run_dir / name)
    assert main(["plot", str(run_dir)]) == 2
    assert "imgclf evaluate" in capsys.readouterr().err


@pytest.mark.slow
def test_report_is_self_contained_and_renders_in_chromium(evaluated, tmp_path):
    run, _ = evaluated
    page = run.file("report.html").read_text()
    # Self-contained: pictures inlined, no scripts, nothing fetched from anywhere.
    assert "<script" not in page and "http://" not in page and "https://" not in page and 'src="data:image/png;base64,' in page
    for name in PICTURES:
        assert f'id="fig-{name}"' in page, name
    # Each top-loss image is a thumbnail linking to its file, and the table rows link too.
    assert page.count('<a class="thumb') == 12 and page.count('href="file://') >= 24
    url = run.file("report.html").resolve().as_uri()
    dom = _headless(["--dump-dom", url], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for section in SECTIONS:
        assert f'id="{section}"' in dom.stdout, section
    assert dom.stdout.count("<img") >= len(PICTURES)
    shot = tmp_path / "report.png"
    res = _headless(["--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}", url], tmp_path)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (2400, 1280)
    # Non-blank: the dark header band, white page, and coloured pictures all appear.
    assert img[:40].mean() < 100 and img.mean() > 150
    assert len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 200
