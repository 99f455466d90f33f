"""What `imgclf train DATA` with the same flags would resolve for augmentation, for `imgclf augment-preview`.

`augment-preview` used to show the 'standard' preset while training on the
same folder used 'light' (chosen automatically): a preview of something that
never runs (issue 20). This resolves the model (`--model auto`), then the
plan, exactly as training does, from a scan and a probe of the data: no
TensorFlow, no decoding beyond the probe.

Example:
    >>> resolve_preview("data/", model="small_cnn")["augment"]
    'none'
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from imgclf.core.config import TrainConfig
from imgclf.data.decode import probe_images
from imgclf.data.scan import require_trainable, scan_folder
from imgclf.models.registry import get_spec
from imgclf.training.auto_model import choose_model
from imgclf.training.plan import make_plan


def resolve_preview(data: str, **settings) -> dict:
    """{"augment", "img_size", "color_mode", "model", "flip"} that `imgclf train data` with `settings` would use.

    Example:
        >>> resolve_preview("data/", model="small_cnn", epochs=20)["augment"]
        'light'
    """
    cfg = TrainConfig(data=str(data), **settings)
    scan = scan_folder(data)
    require_trainable(scan)
    train = [r for r in scan.rows if r["split"] in ("", "train")]
    probe = probe_images([r["path"] for r in train], seed=cfg.seed)
    if cfg.model == "auto":
        choice = choose_model(probe, Counter(r["label"] for r in train), weights=cfg.weights, finetune=cfg.finetune)
        cfg = dataclasses.replace(cfg, model=choice.model, weights=choice.weights, finetune=choice.finetune)
    plan = make_plan(cfg, get_spec(cfg.model), probe)
    return {"augment": plan.augment, "img_size": plan.img_size, "color_mode": plan.color_mode, "model": cfg.model,
            "flip": cfg.flip}
