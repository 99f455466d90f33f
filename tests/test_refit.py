"""Training without a validation split (``val_fraction=0``) and the refit of `imgclf tune --refit`.

The refit itself is in tests/test_experiments.py (a tune, then its refit
evaluated); here, the refusals, which need no TensorFlow, and a pretrained
backbone's phases without validation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import imgclf
from conftest import make_image_folder
from imgclf.core.config import TrainConfig
from imgclf.core.errors import UserError
from imgclf.core.manifest import manifest_csv
from imgclf.tuning.refit import refit


@pytest.mark.parametrize("asked, says", [({"patience": 3}, r"Early stopping \(--patience 3\) needs validation images"),
                                         ({"monitor": "val_loss"}, "--monitor val_loss needs validation images")])
def test_training_without_validation_refuses_what_needs_it(tmp_path, asked, says):
    data = make_image_folder(tmp_path / "data", per_class=6, size=12)
    with pytest.raises(UserError, match=says) as refused:
        imgclf.train(data, model="small_cnn", val_fraction=0.0, epochs=2, out=str(tmp_path / "run"), verbose=0, **asked)
    assert "--val-fraction 0 and no val/ folder" in str(refused.value)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_monitor_none_with_early_stopping_is_refused_by_the_config():
    with pytest.raises(UserError, match="early stopping watches a validation metric"):
        TrainConfig(monitor="none", patience=2).validate()


def test_a_validation_share_too_small_for_any_image_still_says_how_to_train_without(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=1, size=12)  # one image per class: nothing to hold out
    with pytest.raises(UserError, match="No validation images.*--val-fraction 0 to train without validation"):
        imgclf.train(data, model="small_cnn", test_fraction=0.0, epochs=1, out=str(tmp_path / "run"), verbose=0)


def test_refit_refuses_data_that_changed_since_the_search(tmp_path):
    data = Path(make_image_folder(tmp_path / "data", per_class=6, size=12))
    out = tmp_path / "tune"
    out.mkdir()
    # A best.yaml by hand (the few settings a user would write).
    (out / "best.yaml").write_text(yaml.safe_dump({"data": str(data), "model": "small_cnn", "epochs": 2}))
    trial = out / "trials" / "trial-0000"
    trial.mkdir(parents=True)
    # The trial's test split held an image that is no longer among DATA's test images.
    rows = [{"path": str(p), "label": p.parent.name, "split": "test"} for p in sorted(data.rglob("*.png"))[:3]]
    (trial / "manifest.csv").write_text(manifest_csv(rows))
    with pytest.raises(UserError, match="DATA changed since the search"):
        refit(out, trial, trial=0)
    assert not (out / "refit").exists()


@pytest.mark.slow
def test_a_pretrained_backbone_trains_without_validation_and_evaluates(tmp_path):
    """The head solved (its strength chosen by cross-validation on the training images), then fine-tuning on cached
    activations: no step reaches for validation images, and the last epoch is kept."""
    import keras

    keras.utils.set_random_seed(0)
    donor = imgclf.create_model("small_cnn", num_classes=3, img_size=16, channels=3)  # its random convolutions: the backbone
    donor.save(tmp_path / "donor.keras")
    data = make_image_folder(tmp_path / "data", per_class=8, size=16)
    run = imgclf.train(data, model="small_cnn", weights=str(tmp_path / "donor.keras"), finetune="top", img_size=16,
                       epochs=3, val_fraction=0.0, batch_size=8, out=str(tmp_path / "run"), verbose=0)
    summary = run.read_json("summary.json")
    assert summary["images"]["val"] == 0 and summary["best_epoch"] == summary["epochs_run"] == 3
    assert summary["head_solver"]["selected_by"].endswith("cross-validation")
    history = (run.path / "history.csv").read_text()
    assert "val_" not in history and history.count("finetune") == 2
    assert not run.file("confidence.json").exists()  # calibration needs validation images
    ev = imgclf.evaluate(run, verbose=False, plots=False, explain=False)
    assert ev.metrics["num_samples"] == 3
