"""Layer 6, training: from a folder (or a run to resume) to a Run bundle (imports every layer below).

api (`train`, `lr_find`), plan (every automatic setting resolved once, no
TensorFlow), trainer (preparation) and fit_loop (phases, `model.fit`), recipe
(freezing, optimizer, loss per phase), schedules, callbacks, monitor
(validation metrics per epoch), feature_cache, lr_find, tta_choice,
label_issues, distributed/ (several devices or machines).
See docs/architecture.md.
"""
