"""ImageNet-1k class names (offline) and the full 1000-class EfficientNet-Lite0/1/2.

``data/imagenet_classes.txt`` holds the 1000 class names in output order, one
per line, as Keras' ``imagenet_class_index.json`` spells them (``tabby``,
``espresso``...). The list is the ILSVRC-2012 synset names from WordNet, is
widely redistributed (Keras, PyTorch Hub, TensorFlow models), and is
shipped here so that no download is needed to name a prediction.

Example:
    >>> imagenet_class_names()[281]
    'tabby'
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

from imgclf.models.efficientnet_lite import imagenet_head_weights


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names, index = model output. Example: ``imagenet_class_names()[967]``."""
    text = resources.files("imgclf.models").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    assert len(names) == 1000, f"imagenet_classes.txt holds {len(names)} names, expected 1000"
    return names


def imagenet_classifier(name: str = "efficientnet_lite0"):
    """The ImageNet classifier with its published 1000-class head, taking raw 0..255 RGB pixels.

    Only models whose ImageNet head ships offline are supported (efficientnet_lite0, lite1, lite2).

    Example:
        >>> model = imagenet_classifier()
        >>> probs = model.predict(np.zeros((1, 224, 224, 3), "float32"), verbose=0)  # a batch of photos, 0..255
        >>> len(decode_top(probs, k=3)[0])  # on a real photo of a cat: [('tabby', 0.61), ('tiger_cat', 0.2), ...]
        3
    """
    # lazy: imports keras (imgclf.models.factory)
    from imgclf.models.factory import create_model

    model = create_model(name, num_classes=1000, weights="imagenet", dropout=0.0)
    kernel, bias = imagenet_head_weights(name)
    model.get_layer("classifier").set_weights([kernel, bias])
    return model


def decode_top(probs, k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (class name, probability) per row of a (N, 1000) array.

    Example:
        >>> import numpy as np
        >>> decode_top(np.eye(1000)[[281]], k=1)
        [[('tabby', 1.0)]]
    """

    names = imagenet_class_names()
    probs = np.asarray(probs)
    top = np.argsort(-probs, axis=1)[:, :k]
    return [[(names[i], round(float(row[i]), 4)) for i in idx] for row, idx in zip(probs, top)]
