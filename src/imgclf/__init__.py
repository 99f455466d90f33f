"""imgclf: image classifiers from a folder of images, trained, evaluated, explained and shipped.

    import imgclf
    run = imgclf.train("data/", epochs=10, out="runs/leaves")
    report = imgclf.evaluate(run, data="test/")
    clf = imgclf.load("runs/leaves")
    clf.predict(["a.jpg", "b.png"], top_k=3)
    imgclf.compare("runs/a", "runs/b", data="test/")["verdict"]
    imgclf.tune("data/", "tune/leaves", time_budget=60)["best"]

Names are imported on first use so that ``import imgclf`` does not pay for
TensorFlow. The packages are layers (docs/architecture.md): core, data,
models, inference, evaluation, training, then export, serve, tuning and cli.
"""

from __future__ import annotations

import importlib

from imgclf.core.version import __version__

_LAZY = {
    "train": ("imgclf.training.api", "train"),
    "evaluate": ("imgclf.evaluation.evaluate", "evaluate"),
    "calibrate": ("imgclf.training.confidence", "calibrate"),
    "Evaluation": ("imgclf.evaluation.results", "Evaluation"),
    "load": ("imgclf.inference.loader", "load"),
    "Predictor": ("imgclf.inference.predictor", "Predictor"),
    "Run": ("imgclf.core.run", "Run"),
    "TrainConfig": ("imgclf.core.config", "TrainConfig"),
    "UserError": ("imgclf.core.errors", "UserError"),
    "list_models": ("imgclf.models.registry", "list_models"),
    "create_model": ("imgclf.models.factory", "create_model"),
    "register_model": ("imgclf.models.registry", "register_model"),
    "get_spec": ("imgclf.models.registry", "get_spec"),
    "export_dataset": ("imgclf.data.builtin", "export_dataset"),
    "list_runs": ("imgclf.evaluation.runs_table", "list_runs"),
    "compare": ("imgclf.evaluation.compare", "compare_runs"),
    "tune": ("imgclf.tuning.study", "tune"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'imgclf' has no attribute {name!r}")


def __dir__():
    return __all__
