"""What a model must beat, and the run in one paragraph: the opening of report.html and of `imgclf evaluate`.

A model that always answers the largest class scores that class's share of
the images; on a 14:1 set that is 0.93. Accuracy means little until it is
set beside that figure (issue 20: 0.637 against a baseline of 0.575 looked
fine in a report that did not show it).

Example:
    >>> m = {"accuracy": 0.60, "per_class": {"ok": {"support": 57}, "bad": {"support": 43}}}
    >>> majority_baseline(m)["warning"]
    "Accuracy 0.600 is barely above always answering 'ok' (0.570): the model removes only 7% of that rule's errors."
"""

from __future__ import annotations

import os

WARN_BELOW = 0.25  # warn when the model removes less than this share of the majority-class rule's errors


def majority_baseline(m: dict) -> dict:
    """The accuracy of always answering the largest class of the evaluated images, and a warning if the model is near it.

    Near means removing less than WARN_BELOW of that rule's errors: 0.637
    against 0.575 (issue 20) removes 15% of them; 0.95 against 0.93, 29%.
    Returns {"class", "accuracy", "gap" (model minus baseline), "warning" (str or None)}.

    Example:
        >>> majority_baseline({"accuracy": 0.9, "per_class": {"a": {"support": 3}, "b": {"support": 1}}})
        {'class': 'a', 'accuracy': 0.75, 'gap': 0.15, 'warning': None}
    """
    support = {c: v.get("support", 0) for c, v in m.get("per_class", {}).items()}
    total = sum(support.values())
    if not total:
        return {"class": None, "accuracy": None, "gap": None, "warning": None}
    largest = max(support, key=support.get)
    base = support[largest] / total
    gap = float(m["accuracy"]) - base
    removed = gap / (1.0 - base) if base < 1.0 else 1.0
    warning = None
    if removed < WARN_BELOW and len(support) > 1:
        warning = (f"Accuracy {m['accuracy']:.3f} is barely above always answering {largest!r} ({base:.3f}): "
                   f"the model removes only {max(removed, 0.0):.0%} of that rule's errors.")
    return {"class": largest, "accuracy": round(base, 4), "gap": round(gap, 4), "warning": warning}


def run_facts(config: dict, summary: dict, preprocess: dict) -> list[tuple[str, str]]:
    """(name, value) pairs that say what was trained: model, weights, input, precision, time, data, imbalance.

    Example:
        >>> run_facts({"model": "small_cnn", "weights": "none"}, {"train_time_s": 75.2, "images": {"train": 90, "val": 10}},
        ...           {"img_size": 96, "color_mode": "rgb"})
        [('model', 'small_cnn (weights: none)'), ('input', '96x96 px rgb'), ('training time', '1.3 min'), ('images', 'train 90, val 10')]
    """
    facts = []
    if config.get("model"):
        facts.append(("model", f"{config['model']} (weights: {os.path.basename(str(config.get('weights') or 'none'))})"))
    if preprocess.get("img_size"):
        facts.append(("input", f"{preprocess['img_size']}x{preprocess['img_size']} px {preprocess.get('color_mode', '')}".strip()))
    if summary.get("precision"):
        facts.append(("precision", str(summary["precision"])))
    if summary.get("train_time_s") is not None:
        facts.append(("training time", f"{summary['train_time_s'] / 60:.1f} min"))
    if summary.get("best_epoch"):
        how = ("the last: no validation split" if config.get("monitor") == "none"
               else f"best {config.get('monitor', 'validation metric')}")
        facts.append(("kept epoch", f"{summary['best_epoch']} of {summary.get('epochs_run', '?')} ({how})"))
    if summary.get("images"):
        facts.append(("images", ", ".join(f"{s} {n}" for s, n in summary["images"].items())))
    weighting = summary.get("class_weighting") or {}
    if summary.get("imbalance_ratio", 1.0) > 1.5:
        facts.append(("imbalance", f"largest / smallest class {summary['imbalance_ratio']:g}; loss weighting "
                                   f"{weighting.get('weighting', 'n/a')}" + (f" ({weighting['why']})" if weighting.get("why") else "")))
    return facts


def relative_to(path: str, root: str | None) -> str:
    """`path` relative to the data folder `root` when it lies inside it, else as given.

    Example:
        >>> relative_to("/data/leaves/oak/1.jpg", "/data/leaves"), relative_to("/elsewhere/1.jpg", "/data/leaves")
        ('oak/1.jpg', '/elsewhere/1.jpg')
    """
    if not root:
        return path
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    return path if rel.startswith("..") else rel
