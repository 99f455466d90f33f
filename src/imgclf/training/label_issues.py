"""Finding images whose given label is probably wrong (confident learning, Northcutt et al. 2021).

The method needs *out-of-sample* probabilities: predicted by a model that did
not train on the image, or the model simply repeats the wrong label it
memorised. Two honest sources:
* ``method="cv"`` (the default): k-fold cross-validation. Every image of the
  run (train, val and test, or of a `data` folder) is predicted by a small
  copy of the run's model (same architecture, input size, colour mode,
  weights, learning rate) trained on the other folds. A pretrained backbone
  stays frozen and only the head trains, which is cheap and enough to rank
  labels. This checks the labels the model learned from.
* ``method="holdout"``: the run's own predictions on images it never trained
  on (its test split, or a `data` folder). Free, but only checks those images.

Then, per class j, the threshold t_j is the mean probability of class j over
the images labelled j. An image labelled y is an issue when some other class
j reaches its threshold (p_j >= t_j) and is the most probable such class.
Issues are ranked by the margin p_suggested - p_given, largest first.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import fields, replace

import numpy as np

from imgclf.core.config import TrainConfig, check_preprocess, make_config
from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_json, atomic_write_text
from imgclf.core.manifest import is_skipped
from imgclf.core.progress import log
from imgclf.core.run import Run
from imgclf.data.pipeline import DecodedSet, decode_all, make_dataset
from imgclf.evaluation.evaluate import eval_rows, evaluate
from imgclf.evaluation.figures.grids import plot_label_issues
from imgclf.evaluation.figures.run_figures import load_predictions
from imgclf.evaluation.report import write_report
from imgclf.models.registry import default_lr
from imgclf.training.plan import model_defaults
from imgclf.training.recipe import compile_for_training, freeze_for_phase


def confident_issues(y_given, probs) -> dict:
    """Confident-learning label issues from out-of-sample probabilities.

    Returns ``index`` (issue rows, most confident first), ``suggested``,
    ``confidence`` (probability of the suggested class), ``margin`` and the
    per-class ``thresholds``.

    Example:
        >>> r = confident_issues(np.array([0, 0, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]))
        >>> r["index"].tolist(), r["suggested"].tolist()
        ([1], [1])
    """
    y = np.asarray(y_given, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    k = p.shape[1]
    thresholds = np.ones(k)  # a class nobody is labelled with can never be suggested
    for j in range(k):
        if (y == j).any():
            thresholds[j] = p[y == j, j].mean()
    above = p >= thresholds[None, :] - 1e-12
    candidate = np.where(above, p, -1.0).argmax(axis=1)
    rows = np.arange(len(y))
    is_issue = above.any(axis=1) & (candidate != y)
    margin = p[rows, candidate] - p[rows, y]
    index = np.flatnonzero(is_issue)
    index = index[np.argsort(-margin[index], kind="stable")]
    return {"index": index, "suggested": candidate[index], "confidence": p[index, candidate[index]],
            "given_probability": p[index, y[index]], "margin": margin[index], "thresholds": thresholds}


def recipe_config(run: Run, epochs: int | None = None) -> TrainConfig:
    """The run's training settings for its cross-validation copies: the run's recipe, with 'model'
    defaults resolved and no weight averaging (nothing would swap the average in before predicting).

    Example:
        >>> recipe_config(Run("runs/leaves")).optimizer
        'adamw'
    """
    known = {f.name for f in fields(TrainConfig)}
    # Settings a later imgclf dropped stay out: an old run can still be checked.
    cfg = make_config({k: v for k, v in run.config.items() if k in known})
    lr, smoothing = model_defaults(cfg)
    lr = lr if lr != "auto" else default_lr(cfg.model, cfg.weights)  # 'auto' is resolved in a finished run's config
    return replace(cfg, lr=lr, label_smoothing=smoothing, ema=False, epochs=int(epochs or cfg.epochs), resume=False)


def cross_val_probs(run: Run, images: np.ndarray, labels: np.ndarray, folds: int = 5, epochs: int | None = None,
                    seed: int = 0, verbose: bool = True) -> np.ndarray:
    """Out-of-sample probabilities by k-fold: fresh copies of the run's model, each trained on k-1 folds.

    The copies train with the run's recipe (`recipe.compile_for_training`: its
    optimizer, weight decay and the schedule's warmup and decay), as training
    and lr-find do; a pretrained backbone stays frozen (the 'head' phase).

    Example:
        >>> from pathlib import Path
        >>> run = Run("runs/leaves")
        >>> paths = sorted(str(p) for p in Path("data").rglob("*.png"))
        >>> decoded = decode_all(paths, [run.classes.index(Path(p).parent.name) for p in paths], size=16, color_mode="rgb",
        ...                      verbose=False)
        >>> probs = cross_val_probs(run, decoded.images, decoded.labels, folds=2, epochs=1, verbose=False)  # 2 small models
        >>> probs.shape, bool(np.allclose(probs.sum(axis=1), 1, atol=1e-4))
        ((36, 3), True)
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    # lazy: imports keras (imgclf.models.factory, imgclf.training.schedules)
    from imgclf.models.factory import create_model
    from imgclf.training.schedules import ProgressSchedule

    cfg = recipe_config(run, epochs)
    classes = run.classes
    labels = np.asarray(labels, dtype=np.int32)
    counts = np.bincount(labels, minlength=len(classes))
    if len(labels) < 2 * folds or (counts[counts > 0] < 2).any():
        raise UserError(
            f"Too few images for {folds}-fold cross-validation: {len(labels)} images, smallest class "
            f"{int(counts[counts > 0].min())}. Use fewer folds (--folds 2) or method 'holdout'."
        )
    # Stratified folds: deal each class's shuffled images round-robin.
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    for j in np.flatnonzero(counts):
        idx = rng.permutation(np.flatnonzero(labels == j))
        fold_of[idx] = (np.arange(len(idx)) + rng.integers(folds)) % folds
    pretrained = cfg.weights not in (None, "", "none")
    probs = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for f in range(folds):
        keras.utils.set_random_seed(seed + f)
        train, held = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        model = create_model(cfg.model, num_classes=len(classes), img_size=images.shape[1], channels=images.shape[-1],
                             weights=cfg.weights, dropout=cfg.dropout, bn_momentum=cfg.bn_momentum, freeze_bn=cfg.freeze_bn)
        if pretrained:
            freeze_for_phase(model, "head", cfg)  # only the head trains: cheap, and enough to rank labels
        compile_for_training(model, cfg, one_hot=False)  # hard labels: smoothing would blur the probabilities ranked
        steps = max(1, -(-len(train) // cfg.batch_size)) * cfg.epochs
        schedule = ProgressSchedule(cfg.lr, total_steps=steps, kind=cfg.schedule)
        ds = make_dataset(DecodedSet(images[train], labels[train], []), cfg.batch_size, shuffle=True, seed=seed + f)
        model.fit(ds, epochs=cfg.epochs, verbose=0, shuffle=False, callbacks=[schedule])  # tf.data shuffles
        probs[held] = model.predict(images[held].astype(np.float32), batch_size=256, verbose=0)
        if verbose:
            log(f"Label check: fold {f + 1}/{folds} done ({len(train)} trained, {len(held)} predicted)")
    return probs


def _issue_rows(found: dict, paths: list[str], y_given, classes: list[str]) -> list[dict]:
    return [{"path": paths[i], "given": classes[int(y_given[i])], "suggested": classes[int(s)],
             "confidence": float(c), "given_probability": float(g), "margin": float(m)}
            for i, s, c, g, m in zip(found["index"], found["suggested"], found["confidence"],
                                     found["given_probability"], found["margin"])]


def find_label_issues(run, method: str = "cv", data: str | os.PathLike | None = None, folds: int = 5,
                      epochs: int | None = None, seed: int = 0, verbose: bool = True) -> list[dict]:
    """Rank the run's images whose given label the model confidently disputes; write label_issues.json/.csv and a picture.

    Each issue: path, given label, suggested label, confidence (probability of
    the suggested label) and the probability of the given one.

    Example:
        >>> issues = find_label_issues("runs/leaves", method="holdout", verbose=False)  # the run's held-out predictions
        >>> from pathlib import Path
        >>> isinstance(issues, list), Path("runs/leaves/label_issues.json").is_file()
        (True, True)
        >>> issues = find_label_issues("runs/leaves", method="cv", folds=2, epochs=1, verbose=False)  # 5 folds by default
        >>> json.loads(Path("runs/leaves/label_issues.json").read_text())["method"]
        '2-fold cross-validation over all images of the run (36 images)'
    """

    run = run if isinstance(run, Run) else Run(run)
    if method not in ("cv", "holdout"):
        raise UserError(f"Unknown label-check method {method!r}: expected 'cv' (cross-validation) or 'holdout'.")
    classes, pre = run.classes, check_preprocess(run.preprocess, run.file("preprocess.json"))
    index = {c: i for i, c in enumerate(classes)}
    if method == "holdout":
        # The predictions of the last `imgclf evaluate`, unless they were on other images than asked for.
        metrics = json.loads(run.file("metrics.json").read_text()) if run.file("metrics.json").exists() else {}
        if not run.file("predictions.npz").exists() or (data and metrics.get("evaluated_on") != os.fspath(data)):
            evaluate(run, data=data, verbose=verbose)
            metrics = json.loads(run.file("metrics.json").read_text())
        saved = load_predictions(run)
        paths, y_given, probs = [str(p) for p in saved["paths"]], saved["y_true"], saved["probs"]
        described = f"the run's predictions on {metrics.get('evaluated_on', 'its held-out images')}, which it never trained on"
    else:
        if data:
            rows, source = eval_rows(run, os.fspath(data), None)
        else:
            rows = [r for r in run.manifest() if not is_skipped(r) and r["label"] in index]
            source = "all images of the run"
        decoded = decode_all([r["path"] for r in rows], [index[r["label"]] for r in rows], pre["img_size"], pre["color_mode"],
                             resize=pre.get("resize", "squash"), label="Decoding for the label check", verbose=verbose)
        paths, y_given = decoded.paths, decoded.labels
        probs = cross_val_probs(run, decoded.images, decoded.labels, folds=folds, epochs=epochs, seed=seed, verbose=verbose)
        described = f"{folds}-fold cross-validation over {source} ({len(paths)} images)"
    found = confident_issues(y_given, probs)
    issues = _issue_rows(found, list(paths), y_given, classes)
    atomic_write_json(run.file("label_issues.json"), {
        "method": described, "num_checked": len(paths),
        "thresholds": {c: float(t) for c, t in zip(classes, found["thresholds"])}, "issues": issues})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["path", "given", "suggested", "confidence", "given_probability", "margin"])
    writer.writeheader()
    writer.writerows(issues)
    atomic_write_text(run.file("label_issues.csv"), buf.getvalue())
    shown = decode_all([i["path"] for i in issues[:12]], [0] * min(len(issues), 12), pre["img_size"], pre["color_mode"],
                       resize=pre.get("resize", "squash"), verbose=False)
    plot_label_issues(shown.images, [i for i in issues[:12] if i["path"] in set(shown.paths)], run.file("plots") / "label_issues.png")
    if run.file("report.html").exists() and run.file("metrics.json").exists():
        write_report(run)
    if verbose:
        log(f"Label check: {len(issues)} possible label error(s) among {len(paths)} images; see {run.file('label_issues.csv')}")
    return issues
