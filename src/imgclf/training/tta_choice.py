"""The end-of-training step that chooses the run's test-time augmentation on validation.

A step in the fastai sense: the trainer calls ``after_fit(trainer)`` on each
of its end steps once the phases are done and the best model is saved; the
step reads what it needs (run folder, validation split, settings) and adds
its decision to the summary and to preprocess.json, which `evaluate` and
`predict` read.

Example:
    >>> from imgclf.core.config import TrainConfig
    >>> from imgclf.training.trainer import Trainer
    >>> trainer = Trainer(TrainConfig(data="data/", model="small_cnn", img_size=16, epochs=1, out="runs/tta", verbose=0))
    >>> run = trainer.fit_new()  # its end steps decide once already; deciding again gives the same answer
    >>> ChooseTTA().after_fit(trainer)
    >>> trainer.summary["tta"]["tta"] == run.preprocess["tta"]
    True
"""

from __future__ import annotations

import time

import numpy as np

from imgclf.core.fs import atomic_write_json
from imgclf.core.progress import log
from imgclf.core.run import Run
from imgclf.data.augment import resolve_flip
from imgclf.inference.tta import choose_tta


class ChooseTTA:
    """Choose the run's test-time augmentation on validation (see `inference.tta.choose_tta`).

    The views cost up to 10 model calls per image, so the decision runs on a
    sample sized to take about 5% of the training time (at least 20 s,
    at most 10,000 images, at least 300 or no decision).

    Example:
        >>> ChooseTTA().sample_size(per_image_s=0.001, views=10, train_time_s=100, n_val=5000)
        2000
    """

    @staticmethod
    def sample_size(per_image_s: float, views: int, train_time_s: float, n_val: int) -> int:
        """Validation images the decision can afford: ~5% of the training time, 20 s at least, 10,000 at most."""
        affordable = int(max(20.0, 0.05 * train_time_s) / max(per_image_s * views, 1e-9))
        return min(n_val, 10_000, affordable)

    def after_fit(self, trainer) -> None:
        """Decide and record; nothing for streamed shards (no pixels held), a non-chief worker or a run without model."""
        val = trainer.sets["val"]
        images = val.images
        if (images is None or not len(images) or not trainer.dist.plan.is_chief
                or not (trainer.run_dir / "model.keras").exists()):
            return
        cfg, plan = trainer.cfg, trainer.plan
        flips = plan.augment != "none" and resolve_flip(cfg.flip, trainer.classes) in ("horizontal", "both")
        run = Run(trainer.run_dir)
        # lazy: imports keras (imgclf.models.saving)
        from imgclf.models.saving import as_float32, load_keras_model
        model = as_float32(load_keras_model(run.model_path))  # the saved best epoch, as evaluate loads it (float32)

        def predict(x):
            return model.predict(x, batch_size=256, verbose=0)

        probe = images[:256]
        predict(probe)  # the first call traces the model
        t = time.perf_counter()
        predict(probe)
        per_image = (time.perf_counter() - t) / len(probe)
        views = 10 if flips else 5
        n = self.sample_size(per_image, views, trainer.summary["train_time_s"], len(val.labels))
        if n < min(300, len(val.labels)):
            choice = {"tta": "none", "reason": f"deciding would take too long ({per_image * 1000:.1f} ms per model call)"}
        else:
            labels = val.labels
            if n < len(labels):  # a class-blind random sample decides as well as the whole split
                keep = np.sort(np.random.default_rng(cfg.seed).choice(len(labels), n, replace=False))
                images, labels = images[keep], labels[keep]
            choice = choose_tta(images, labels, predict, flips)
            choice["images"] = int(len(labels))
        trainer.summary["tta"] = choice
        atomic_write_json(trainer.run_dir / "preprocess.json", {**run.preprocess, "tta": choice["tta"]})
        if choice["tta"] != "none":
            log(f"Test-time augmentation: {choice['tta']} {choice['reason']}; evaluate and predict use it "
                "(--tta none turns it off).")
