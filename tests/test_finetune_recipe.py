"""Issue 14: discriminative fine-tuning, lower backbone layers learning at a fraction of the top's rate."""

from __future__ import annotations

import numpy as np

import imgclf
from imgclf.core.config import make_config
from imgclf.training.recipe import compile_for_training, freeze_for_phase, layer_lr_multipliers


def _small_pretrained():
    model = imgclf.create_model("small_cnn", num_classes=3, img_size=16, dropout=0.0)
    cfg = make_config({"model": "small_cnn", "weights": "imagenet", "finetune": "all",
                       "finetune_lr_spread": 0.01, "lr": 0.05, "optimizer": "sgd", "weight_decay": 0.0})
    freeze_for_phase(model, "finetune", cfg)
    return model, cfg


def test_multipliers_spread_geometrically_over_the_trainable_backbone_layers():
    model, _ = _small_pretrained()
    factors = layer_lr_multipliers(model, 0.01)
    layers = [layer for layer in model.get_layer("backbone").layers if layer.trainable_weights]
    first, last = layers[0].trainable_weights[0].path, layers[-1].trainable_weights[0].path
    assert np.isclose(factors[first], 0.01) and np.isclose(factors[last], 1.0)
    ordered = [factors[layer.trainable_weights[0].path] for layer in layers]
    assert ordered == sorted(ordered)  # never faster below
    assert not any(w.path in factors for w in model.get_layer("classifier").trainable_weights)  # the head: full rate
    assert layer_lr_multipliers(model, 1.0) == {}


def test_a_lower_layer_moves_by_its_share_of_the_rate_and_the_model_resumes(tmp_path):
    """One SGD step without momentum history: each weight moves by rate x factor x gradient, so a layer at
    factor f moves f times what it would with one rate; the optimizer survives a save and load (resume)."""
    import keras

    model, cfg = _small_pretrained()
    x = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    y = np.arange(8) % 3
    start = [w.numpy().copy() for w in model.trainable_weights]
    compile_for_training(model, cfg, one_hot=False, phase="finetune")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    scaled = [w.numpy() - s for w, s in zip(model.trainable_weights, start)]
    for w, s in zip(model.trainable_weights, start):
        w.assign(s)
    compile_for_training(model, cfg, one_hot=False, phase="head")  # same settings, one rate for all
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    plain = [w.numpy() - s for w, s in zip(model.trainable_weights, start)]
    factors = layer_lr_multipliers(model, 0.01)
    for w, d_scaled, d_plain in zip(model.trainable_weights, scaled, plain):
        np.testing.assert_allclose(d_scaled, d_plain * factors.get(w.path, 1.0), rtol=1e-3, atol=1e-7)
    assert factors[model.trainable_weights[0].path] < 0.02  # the first conv barely moves

    compile_for_training(model, cfg, one_hot=False, phase="finetune")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "last.keras")
    restored = keras.saving.load_model(tmp_path / "last.keras", compile=True)
    assert type(restored.optimizer).__name__ == "LayerScaledSGD"
    assert restored.optimizer.lr_multipliers == model.optimizer.lr_multipliers
    restored.fit(x, y, batch_size=8, epochs=1, verbose=0)  # a resumed run keeps training
