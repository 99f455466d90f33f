"""Where pretrained weights come from, and what to do when they cannot be had."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError


def keras_cache_dir() -> Path:
    """The folder where Keras caches downloaded weights. Example: ``keras_cache_dir()``."""
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "models"


def imagenet_weights_error(constructor: str, cause: Exception) -> UserError:
    """A `UserError` that names the model, the cache folder and the ways out."""
    reason = str(cause).splitlines()[0][:200] if str(cause) else type(cause).__name__
    return UserError(
        f"Could not get ImageNet weights for {constructor} ({reason}). Keras downloads them into "
        f"{keras_cache_dir()}; this machine could not. Either run the same command once on a machine "
        "with internet access and copy that folder here, or pass --weights PATH (a .weights.h5 file "
        "or a .keras model), or train from scratch with --weights none."
    )


def load_backbone_weights(backbone, path: str) -> None:
    """Load weights into `backbone` from a .keras model (its 'backbone' layer) or a weights file.

    Example:
        >>> load_backbone_weights(backbone, "runs/earlier/model.keras")  # doctest: +SKIP
    """
    p = Path(path)
    if not p.exists():
        raise UserError(
            f"Weights file not found: {path!r}. Expected none, imagenet, or the path of a .weights.h5 "
            "file or a .keras model."
        )
    try:
        if p.suffix == ".keras":
            from .registry import load_keras_model

            source = load_keras_model(p)
            try:
                donor = source.get_layer("backbone")
            except ValueError:
                raise UserError(f"{path!r} has no 'backbone' layer: pass a model that imgclf trained.") from None
            backbone.set_weights(donor.get_weights())
        else:
            backbone.load_weights(p)
    except UserError:
        raise
    except Exception as e:
        raise UserError(
            f"Could not load weights from {path!r} into this backbone: {str(e).splitlines()[0][:300]}. "
            "The file must come from the same architecture at the same input channels."
        ) from None
