"""The training recipe per phase: what is frozen, which optimizer, which loss.

Transfer learning (the keras.io fine-tuning guide): in the 'head' phase the
backbone is frozen; in 'finetune' the top `finetune_fraction` of its layers
(or all, with finetune='all') trains again, BatchNorm kept frozen unless
freeze_bn is off. A model trained from scratch has one 'train' phase with
everything trainable. The learning rate given here is only the starting
value: `schedules.ProgressSchedule` sets it before every step.
"""

from __future__ import annotations


def freeze_for_phase(model, phase: str, cfg) -> None:
    """Set `trainable` on the 'backbone' sub-model for a phase ('train', 'head' or 'finetune').

    Example:
        >>> freeze_for_phase(model, "head", cfg)  # a built model (tests/test_transfer.py)  # doctest: +SKIP
        >>> model.get_layer("backbone").trainable  # a built model (tests/test_transfer.py)  # doctest: +SKIP
        False
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


def make_optimizer(cfg):
    """AdamW, Adam or SGD with Nesterov momentum, as `cfg` says; weight decay skips BatchNorm and biases.

    Example:
        >>> from imgclf.core.config import TrainConfig
        >>> type(make_optimizer(TrainConfig(optimizer="sgd", lr=0.01))).__name__
        'SGD'
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    # A starting value only: the schedule (or the lr-find sweep) sets the rate before every step.
    lr = cfg.lr if isinstance(cfg.lr, (int, float)) else 1e-3
    ema = {"use_ema": True, "ema_momentum": 0.999} if cfg.ema else {}
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay or None, **ema)
    elif cfg.optimizer == "adam":
        opt = keras.optimizers.Adam(lr, **ema)
    else:
        opt = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay, **ema)
    if cfg.optimizer != "adam" and cfg.weight_decay:
        # Decay weights only: not BatchNorm scales and shifts, not biases.
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return opt


def compile_for_training(model, cfg, one_hot: bool) -> None:
    """Compile with a fresh optimizer and the loss that matches the labels (one-hot for smoothing/MixUp/CutMix).

    Example:
        >>> compile_for_training(model, cfg, one_hot=False)  # a built model (tests/test_transfer.py)  # doctest: +SKIP
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    if one_hot:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        acc = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=make_optimizer(cfg), loss=loss, metrics=[acc])
