"""One module per `imgclf` verb, each with `run(args) -> int` (after ultralytics' one package per verb).

A verb module imports what its command needs at its top; `imgclf.cli.main`
imports only the module of the verb it runs, so each command pays only for its
own dependencies (`imgclf models` never loads NumPy's users, `imgclf predict
model.tflite` never loads TensorFlow).
"""

VERBS = {  # command name -> module under imgclf.cli.verbs
    "train": "train",
    "evaluate": "evaluate",
    "calibrate": "calibrate",
    "plot": "plot",
    "predict": "predict",
    "export": "export",
    "serve": "serve",
    "models": "models",
    "weights": "weights",
    "demo": "demo",
    "datasets": "datasets",
    "check": "check",
    "split": "split",
    "lr-find": "lr_find",
    "augment-preview": "augment_preview",
    "runs": "runs",
    "compare": "compare",
    "tune": "tune",
}
