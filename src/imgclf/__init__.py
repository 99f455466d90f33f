"""imgclf: image classifiers from a folder of images, trained, evaluated, explained and shipped.

    import imgclf
    run = imgclf.train("data/", epochs=10, out="runs/leaves")
    report = imgclf.evaluate(run, data="test/")
    clf = imgclf.load("runs/leaves")
    clf.predict(["a.jpg", "b.png"], top_k=3)

Names are imported lazily so that ``import imgclf`` does not pay for TensorFlow.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "load": ("imgclf.predict", "load"),
    "Predictor": ("imgclf.predict", "Predictor"),
    "Run": ("imgclf.run", "Run"),
    "TrainConfig": ("imgclf.config", "TrainConfig"),
    "UserError": ("imgclf.errors", "UserError"),
    "list_models": ("imgclf.models.registry", "list_models"),
    "create_model": ("imgclf.models.registry", "create_model"),
    "register_model": ("imgclf.models.registry", "register_model"),
    "get_spec": ("imgclf.models.registry", "get_spec"),
    "export_dataset": ("imgclf.data.builtin", "export_dataset"),
}

__all__ = sorted(_LAZY) + ["Evaluation", "evaluate", "train", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'imgclf' has no attribute {name!r}")


def __dir__():
    return __all__


# `train` and `evaluate` are both functions and submodules. Python sets a package
# attribute to the submodule the first time the submodule is imported, so a lazy
# function of the same name would be replaced by the module as soon as any code
# imported imgclf.train. Importing both modules here (they import no TensorFlow)
# and binding the functions afterwards keeps `imgclf.train(...)` a function.
from .evaluate import Evaluation, evaluate  # noqa: E402
from .train import train  # noqa: E402
