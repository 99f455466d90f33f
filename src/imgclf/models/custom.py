"""imgclf's own small CNNs, for small images trained from scratch on a CPU.

`small_cnn` is shaped for images from 8 to about 96 pixels: two 3x3 conv
layers per stage (a wider receptive field for the cost of one 5x5), BatchNorm
with a momentum suited to short runs, max pooling between stages, and global
average pooling instead of a big dense layer, so it stays at ~160k parameters and
trains at thousands of images per second on two cores.
"""

from __future__ import annotations

from .registry import register_model


def _conv_bn_relu(x, filters: int, bn_momentum: float, name: str):
    from keras import layers

    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _stages(input_shape, widths, bn_momentum: float, name: str):
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    x = inputs
    for i, width in enumerate(widths):
        if i > 0 and x.shape[1] >= 4:
            x = layers.MaxPooling2D(name=f"stage{i}_pool")(x)
        x = _conv_bn_relu(x, width, bn_momentum, f"stage{i}a")
        x = _conv_bn_relu(x, width, bn_momentum, f"stage{i}b")
    return keras.Model(inputs, x, name=name)


@register_model(
    "small_cnn",
    default_size=0,
    min_size=8,
    preprocessing="unit",
    color_modes=("rgb", "grayscale"),
    params_m=0.16,
    family="imgclf",
    description="3-stage CNN (24-48-96 filters) for small images from scratch",
)
def small_cnn(input_shape, weights=None, bn_momentum=0.9):
    """Build the small_cnn backbone. Example: ``small_cnn((28, 28, 1)).output_shape``."""
    return _stages(input_shape, (24, 48, 96), bn_momentum, "small_cnn")
