"""Layer 7 (beside export and serve), tuning: `imgclf tune`, a search over training settings (imports core to training).

space (the search space from the registry and the data, no TensorFlow),
pruning (the Keras callback that feeds Optuna each epoch's validation score),
objective (one trial: settings drawn, an ordinary run trained, its score),
study (the Optuna study in a SQLite file, its trials as ordinary runs,
best.yaml), refit (best.yaml on train + validation), report (tune.html). Optuna is an optional extra
(``pip install 'imgclf[tune]'``), imported only when a search runs.
See docs/architecture.md.
"""
