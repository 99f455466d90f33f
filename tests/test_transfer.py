"""Transfer learning: what trains in each phase, the feature-cache fast path, --weights PATH."""

from dataclasses import replace

import numpy as np
import pytest

from imgclf.core.config import make_config
from imgclf.core.errors import UserError
from imgclf.models.factory import create_model
from imgclf.models.registry import get_spec
from imgclf.training.api import train
from imgclf.training.plan import make_plan
from imgclf.training.trainer import Trainer


def _trainable(model):
    return {w.path for w in model.trainable_weights}


def _phase_model(tmp_path, **settings):
    cfg = make_config({"weights": "imagenet", "model": "efficientnet_lite0", "img_size": 32, **settings})
    trainer = Trainer(cfg, run_dir=tmp_path, plan=make_plan(cfg, get_spec(cfg.model), {"grayscale": False, "median_side": 32}))
    model = create_model("efficientnet_lite0", num_classes=3, img_size=32, weights="imagenet", freeze_bn=cfg.freeze_bn)
    return trainer, model


def test_head_phase_trains_only_the_classifier(tmp_path):
    trainer, model = _phase_model(tmp_path)
    trainer.prepare_phase(model, "head")
    assert _trainable(model) == {"classifier/kernel", "classifier/bias"}


@pytest.mark.parametrize("finetune,fraction", [("top", 0.3), ("all", 0.3)])
def test_finetune_unfreezes_the_top_and_keeps_batchnorm_frozen(tmp_path, finetune, fraction):
    import keras

    trainer, model = _phase_model(tmp_path, finetune=finetune, finetune_fraction=fraction)
    trainer.prepare_phase(model, "head")
    trainer.prepare_phase(model, "finetune")
    backbone = model.get_layer("backbone")
    layers = backbone.layers
    cut = 0 if finetune == "all" else int(len(layers) * (1 - fraction))
    for i, layer in enumerate(layers):
        if not layer.weights:
            continue
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        assert bool(layer.trainable_weights) == (i >= cut and not is_bn), layer.name
    assert {"classifier/kernel", "classifier/bias"} <= _trainable(model)
    if finetune == "top":
        assert backbone.get_layer("top_conv").trainable and not backbone.get_layer("stem_conv").trainable


def test_unfrozen_batchnorm_trains_when_asked(tmp_path):
    trainer, model = _phase_model(tmp_path, freeze_bn=False, finetune="all")
    trainer.prepare_phase(model, "finetune")
    assert model.get_layer("backbone").get_layer("top_bn").trainable_weights


def test_head_phase_is_one_solved_epoch_then_finetuning_gets_the_rest(tmp_path):
    trainer, _ = _phase_model(tmp_path, epochs=10, batch_size=64)
    plan = trainer.plan
    assert plan.head_solver
    assert plan.phases(n_train=1000) == [("head", 1, 0.0), ("finetune", 10, 1.0)]
    assert replace(plan, finetune="none").phases(n_train=1000) == [("head", 1, 1.0)]
    assert replace(plan, weights="none").phases(n_train=1000) == [("train", 10, 1.0)]


def test_finetuning_planned_in_steps_has_a_floor(tmp_path):
    trainer, _ = _phase_model(tmp_path, epochs=10, batch_size=64)
    plan = trainer.plan
    # 48 images = 1 batch: 9 fine-tuning epochs of 1 step would be 9 steps; the floor makes it 6 x 9 = 54.
    assert plan.steps_per_epoch("finetune", 1, 9) == 6
    assert plan.steps_per_epoch("finetune", 200, 9) == 200  # large data: epochs as asked
    assert plan.steps_per_epoch("head", 1, 9) == 1 and plan.steps_per_epoch("train", 1, 9) == 1
    assert replace(plan, time_budget=2.0).steps_per_epoch("finetune", 1, 9) == 1  # a budget plans itself
    assert "finetune: epochs 2-10, 6 steps each" in plan.describe(n_train=48, steps=1)


def test_head_epochs_follow_the_dataset_size_without_the_solver(tmp_path):
    cfg = make_config({"weights": "imagenet", "model": "efficientnet_lite0", "img_size": 32, "color_mode": "rgb", "epochs": 10,
                       "batch_size": 64})
    plan = make_plan(cfg, get_spec(cfg.model), None, in_memory=False)  # streamed shards: the head trains by steps
    assert not plan.head_solver
    # 16 steps per epoch: 150 steps would be 10 epochs, capped at half
    assert plan.phases(n_train=1000) == [("head", 5, 0.3), ("finetune", 10, 0.7)]
    assert plan.phases(n_train=64 * 200)[0] == ("head", 1, 0.3)  # 200 steps per epoch: one epoch is enough
    assert replace(plan, head_epochs=3).phases(n_train=1000)[0] == ("head", 3, 0.3)
    assert not make_plan(replace(cfg, head_epochs=2), get_spec(cfg.model), None).head_solver  # asked for steps


