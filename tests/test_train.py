import csv
import json
import shutil

import numpy as np
import pytest
import yaml

import imgclf
from imgclf.core.errors import UserError
from imgclf.models.saving import load_keras_model
from imgclf.training.callbacks import read_state
from tests.conftest import make_image_folder


def test_run_bundle_is_complete(trained_run):
    p = trained_run.path
    for name in ("config.yaml", "classes.json", "preprocess.json", "manifest.csv", "model.keras",
                 "history.csv", "summary.json", "checkpoints/last.keras", "checkpoints/state.json"):
        assert (p / name).exists(), name
    assert any((p / "logs").rglob("events.out.tfevents*")), "TensorBoard logs"
    assert json.loads((p / "classes.json").read_text()) == ["circle", "square", "stripes"]
    config = yaml.safe_load((p / "config.yaml").read_text())
    assert config["seed"] == 0 and config["img_size"] == 28 and config["color_mode"] == "rgb"
    assert {"tensorflow", "keras", "numpy", "imgclf"} <= set(config["versions"])
    pre = json.loads((p / "preprocess.json").read_text())
    assert pre["img_size"] == 28 and pre["channels"] == 3
    with open(p / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert len(history) == 10 and {"loss", "val_accuracy", "lr", "time_s"} <= set(history[0])
    with open(p / "manifest.csv") as f:
        manifest = list(csv.DictReader(f))
    splits = {r["split"] for r in manifest}
    assert splits == {"train", "val", "test"} and len(manifest) == 60
    assert all(len(r["sha1"]) == 40 for r in manifest)


def test_trained_model_learns_the_classes(trained_run):
    summary = json.loads(trained_run.file("summary.json").read_text())
    assert summary["best_val_accuracy"] >= 0.8


def test_saved_model_has_no_augmentation_or_training_only_layers(trained_run):
    model = load_keras_model(trained_run.model_path)
    names = [layer.__class__.__name__ for layer in model.layers]
    assert not any(n.startswith("Random") for n in names)


def test_a_run_never_overwrites_another(trained_run, image_folder, tmp_path):
    """A finished run already sits at --out (a copy of the session's run: the session run must stay untouched):
    a new training goes to a new folder and leaves every file of the earlier run as it was."""
    out = tmp_path / "runs" / "same"
    shutil.copytree(trained_run.path, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    b = imgclf.train(image_folder, out=str(out), epochs=1, verbose=0, img_size=16)
    assert b.path.name == "same-2" and (b.path / "model.keras").exists()
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_resume_continues_from_last_epoch(trained_run, tmp_path):
    """The session's finished 10-epoch run, copied (it must stay untouched), continues to 12 epochs."""
    run = shutil.copytree(trained_run.path, tmp_path / "runs" / "r")
    assert read_state(run)["epoch"] == 10
    imgclf.train(out=str(run), resume=True, epochs=12, verbose=0)
    state = read_state(run)
    assert state["epoch"] == 12 and [h["epoch"] for h in state["history"]] == list(range(1, 13))


def test_undecodable_files_are_skipped_and_reported(image_folder, tmp_path):
    from pathlib import Path

    (Path(image_folder) / "circle" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (Path(image_folder) / "square" / "empty.png").write_bytes(b"")
    run = imgclf.train(image_folder, out=str(tmp_path / "runs" / "s"), epochs=1, verbose=0, img_size=16,
                       val_fraction=0.3, test_fraction=0.0)
    summary = json.loads(run.file("summary.json").read_text())
    skipped = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert set(skipped) <= {"broken.jpg", "empty.png"} and skipped  # both may land in val/train
    manifest = run.manifest()
    statuses = {Path(r["path"]).name: r["status"] for r in manifest}
    for name in skipped:
        assert statuses[name].startswith("skipped:")


def test_pretrained_backbone_trains_in_two_phases(trained_run, image_folder, tmp_path):
    """weights=PATH makes the backbone pretrained: head first (backbone frozen), then the top unfrozen."""
    donor = trained_run  # an earlier run's model.keras (read only): its backbone is the pretrained one
    run = imgclf.train(image_folder, out=str(tmp_path / "runs" / "ft"), epochs=3, verbose=0, img_size=16,
                       weights=str(donor.path / "model.keras"), finetune_fraction=0.5)
    history = read_state(run.path)["history"]
    assert [h["phase"] for h in history] == ["head", "finetune", "finetune"]
    assert history[1]["lr"] < history[0]["lr"]  # fine-tuning runs at a lower learning rate


def test_phase_freezing_rules(image_folder):
    import keras

    from imgclf.core.config import make_config
    from imgclf.models.registry import get_spec
    from imgclf.training.plan import make_plan
    from imgclf.training.trainer import Trainer

    cfg = make_config({"data": image_folder, "model": "small_cnn", "weights": "imagenet", "finetune_fraction": 0.5, "epochs": 6})
    plan = make_plan(cfg, get_spec(cfg.model), {"grayscale": False, "median_side": 16})
    assert plan.phases() == [("head", 1, 0.0), ("finetune", 6, 1.0)]  # the head solved as epoch 1
    trainer = Trainer(cfg, plan=plan)
    model = imgclf.create_model("small_cnn", num_classes=3, img_size=16)
    trainer.classes = ["a", "b", "c"]
    trainer.prepare_phase(model, "head")
    backbone = model.get_layer("backbone")
    assert not backbone.trainable and len(model.trainable_weights) == 2  # the classifier only
    trainer.prepare_phase(model, "finetune")
    trainable = [l for l in backbone.layers if l.trainable and l.weights]
    assert trainable and not any(isinstance(l, keras.layers.BatchNormalization) for l in trainable)
    assert all(l.name.startswith(("stage1", "stage2")) for l in trainable)


@pytest.mark.parametrize("settings, message", [
    ({"model": "resnet5"}, "Did you mean 'resnet50'"),
    ({"epochz": 2}, "Unknown setting 'epochz'"),
])
def test_bad_settings_fail_before_any_work(image_folder, settings, message):
    with pytest.raises(UserError, match=message):
        imgclf.train(image_folder, **settings)


def test_a_mistake_found_before_the_first_epoch_leaves_no_run_folder(image_folder, tmp_path):
    out = tmp_path / "runs" / "x"
    with pytest.raises(UserError, match="Weights file not found"):
        imgclf.train(image_folder, out=str(out), epochs=1, verbose=0, img_size=16, weights=str(tmp_path / "nope.h5"))
    assert not out.exists()
    run = imgclf.train(image_folder, out=str(out), epochs=1, verbose=0, img_size=16)
    assert run.path == out  # the corrected command gets the name it asked for, not x-2


def test_the_plan_resolves_automatic_settings_without_touching_the_config():
    """make_plan decides once (no TensorFlow); config.yaml records `plan.apply(cfg)`, the config stays as asked."""
    from imgclf.core.config import make_config
    from imgclf.models.registry import get_spec
    from imgclf.training.plan import make_plan

    cfg = make_config({"epochs": 20})
    plan = make_plan(cfg, get_spec("small_cnn"), {"grayscale": True, "median_side": 20}, replicas=2)
    assert (cfg.lr, cfg.label_smoothing, cfg.color_mode, cfg.img_size, cfg.feature_cache) == ("model", "model", "auto", 0, "auto")
    resolved = plan.with_precision("mixed_bfloat16").apply(cfg)
    assert (resolved.lr, resolved.label_smoothing, resolved.color_mode, resolved.img_size, resolved.augment) == (
        0.002, 0.1, "grayscale", 28, "light")
    assert resolved.feature_cache == "off" and resolved.precision == "bfloat16"  # several replicas: no feature cache
    assert plan.one_hot and plan.phases(n_train=100) == [("train", 20, 1.0)]


def test_training_leaves_kerass_global_precision_as_the_caller_had_it(image_folder, tmp_path):
    import keras

    keras.mixed_precision.set_global_policy("float32")
    run = imgclf.train(image_folder, out=str(tmp_path / "runs" / "bf16"), epochs=1, verbose=0, img_size=16,
                       model="small_cnn", precision="bfloat16")
    assert run.read_json("summary.json")["precision"] == "mixed_bfloat16"  # it trained in bfloat16 ...
    assert keras.mixed_precision.global_policy().name == "float32"  # ... and a model built now computes in float32
    assert keras.layers.Dense(2).compute_dtype == "float32"
    with pytest.raises(UserError):  # a failed run puts it back too
        imgclf.train(image_folder, out=str(tmp_path / "runs" / "bad"), epochs=1, verbose=0, img_size=16,
                     precision="bfloat16", weights=str(tmp_path / "nope.h5"))
    assert keras.mixed_precision.global_policy().name == "float32"
