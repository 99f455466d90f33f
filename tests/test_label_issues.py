"""Label issues: confident learning on out-of-sample probabilities finds labels flipped on purpose."""

import json
import shutil

import numpy as np
import pytest

from imgclf.training.label_issues import confident_issues
from tests.conftest import make_image_folder


def test_confident_issues_uses_per_class_thresholds():
    # Class 1 is predicted with low confidence overall (threshold ~0.5), so 0.55 for class 1 is "confident".
    y = np.array([0, 0, 0, 1, 1, 1, 0])
    p = np.array([[.9, .1], [.8, .2], [.95, .05], [.5, .5], [.45, .55], [.55, .45], [.45, .55]])
    r = confident_issues(y, p)
    assert r["index"].tolist() == [6] and r["suggested"].tolist() == [1]
    assert r["thresholds"][1] == pytest.approx(0.5)
    # Ranked by margin: the most confident disagreement first.
    y2 = np.array([0, 0, 0, 0, 1, 1])
    p2 = np.array([[.9, .1], [.9, .1], [.12, .88], [.05, .95], [.2, .8], [.1, .9]])
    assert confident_issues(y2, p2)["index"].tolist() == [3, 2]


def _colour_folder(root, per_class: int, seed: int):
    """Red, green and blue squares on grey noise (tests/test_explain.py's scenes): easy to learn from few steps."""
    from PIL import Image

    from tests.test_explain import COLOURS, _scene

    rng = np.random.default_rng(seed)
    for colour in COLOURS:
        (root / colour).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(_scene(colour, rng)[0]).save(root / colour / f"img_{i}.png")


def _flip(folder, n_per_class, rng):
    """Move n images of each class into the next class's folder; return their new paths."""
    classes = sorted(p.name for p in folder.iterdir())
    moved = []
    for i, c in enumerate(classes):
        files = sorted((folder / c).glob("img_*"))
        for f in rng.choice(files, n_per_class, replace=False):
            target = folder / classes[(i + 1) % len(classes)] / f"flipped_{c}_{f.name}"
            shutil.move(f, target)
            moved.append(str(target))
    return set(moved)


@pytest.mark.slow
def test_holdout_finds_flipped_labels_in_a_heldout_folder(trained_run, tmp_path, capsys):
    from imgclf.cli import main

    run_dir = shutil.copytree(trained_run.path, tmp_path / "run")  # the session run must stay untouched
    data = tmp_path / "check"
    make_image_folder(data, per_class=10, seed=21)
    flipped = _flip(data, 2, np.random.default_rng(0))
    code = main(["evaluate", str(run_dir), "--data", str(data), "--no-explain", "--find-label-issues", "--label-method", "holdout"])
    assert code == 0
    out = capsys.readouterr().out
    saved = json.loads((run_dir / "label_issues.json").read_text())
    issues = saved["issues"]
    found = {i["path"] for i in issues}
    assert len(found & flipped) >= 5, f"found {len(found & flipped)} of 6 flipped labels"
    # The tiny model also makes honest mistakes, which are issues too; flipped labels must rank first.
    assert len({i["path"] for i in issues[:6]} & flipped) >= 4 and len(found - flipped) <= 6
    assert saved["num_checked"] == 30 and "never trained on" in saved["method"]
    top = issues[0]
    assert top["path"] in flipped and top["suggested"] != top["given"] and top["confidence"] > 0.5
    assert "possible label error" in out and (run_dir / "label_issues.csv").exists()
    assert (run_dir / "plots" / "label_issues.png").stat().st_size > 5000
    assert 'id="label-issues"' in (run_dir / "report.html").read_text()


@pytest.mark.slow
def test_cross_validation_finds_flipped_training_labels(tmp_path):
    import imgclf
    from imgclf.training.label_issues import find_label_issues

    data = tmp_path / "data"
    _colour_folder(data, per_class=24, seed=3)  # 8% noise; at 12% the tiny fold models get unsure
    flipped = _flip(data, 2, np.random.default_rng(1))
    run = imgclf.train(str(data), out=str(tmp_path / "run"), model="small_cnn", epochs=1, batch_size=8, lr=0.005, verbose=0,
                       val_fraction=0.2, test_fraction=0.0)  # only its settings matter here
    issues = find_label_issues(run, method="cv", folds=3, epochs=6, verbose=False)
    saved = json.loads(run.file("label_issues.json").read_text())
    assert saved["num_checked"] == 72 and "3-fold cross-validation" in saved["method"]
    found = {i["path"] for i in issues}
    assert len(found & flipped) >= 5, f"found {len(found & flipped)} of 6 flipped labels"
    assert len({i["path"] for i in issues[:6]} & flipped) >= 5 and len(found - flipped) <= 3
