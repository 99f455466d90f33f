"""Backbones from keras.applications, registered with what each expects.

Each entry names the Keras constructor, its default and minimum input size,
the preprocessing it expects (applied inside the graph by `Preprocess`, or by
the backbone itself for "none"), and the published parameter count and
ImageNet top-1 accuracy from the Keras applications table.
"""

from __future__ import annotations

from .registry import register_model

# name: (keras constructor, default size, min size, preprocessing, params M, top-1, family)
APPLICATIONS = {
    "mobilenet_v3_small": ("MobileNetV3Small", 224, 32, "none", 2.5, 0.682, "mobilenet"),
    "mobilenet_v2": ("MobileNetV2", 224, 32, "tf", 3.5, 0.713, "mobilenet"),
    "efficientnet_b0": ("EfficientNetB0", 224, 32, "none", 5.3, 0.771, "efficientnet"),
    "resnet50": ("ResNet50", 224, 32, "caffe", 25.6, 0.749, "resnet"),
}

# Constructor keywords beyond the usual ones, per constructor.
_EXTRA_KWARGS = {
    "MobileNetV3Small": {"include_preprocessing": True},
}


def _make_builder(constructor: str):
    def build(input_shape, weights=None, bn_momentum=0.9):
        import keras

        from .weights import imagenet_weights_error

        fn = getattr(keras.applications, constructor)
        try:
            model = fn(include_top=False, weights=weights, input_shape=input_shape, **_EXTRA_KWARGS.get(constructor, {}))
        except Exception as e:  # the Keras download path failed (offline, proxy, ...)
            if weights == "imagenet":
                raise imagenet_weights_error(constructor, e) from None
            raise
        if weights is None:
            _set_bn_momentum(model, bn_momentum)
        return model

    return build


def _set_bn_momentum(model, momentum: float) -> None:
    # Trained from scratch in a short run, BatchNorm's moving averages must
    # keep up with the weights; Keras' 0.99 lags far behind (see config.py).
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


for _name, (_ctor, _size, _min, _pre, _params, _top1, _family) in APPLICATIONS.items():
    register_model(
        _name,
        default_size=_size,
        min_size=_min,
        preprocessing=_pre,
        params_m=_params,
        imagenet_top1=_top1,
        pretrained=True,
        family=_family,
        description=f"keras.applications.{_ctor}",
    )(_make_builder(_ctor))
