"""The training recipe per phase: what is frozen, which optimizer, which loss.

Transfer learning (the keras.io fine-tuning guide): in the 'head' phase the
backbone is frozen; in 'finetune' the top `finetune_fraction` of its layers
(or all, with finetune='all') trains again, BatchNorm kept frozen unless
freeze_bn is off. A model trained from scratch has one 'train' phase with
everything trainable. The learning rate given here is only the starting
value: `schedules.ProgressSchedule` sets it before every step.
"""

from __future__ import annotations

import functools


def freeze_for_phase(model, phase: str, cfg) -> None:
    """Set `trainable` on the 'backbone' sub-model for a phase ('train', 'head' or 'finetune').

    Example:
        >>> from imgclf.core.config import TrainConfig
        >>> from imgclf.models.factory import create_model
        >>> model = create_model("small_cnn", num_classes=3, img_size=16)
        >>> freeze_for_phase(model, "head", TrainConfig())
        >>> model.get_layer("backbone").trainable
        False
        >>> freeze_for_phase(model, "finetune", TrainConfig(finetune_fraction=0.5))
        >>> [layer.name for layer in model.get_layer("backbone").layers if layer.trainable][:4]  # the top half, not BatchNorm
        ['stage1a_relu', 'stage1b_conv', 'stage1b_relu', 'stage2_pool']
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    backbone = model.get_layer("backbone")
    if phase == "head":
        backbone.trainable = False
    elif phase == "finetune":
        backbone.trainable = True
        layers = backbone.layers
        cut = 0 if cfg.finetune == "all" else int(len(layers) * (1 - cfg.finetune_fraction))
        for i, layer in enumerate(layers):
            # BatchNorm stays frozen (freeze_bn): its statistics came from far more data than ours.
            layer.trainable = i >= cut and not (cfg.freeze_bn and isinstance(layer, keras.layers.BatchNormalization))


def layer_lr_multipliers(model, spread: float) -> dict[str, float]:
    """Learning-rate multipliers of the backbone's trainable weights for discriminative fine-tuning.

    The trainable layers of the 'backbone' sub-model, in order, get rates
    spread geometrically from `spread` (the first trainable layer) to 1 (the
    last); everything after the backbone (the head) gets 1. Lower layers hold
    general features that the few images of a user's set can only spoil, so
    they move least (fastai's ``slice(lr/100, lr)``, timm's layer-wise decay).
    `spread` = 1 gives {} (one rate for all).

    Example:
        >>> from imgclf.models.factory import create_model
        >>> rates = layer_lr_multipliers(create_model("small_cnn", num_classes=3, img_size=16), 0.1)
        >>> rates["stage0a_conv/kernel"], rates["stage2b_conv/kernel"]  # the first conv moves least, the last near the full rate
        (0.1, 0.8111...)
    """
    if spread >= 1.0:
        return {}
    backbone = model.get_layer("backbone")
    layers = [layer for layer in backbone.layers if layer.trainable and layer.trainable_weights]
    out = {}
    for i, layer in enumerate(layers):
        position = i / max(len(layers) - 1, 1)  # 0 at the first trainable layer, 1 at the last
        for weight in layer.trainable_weights:
            out[weight.path] = float(spread ** (1.0 - position))
    return out


@functools.cache  # one class per optimizer, registered once: a saved model names it, loading finds it
def _scaled(optimizer_class):
    """`optimizer_class` whose update of each variable uses the rate times its multiplier (by variable path)."""
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    @keras.saving.register_keras_serializable(package="imgclf", name=f"LayerScaled{optimizer_class.__name__}")
    class LayerScaled(optimizer_class):
        def __init__(self, *args, lr_multipliers=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.lr_multipliers = dict(lr_multipliers or {})

        def build(self, variables):
            super().build(variables)
            # By position: inside the update TensorFlow passes its own variable, which has no Keras path.
            self._lr_factors = [float(self.lr_multipliers.get(v.path, 1.0)) for v in variables]

        def update_step(self, gradient, variable, learning_rate):
            factor = self._lr_factors[self._get_variable_index(variable)]
            if factor != 1.0:
                learning_rate = keras.ops.cast(learning_rate, variable.dtype) * factor
            return super().update_step(gradient, variable, learning_rate)

        def get_config(self):
            return {**super().get_config(), "lr_multipliers": self.lr_multipliers}

    LayerScaled.__name__ = f"LayerScaled{optimizer_class.__name__}"
    return LayerScaled


def make_optimizer(cfg, lr_multipliers: dict | None = None):
    """AdamW, Adam or SGD with Nesterov momentum, as `cfg` says; weight decay skips BatchNorm and biases.

    `lr_multipliers` ({variable path: factor}, from `layer_lr_multipliers`)
    scale the rate per variable: discriminative fine-tuning.

    Example:
        >>> from imgclf.core.config import TrainConfig
        >>> type(make_optimizer(TrainConfig(optimizer="sgd", lr=0.01))).__name__
        'SGD'
        >>> type(make_optimizer(TrainConfig(lr=0.01), {"backbone/conv/kernel": 0.1})).__name__
        'LayerScaledAdamW'
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    # A starting value only: the schedule (or the lr-find sweep) sets the rate before every step.
    lr = cfg.lr if isinstance(cfg.lr, (int, float)) else 1e-3
    ema = {"use_ema": True, "ema_momentum": 0.999} if cfg.ema else {}
    scaled = {"lr_multipliers": lr_multipliers} if lr_multipliers else {}
    wrap = _scaled if lr_multipliers else (lambda cls: cls)
    if cfg.optimizer == "sgd":
        opt = wrap(keras.optimizers.SGD)(lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay or None,
                                         **ema, **scaled)
    elif cfg.optimizer == "adam":
        opt = wrap(keras.optimizers.Adam)(lr, **ema, **scaled)
    else:
        opt = wrap(keras.optimizers.AdamW)(lr, weight_decay=cfg.weight_decay, **ema, **scaled)
    if cfg.optimizer != "adam" and cfg.weight_decay:
        # Decay weights only: not BatchNorm scales and shifts, not biases.
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return opt


def compile_for_training(model, cfg, one_hot: bool, phase: str = "train") -> None:
    """Compile with a fresh optimizer and the loss that matches the labels (one-hot for smoothing/MixUp/CutMix).

    Example:
        >>> from imgclf.core.config import TrainConfig
        >>> from imgclf.models.factory import create_model
        >>> model = create_model("small_cnn", num_classes=3, img_size=16)
        >>> compile_for_training(model, TrainConfig(lr=0.01), one_hot=False)
        >>> type(model.optimizer).__name__, type(model.loss).__name__
        ('AdamW', 'SparseCategoricalCrossentropy')
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    if one_hot:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        acc = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    spread = getattr(cfg, "finetune_lr_spread", 1.0) if phase == "finetune" else 1.0
    multipliers = layer_lr_multipliers(model, spread) if spread < 1.0 else None
    model.compile(optimizer=make_optimizer(cfg, multipliers), loss=loss, metrics=[acc])
