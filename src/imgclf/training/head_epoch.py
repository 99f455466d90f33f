"""The solved head as epoch 1 of a run: the softmax regression, then the callbacks every epoch has.

`head_solver.solve_head` fits the classifier; this module wraps it so that
the Run bundle cannot tell it from a trained epoch: RunWriter appends the row
to history.csv and saves model.keras and checkpoints/last.keras, the progress
line prints, TensorBoard logs it. Validation figures come from the full model
(`model.evaluate` on the validation pipeline, with the run's loss) so that they
compare exactly with the fine-tuning epochs that follow: model.keras keeps
whichever is better. A head-only run on few images fits the validation images
too (`solve_head(use_val=True)`); its validation figures are then the
cross-validated ones.

Example:
    >>> from imgclf.core.config import make_config
    >>> from imgclf.training.trainer import Trainer
    >>> trainer = Trainer(make_config({"data": "data/", "model": "small_cnn", "img_size": 16, "out": "runs/head"}))
    >>> trainer.prepare()  # split and decode data/ (what `imgclf train` does first)
    >>> model = trainer.build_model()
    >>> trainer.prepare_phase(model, "head")  # freeze the backbone, compile
    >>> from imgclf.training.callbacks import RunWriter
    >>> writer = RunWriter(trainer.run_dir, "head", {"epoch": 0, "phase": "", "history": []}, len(trainer.sets["train"]))
    >>> fit = solve_head_epoch(trainer, model, [writer], trainer.val_dataset(), epoch=0)
    >>> (trainer.run_dir / "model.keras").is_file(), trainer.summary["head_solver"]["C"] == fit["C"]
    (True, True)
"""

from __future__ import annotations

from imgclf.core.config import to_yaml
from imgclf.core.fs import atomic_write_text
from imgclf.data.augment import augmentation_layers, resolve_flip
from imgclf.data.balance import WEIGHTINGS, class_weights
from imgclf.training.head_solver import CV_BELOW, extra_views, solve_head


def _solver_weights(trainer) -> dict | None:
    """Class weights as the solver's sample weights; balanced sampling (it draws images, a solve has none to
    draw) becomes the inverse-frequency weights it stands for."""
    if trainer.class_weight or trainer.cfg.sampling != "balanced":
        return trainer.class_weight
    return class_weights(trainer.sets["train"].labels, len(trainer.classes), mode="balanced")


def _weightings(trainer) -> dict | None:
    """The candidate class weights when `--class-weight auto` left the choice to the solve (else None)."""
    if (trainer.summary.get("class_weighting") or {}).get("weighting") != "auto":
        return None
    labels, n = trainer.sets["train"].labels, len(trainer.classes)
    return {name: class_weights(labels, n, name) for name in WEIGHTINGS}


def _adopt_weighting(trainer, choice: dict) -> None:
    """Fine-tuning uses the weighting the solve chose; config.yaml records it (a resumed run keeps it)."""
    trainer.class_weight = class_weights(trainer.sets["train"].labels, len(trainer.classes), choice["chosen"])
    trainer.cfg.class_weight = choice["chosen"]
    weights = trainer.class_weight
    trainer.summary["class_weight"] = {c: weights[i] for i, c in enumerate(trainer.classes)} if weights else None
    trainer.summary["class_weighting"] = {"weighting": choice["chosen"], "why": choice["why"],
                                          "candidates": choice["candidates"]}
    atomic_write_text(trainer.run_dir / "config.yaml", to_yaml(trainer.settings))


def solve_head_epoch(trainer, model, callbacks: list, val_ds, epoch: int) -> dict:
    """Solve `model`'s head on cached features as epoch `epoch` + 1, driving `callbacks` like `fit` would.

    Returns the solver's figures, which also go to the run's summary.json
    under "head_solver".
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    # The schedule, EMA swaps and early stopping act on gradient steps: a solve has none.
    skip = (keras.callbacks.SwapEMAWeights, keras.callbacks.EarlyStopping)
    kept = [c for c in callbacks if not isinstance(c, skip) and type(c).__name__ != "ProgressSchedule"]
    cb = keras.callbacks.CallbackList(kept, add_history=False, add_progbar=False, model=model)
    cb.on_train_begin()
    cb.on_epoch_begin(epoch)
    plan, cfg = trainer.plan, trainer.cfg
    views = extra_views(len(trainer.sets["train"]), plan.augment)
    layers = augmentation_layers(plan.augment, resolve_flip(cfg.flip, trainer.classes), cfg.seed) if views else None
    # Head only, on few images: validation joins the fit, and its figures become out-of-fold estimates.
    use_val = plan.validation and plan.finetune == "none" and len(trainer.sets["val"]) < CV_BELOW
    # With fine-tuning to follow, the head is scaled to the loss it will use (label smoothing).
    smoothing = 0.0 if plan.finetune == "none" else float(plan.label_smoothing or 0.0)
    weightings = _weightings(trainer)
    fit = solve_head(model, trainer.sets, augment_layers=layers, views=views, class_weight=_solver_weights(trainer),
                     use_val=use_val, label_smoothing=smoothing, weightings=weightings, monitor=trainer.settings.monitor)
    if weightings:
        _adopt_weighting(trainer, fit["weighting"])
    if not plan.validation:
        logs = {}  # no validation split: the out-of-fold figures stay in summary.json ("head_solver")
    elif use_val:
        logs = {"val_loss": fit["held_out_loss"], "val_accuracy": fit["held_out_accuracy"]}
    else:
        val = model.evaluate(val_ds, verbose=0, return_dict=True)
        logs = {"val_loss": float(val["loss"]), "val_accuracy": float(val["accuracy"])}
    logs.update(loss=fit["train_loss"], accuracy=fit["train_accuracy"])
    cb.on_epoch_end(epoch, logs)
    cb.on_train_end(logs)
    trainer.summary["head_solver"] = {k: fit[k] for k in ("C", "scale", "selected_by", "held_out_loss", "held_out_accuracy",
                                                           "val_in_fit", "features_s", "fit_s", "views", "feature_rows",
                                                           "tried")}
    return fit