@pytest.mark.slow
def test_fine_tune_an_earlier_run_with_and_without_the_feature_cache(tmp_path, image_folder, capsys):
    """--weights PATH.keras starts the two-phase recipe from an earlier model. The feature cache is an
    optimisation, not a different recipe: both runs reach the same head loss, and the full model
    (not just the head) is what lands in model.keras."""
    from imgclf.models.saving import load_keras_model

    earlier = create_model("small_cnn", num_classes=3, img_size=24, channels=3)
    earlier.save(tmp_path / "earlier.keras")
    common = dict(model="small_cnn", weights=str(tmp_path / "earlier.keras"), img_size=24, color_mode="rgb", epochs=3,
                  head_epochs=2, batch_size=8, lr=0.01, verbose=0, augment="none", seed=1, dropout=0.0)
    fast = train(image_folder, out=str(tmp_path / "fast"), **common)
    assert "Feature cache: backbone features of" in capsys.readouterr().err
    plain = train(image_folder, out=str(tmp_path / "plain"), feature_cache="off", **common)
    assert "Feature cache" not in capsys.readouterr().err
    rows = {}
    for name, run in (("fast", fast), ("plain", plain)):
        model = load_keras_model(run.path / "model.keras")
        assert model.get_layer("backbone") is not None and model.input_shape == (None, 24, 24, 3)
        rows[name] = [line.split(",") for line in open(run.path / "history.csv").read().splitlines()[1:]]
        assert [r[1] for r in rows[name]] == ["head", "head", "finetune"]
    # Same data order, same initial head, no dropout: the head-phase losses agree (float rounding aside).
    for epoch in range(2):
        fast_loss, plain_loss = float(rows["fast"][epoch][2]), float(rows["plain"][epoch][2])
        assert abs(fast_loss - plain_loss) < 0.05 * plain_loss + 0.02, (epoch, fast_loss, plain_loss)


def test_weights_path_h5_and_keras(tmp_path):
    src = create_model("small_cnn", num_classes=3, img_size=16, channels=3)
    h5 = tmp_path / "backbone.weights.h5"
    src.get_layer("backbone").save_weights(h5)
    keras_file = tmp_path / "model.keras"
    src.save(keras_file)
    for path in (h5, keras_file):
        model = create_model("small_cnn", num_classes=5, img_size=16, channels=3, weights=str(path))
        for a, b in zip(model.get_layer("backbone").get_weights(), src.get_layer("backbone").get_weights()):
            np.testing.assert_array_equal(a, b)
        assert model.output_shape == (None, 5)  # a new head for the new classes


def test_weights_path_mistakes(tmp_path):
    arch = tmp_path / "other.yaml"
    arch.write_text("layers:\n  - Conv2D: {filters: 4, kernel_size: 3}\n")
    other = create_model(str(arch), num_classes=2, img_size=16)
    other.save(tmp_path / "other.keras")
    with pytest.raises(UserError, match="same architecture"):
        create_model("small_cnn", num_classes=2, img_size=16, weights=str(tmp_path / "other.keras"))
    with pytest.raises(UserError, match="Weights file not found"):
        create_model("small_cnn", num_classes=2, img_size=16, weights=str(tmp_path / "missing.keras"))
    (tmp_path / "w.pth").write_bytes(b"x")
    with pytest.raises(UserError, match=r"expected a .weights.h5 file or a .keras model"):
        create_model("small_cnn", num_classes=2, img_size=16, weights=str(tmp_path / "w.pth"))


def test_feature_cache_only_when_the_backbone_is_frozen_and_inputs_repeat():
    from imgclf.training.feature_cache import feature_cache_applies

    model = create_model("small_cnn", num_classes=2, img_size=16, channels=3)
    model.get_layer("backbone").trainable = False
    assert feature_cache_applies(make_config({"augment": "none"}), "head", model)
    assert not feature_cache_applies(make_config({"augment": "none"}), "finetune", model)
    for change in ({"augment": "light"}, {"mixup": 0.2}, {"cutmix": 1.0}, {"feature_cache": "off"}, {"ema": True},
                   {"sampling": "balanced"}):
        assert not feature_cache_applies(make_config({"augment": "none", **change}), "head", model), change
    model.get_layer("backbone").trainable = True
    assert not feature_cache_applies(make_config({"augment": "none"}), "head", model)
