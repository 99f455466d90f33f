"""Fitting the run's confidence: at the end of training (`FitConfidence`) and for an existing run (`calibrate`).

The model's own outputs on the validation images (with the test-time
augmentation the run chose) fit the temperature, the unknown-score
threshold for the run's ``reject_rate`` and the conformal quantiles; the
penultimate features of up to 5,000 training images give the class
statistics of the Mahalanobis and kNN scores. A run trained from streamed
shards holds no pixels, so its images are decoded from the shards at the end
(the first `MAX_VAL_IMAGES` validation and `MAX_TRAIN_IMAGES` training
records: random samples, since packing shuffled each split). The math is in
`imgclf.inference.confidence`; this module only feeds it images.

Example:
    >>> conf = calibrate("runs/leaves")
    >>> conf.calibrated, conf.info["fitted_on"]["split"], conf.temperature > 0
    (True, 'val', True)
"""

from __future__ import annotations

import os

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.manifest import is_skipped
from imgclf.core.progress import log
from imgclf.core.run import Run
from imgclf.data.decode import DEFAULT_MAX_PIXELS
from imgclf.data.pipeline import decode_all
from imgclf.data.shards.reader import decode_split, shard_source
from imgclf.evaluation.evaluate import eval_rows
from imgclf.inference.confidence.fit import DEFAULT_METHOD, DEFAULT_REJECT_RATE, fit_confidence
from imgclf.inference.confidence.scaling import explain_fit
from imgclf.inference.confidence.store import Confidence
from imgclf.inference.predictor import Predictor

MAX_TRAIN_IMAGES = 5000  # training images whose features give the class statistics (a seeded sample)
MAX_VAL_IMAGES = 20_000  # validation images decoded from shards for the fit (a large pack's split may not fit in memory)
BATCH = 128


def _batched(fn, images: np.ndarray) -> np.ndarray:
    return np.concatenate([fn(np.asarray(images[i:i + BATCH], dtype=np.float32)) for i in range(0, len(images), BATCH)])


def fit_run_confidence(run_dir, model, train_images, train_labels, val_images, val_labels,
                       reject_rate: float = DEFAULT_REJECT_RATE, method: str = DEFAULT_METHOD, seed: int = 0) -> Confidence:
    """Fit and save (confidence.json, confidence.npz) the confidence of the run in `run_dir` for a Keras `model`.

    Example:
        >>> from imgclf.models.saving import load_keras_model
        >>> run = Run("runs/leaves")
        >>> train, val = shard_sets("shards/", run.classes, run.preprocess)  # data/ packed: the run's images
        >>> conf = fit_run_confidence(run.path, load_keras_model(run.model_path), train.images, train.labels,
        ...                           val.images, val.labels)
        >>> conf.info["fitted_on"]["images"] == len(val), conf.method
        (True, 'mahalanobis')
    """
    run = Run(run_dir)
    raw = Predictor(model, run.classes, run.preprocess, source=str(run_dir))  # no confidence: uncalibrated outputs
    val_probs = _batched(raw.predict_arrays, val_images)
    kernel = bias = val_feats = train_feats = None
    if raw.backend.has_embedding:
        rng = np.random.default_rng(seed)
        if len(train_labels) > MAX_TRAIN_IMAGES:
            keep = np.sort(rng.choice(len(train_labels), MAX_TRAIN_IMAGES, replace=False))
            train_images, train_labels = train_images[keep], np.asarray(train_labels)[keep]
        val_feats = _batched(raw.backend.embed, val_images)
        train_feats = _batched(raw.backend.embed, train_images)
        try:
            weights = model.get_layer("classifier").get_weights()
            kernel, bias = np.asarray(weights[0], np.float32), np.asarray(weights[1], np.float32)
        except (ValueError, IndexError):
            pass
    conf = fit_confidence(val_probs, val_labels, val_feats, train_feats, train_labels, kernel, bias,
                          reject_rate=reject_rate, method=method, seed=seed)
    conf.save(run.path)
    info = conf.info
    log(f"Calibration on {len(val_labels)} validation images: {explain_fit(info)}; "
        f"ECE {info['ece_before']:.3f} -> {info['ece_after']:.3f}; unknown score {conf.method}"
        + (f", threshold {conf.reject_threshold():.4g} (reject rate {reject_rate:g})" if reject_rate else " (rejection off)"))
    return conf


def shard_sets(root: str, classes: list[str], pre: dict, max_pixels: int = DEFAULT_MAX_PIXELS):
    """(train, val) `DecodedSet`s for a fit from packed shards: their first records, at most the caps above.

    Example:
        >>> train, val = shard_sets("shards/", ["bird", "cat", "dog"], {"img_size": 16, "color_mode": "rgb"})
        >>> len(train), len(val), val.images.shape[1:]
        (30, 3, (16, 16, 3))
    """
    def decode(split, limit):
        return decode_split(root, split, classes, pre["img_size"], pre["color_mode"], resize=pre.get("resize", "squash"),
                            max_pixels=max_pixels, verbose=False, limit=limit)

    return decode("train", MAX_TRAIN_IMAGES), decode("val", MAX_VAL_IMAGES)


