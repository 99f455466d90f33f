"""Backbones from keras.applications, registered with what each expects.

Each entry names the Keras constructor, its default and minimum input size,
the preprocessing it expects (applied inside the graph by `Preprocess`; "none"
where the Keras model rescales and normalises by itself: EfficientNet,
EfficientNetV2, ConvNeXt and MobileNetV3, whose ``preprocess_input`` is the
identity), the published parameter count and ImageNet top-1 accuracy (the
table on keras.io/api/applications; MobileNetV3's from its docstring), and
the file name (a glob) Keras caches its no-top ImageNet weights under.
"""

from __future__ import annotations

from typing import NamedTuple

from imgclf.models.registry import register_model
from imgclf.models.weights import imagenet_weights_error, keras_cache_dir


class App(NamedTuple):
    constructor: str
    default_size: int
    min_size: int
    preprocessing: str  # the mode of the module's preprocess_input
    params_m: float
    top1: float
    family: str
    weights_file: str  # glob of the no-top weights file in the Keras cache


def _eff(n, size, params, top1):
    return App(f"EfficientNetB{n}", size, 32, "none", params, top1, "efficientnet", f"efficientnetb{n}_notop.h5")


def _eff2(v, size, params, top1):
    return App(f"EfficientNetV2{v}", size, 32, "none", params, top1, "efficientnet_v2",
               f"efficientnetv2-{v.lower()}_notop.h5")


def _resnet(depth, v2, params, top1):
    name = f"resnet{depth}{'v2' if v2 else ''}"
    return App(f"ResNet{depth}{'V2' if v2 else ''}", 224, 32, "tf" if v2 else "caffe", params, top1,
               "resnet_v2" if v2 else "resnet", f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5")


def _densenet(depth, params, top1):
    return App(f"DenseNet{depth}", 224, 32, "torch", params, top1, "densenet",
               f"densenet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5")


def _convnext(size_name, params, top1):
    return App(f"ConvNeXt{size_name}", 224, 32, "none", params, top1, "convnext",
               f"convnext_{size_name.lower()}_notop.h5")


APPLICATIONS = {
    "mobilenet_v2": App("MobileNetV2", 224, 32, "tf", 3.5, 0.713, "mobilenet",
                        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_*_no_top.h5"),
    "mobilenet_v3_small": App("MobileNetV3Small", 224, 32, "none", 2.9, 0.681, "mobilenet",
                              "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
    "mobilenet_v3_large": App("MobileNetV3Large", 224, 32, "none", 5.4, 0.756, "mobilenet",
                              "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
    "efficientnet_b0": _eff(0, 224, 5.3, 0.771),
    "efficientnet_b1": _eff(1, 240, 7.9, 0.791),
    "efficientnet_b2": _eff(2, 260, 9.2, 0.801),
    "efficientnet_b3": _eff(3, 300, 12.3, 0.816),
    "efficientnet_b4": _eff(4, 380, 19.5, 0.829),
    "efficientnet_b5": _eff(5, 456, 30.6, 0.836),
    "efficientnet_b6": _eff(6, 528, 43.3, 0.840),
    "efficientnet_b7": _eff(7, 600, 66.7, 0.843),
    "efficientnet_v2_b0": _eff2("B0", 224, 7.2, 0.787),
    "efficientnet_v2_b1": _eff2("B1", 240, 8.2, 0.798),
    "efficientnet_v2_b2": _eff2("B2", 260, 10.2, 0.805),
    "efficientnet_v2_b3": _eff2("B3", 300, 14.5, 0.820),
    "efficientnet_v2_s": _eff2("S", 384, 21.6, 0.839),
    "efficientnet_v2_m": _eff2("M", 480, 54.4, 0.853),
    "efficientnet_v2_l": _eff2("L", 480, 119.0, 0.857),
    "resnet50": _resnet(50, False, 25.6, 0.749),
    "resnet101": _resnet(101, False, 44.7, 0.764),
    "resnet152": _resnet(152, False, 60.4, 0.766),
    "resnet50_v2": _resnet(50, True, 25.6, 0.760),
    "resnet101_v2": _resnet(101, True, 44.7, 0.772),
    "resnet152_v2": _resnet(152, True, 60.4, 0.780),
    "convnext_tiny": _convnext("Tiny", 28.6, 0.813),
    "convnext_small": _convnext("Small", 50.2, 0.823),
    "convnext_base": _convnext("Base", 88.5, 0.853),
    "densenet121": _densenet(121, 8.1, 0.750),
    "densenet169": _densenet(169, 14.3, 0.762),
    "densenet201": _densenet(201, 20.2, 0.773),
    "xception": App("Xception", 299, 71, "tf", 22.9, 0.790, "xception",
                    "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "inception_v3": App("InceptionV3", 299, 75, "tf", 23.9, 0.779, "inception",
                        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "nasnet_mobile": App("NASNetMobile", 224, 32, "tf", 5.3, 0.744, "nasnet", "nasnet_mobile_no_top.h5"),
}

# Constructor keywords beyond the usual ones, per constructor.
_EXTRA_KWARGS = {
    "MobileNetV3Small": {"include_preprocessing": True},
    "MobileNetV3Large": {"include_preprocessing": True},
}


def _make_builder(name: str, constructor: str):
    def build(input_shape, weights=None, bn_momentum=0.9):
        # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
        import keras

        fn = getattr(keras.applications, constructor)
        kwargs = dict(_EXTRA_KWARGS.get(constructor, {}))
        if weights == "imagenet" and constructor == "NASNetMobile" and tuple(input_shape) != (224, 224, 3):
            # Keras only has NASNetMobile's weights for 224x224 inputs; load them
            # there and copy them over (every weight's shape is size-independent).
            donor = _build_or_explain(fn, name, constructor, (224, 224, 3), "imagenet", kwargs)
            model = fn(include_top=False, weights=None, input_shape=input_shape, **kwargs)
            model.set_weights(donor.get_weights())
            return model
        model = _build_or_explain(fn, name, constructor, input_shape, weights, kwargs)
        if weights is None:
            _set_bn_momentum(model, bn_momentum)
        return model

    return build


def _build_or_explain(fn, name, constructor, input_shape, weights, kwargs):
    try:
        return fn(include_top=False, weights=weights, input_shape=input_shape, **kwargs)
    except Exception as e:  # the Keras download path failed (offline, proxy, ...)
        if weights == "imagenet":
            raise imagenet_weights_error(name, constructor, e) from None
        raise


def _set_bn_momentum(model, momentum: float) -> None:
    # Trained from scratch in a short run, BatchNorm's moving averages must
    # keep up with the weights; Keras' 0.99 lags far behind (see config.py).
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def _locator(pattern: str):
    def locate():
        return next(iter(sorted(keras_cache_dir().glob(pattern))), None)

    return locate


for _name, _app in APPLICATIONS.items():
    register_model(
        _name,
        default_size=_app.default_size,
        min_size=_app.min_size,
        preprocessing=_app.preprocessing,
        params_m=_app.params_m,
        imagenet_top1=_app.top1,
        pretrained=True,
        family=_app.family,
        description=f"keras.applications.{_app.constructor}",
        weights_locator=_locator(_app.weights_file),
    )(_make_builder(_name, _app.constructor))