class FitConfidence:
    """End step of training: fit the confidence on the validation split (after `ChooseTTA`, whose choice it uses).

    Example:
        >>> from imgclf.core.config import TrainConfig
        >>> from imgclf.training.trainer import Trainer
        >>> trainer = Trainer(TrainConfig(data="data/", model="small_cnn", img_size=16, epochs=1, out="runs/fitconf", verbose=0))
        >>> run = trainer.fit_new()  # its end steps fit the confidence once already; fitting again rewrites it
        >>> FitConfidence().after_fit(trainer)
        >>> (run.path / "confidence.json").exists()
        True
    """

    def after_fit(self, trainer) -> None:
        """Fit and record; nothing for a non-chief worker or a run without model. Streamed shards are decoded here."""
        if not trainer.dist.plan.is_chief or not (trainer.run_dir / "model.keras").exists():
            return
        val, train = trainer.sets["val"], trainer.sets["train"]
        if val.images is None:  # streamed shards hold no pixels: decode bounded samples of both splits now
            root = getattr(trainer.source, "root", "")
            if not root:
                log("Calibration: skipped (no pixels and no shards to read them from); run `imgclf calibrate RUN --data DIR`.")
                return
            train, val = shard_sets(root, trainer.classes, Run(trainer.run_dir).preprocess, trainer.cfg.max_pixels)
        if not len(val.images) or train.images is None:
            return
        # lazy: imports keras (imgclf.models.saving)
        from imgclf.models.saving import load_keras_model

        model = load_keras_model(Run(trainer.run_dir).model_path)
        reject_rate = getattr(trainer.cfg, "reject_rate", DEFAULT_REJECT_RATE)
        conf = fit_run_confidence(trainer.run_dir, model, train.images, train.labels, val.images, val.labels,
                                  reject_rate=reject_rate, seed=trainer.cfg.seed)
        trainer.summary["confidence"] = {k: conf.info[k] for k in ("temperature", "ece_before", "ece_after")}


def class_sample(rows: list[dict], limit: int, seed: int = 0) -> list[dict]:
    """At most `limit` of `rows`, a seeded random sample of each class in proportion (every class keeps at least one).

    A manifest lists its rows class by class: its first rows would hold only the first classes, and the class
    statistics of the others would be missing (the unknown score then rejected most images of those classes).

    Example:
        >>> rows = [{"label": "a"}] * 90 + [{"label": "b"}] * 10
        >>> picked = class_sample(rows, 20)
        >>> len(picked), sum(r["label"] == "b" for r in picked)
        (20, 2)
    """
    if len(rows) <= limit:
        return list(rows)
    by_class: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_class.setdefault(r["label"], []).append(i)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for members in by_class.values():
        take = max(1, round(limit * len(members) / len(rows)))
        keep += rng.choice(members, min(take, len(members)), replace=False).tolist()
    return [rows[i] for i in sorted(keep)]


def _decode(rows: list[dict], classes: list[str], pre: dict):
    index = {c: i for i, c in enumerate(classes)}
    rows = [r for r in rows if r["label"] in index]
    return decode_all([r["path"] for r in rows], [index[r["label"]] for r in rows], pre["img_size"], pre["color_mode"],
                      resize=pre.get("resize", "squash"), label="Decoding", verbose=False)


def calibrate(run, data: str | os.PathLike | None = None, reject_rate: float | None = None,
              method: str = DEFAULT_METHOD) -> Confidence:
    """Refit the confidence of an existing run on its validation split (or on `data`, a folder of class subfolders).

    A run trained from packed shards refits on the shards' validation split
    (its image files need not exist here); `data` may also be such a pack.
    `reject_rate` None keeps the run's (config.yaml; 0.05 for runs made before it existed).

    Example:
        >>> imgclf.calibrate("runs/leaves", reject_rate=0.02).info["reject"]["reject_rate"]
        0.02
    """
    run = run if isinstance(run, Run) else Run(run)
    if reject_rate is None:
        try:
            reject_rate = float(run.config.get("reject_rate", DEFAULT_REJECT_RATE))
        except Exception:  # noqa: BLE001 - a hand-made run without config.yaml
            reject_rate = DEFAULT_REJECT_RATE
    if not 0 <= reject_rate < 1:
        raise UserError(f"--reject-rate is a share in [0, 1) (0 = off), received {reject_rate}.")
    pre, classes = run.preprocess, run.classes
    # lazy: imports keras (imgclf.models.saving)
    from imgclf.models.saving import load_keras_model

    shards = shard_source(run, data)
    if shards:
        train, val = shard_sets(shards, classes, pre)
        return fit_run_confidence(run.path, load_keras_model(run.model_path), train.images, train.labels, val.images,
                                  val.labels, reject_rate=reject_rate, method=method)
    manifest = run.manifest() if run.file("manifest.csv").exists() else []
    cal_rows = eval_rows(run, os.fspath(data), None)[0] if data else [r for r in manifest if r["split"] == "val" and not is_skipped(r)]
    if not cal_rows:
        raise UserError(f"The run {str(run.path)!r} lists no validation images; pass --data DIR (one subfolder per class).")
    val = _decode(cal_rows, classes, pre)
    if not len(val):
        raise UserError(f"None of the {len(cal_rows)} calibration images could be read; pass --data DIR.")
    train = _decode(class_sample([r for r in manifest if r["split"] == "train" and not is_skipped(r)], MAX_TRAIN_IMAGES),
                    classes, pre)
    if not len(train):
        log("Calibration: the run's training images cannot be read; the class statistics come from the calibration images.")
        train = val
    return fit_run_confidence(run.path, load_keras_model(run.model_path), train.images, train.labels, val.images,
                              val.labels, reject_rate=reject_rate, method=method)
